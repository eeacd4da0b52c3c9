// One measurement = one row: wrk scenarios (ka*, close*, tls-ka*, tls-hs*, tcp-ka*) and the bulk
// downloads (bulk, tcp-bulk).
// The proxy's CPU is read from /proc around the run, its RSS at the end, both over its whole process tree.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { runGroup, cpuTicks, rssKb, tcpActiveOpens, CLK_TCK, type Group } from './procs.ts';
import { HOST } from './net.ts';
import { BIG_BYTES, type Peer } from './peers.ts';
import type { Tools } from './tools.ts';
import type { Row } from './report.ts';

export interface Bench {
  tools: Tools;
  rawDir: string;
  duration: number;
  origin: Group;
}

export const LUA = join(import.meta.dirname, 'wrk-json.lua');

/**
 * Which of a peer's listeners a scenario goes through: the HTTP one, the TLS one, or the layer 4 one
 * (HAProxy's mode tcp frontend, Fulcrum's TCP listener), which relays wrk's HTTP to the origin as bytes.
 */
export type Via = 'http' | 'tls' | 'tcp';

export interface WrkShape {
  conns: number;
  /** `Connection: close`: a new connection (and, over TLS, a new handshake) per request. */
  close: boolean;
  via: Via;
}

/**
 * `ka64` → 64 keep-alive connections; `close64` → 64 connections, each closed after one request;
 * `tls-ka64` and `tls-hs64` → the same two over TLS (hs: a handshake per request); `tcp-ka64` →
 * `ka64` through the layer 4 listener.
 */
export function wrkShape(scenario: string): WrkShape | undefined {
  const m = /^(ka|close|tls-ka|tls-hs|tcp-ka)(\d+)$/.exec(scenario);
  if (!m) return undefined;
  const via: Via = m[1]!.startsWith('tls-') ? 'tls' : m[1] === 'tcp-ka' ? 'tcp' : 'http';
  return { conns: Number(m[2]), close: m[1] === 'close' || m[1] === 'tls-hs', via };
}

/** The bulk scenarios: `bulk` through the HTTP listener, `tcp-bulk` through the layer 4 one. */
export function bulkVia(scenario: string): Via | undefined {
  return scenario === 'bulk' ? 'http' : scenario === 'tcp-bulk' ? 'tcp' : undefined;
}

/** The peer's port for `via`, or undefined when it has no such listener in this run. */
export function portOf(peer: Peer, via: Via): number | undefined {
  return via === 'tls' ? peer.tlsPort : via === 'tcp' ? peer.tcpPort : peer.port;
}

/** CPU/RSS/connection counters around `fn`, as row fields. */
async function counted<T>(b: Bench, peer: Peer, fn: () => Promise<T>): Promise<{ result: T; fields: Partial<Row> }> {
  const pid = peer.group?.pid;
  const p0 = pid ? cpuTicks(pid) : 0;
  const o0 = cpuTicks(b.origin.pid);
  const c0 = tcpActiveOpens();
  const t0 = performance.now();
  const result = await fn();
  const elapsed = (performance.now() - t0) / 1000;
  const pct = (ticks: number) => Math.round((ticks / CLK_TCK / elapsed) * 1000) / 10;
  return {
    result,
    fields: {
      elapsed_s: Math.round(elapsed * 1000) / 1000,
      proxy_cpu_pct: pid ? pct(cpuTicks(pid) - p0) : null,
      origin_cpu_pct: pct(cpuTicks(b.origin.pid) - o0),
      proxy_rss_kb: pid ? rssKb(pid) : null,
      tcp_active_opens: tcpActiveOpens() - c0,
    },
  };
}

function wrkArgs(peer: Peer, shape: WrkShape, seconds: number): string[] {
  const args = ['-t1', `-c${shape.conns}`, `-d${seconds}s`, '--timeout', '5s', '-s', LUA];
  if (shape.close) args.push('-H', 'Connection: close');
  const port = portOf(peer, shape.via);
  if (port === undefined) throw new Error(`${peer.name} has no ${shape.via.toUpperCase()} listener`);
  args.push(`${shape.via === 'tls' ? 'https' : 'http'}://${HOST}:${port}/`);
  return args;
}

/** 1 s of ka64 (or tls-ka64, tcp-ka64), not recorded: JIT, connection pools and caches warm up. */
export async function warmUp(b: Bench, peer: Peer, via: Via = 'http'): Promise<void> {
  await runGroup('wrk-warmup', b.tools.wrk, wrkArgs(peer, { conns: 64, close: false, via }, 1));
}

export async function runWrk(b: Bench, peer: Peer, scenario: string, round: number): Promise<Row> {
  const shape = wrkShape(scenario);
  if (!shape) throw new Error(`not a wrk scenario: ${scenario}`);
  const raw = join(b.rawDir, `${peer.name}.${scenario}.r${round}.txt`);
  const args = wrkArgs(peer, shape, b.duration);
  // wrk runs under a shell whose `times` then prints wrk's CPU time: over TLS the client's own
  // handshake work is a large part of the box's 2 cores, and shows whether wrk was the limit.
  const shell = ['-c', '"$0" "$@"; rc=$?; times; exit $rc', b.tools.wrk, ...args];
  const { result: code, fields } = await counted(b, peer, () => runGroup('wrk', b.tools.bash, shell, { logFile: raw, nofile: shape.conns + 100 }));
  const text = readFileSync(raw, 'utf8');
  const line = text.split('\n').find((l) => l.startsWith('JSON '));
  if (!line) throw new Error(`wrk (exit ${code}) printed no result for ${peer.name} ${scenario}; see ${raw}`);
  const w = JSON.parse(line.slice(5)) as Partial<Row>;
  const wrkCpu = childCpuSeconds(text);
  const client = wrkCpu === undefined || !fields.elapsed_s ? null : Math.round((wrkCpu / fields.elapsed_s) * 1000) / 10;
  return { peer: peer.name, scenario, round, ...fields, client_cpu_pct: client, ...w } as Row;
}

/** The children's user + system seconds from bash's `times` (its second line: "0m1.530s 0m0.620s"). */
function childCpuSeconds(text: string): number | undefined {
  const lines = text.split('\n').filter((l) => /^\d+m[\d.]+s \d+m[\d.]+s$/.test(l.trim()));
  const m = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(lines.at(-1)?.trim() ?? '');
  return m ? Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]) : undefined;
}

/** One GET of the 1 GiB object, single stream, body discarded by curl (`bulk`, or `tcp-bulk` through the layer 4 listener). */
export async function runBulk(b: Bench, peer: Peer, scenario: string, round: number): Promise<Row> {
  const via = bulkVia(scenario);
  if (!via) throw new Error(`not a bulk scenario: ${scenario}`);
  const port = portOf(peer, via);
  if (port === undefined) throw new Error(`${peer.name} has no ${via.toUpperCase()} listener`);
  const raw = join(b.rawDir, `${peer.name}.${scenario}.r${round}.txt`);
  const args = ['-s', '-o', '/dev/null', '--max-time', '120', '-w', '%{http_code} %{size_download} %{time_total}\\n', `http://${HOST}:${port}/big`];
  const { fields } = await counted(b, peer, () => runGroup('curl', b.tools.curl, args, { logFile: raw }));
  const [code, bytes, seconds] = readFileSync(raw, 'utf8').trim().split(/\s+/).map(Number);
  const ok = code !== undefined && code >= 200 && code < 300;
  return {
    peer: peer.name,
    scenario,
    round,
    ...fields,
    http_code: code ?? 0,
    bytes: bytes ?? 0,
    time_s: seconds ?? 0,
    mb_per_s: seconds ? Math.round(((bytes ?? 0) / seconds / 1e6) * 10) / 10 : 0,
    complete: bytes === BIG_BYTES,
    requests: 1,
    non2xx: ok ? 0 : 1,
  } as Row;
}
