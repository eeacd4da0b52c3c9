// Configuration files of the origin (nginx) and of the reference proxy (HAProxy), written per run.
import { HOST } from './net.ts';

/**
 * Ports of the benchmark, apart from ../shared/bench-peers (8081, 9101–9103). Others on this machine
 * may hold them too (a developer's Fulcrum on 18080): `--port-offset` shifts them all, once, at start.
 */
export const PORTS = {
  origins: [19101, 19102, 19103],
  haproxy: 18080,
  fulcrum: 18081,
  haproxyTls: 18443,
  fulcrumTls: 18444,
  /** The layer 4 pair (tcp-* scenarios): HAProxy's `mode tcp` frontend and Fulcrum's TCP listener. */
  haproxyTcp: 18090,
  fulcrumTcp: 18091,
};

export function shiftPorts(offset: number): void {
  PORTS.origins = PORTS.origins.map((p) => p + offset);
  PORTS.haproxy += offset;
  PORTS.fulcrum += offset;
  PORTS.haproxyTls += offset;
  PORTS.fulcrumTls += offset;
  PORTS.haproxyTcp += offset;
  PORTS.fulcrumTcp += offset;
}

/**
 * HAProxy's process-wide connection limit. idle10k holds 10,000 client connections, so 8000 is too
 * few (connections over the limit wait unanswered in the accept queue). HAProxy asks for
 * 2 × maxconn + 17 file descriptors (a server connection per client one), more than `ulimit -n`
 * 20000 allows here, and by default refuses to start ("strict-limits"). With `http-reuse always`
 * an idle client holds no server connection, so 10,100 connections need only ~10,100 descriptors:
 * `no strict-limits` lets it start with a warning instead. The load scenarios use at most 256.
 */
export const HAPROXY_MAXCONN = 10100;

/** One nginx, one worker, on the three origin ports: `/` → 200 "hello", `/big` → the bulk file. */
export function originNginxConf(o: { prefix: string; wwwDir: string; user: string | undefined }): string {
  const listens = PORTS.origins.map((p) => `        listen ${HOST}:${p} backlog=4096;`).join('\n');
  return `# Written by bench/http/run.ts for one run. Origin for every peer.
daemon off;
master_process on;
worker_processes 1;            # 2 cores are shared by wrk, the proxy and the origin: more workers only contend
worker_rlimit_nofile 20000;
${o.user ? `user ${o.user};                # workers drop root` : '# not root: workers keep our user'}
pid ${o.prefix}/nginx.pid;
error_log ${o.prefix}/error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
    access_log off;
    sendfile on; tcp_nopush on; tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 10000000;   # the default (1000) would reconnect keep-alive clients every 1000 requests
    client_body_temp_path ${o.prefix}/tmp/body; proxy_temp_path ${o.prefix}/tmp/proxy;
    fastcgi_temp_path ${o.prefix}/tmp/fcgi; uwsgi_temp_path ${o.prefix}/tmp/uwsgi; scgi_temp_path ${o.prefix}/tmp/scgi;
    server {
${listens}
        location = /big { root ${o.wwwDir}; default_type application/octet-stream; }
        location / { default_type text/plain; return 200 "hello"; }
    }
}
`;
}

/** What HAProxy's TLS frontend needs: see makeCertificates() in tls.ts. */
export interface HaproxyTls {
  /** leaf + chain + key, one PEM file */
  combinedFile: string;
  /** three base64 keys for `tls-ticket-keys` */
  ticketKeysFile: string;
}

/**
 * HAProxy in mode http, round robin over the origins, reusing server connections across clients.
 * With `tls`, a second frontend terminates TLS in front of the same backend, in the same process
 * (so with the same threads). With `tcp`, a `mode tcp` frontend and backend relay bytes to the same
 * origins, also in the same process: see the comment at `fe_tcp` below.
 *
 * Its session resumption is set to behave as Fulcrum's (Node's) does, so that tls-hs compares the
 * same mix of full and resumed handshakes (bench/README.md, "TLS session resumption"):
 * - `tls-ticket-keys`: tickets encrypted with keys from a file go through HAProxy's own ticket
 *   callback, which (like Node's) accepts a ticket of the current key without renewing it, so a
 *   TLS 1.3 resumption gets no new ticket. With OpenSSL's built-in keys (the default) HAProxy sends
 *   one after every resumption, and wrk, which keeps one session per connection, then resumes ~100 %
 *   of its reconnections against HAProxy but every other one against Fulcrum.
 * - `tune.ssl.cachesize 0`: no server-side session cache, as in Fulcrum (Node has no internal one
 *   and Fulcrum does not handle 'newSession'/'resumeSession'): a TLS 1.2 client cannot resume by
 *   session id on either peer. Tickets (TLS 1.2 and 1.3) work on both.
 */
export function haproxyConf(tls: HaproxyTls | undefined, tcp: boolean): string {
  const servers = PORTS.origins.map((p, i) => `    server s${i + 1} ${HOST}:${p}`).join('\n');
  const tlsGlobal = tls ? '\n    tune.ssl.cachesize 0           # no session-id cache, like Fulcrum: see haproxyConf() in bench/http/configs.ts' : '';
  const tlsFrontend = tls
    ? `frontend fe_tls
    # TLS 1.2 and 1.3 (max: the default), OpenSSL's default ciphers; wrk speaks HTTP/1.1
    bind ${HOST}:${PORTS.haproxyTls} ssl crt ${tls.combinedFile} alpn http/1.1 ssl-min-ver TLSv1.2 tls-ticket-keys ${tls.ticketKeysFile}
    default_backend be
`
    : '';
  // A mode tcp frontend can only use a mode tcp backend, hence a second backend over the same
  // servers. Both override the defaults' `mode http`; the http-only settings there (keep-alive
  // timeout) do not apply to them. No `option splice-auto`: HAProxy's default relay through user
  // space, as in the reference measurement (../shared/bench-peers, conf/haproxy-tcp.cfg).
  const tcpSection = tcp
    ? `frontend fe_tcp
    mode tcp
    bind ${HOST}:${PORTS.haproxyTcp}
    default_backend be_tcp
backend be_tcp
    mode tcp
    balance roundrobin
${servers}
`
    : '';
  return `# Written by bench/http/run.ts for one run. Reference proxy (L7; L4 with tcp-* scenarios). Run as: haproxy -db -f <this file>
global
    maxconn ${HAPROXY_MAXCONN}     # see HAPROXY_MAXCONN in bench/http/configs.ts
    no strict-limits${tlsGlobal}
    # nbthread defaults to the number of CPUs
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 60s    # idle10k keeps clients idle for a few seconds
frontend fe
    bind ${HOST}:${PORTS.haproxy}
    default_backend be
${tlsFrontend}backend be
    balance roundrobin
    http-reuse always
${servers}
${tcpSection}`;
}
