/**
 * Streaming with backpressure through the HTTP forwarding path: a 1 GiB download and a 1 GiB
 * upload pass through Fulcrum with exact byte counts and flat memory. Client, Fulcrum and backend
 * all run in this process, so the RSS of the process bounds what any of them buffers.
 *
 * Each test also stalls the receiving end for a moment: while it stalls, a proxy that honours
 * backpressure stops the sender after a few socket buffers; one that does not keeps buffering.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request, type IncomingMessage } from 'node:http';
import { startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { setupLb, startBackend } from '../helpers/http-lb.ts';

const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;
/** Allowed RSS growth over the transfer. */
const RSS_LIMIT = 200 * MiB;
/** What may move while the receiver stalls: socket buffers on two hops, stream high-water marks. */
const STALL_LIMIT = 64 * MiB;
/** How long the receiver stalls: ample for an unthrottled sender to push hundreds of MiB. */
const STALL_MS = 1000;
const CHUNK = Buffer.alloc(64 * 1024, 'fulcrum-streaming-test/');

let fulcrum: TestFulcrum;

before(async () => {
  fulcrum = await startTestFulcrum();
});

after(async () => {
  await fulcrum?.close();
});

/** Samples process RSS every 25 ms until stopped; reports the peak growth over the start. */
function rssSampler(): { stop(): { baseline: number; peak: number; growth: number } } {
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 25);
  return {
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, process.memoryUsage().rss);
      return { baseline, peak, growth: peak - baseline };
    },
  };
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Writes `total` bytes of CHUNK to `out`, waiting for 'drain' whenever write() says so. */
function pump(out: NodeJS.WritableStream, total: number, progress: (sent: number) => void, done: () => void): void {
  let sent = 0;
  const next = (): void => {
    while (sent < total) {
      const n = Math.min(CHUNK.length, total - sent);
      sent += n;
      progress(sent);
      if (!out.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        out.once('drain', next);
        return;
      }
    }
    done();
  };
  next();
}

const mb = (n: number) => `${(n / MiB).toFixed(1)} MiB`;

describe('streaming with backpressure', () => {
  it('a 1 GiB download passes through with flat memory', { timeout: 60_000 }, async (t) => {
    let produced = 0;
    const b = await startBackend('download', {
      stream: (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': GiB });
        pump(
          res,
          GiB,
          (sent) => (produced = sent),
          () => res.end(),
        );
      },
    });
    t.after(() => b.close());
    const s = await setupLb([b], { fulcrum });

    const started = Date.now();
    const rss = rssSampler();
    let received = 0;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(`${s.url}/download`, { agent: false }, resolve);
      req.on('error', reject);
      req.end();
    });
    t.after(() => res.destroy());
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-length'], String(GiB));
    const ended = new Promise<void>((resolve, reject) => {
      res.on('end', resolve);
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('download aborted')));
    });
    res.on('data', (c: Buffer) => {
      received += c.length;
    });
    // A slow reader: stall once the download is under way.
    await new Promise<void>((resolve) => res.once('data', () => resolve()));
    res.pause();
    const before = produced;
    await delay(STALL_MS);
    const stall = { before, after: produced };
    res.resume();
    await ended;
    const mem = rss.stop();
    const seconds = (Date.now() - started) / 1000;
    t.diagnostic(`download: ${mb(received)} in ${seconds.toFixed(1)} s; backend wrote ${mb(stall.after - stall.before)} during a ${STALL_MS} ms client stall; RSS +${mb(mem.growth)} (baseline ${mb(mem.baseline)})`);

    assert.equal(received, GiB, 'the client received every byte');
    assert.equal(produced, GiB);
    assert.ok(stall.after - stall.before < STALL_LIMIT, `while the client did not read, the backend still wrote ${mb(stall.after - stall.before)}: backpressure is not propagated`);
    assert.ok(mem.growth < RSS_LIMIT, `RSS grew by ${mb(mem.growth)} during the download`);
  });

  it('a 1 GiB upload passes through with flat memory', { timeout: 60_000 }, async (t) => {
    let consumed = 0;
    let sent = 0;
    let stall: { before: number; after: number } | undefined;
    const b = await startBackend('upload', {
      stream: (req, res) => {
        // A slow reader: stall before reading anything, then count every byte.
        req.pause();
        const before = sent;
        void delay(STALL_MS).then(() => {
          stall = { before, after: sent };
          req.on('data', (c: Buffer) => {
            consumed += c.length;
          });
          req.on('end', () => {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ bytes: consumed }));
          });
          req.resume();
        });
      },
    });
    t.after(() => b.close());
    const s = await setupLb([b], { fulcrum });

    const started = Date.now();
    const rss = rssSampler();
    const req = request(`${s.url}/upload`, { method: 'POST', agent: false, headers: { 'content-type': 'application/octet-stream', 'content-length': GiB } });
    t.after(() => req.destroy());
    const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
      req.on('error', reject);
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
        res.on('error', reject);
      });
    });
    pump(
      req,
      GiB,
      (n) => (sent = n),
      () => req.end(),
    );
    const { status, body } = await response;
    const mem = rss.stop();
    const seconds = (Date.now() - started) / 1000;
    assert.ok(stall !== undefined, 'the backend got the request');
    t.diagnostic(`upload: ${mb(sent)} in ${seconds.toFixed(1)} s; client wrote ${mb(stall.after - stall.before)} during a ${STALL_MS} ms backend stall; RSS +${mb(mem.growth)} (baseline ${mb(mem.baseline)})`);

    assert.equal(status, 200, body);
    assert.deepEqual(JSON.parse(body), { bytes: GiB }, 'the backend received every byte');
    assert.equal(sent, GiB);
    assert.ok(stall.after - stall.before < STALL_LIMIT, `while the backend did not read, the client still wrote ${mb(stall.after - stall.before)}: backpressure is not propagated`);
    assert.ok(mem.growth < RSS_LIMIT, `RSS grew by ${mb(mem.growth)} during the upload`);
  });
});
