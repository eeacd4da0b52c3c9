/**
 * A guard for test files that run Fulcrum in the test's own process: if the event loop stops
 * turning for `limitMs` (a synchronous loop in the data plane, say), no test timeout can fire and
 * the process may grow until the machine runs out of memory. A worker thread watches a heartbeat
 * the main thread writes to shared memory and, past the limit, writes why and during which test
 * to stderr (directly to fd 2: the main thread that would relay a worker's stdio is the one that
 * is stuck) and kills the process, so the file fails within seconds, saying so, instead of
 * starving everything else on the machine.
 *
 * Off while an inspector is active (a paused debugger stops the loop on purpose) and with
 * FULCRUM_TEST_NO_WATCHDOG=1.
 */
import { url as inspectorUrl } from 'node:inspector';
import { Worker } from 'node:worker_threads';

/** Bytes of shared memory for the name of the test running now. */
const NAME_BYTES = 512;

const WATCHER = `
const { workerData } = require('node:worker_threads');
const { writeSync } = require('node:fs');
const beat = new BigInt64Array(workerData.beat);
const name = new Uint8Array(workerData.name);
setInterval(() => {
  const stale = Date.now() - Number(Atomics.load(beat, 0));
  if (stale <= workerData.limitMs) return;
  const end = name.indexOf(0);
  const current = Buffer.from(name.slice(0, end === -1 ? name.length : end)).toString('utf8');
  writeSync(2, '\\n[loop-watchdog] ' + workerData.label + ': the event loop has not turned for ' + stale +
    ' ms (something runs synchronously without end) during test ' + JSON.stringify(current) +
    '; killing the test process so it cannot exhaust the machine\\n');
  process.kill(process.pid, 'SIGKILL');
}, 250);
`;

export interface LoopWatchdog {
  /** Names the test running now, for the message (call it from `beforeEach`). */
  current(name: string): void;
  /** Stops watching (call it in `after`). */
  stop(): void;
}

/** Starts watching this process's event loop. */
export function guardEventLoop(label: string, limitMs = 5_000): LoopWatchdog {
  if (process.env.FULCRUM_TEST_NO_WATCHDOG === '1' || inspectorUrl() !== undefined) return { current: () => {}, stop: () => {} };
  const beatBuffer = new SharedArrayBuffer(8);
  const nameBuffer = new SharedArrayBuffer(NAME_BYTES);
  const beat = new BigInt64Array(beatBuffer);
  const name = new Uint8Array(nameBuffer);
  const tick = () => Atomics.store(beat, 0, BigInt(Date.now()));
  tick();
  const interval = setInterval(tick, 100);
  interval.unref();
  const worker = new Worker(WATCHER, { eval: true, workerData: { beat: beatBuffer, name: nameBuffer, limitMs, label } });
  worker.unref();
  return {
    current: (testName) => {
      name.fill(0);
      name.set(Buffer.from(testName, 'utf8').subarray(0, NAME_BYTES - 1));
    },
    stop: () => {
      clearInterval(interval);
      void worker.terminate();
    },
  };
}
