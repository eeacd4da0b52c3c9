// idle10k: what 10,000 open, idle keep-alive client connections cost the proxy in memory, measured
// on a freshly restarted and warmed-up proxy.
// The clients live in a separate Node process (idle-clients.ts) so their own memory and CPU never
// mix with the harness's, and it can get its own file-descriptor limit.
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGroup, stopGroup, rssKb } from './procs.ts';
import { warmUp, type Bench } from './measure.ts';
import type { Peer } from './peers.ts';
import type { Row } from './report.ts';

export const IDLE_CONNS = 10_000;
const CHILD = join(import.meta.dirname, 'idle-clients.ts');

interface Ready {
  type: 'ready';
  conns: number;
  opened: number;
  answered_2xx: number;
  non2xx: number;
  errors: number;
  establish_ms: number;
}

/** Next IPC message of the child (or an error if it exits first or takes longer than `ms`). */
function nextMessage<T>(child: NodeJS.EventEmitter, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`idle clients: no message within ${ms} ms`)), ms);
    const onMessage = (m: T) => done(undefined, m);
    const onExit = (code: unknown) => done(new Error(`idle clients exited (${code}) early`));
    const done = (err?: Error, m?: T) => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(m as T);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

export async function runIdle(b: Bench, peer: Peer, round: number): Promise<Row> {
  if (!peer.group) throw new Error('idle10k needs a proxy process to measure');
  // A fresh process: memory kept from earlier scenarios (a grown Node heap, HAProxy's pools, the
  // previous round's 10,000 connections) would otherwise absorb the growth, or GC would shrink it.
  await peer.restart?.();
  // Then the usual 1 s warm-up, so that one-time costs of serving at all (JIT code, a grown heap,
  // upstream connections) are in the baseline and the growth is what the connections hold.
  await warmUp(b, peer);
  const pid = peer.group!.pid;
  const raw = join(b.rawDir, `${peer.name}.idle10k.r${round}.txt`);
  await sleep(1000); // let the warm-up's connections close and its allocation settle
  const before = rssKb(pid);
  const fd = openSync(raw, 'a');
  const g = startGroup('idle-clients', process.execPath, [CHILD, '--port', String(peer.port), '--count', String(IDLE_CONNS)], {
    stdio: ['ignore', fd, fd, 'ipc'],
    nofile: IDLE_CONNS + 1000,
  });
  closeSync(fd);
  try {
    const ready = await nextMessage<Ready>(g.child, 120_000);
    // The connections are idle now; give the proxy a moment to finish any lazy allocation.
    await sleep(1000);
    const after = rssKb(pid);
    g.child.send({ type: 'close' });
    const closed = await nextMessage<{ still_open: number; closed_by_peer: number }>(g.child, 10_000);
    await g.exited;
    const { type: _type, ...counts } = ready;
    return {
      peer: peer.name,
      scenario: 'idle10k',
      round,
      ...counts,
      still_open: closed.still_open,
      closed_by_peer: closed.closed_by_peer,
      rss_before_kb: before,
      rss_after_kb: after,
      proxy_rss_kb: after,
      growth_mb: Math.round(((after - before) / 1024) * 10) / 10,
    } as Row;
  } finally {
    await stopGroup(g);
  }
}
