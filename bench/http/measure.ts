// One measurement = one row: wrk scenarios (ka*, close*) and the bulk download. The proxy's CPU is
// read from /proc around the run, its RSS at the end, both over its whole process tree.
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

/** `ka64` → 64 keep-alive connections; `close64` → 64 connections, each closed after one request. */
export function wrkShape(scenario: string): { conns: number; close: boolean } | undefined {
  const m = /^(ka|close)(\d+)$/.exec(scenario);
  return m ? { conns: Number(m[2]), close: m[1] === 'close' } : undefined;
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

function wrkArgs(b: Bench, peer: Peer, conns: number, close: boolean, seconds: number): string[] {
  const args = ['-t1', `-c${conns}`, `-d${seconds}s`, '--timeout', '5s', '-s', LUA];
  if (close) args.push('-H', 'Connection: close');
  args.push(`http://${HOST}:${peer.port}/`);
  return args;
}

/** 1 s of ka64, not recorded: JIT, connection pools and caches warm up. */
export async function warmUp(b: Bench, peer: Peer): Promise<void> {
  await runGroup('wrk-warmup', b.tools.wrk, wrkArgs(b, peer, 64, false, 1));
}

export async function runWrk(b: Bench, peer: Peer, scenario: string, round: number): Promise<Row> {
  const shape = wrkShape(scenario);
  if (!shape) throw new Error(`not a wrk scenario: ${scenario}`);
  const raw = join(b.rawDir, `${peer.name}.${scenario}.r${round}.txt`);
  const args = wrkArgs(b, peer, shape.conns, shape.close, b.duration);
  const { result: code, fields } = await counted(b, peer, () => runGroup('wrk', b.tools.wrk, args, { logFile: raw, nofile: shape.conns + 100 }));
  const line = readFileSync(raw, 'utf8').split('\n').find((l) => l.startsWith('JSON '));
  if (!line) throw new Error(`wrk (exit ${code}) printed no result for ${peer.name} ${scenario}; see ${raw}`);
  const w = JSON.parse(line.slice(5)) as Partial<Row>;
  return { peer: peer.name, scenario, round, ...fields, ...w } as Row;
}

/** One GET of the 1 GiB object, single stream, body discarded by curl. */
export async function runBulk(b: Bench, peer: Peer, round: number): Promise<Row> {
  const raw = join(b.rawDir, `${peer.name}.bulk.r${round}.txt`);
  const args = ['-s', '-o', '/dev/null', '--max-time', '120', '-w', '%{http_code} %{size_download} %{time_total}\\n', `http://${HOST}:${peer.port}/big`];
  const { fields } = await counted(b, peer, () => runGroup('curl', b.tools.curl, args, { logFile: raw }));
  const [code, bytes, seconds] = readFileSync(raw, 'utf8').trim().split(/\s+/).map(Number);
  const ok = code !== undefined && code >= 200 && code < 300;
  return {
    peer: peer.name,
    scenario: 'bulk',
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
