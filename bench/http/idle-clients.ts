// Child process of the idle10k scenario (run by idle.ts; not meant to be run by hand).
// Opens N keep-alive connections with plain sockets, sends one request on each, reads the whole
// response, and then leaves every connection open and idle. Reports to the parent over IPC:
//   → {type: 'ready', ...counts}       when every connection has been answered (or failed)
//   ← {type: 'close'}                   parent has measured: report how many are still open, close all
//   → {type: 'closed', still_open}
import { connect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    count: { type: 'string', default: '10000' },
    batch: { type: 'string', default: '250' },
  },
});
const port = Number(values.port);
const count = Number(values.count);
const batch = Number(values.batch);
if (!process.send || !port) {
  process.stderr.write('idle-clients.ts is started by bench/http/idle.ts (needs --port and an IPC channel)\n');
  process.exit(2);
}

const REQUEST = 'GET / HTTP/1.1\r\nHost: bench\r\n\r\n';
const sockets: Socket[] = [];
const counts = { opened: 0, answered_2xx: 0, non2xx: 0, errors: 0, closed_by_peer: 0 };

/** Resolves once the response is complete (or the connection failed); the socket then stays open. */
function openOne(): Promise<void> {
  return new Promise((resolve) => {
    let buf = '';
    let done = false;
    const finish = (outcome: 'ok' | 'non2xx' | 'error') => {
      if (done) return;
      done = true;
      if (outcome === 'ok') counts.answered_2xx++;
      else if (outcome === 'non2xx') counts.non2xx++;
      else counts.errors++;
      resolve();
    };
    const s = connect({ host: '127.0.0.1', port, noDelay: true });
    sockets.push(s);
    s.setEncoding('latin1');
    s.setTimeout(15_000, () => {
      finish('error'); // no answer in time: count it, and stop waiting on it
      s.destroy();
    });
    s.on('connect', () => {
      counts.opened++;
      s.write(REQUEST);
    });
    s.on('data', (chunk: string) => {
      if (done) return; // nothing more is expected; a second response would be a server bug, not ours to count
      buf += chunk;
      const end = complete(buf);
      if (end === undefined) return;
      s.setTimeout(0); // idle from now on, for as long as the parent wants
      const status = Number(buf.slice(9, 12));
      finish(status >= 200 && status < 300 ? 'ok' : 'non2xx');
    });
    s.on('error', () => finish('error'));
    s.on('close', () => {
      if (done) counts.closed_by_peer++;
      finish('error');
    });
  });
}

/** Index after the end of one full HTTP/1.1 response in `buf`, or undefined while incomplete. */
function complete(buf: string): number | undefined {
  const head = buf.indexOf('\r\n\r\n');
  if (head < 0) return undefined;
  const headers = buf.slice(0, head).toLowerCase();
  const len = /\r\ncontent-length:\s*(\d+)/.exec(headers);
  if (len) return buf.length >= head + 4 + Number(len[1]) ? head + 4 + Number(len[1]) : undefined;
  if (/\r\ntransfer-encoding:[^\r]*chunked/.test(headers)) {
    const end = buf.indexOf('\r\n0\r\n\r\n', head);
    return end < 0 ? undefined : end + 7;
  }
  return head + 4; // no body (e.g. 204)
}

const t0 = performance.now();
// Batches keep the number of connections in the server's accept queue below its backlog (511 for Node).
for (let i = 0; i < count; i += batch) {
  await Promise.all(Array.from({ length: Math.min(batch, count - i) }, openOne));
}
process.send({ type: 'ready', conns: count, ...counts, establish_ms: Math.round(performance.now() - t0) });

process.on('message', (m: { type?: string }) => {
  if (m.type !== 'close') return;
  const stillOpen = sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
  for (const s of sockets) s.destroy();
  process.send!({ type: 'closed', still_open: stillOpen, closed_by_peer: counts.closed_by_peer }, () => process.exit(0));
});
// The parent died or gave up: never linger with 10,000 sockets.
process.on('disconnect', () => process.exit(0));
