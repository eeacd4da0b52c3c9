// Fulcrum as a peer: started from this repository's sources with the pinned Node, configured only
// through its management API (as an operator would), then probed on its HTTP (and HTTPS, and TCP) listener.
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGroup, stopGroup, isRunning, log, type Group } from './procs.ts';
import { HOST, waitFor } from './net.ts';
import { PORTS } from './configs.ts';
import { tail, type Peer } from './peers.ts';
import type { TlsFiles } from './tls.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..');

export interface FulcrumOptions {
  stateDir: string;
  logDir: string;
  apiPort: number;
  /** Extra arguments for Fulcrum's node command (before the script), e.g. --cpu-prof. */
  nodeArgs: string[];
  /** Fail unless the listener answers 200 (for when forwarding exists). */
  require200: boolean;
  /** With tls-* scenarios: the certificate to upload and serve on an HTTPS listener. */
  tls: TlsFiles | undefined;
  /** With tcp-* scenarios: a TCP listener (layer 4 relay) over the same pool. */
  tcp: boolean;
  /** Routing rules (with an ACL and a rate limit) every HTTP request goes through; 0: none. */
  policies: number;
}

/** Minimal API client: JSON in, JSON out, any non-2xx is an error that names the call. */
function api(base: string, token: string) {
  return async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
    const res = await fetch(`${base}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`Fulcrum API ${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text) as Record<string, unknown>;
  };
}

export async function startFulcrum(o: FulcrumOptions): Promise<Peer> {
  const token = `bench-${randomBytes(24).toString('base64url')}`;
  const dataDir = mkdtempSync(join(o.stateDir, 'fulcrum-data-'));
  const env: NodeJS.ProcessEnv = {};
  // Only our settings: a FULCRUM_CONFIG or other FULCRUM_* of the caller's shell must not change the setup.
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FULCRUM_')) env[k] = v;
  Object.assign(env, {
    FULCRUM_DATA_DIR: dataDir,
    FULCRUM_API_ADDR: `${HOST}:${o.apiPort}`,
    FULCRUM_ADMIN_TOKEN: token,
    FULCRUM_LOG_LEVEL: 'warn',
    // Our stop gives 5 s before SIGKILL; a shorter drain lets Fulcrum exit cleanly (and write --cpu-prof).
    FULCRUM_SHUTDOWN_TIMEOUT_MS: '2000',
  });
  const logFile = join(o.logDir, 'fulcrum.log');
  const node = join(REPO_ROOT, 'node_modules', '.bin', 'node');
  const args = [...o.nodeArgs, 'src/main.ts', 'serve'];
  const base = `http://${HOST}:${o.apiPort}`;
  const withLog = (err: unknown) => {
    const t = tail(logFile);
    return new Error(`${(err as Error).message}${t ? `\n--- ${logFile} (tail) ---\n${t}` : ''}`, { cause: err });
  };
  /** Starts the process on the same data dir (so a restart finds its configuration) and waits for the API. */
  const launch = async (): Promise<Group> => {
    log(`fulcrum: ${node} ${args.join(' ')}  (API ${HOST}:${o.apiPort}, data ${dataDir})`);
    const group = startGroup('fulcrum', node, args, { cwd: REPO_ROOT, env, logFile, nofile: 20000 });
    await waitApi(base, group, 20_000);
    return group;
  };
  const peer: Peer = {
    name: 'fulcrum',
    port: PORTS.fulcrum,
    tlsPort: o.tls ? PORTS.fulcrumTls : undefined,
    tcpPort: o.tcp ? PORTS.fulcrumTcp : undefined,
    group: undefined,
    startStatus: 0,
    logFile,
    restart: undefined,
  };
  /** Waits until the HTTPS listener answers as the HTTP one did (both forward to the same pool). */
  const waitTls = async (tls: TlsFiles) => {
    const alive = () => isRunning(peer.group!);
    const t = await waitFor(PORTS.fulcrumTls, (x) => x.status === peer.startStatus, { timeoutMs: 10_000, alive, what: 'fulcrum (HTTPS)', ca: tls.caPem });
    if (t.status !== peer.startStatus) throw new Error(`Fulcrum's HTTPS listener answers ${t.status}, its HTTP listener ${peer.startStatus}`);
  };
  /**
   * Waits until the TCP listener relays to the origin. The answer is the origin's own, so 200 even
   * when the HTTP listener answers something else: anything but 200 means the relay is broken.
   */
  const waitTcp = async () => {
    const alive = () => isRunning(peer.group!);
    const t = await waitFor(PORTS.fulcrumTcp, (x) => x.status === 200, { timeoutMs: 10_000, alive, what: 'fulcrum (TCP)' });
    if (t.status !== 200) throw new Error(`Fulcrum's TCP listener relayed ${t.status} from the origin, not 200`);
  };

  try {
    peer.group = await launch();
    const call = api(base, token);
    const lb = await call('POST', '/load-balancers', { name: 'bench' });
    const pool = await call('POST', '/pools', { name: 'bench', algorithm: 'ROUND_ROBIN' });
    for (const port of PORTS.origins) {
      // No health check on the pool: backends are HEALTHY (and take traffic) from their creation.
      await call('POST', `/pools/${pool.pool_id}/backends`, { name: `origin-${port}`, ip_address: HOST, port });
    }
    const listener = await call('POST', `/load-balancers/${lb.lb_id}/listeners`, {
      name: 'bench-http',
      protocol: 'HTTP',
      bind_address: HOST,
      port: PORTS.fulcrum,
      default_pool_id: pool.pool_id,
    });
    if (listener.status !== 'ACTIVE') throw new Error(`listener is ${listener.status}: ${listener.status_message}`);

    if (o.policies > 0) {
      // Rules for other hosts (filed in the index, never candidates for the bench's requests), then
      // the catch-all that forwards to the same pool: each request is matched, ACL-checked and
      // counted against a rate limit, and ends where it would without policies.
      for (let i = 1; i < o.policies; i++) {
        await call('POST', '/routing-rules', {
          name: `bench-other-${i}`,
          priority: i,
          match: { hosts: [`h${i}.bench.example`], paths: [`/svc${i}/*`] },
          action: { type: 'FORWARD', pool_id: pool.pool_id },
        });
      }
      await call('POST', '/routing-rules', { name: 'bench-catch-all', priority: o.policies, match: { paths: ['/*'] }, action: { type: 'FORWARD', pool_id: pool.pool_id } });
      await call('POST', '/acls', { name: 'bench-deny', priority: 1, action: 'DENY', match: { source_ips: ['192.0.2.0/24'] } });
      await call('POST', '/rate-limits', { name: 'bench-limit', scope: 'PER_SOURCE_IP', limits: { requests_per_second: 10_000_000, burst_size: 10_000_000 } });
      log(`fulcrum: ${o.policies} routing rules, 1 ACL and 1 rate limit on every request`);
    }

    const alive = () => isRunning(peer.group!);
    // Any answer means the listener is up; then give forwarding a moment to produce a 200.
    await waitFor(PORTS.fulcrum, () => true, { timeoutMs: 10_000, alive, what: 'fulcrum' });
    const a = await waitFor(PORTS.fulcrum, (x) => x.status === 200, { timeoutMs: 3000, alive, what: 'fulcrum' });
    if (a.status !== 200) {
      const msg = `Fulcrum's listener answers ${a.status} (${a.body.trim().slice(0, 100)}), not 200`;
      if (o.require200) throw new Error(`${msg} (--require-200)`);
      log(`WARNING: ${msg}. Forwarding missing? Measuring anyway; its responses are counted as non-2xx.`);
    }
    peer.startStatus = a.status;

    if (o.tls) {
      // The same leaf and chain as HAProxy's frontend; min_version TLS1_2 (the default, named to say
      // so) and no `ciphers` (Node's default list), so TLS 1.2 and 1.3 are offered as on HAProxy.
      const cert = await call('POST', '/certificates', {
        name: 'bench',
        certificate_pem: o.tls.certPem,
        private_key_pem: o.tls.keyPem,
        chain_pem: o.tls.chainPem,
      });
      const https = await call('POST', `/load-balancers/${lb.lb_id}/listeners`, {
        name: 'bench-https',
        protocol: 'HTTPS',
        bind_address: HOST,
        port: PORTS.fulcrumTls,
        default_pool_id: pool.pool_id,
        tls: { certificate_ids: [cert.cert_id], min_version: 'TLS1_2' },
      });
      if (https.status !== 'ACTIVE') throw new Error(`HTTPS listener is ${https.status}: ${https.status_message}`);
      await waitTls(o.tls);
    }

    if (o.tcp) {
      // The same pool as the HTTP listener (ROUND_ROBIN over the three origins, no health check),
      // and the listener's defaults otherwise (timeouts, no connection limit, no PROXY protocol).
      const tcp = await call('POST', `/load-balancers/${lb.lb_id}/listeners`, {
        name: 'bench-tcp',
        protocol: 'TCP',
        bind_address: HOST,
        port: PORTS.fulcrumTcp,
        default_pool_id: pool.pool_id,
      });
      if (tcp.status !== 'ACTIVE') throw new Error(`TCP listener is ${tcp.status}: ${tcp.status_message}`);
      await waitTcp();
    }
  } catch (err) {
    throw withLog(err);
  }

  peer.restart = async () => {
    try {
      await stopGroup(peer.group!);
      peer.group = await launch();
      // The listener comes back from the store; wait until it answers as it did at first start.
      const alive = () => isRunning(peer.group!);
      await waitFor(PORTS.fulcrum, (x) => x.status === peer.startStatus, { timeoutMs: 10_000, alive, what: 'fulcrum' });
      if (o.tls) await waitTls(o.tls);
      if (o.tcp) await waitTcp();
    } catch (err) {
      throw withLog(err);
    }
  };
  return peer;
}

async function waitApi(base: string, group: Group, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!isRunning(group)) throw new Error('fulcrum exited while starting');
    try {
      if ((await fetch(`${base}/health`)).ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`fulcrum's API did not answer /health within ${timeoutMs} ms`);
}

/**
 * Node arguments for Fulcrum from --fulcrum-args / FULCRUM_BENCH_NODE_ARGS (split on spaces). A
 * profile flag without its directory gets the run's results directory, not the repository root.
 */
export function fulcrumNodeArgs(raw: string, profileDir: string): string[] {
  const args = raw.split(/\s+/).filter(Boolean);
  for (const kind of ['cpu', 'heap']) {
    if (args.includes(`--${kind}-prof`) && !args.some((a) => a.startsWith(`--${kind}-prof-dir`))) {
      args.push(`--${kind}-prof-dir=${profileDir}`);
    }
  }
  return args;
}
