import { isIP } from 'node:net';
import type { HostPort } from '../config/settings.ts';
import { createSecureContext } from 'node:tls';
import {
  HSTS_DEFAULTS,
  type HstsSettings,
  type Listener,
  LISTENER_DEFAULTS,
  type ListenerCreate,
  type ListenerPatch,
  type ListenerTls,
  type ListenerTlsInput,
  type AcceptProxySettings,
  CONNECTION_LOGGING_DEFAULTS,
  type ConnectionLoggingSettings,
  REDIRECT_DEFAULTS,
  type RedirectSettings,
  type SniRoute,
  SUPPORTED_LISTENER_PROTOCOLS,
  TLS_DEFAULTS,
} from '../model/listener.ts';
import type { LoadBalancer } from '../model/load-balancer.ts';
import type { Pool } from '../model/pool.ts';
import type { WriteTx } from '../store/store.ts';
import { readPemBundle } from '../tls/certificate.ts';
import { parseNetwork } from '../policy/cidr.ts';
import { type ControlContext, expectedVersion, isoNow, paging, writeAndApply } from './context.ts';
import { FulcrumError, type FieldProblem, notFound, validationError } from './errors.ts';
import { allocateId } from './ids.ts';

export interface ListenerView extends Listener {
  status: 'ACTIVE' | 'DISABLED' | 'ERROR' | 'PENDING';
  status_message: string | null;
}

/** UDP and TCP ports are separate namespaces; every other protocol here rides on TCP. */
function transport(protocol: string): 'udp' | 'tcp' {
  return protocol === 'UDP' ? 'udp' : 'tcp';
}


/**
 * Whether two bind addresses on one port collide: equal addresses do, and a wildcard collides with
 * every address of its family (`::` with both, since Linux binds it dual-stack).
 */
export function addressesOverlap(a: string, b: string): boolean {
  if (a === b) return true;
  if (a === '::' || b === '::') return true;
  if (a === '0.0.0.0') return isIP(b) === 4;
  if (b === '0.0.0.0') return isIP(a) === 4;
  return false;
}

/** A listener's TLS as stored: defaults filled in, certificate ids as given. */
function tlsSettings(input: ListenerTlsInput): ListenerTls {
  return {
    certificate_ids: input.certificate_ids ?? [],
    min_version: input.min_version ?? TLS_DEFAULTS.min_version,
    ...(input.ciphers !== undefined ? { ciphers: input.ciphers } : {}),
    alpn: input.alpn ?? [...TLS_DEFAULTS.alpn],
    client_auth: input.client_auth ?? TLS_DEFAULTS.client_auth,
    ...(input.client_ca_pem !== undefined ? { client_ca_pem: input.client_ca_pem } : {}),
    client_subject_header: input.client_subject_header ?? TLS_DEFAULTS.client_subject_header,
  };
}

function hstsSettings(input: Partial<HstsSettings>, base: HstsSettings = HSTS_DEFAULTS): HstsSettings {
  return { ...base, ...input };
}

function redirectSettings(input: Partial<RedirectSettings>, base: RedirectSettings = REDIRECT_DEFAULTS): RedirectSettings {
  return { ...base, ...input };
}

function acceptProxySettings(input: { enabled?: boolean; trusted_cidrs?: string[] }, base?: AcceptProxySettings): AcceptProxySettings {
  const trusted = input.trusted_cidrs ?? base?.trusted_cidrs ?? [];
  // Stored canonical when valid; an invalid one is kept as given for the check to name it.
  return { enabled: input.enabled ?? base?.enabled ?? true, trusted_cidrs: trusted.map((c) => { const n = parseNetwork(c); return typeof n === 'string' ? c : n.canonical; }) };
}

function loggingSettings(input: Partial<ConnectionLoggingSettings>, base: ConnectionLoggingSettings = CONNECTION_LOGGING_DEFAULTS): ConnectionLoggingSettings {
  return { ...base, ...input };
}

/** A log file name under <data_dir>/logs: plain path segments, no `..`, not absolute. */
const LOG_FILE = /^(?!.*(?:^|\/)\.\.?(?:\/|$))[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/;

function sniRoutes(routes: SniRoute[]): SniRoute[] {
  return routes.map((r) => ({ hostnames: r.hostnames.map((h) => h.toLowerCase()), pool_id: r.pool_id }));
}

/** Rules on the protocol-specific fields; they never look at other resources. */
function checkProtocolFields(l: Listener): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const only = (field: string, protocol: string, hint: string) =>
    problems.push({ field, reason: `applies only to ${protocol} listeners, not ${l.protocol}; ${hint}` });
  if (l.protocol === 'HTTPS') {
    if (!l.tls || l.tls.certificate_ids.length === 0) {
      problems.push({ field: 'tls.certificate_ids', reason: 'an HTTPS listener needs the certificates it serves' });
    }
  } else if (l.tls) only('tls', 'HTTPS', 'send "tls": null');
  if (l.tls) {
    const tls = l.tls;
    if (tls.client_auth !== 'NONE' && tls.client_ca_pem === undefined) {
      problems.push({ field: 'tls.client_ca_pem', reason: `client_auth ${tls.client_auth} needs the CA bundle client certificates are verified against` });
    }
    if (tls.client_ca_pem !== undefined) {
      try {
        readPemBundle(tls.client_ca_pem, 'the bundle');
      } catch (err) {
        problems.push({ field: 'tls.client_ca_pem', reason: (err as Error).message });
      }
    }
    if (tls.ciphers !== undefined) {
      try {
        createSecureContext({ ciphers: tls.ciphers });
      } catch (err) {
        problems.push({ field: 'tls.ciphers', reason: `not a cipher list OpenSSL accepts (${(err as Error).message})` });
      }
    }
  }
  if (l.hsts && l.protocol !== 'HTTPS') only('hsts', 'HTTPS', 'send "hsts": null');
  // The preload list's own rules (hstspreload.org): a year at least, and every subdomain.
  if (l.hsts?.preload && (!l.hsts.include_subdomains || l.hsts.max_age_seconds < 31_536_000)) {
    problems.push({ field: 'hsts.preload', reason: 'preload needs include_subdomains and max_age_seconds of at least 31536000 (one year)' });
  }
  if (l.redirect_to_https && l.protocol !== 'HTTP') only('redirect_to_https', 'HTTP', 'send "redirect_to_https": null');
  const proxy = l.accept_proxy_protocol;
  if (proxy && l.protocol === 'UDP') problems.push({ field: 'accept_proxy_protocol', reason: 'applies to TCP-based listeners, not UDP; send "accept_proxy_protocol": null' });
  if (proxy?.enabled && proxy.trusted_cidrs.length === 0) {
    problems.push({ field: 'accept_proxy_protocol.trusted_cidrs', reason: 'name the peers allowed to send a PROXY header (a load balancer in front); nobody else may connect' });
  }
  proxy?.trusted_cidrs.forEach((c, i) => {
    const n = parseNetwork(c);
    if (typeof n === 'string') problems.push({ field: `accept_proxy_protocol.trusted_cidrs[${i}]`, reason: n });
  });
  const logging = l.connection_logging;
  if (logging && logging.destination !== 'stdout' && !LOG_FILE.test(logging.destination)) {
    problems.push({ field: 'connection_logging.destination', reason: `"stdout", or a relative file name under <data_dir>/logs/ (letters, digits, . _ - and /, no ..): '${logging.destination}' is neither` });
  }
  const routes = l.sni_routes ?? [];
  if (routes.length > 0 && l.protocol !== 'TLS_PASSTHROUGH') only('sni_routes', 'TLS_PASSTHROUGH', 'send "sni_routes": []');
  const seen = new Map<string, number>();
  routes.forEach((r, i) =>
    r.hostnames.forEach((h, j) => {
      const first = seen.get(h);
      if (first !== undefined) problems.push({ field: `sni_routes[${i}].hostnames[${j}]`, reason: `'${h}' is already routed by sni_routes[${first}]` });
      else seen.set(h, i);
    }),
  );
  return problems;
}

export class ListenerService {
  readonly #ctx: ControlContext;

  constructor(ctx: ControlContext) {
    this.#ctx = ctx;
  }

  #view(listener: Listener): ListenerView {
    const s = this.#ctx.dataPlane.listenerStatus(listener.listener_id);
    return { ...listener, status: s.status, status_message: s.message };
  }

  async #lb(lbId: string, tx?: WriteTx): Promise<LoadBalancer> {
    const found = await (tx ?? this.#ctx.store).get<LoadBalancer>('load_balancer', lbId);
    if (!found) throw notFound.loadBalancer(lbId);
    return found.body;
  }

  async get(lbId: string, listenerId: string): Promise<ListenerView> {
    await this.#lb(lbId);
    const found = await this.#ctx.store.get<Listener>('listener', listenerId);
    if (!found || found.body.lb_id !== lbId) throw notFound.listener(lbId, listenerId);
    return this.#view(found.body);
  }

  async list(lbId: string, query: { page?: number; per_page?: number }) {
    await this.#lb(lbId);
    const p = paging(query);
    const { items, total } = await this.#ctx.store.list<Listener>('listener', { parentId: lbId, limit: p.limit, offset: p.offset });
    return { listeners: items.map((r) => this.#view(r.body)), pagination: p.block(total) };
  }

  /** Every rule a listener must meet against the rest of the configuration. */
  async #check(tx: WriteTx, listener: Listener, before: Listener | undefined): Promise<void> {
    if (!SUPPORTED_LISTENER_PROTOCOLS.includes(listener.protocol)) {
      throw new FulcrumError(
        'PROTOCOL_NOT_SUPPORTED',
        `Protocol ${listener.protocol} is not served yet; supported: ${SUPPORTED_LISTENER_PROTOCOLS.join(', ')}`,
        { field: 'protocol', protocol: listener.protocol, supported: SUPPORTED_LISTENER_PROTOCOLS },
      );
    }
    const problems = checkProtocolFields(listener);
    if (problems.length > 0) throw validationError(problems);
    for (const [i, certId] of (listener.tls?.certificate_ids ?? []).entries()) {
      const cert = await tx.get('certificate', certId);
      if (!cert || cert.scope.org_id !== listener.org_id) {
        throw new FulcrumError('CERTIFICATE_NOT_FOUND', `Certificate '${certId}' (tls.certificate_ids[${i}]) not found`, { field: `tls.certificate_ids[${i}]`, cert_id: certId });
      }
    }
    for (const [i, route] of (listener.sni_routes ?? []).entries()) {
      const pool = await tx.get<Pool>('pool', route.pool_id);
      if (!pool || pool.scope.org_id !== listener.org_id) {
        throw new FulcrumError('POOL_NOT_FOUND', `Pool '${route.pool_id}' (sni_routes[${i}].pool_id) not found`, { field: `sni_routes[${i}].pool_id`, pool_id: route.pool_id });
      }
    }
    if (isIP(listener.bind_address) === 0) {
      throw validationError([{ field: 'bind_address', reason: `'${listener.bind_address}' is not an IPv4 or IPv6 address` }]);
    }
    if (listener.default_pool_id !== null) {
      const pool = await tx.get<Pool>('pool', listener.default_pool_id);
      if (!pool || pool.scope.org_id !== listener.org_id) {
        throw new FulcrumError('POOL_NOT_FOUND', `Pool '${listener.default_pool_id}' (default_pool_id) not found`, {
          field: 'default_pool_id',
          pool_id: listener.default_pool_id,
        });
      }
    }
    const others = (await tx.list<Listener>('listener')).items.filter((l) => l.id !== listener.listener_id);
    const mine = transport(listener.protocol);
    for (const other of others) {
      const o = other.body;
      if (o.port === listener.port && transport(o.protocol) === mine && addressesOverlap(o.bind_address, listener.bind_address)) {
        throw new FulcrumError(
          'LISTENER_PORT_CONFLICT',
          `${listener.bind_address}:${listener.port} collides with listener '${o.listener_id}' on ${o.bind_address}:${o.port}`,
          { bind_address: listener.bind_address, port: listener.port, conflicting_listener_id: o.listener_id, lb_id: o.lb_id },
        );
      }
    }
    if (mine === 'tcp') {
      const api = this.#ctx.reserved().find((r: HostPort) => r.port === listener.port && addressesOverlap(r.host, listener.bind_address));
      if (api) {
        throw new FulcrumError('LISTENER_PORT_CONFLICT', `${listener.bind_address}:${listener.port} is Fulcrum's own management API address`, {
          bind_address: listener.bind_address,
          port: listener.port,
        });
      }
    }
    // Ask the OS now, so a port it refuses is an error on this request, not a surprise later.
    const alreadyHeld =
      before !== undefined &&
      before.enabled &&
      before.bind_address === listener.bind_address &&
      before.port === listener.port &&
      this.#ctx.dataPlane.listenerStatus(before.listener_id).status === 'ACTIVE';
    if (listener.enabled && !alreadyHeld) {
      try {
        await this.#ctx.dataPlane.probeBind(listener.protocol, listener.bind_address, listener.port);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        const why =
          e.code === 'EADDRINUSE'
            ? 'the address is already in use by another process'
            : e.code === 'EACCES'
              ? 'permission denied (ports below 1024 need privileges)'
              : e.code === 'EADDRNOTAVAIL'
                ? 'the address is not assigned to this host'
                : e.message;
        throw new FulcrumError('LISTENER_BIND_FAILED', `Cannot bind ${listener.bind_address}:${listener.port}: ${why}`, {
          bind_address: listener.bind_address,
          port: listener.port,
          os_error: e.code ?? null,
        });
      }
    }
  }

  async create(lbId: string, input: ListenerCreate): Promise<ListenerView> {
    const now = isoNow(this.#ctx.clock);
    const listener = await writeAndApply(this.#ctx, async (tx) => {
      const lb = await this.#lb(lbId, tx);
      const id = await allocateId('listener', input.name, async (c) => (await tx.get('listener', c)) !== undefined, this.#ctx.random, ['listener']);
      const listener: Listener = {
        listener_id: id,
        lb_id: lbId,
        name: input.name,
        protocol: input.protocol,
        bind_address: input.bind_address ?? LISTENER_DEFAULTS.bind_address,
        port: input.port,
        default_pool_id: input.default_pool_id ?? null,
        timeouts: { ...LISTENER_DEFAULTS.timeouts, ...input.timeouts },
        connection_limit: input.connection_limit ?? null,
        enabled: input.enabled ?? LISTENER_DEFAULTS.enabled,
        tls: input.tls ? tlsSettings(input.tls) : null,
        hsts: input.hsts ? hstsSettings(input.hsts) : null,
        redirect_to_https: input.redirect_to_https ? redirectSettings(input.redirect_to_https) : null,
        sni_routes: sniRoutes(input.sni_routes ?? []),
        access_list: [],
        connection_throttle: null,
        accept_proxy_protocol: input.accept_proxy_protocol ? acceptProxySettings(input.accept_proxy_protocol) : null,
        connection_logging: input.connection_logging ? loggingSettings(input.connection_logging) : null,
        org_id: lb.org_id,
        project_id: lb.project_id,
        created_at: now,
        updated_at: now,
        version: 0,
      };
      await this.#check(tx, listener, undefined);
      return (await tx.put('listener', id, lbId, { org_id: lb.org_id, project_id: lb.project_id }, listener, 'absent')).body;
    });
    return this.#view(listener);
  }

  async patch(lbId: string, listenerId: string, input: ListenerPatch, ifMatch: string | undefined): Promise<ListenerView> {
    const { version, ...fields } = input;
    const expect = expectedVersion(ifMatch, version);
    const listener = await writeAndApply(this.#ctx, async (tx) => {
      await this.#lb(lbId, tx);
      const found = await tx.get<Listener>('listener', listenerId);
      if (!found || found.body.lb_id !== lbId) throw notFound.listener(lbId, listenerId);
      const before = found.body;
      const l = structuredClone(before);
      if (fields.name !== undefined) l.name = fields.name;
      if (fields.protocol !== undefined) l.protocol = fields.protocol;
      if (fields.bind_address !== undefined) l.bind_address = fields.bind_address;
      if (fields.port !== undefined) l.port = fields.port;
      if (fields.default_pool_id !== undefined) l.default_pool_id = fields.default_pool_id;
      if (fields.timeouts !== undefined) l.timeouts = { ...l.timeouts, ...fields.timeouts };
      if (fields.connection_limit !== undefined) l.connection_limit = fields.connection_limit;
      if (fields.enabled !== undefined) l.enabled = fields.enabled;
      // Nested settings merge: a PATCH names only the fields it changes; null removes them.
      if (fields.tls !== undefined) l.tls = fields.tls === null ? null : tlsSettings({ ...l.tls, ...fields.tls });
      if (fields.hsts !== undefined) l.hsts = fields.hsts === null ? null : hstsSettings(fields.hsts, l.hsts ?? undefined);
      if (fields.redirect_to_https !== undefined) {
        l.redirect_to_https = fields.redirect_to_https === null ? null : redirectSettings(fields.redirect_to_https, l.redirect_to_https ?? undefined);
      }
      if (fields.sni_routes !== undefined) l.sni_routes = sniRoutes(fields.sni_routes);
      if (fields.accept_proxy_protocol !== undefined) {
        l.accept_proxy_protocol = fields.accept_proxy_protocol === null ? null : acceptProxySettings(fields.accept_proxy_protocol, l.accept_proxy_protocol ?? undefined);
      }
      if (fields.connection_logging !== undefined) {
        l.connection_logging = fields.connection_logging === null ? null : loggingSettings(fields.connection_logging, l.connection_logging ?? undefined);
      }
      l.updated_at = isoNow(this.#ctx.clock);
      await this.#check(tx, l, before);
      return (await tx.put('listener', listenerId, lbId, found.scope, l, expect)).body;
    });
    return this.#view(listener);
  }

  async delete(lbId: string, listenerId: string) {
    await writeAndApply(this.#ctx, async (tx) => {
      await this.#lb(lbId, tx);
      const found = await tx.get<Listener>('listener', listenerId);
      if (!found || found.body.lb_id !== lbId) throw notFound.listener(lbId, listenerId);
      await tx.delete('listener', listenerId, found.version);
    });
    return { listener_id: listenerId, status: 'DELETED', deleted_at: isoNow(this.#ctx.clock) };
  }
}

