// Starting the origin and the proxies under test. Each runs as its own process group for the whole
// run; only idle10k restarts the proxy it measures (see idle.ts).
import { createWriteStream, existsSync, mkdirSync, readFileSync, statSync, renameSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { startGroup, stopGroup, isRunning, log, type Group } from './procs.ts';
import { waitFor } from './net.ts';
import { originNginxConf, haproxyConf, PORTS } from './configs.ts';
import type { Tools } from './tools.ts';
import type { TlsFiles } from './tls.ts';

export const BIG_BYTES = 2 ** 30;

export interface Peer {
  name: string;
  port: number;
  /** The port of its TLS listener, when the run has tls-* scenarios (never for `direct`). */
  tlsPort: number | undefined;
  /**
   * The port of its layer 4 listener (HAProxy's mode tcp frontend, Fulcrum's TCP listener), when the
   * run has tcp-* scenarios; for `direct` the origin itself, which is what a byte relay leads to.
   */
  tcpPort: number | undefined;
  /** The proxy's process group; undefined for `direct` (no proxy: wrk talks to the origin). */
  group: Group | undefined;
  /** Status of the first answer on `/` after start (Fulcrum answers 503 until forwarding lands). */
  startStatus: number;
  logFile: string | undefined;
  /** Stops the proxy and starts it again with the same configuration (replaces `group`). */
  restart: (() => Promise<void>) | undefined;
}

/** The 1 GiB bulk object, created once and kept across runs (it is under the gitignored .tmp dir). */
export async function ensureBigFile(wwwDir: string): Promise<void> {
  mkdirSync(wwwDir, { recursive: true, mode: 0o755 });
  const big = join(wwwDir, 'big');
  if (existsSync(big) && statSync(big).size === BIG_BYTES) return;
  log(`creating ${big} (1 GiB, once)`);
  // Real zero bytes, not a sparse file: a hole would be served from the zero page, unlike real data.
  const out = createWriteStream(`${big}.part`, { mode: 0o644 });
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < BIG_BYTES / chunk.length; i++) {
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  renameSync(`${big}.part`, big);
}

/** The nginx user for workers when we are root (they must not run as root), else none. */
function nginxUser(): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = readFileSync('/etc/passwd', 'utf8');
  return /^www-data:/m.test(passwd) ? 'www-data' : 'nobody';
}

export async function startOrigin(tools: Tools, stateDir: string, wwwDir: string, logDir: string): Promise<Group> {
  const prefix = join(stateDir, 'origin');
  mkdirSync(join(prefix, 'tmp'), { recursive: true });
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, originNginxConf({ prefix, wwwDir, user: nginxUser() }));
  const logFile = join(logDir, 'origin.log');
  // -e: the error log before the config is read (else nginx opens /var/log/nginx/error.log)
  const g = startGroup('origin', tools.nginx, ['-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')], { logFile, nofile: 20000 });
  for (const port of PORTS.origins) {
    const a = await waitFor(port, (x) => x.status === 200, { timeoutMs: 10_000, alive: () => isRunning(g), what: 'origin nginx' });
    if (a.status !== 200) throw new Error(`origin :${port} answered ${a.status}; see ${logFile} and ${prefix}/error.log`);
  }
  return g;
}

export async function startHaproxy(tools: Tools, stateDir: string, logDir: string, tls: TlsFiles | undefined, tcp: boolean): Promise<Peer> {
  const conf = join(stateDir, 'haproxy.cfg');
  writeFileSync(conf, haproxyConf(tls, tcp));
  const logFile = join(logDir, 'haproxy.log');
  const launch = async (): Promise<Group> => {
    // -db: foreground, no daemon and no master process, so the group is exactly HAProxy
    const group = startGroup('haproxy', tools.haproxy, ['-db', '-f', conf], { logFile, nofile: 20000 });
    const alive = () => isRunning(group);
    const a = await waitFor(PORTS.haproxy, (x) => x.status === 200, { timeoutMs: 10_000, alive, what: 'haproxy' });
    if (a.status !== 200) throw new Error(`haproxy answered ${a.status}; see ${logFile}`);
    if (tls) {
      const t = await waitFor(PORTS.haproxyTls, (x) => x.status === 200, { timeoutMs: 10_000, alive, what: 'haproxy (TLS)', ca: tls.caPem });
      if (t.status !== 200) throw new Error(`haproxy's TLS frontend answered ${t.status}; see ${logFile}`);
    }
    if (tcp) {
      // An HTTP answer through a byte relay is the origin's own: 200 means the relay reaches it.
      const t = await waitFor(PORTS.haproxyTcp, (x) => x.status === 200, { timeoutMs: 10_000, alive, what: 'haproxy (mode tcp)' });
      if (t.status !== 200) throw new Error(`haproxy's mode tcp frontend answered ${t.status}; see ${logFile}`);
    }
    return group;
  };
  const peer: Peer = {
    name: 'haproxy',
    port: PORTS.haproxy,
    tlsPort: tls ? PORTS.haproxyTls : undefined,
    tcpPort: tcp ? PORTS.haproxyTcp : undefined,
    group: await launch(),
    startStatus: 200,
    logFile,
    restart: undefined,
  };
  peer.restart = async () => {
    await stopGroup(peer.group!);
    peer.group = await launch();
  };
  return peer;
}

export function directPeer(): Peer {
  // The origin speaks plain HTTP only: no TLS port, so tls-* scenarios skip it. For tcp-* it is
  // the same origin port (the ceiling of any relay), so its tcp-* rows repeat its ka/bulk ones.
  const port = PORTS.origins[0]!;
  return { name: 'direct', port, tlsPort: undefined, tcpPort: port, group: undefined, startStatus: 200, logFile: undefined, restart: undefined };
}

/** Last lines of a log, for error messages. */
export function tail(file: string | undefined, lines = 15): string {
  if (!file) return '';
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
