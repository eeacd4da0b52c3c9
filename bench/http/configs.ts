// Configuration files of the origin (nginx) and of the reference proxy (HAProxy), written per run.
import { HOST } from './net.ts';

/**
 * Ports of the benchmark, apart from ../shared/bench-peers (8081, 9101–9103). Others on this machine
 * may hold them too (a developer's Fulcrum on 18080): `--port-offset` shifts them all, once, at start.
 */
export const PORTS = { origins: [19101, 19102, 19103], haproxy: 18080, fulcrum: 18081 };

export function shiftPorts(offset: number): void {
  PORTS.origins = PORTS.origins.map((p) => p + offset);
  PORTS.haproxy += offset;
  PORTS.fulcrum += offset;
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

/** HAProxy in mode http, round robin over the origins, reusing server connections across clients. */
export function haproxyConf(): string {
  const servers = PORTS.origins.map((p, i) => `    server s${i + 1} ${HOST}:${p}`).join('\n');
  return `# Written by bench/http/run.ts for one run. Reference L7 proxy. Run as: haproxy -db -f <this file>
global
    maxconn ${HAPROXY_MAXCONN}     # see HAPROXY_MAXCONN in bench/http/configs.ts
    no strict-limits
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
backend be
    balance roundrobin
    http-reuse always
${servers}
`;
}
