import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { buildApi } from './api/server.ts';
import { ensureAdminToken } from './api/auth.ts';
import type { HostPort, ServerConfig } from './config/settings.ts';
import { BackendService } from './control/backends.ts';
import { type ControlContext, isoNow, systemClock, systemRandom } from './control/context.ts';
import { HealthStatusService } from './control/health-status.ts';
import { CertificateService } from './control/certificates.ts';
import { CertificateExpiryWatcher } from './control/certificate-expiry.ts';
import { EventBus, EVENTS } from './observability/events.ts';
import { SecretBox } from './tls/secret-box.ts';
import { ConnectionLog } from './observability/connection-log.ts';
import { ListenerService } from './control/listeners.ts';
import { AccessControlService } from './control/access-control.ts';
import { AclService } from './control/acls.ts';
import { openGeoIp } from './policy/geoip.ts';
import { createPolicyState, type PolicyState } from './runtime/policies.ts';
import { RateLimitService } from './control/rate-limits.ts';
import { RoutingRuleService } from './control/routing-rules.ts';
import { isoSeconds } from './model/common.ts';
import { LoadBalancerService } from './control/load-balancers.ts';
import { PoolService } from './control/pools.ts';
import { ListenerManager } from './dataplane/listener-manager.ts';
import { BackendState } from './runtime/backend-state.ts';
import { SqliteStore } from './store/sqlite/sqlite-store.ts';
import type { Store } from './store/store.ts';

export const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface Fulcrum {
  /** The management API's bound address (port resolved when 0 was asked). */
  apiAddress: HostPort;
  /** Set only on the first start without FULCRUM_ADMIN_TOKEN: print it once, never store it. */
  generatedAdminToken: string | undefined;
  store: Store;
  api: FastifyInstance;
  dataPlane: ListenerManager;
  state: BackendState;
  /** Internal events (certificate.expiring, …); webhooks subscribe here. */
  events: EventBus;
  /** What the layer 7 policies remember (ACL matches, rate limit budgets, rule hits, the GeoIP database). */
  policies: PolicyState;
  /** Graceful stop: listeners and API stop accepting, in-flight work finishes until the deadline. */
  stop(): Promise<void>;
}

export interface StartOptions {
  log?: Logger;
}

/** Builds and starts one Fulcrum process: store, control plane, data plane, management API. */
export async function startFulcrum(config: ServerConfig, options: StartOptions = {}): Promise<Fulcrum> {
  const log = options.log ?? pino({ level: config.logLevel, base: { service: 'fulcrum' } });
  // Before the store opens, so that an unusable database stops start-up with nothing to undo.
  const geo = config.geoipDatabasePath === undefined ? null : openGeoIp(config.geoipDatabasePath);
  if (geo) log.info({ geoip: geo.info }, 'GeoIP database loaded');
  const store = SqliteStore.open(config.dataDir);
  const events = new EventBus(log.child({ component: 'events' }));
  const policies = createPolicyState({
    geo,
    now: systemClock.now,
    onRateLimited: (data) => events.emit({ type: EVENTS.RATE_LIMIT_TRIGGERED, at: isoSeconds(systemClock.now()), data }),
  });
  const state = new BackendState();
  // The data plane removes a backend once its drain completes, through the same service the API uses.
  const secrets = SecretBox.open(config.dataDir, config.secretKey);
  const connectionLog = new ConnectionLog(config.dataDir, {
    onError: (path, err) => log.error({ path, err: err.message }, 'connection log file cannot be written: its lines are lost'),
  });
  const dataPlane = new ListenerManager(store, state, log.child({ component: 'dataplane' }), {
    secrets,
    connectionLog,
    relayWorkers: config.relayWorkers ?? (availableParallelism() > 1 ? availableParallelism() : 0),
    policies,
    removeDrained: (b) => backends.removeDrained(b.pool_id, b.server_id, b.drain?.drain_id ?? ''),
  });
  let apiAddress: HostPort = config.apiAddr;

  const ctx: ControlContext = {
    store,
    state,
    dataPlane,
    clock: systemClock,
    random: systemRandom,
    reserved: () => [apiAddress],
  };

  const backends = new BackendService(ctx);
  let stopping: Promise<void> | undefined;
  const api = await buildApi({
    closing: () => stopping !== undefined,
    store,
    log: log.child({ component: 'api' }),
    bodyLimit: config.apiBodyLimitBytes,
    version: VERSION,
    services: {
      pools: new PoolService(ctx),
      backends,
      loadBalancers: new LoadBalancerService(ctx),
      listeners: new ListenerService(ctx),
      health: new HealthStatusService(ctx),
      certificates: new CertificateService(ctx, secrets),
      accessControl: new AccessControlService(ctx),
      acls: new AclService(ctx, { counters: policies.aclCounters, geo }),
      rateLimits: new RateLimitService(ctx, { state: policies.rateLimits }),
      routingRules: new RoutingRuleService(ctx, { hits: policies.ruleHits }),
    },
    metrics: dataPlane.metrics,
    readiness: () => {
      const listeners = dataPlane.readiness();
      const storeOpen = store.isOpen();
      return { ready: storeOpen && listeners.ready, checks: { store: storeOpen ? 'ok' : 'closed', listeners } };
    },
  });

  try {
    await dataPlane.sync();
    await api.listen({ host: config.apiAddr.host, port: config.apiAddr.port });
  } catch (err) {
    await dataPlane.stop(0);
    await store.close();
    throw err;
  }
  // Only once the API is up: a first start that fails must not store a token nobody ever saw.
  const { generated } = await ensureAdminToken(store, config.adminToken, isoNow(systemClock));
  const addr = api.server.address() as AddressInfo;
  apiAddress = { host: config.apiAddr.host, port: addr.port };
  // Every write goes through writeAndApply, which syncs the data plane before the API answers; a
  // store watch joins in when several instances share a store.
  log.info({ api: `${apiAddress.host}:${apiAddress.port}`, data_dir: config.dataDir, revision: await store.revision(), version: VERSION }, 'fulcrum started');
  const expiry = new CertificateExpiryWatcher(ctx, events, log.child({ component: 'certificate-expiry' }));
  await expiry.start();

  const stop = () => {
    stopping ??= (async () => {
      log.info({ deadline_ms: config.shutdownTimeoutMs }, 'shutting down: no new connections, finishing in-flight requests');
      await expiry.stop();
      const cut = setTimeout(() => api.server.closeAllConnections(), config.shutdownTimeoutMs);
      await Promise.all([dataPlane.stop(config.shutdownTimeoutMs), api.close()]);
      clearTimeout(cut);
      await connectionLog.close();
      await store.close();
      log.info('stopped');
    })();
    return stopping;
  };

  return { apiAddress, generatedAdminToken: generated, store, api, dataPlane, state, events, policies, stop };
}
