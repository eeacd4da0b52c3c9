/**
 * The certificate expiry watcher with an injected clock over a real SQLite store: thresholds
 * crossed one by one, the first-seen rule (one event for the smallest crossed threshold), a
 * rotation starting afresh, checks after certificate writes only, the timer; and the event bus
 * keeping a throwing subscriber from hurting the others.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateExpiryWatcher, thresholdsDue } from '../../src/control/certificate-expiry.ts';
import type { Certificate } from '../../src/model/certificate.ts';
import { EVENTS, EventBus, type FulcrumEvent } from '../../src/observability/events.ts';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.ts';
import type { Store } from '../../src/store/store.ts';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const scope = { org_id: 'default', project_id: 'default' };

/** A logger that keeps what it was given, so a test can see what was logged. */
function recordingLog() {
  const lines: { level: string; obj: unknown; msg: string }[] = [];
  const at = (level: string) => (obj: unknown, msg: string) => void lines.push({ level, obj, msg });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') } as const;
}

function cert(id: string, validUntil: number, fingerprint: string, thresholds = [30, 14, 7, 1]): Certificate {
  return {
    cert_id: id,
    name: id,
    domains: [`${id}.example.com`],
    type: 'SINGLE',
    key_type: 'ECDSA_P256',
    issuer: 'Test CA',
    subject: `CN=${id}.example.com`,
    valid_from: new Date(T0 - DAY).toISOString(),
    valid_until: new Date(validUntil).toISOString(),
    fingerprint_sha256: fingerprint,
    certificate_pem: '(not read by the watcher)',
    chain_pem: null,
    private_key_sealed: '(not read by the watcher)',
    auto_renew: false,
    notify_before_expiry_days: thresholds,
    org_id: 'default',
    project_id: 'default',
    created_at: new Date(T0).toISOString(),
    updated_at: new Date(T0).toISOString(),
    version: 0,
  };
}

/** One watcher over its own store; events land in `events` and on `bus` (as 'event' on `seen`). */
async function setup(options: { intervalMs?: number } = {}) {
  // Its own temp dir: the shared helper would load the whole app, which this test does not need.
  const dir = mkdtempSync(join(tmpdir(), 'fulcrum-expiry-'));
  const store: Store = SqliteStore.open(dir);
  const clock = { t: T0, now() { return this.t; } };
  const log = recordingLog();
  const bus = new EventBus(log);
  const events: FulcrumEvent<'certificate.expiring'>[] = [];
  const seen = new EventEmitter();
  bus.on(EVENTS.CERTIFICATE_EXPIRING, (e) => {
    events.push(e);
    seen.emit('event', e);
  });
  const watcher = new CertificateExpiryWatcher({ store, clock }, bus, log, options);
  const put = (c: Certificate) => store.write((tx) => tx.put('certificate', c.cert_id, null, scope, c, 'any'));
  return {
    store, clock, bus, events, seen, watcher, put, log,
    async close() {
      await watcher.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('thresholdsDue', () => {
  const cases: { days: number; sent: number[]; announce: number | undefined; mark: number[] }[] = [
    { days: 40, sent: [], announce: undefined, mark: [] },
    { days: 30, sent: [], announce: 30, mark: [30] },
    { days: 30, sent: [30], announce: undefined, mark: [] },
    { days: 10, sent: [], announce: 14, mark: [30, 14] }, // first seen: one event, the smallest crossed
    { days: 10, sent: [30], announce: 14, mark: [14] },
    { days: 0, sent: [30, 14, 7], announce: 1, mark: [1] },
    { days: -3, sent: [], announce: 1, mark: [30, 14, 7, 1] }, // expired, seen for the first time
    { days: 10, sent: [30, 7], announce: undefined, mark: [14] }, // 14 added after 7 was sent: no going back
  ];
  for (const c of cases) {
    it(`${c.days} days left, sent [${c.sent}] → ${c.announce ?? 'nothing'}`, () => {
      const d = thresholdsDue([30, 14, 7, 1], c.days, new Set(c.sent));
      assert.equal(d.announce, c.announce);
      assert.deepEqual(d.markSent, c.mark);
    });
  }
});

describe('CertificateExpiryWatcher', () => {
  let w: Awaited<ReturnType<typeof setup>>;
  before(async () => {
    w = await setup();
  });
  after(() => w.close());

  it('emits once per threshold as days_until_expiry crosses it, with the event shape', async () => {
    await w.put(cert('one', T0 + 40 * DAY + HOUR, 'FP:ONE'));
    await w.watcher.start();
    assert.equal(w.events.length, 0, '40 days left: no threshold reached');

    const steps: [number, number][] = [
      [30, 30],
      [14, 14],
      [7, 7],
      [1, 1],
    ];
    for (const [daysLeft, threshold] of steps) {
      w.clock.t = T0 + 40 * DAY + HOUR - daysLeft * DAY; // daysLeft days and one hour left
      await w.watcher.check();
      await w.watcher.check(); // a second check in the same state sends nothing more
      assert.equal(w.events.length, steps.findIndex(([, t]) => t === threshold) + 1, `${daysLeft} days left`);
      const e = w.events.at(-1)!;
      assert.equal(e.type, 'certificate.expiring');
      assert.equal(e.at, new Date(w.clock.t).toISOString().replace('.000Z', 'Z'));
      assert.deepEqual(e.data, {
        cert_id: 'one',
        name: 'one',
        domains: ['one.example.com'],
        valid_until: new Date(T0 + 40 * DAY + HOUR).toISOString(),
        days_until_expiry: daysLeft,
        threshold_days: threshold,
        fingerprint_sha256: 'FP:ONE',
      });
    }
    w.clock.t = T0 + 40 * DAY; // one hour left: no threshold below 1
    await w.watcher.check();
    assert.equal(w.events.length, 4);
  });

  it('first seen with several thresholds crossed: one event for the smallest, none for the larger ones later', async () => {
    w.events.length = 0;
    const now = w.clock.t;
    const next = once(w.seen, 'event');
    await w.put(cert('late', now + 10 * DAY + HOUR, 'FP:LATE'));
    const [e] = (await next) as [FulcrumEvent<'certificate.expiring'>];
    assert.equal(e.data.cert_id, 'late');
    assert.equal(e.data.threshold_days, 14);
    assert.equal(e.data.days_until_expiry, 10);
    await w.watcher.check();
    assert.deepEqual(w.events.map((x) => x.data.threshold_days), [14], 'not 30 afterwards, and not 14 twice');
    w.clock.t = now + 3 * DAY;
    await w.watcher.check();
    assert.deepEqual(w.events.map((x) => x.data.threshold_days), [14, 7]);
    w.clock.t = now;
  });

  it('a rotation (new fingerprint) starts afresh; the write alone triggers the check', async () => {
    w.events.length = 0;
    const now = w.clock.t;
    const next = once(w.seen, 'event');
    await w.put(cert('late', now + 10 * DAY + HOUR, 'FP:LATE-ROTATED'));
    const [e] = (await next) as [FulcrumEvent<'certificate.expiring'>];
    assert.equal(e.data.fingerprint_sha256, 'FP:LATE-ROTATED');
    assert.equal(e.data.threshold_days, 14);
    // A rotation to a certificate with 90 days left sends nothing, and its thresholds come later.
    await w.put(cert('late', now + 90 * DAY + HOUR, 'FP:LATE-RENEWED'));
    await w.watcher.check();
    assert.equal(w.events.length, 1);
    w.clock.t = now + 60 * DAY;
    await w.watcher.check();
    const renewed = w.events.at(-1)!.data;
    assert.equal(w.events.length, 2);
    assert.deepEqual([renewed.cert_id, renewed.threshold_days, renewed.fingerprint_sha256], ['late', 30, 'FP:LATE-RENEWED']);
    w.clock.t = now;
  });

  it('a write that touches no certificate does not read the certificates', async () => {
    let reads = 0;
    const list = w.store.list.bind(w.store);
    w.store.list = (async (kind, query) => {
      if (kind === 'certificate') reads++;
      return list(kind, query);
    }) as Store['list'];
    try {
      await w.store.write((tx) => tx.put('pool', 'pool-x', null, scope, { pool_id: 'pool-x' }, 'any'));
      await w.watcher.check(); // queued behind the write's own job
      assert.equal(reads, 1, 'only the explicit check read them');
      await w.put(cert('third', w.clock.t + 200 * DAY, 'FP:THIRD'));
      await w.watcher.check();
      assert.equal(reads, 3, 'a certificate write reads them');
    } finally {
      w.store.list = list;
    }
  });
});

describe('CertificateExpiryWatcher timer and stop', () => {
  it('checks on its timer; after stop() it neither checks nor reacts to writes', async () => {
    const w = await setup({ intervalMs: 5 });
    try {
      await w.put(cert('timed', T0 + 40 * DAY, 'FP:TIMED'));
      await w.watcher.start();
      assert.equal(w.events.length, 0);
      const next = once(w.seen, 'event');
      w.clock.t = T0 + 26 * DAY; // 14 days left: only the timer can notice
      const [e] = (await next) as [FulcrumEvent<'certificate.expiring'>];
      assert.equal(e.data.threshold_days, 14);
      await w.watcher.stop();
      w.clock.t = T0 + 39 * DAY;
      await w.put(cert('timed', T0 + 40 * DAY, 'FP:TIMED'));
      await w.watcher.check();
      assert.equal(w.events.length, 1, 'a stopped watcher sends nothing');
    } finally {
      await w.close();
    }
  });
});

describe('EventBus', () => {
  it('a subscriber that throws (or rejects) is logged; the others still get the event; unsubscribe works', async () => {
    const log = recordingLog();
    const bus = new EventBus(log);
    const got: string[] = [];
    bus.on(EVENTS.CERTIFICATE_EXPIRING, () => {
      throw new Error('subscriber bug');
    });
    bus.on(EVENTS.CERTIFICATE_EXPIRING, async () => {
      throw new Error('async subscriber bug');
    });
    const off = bus.on(EVENTS.CERTIFICATE_EXPIRING, (e) => void got.push(`typed:${e.data.cert_id}`));
    bus.onAny((e) => void got.push(`any:${e.type}`));
    const event = {
      type: EVENTS.CERTIFICATE_EXPIRING,
      at: '2026-01-01T00:00:00Z',
      data: { cert_id: 'c', name: 'c', domains: [], valid_until: '2026-01-02T00:00:00Z', days_until_expiry: 0, threshold_days: 1, fingerprint_sha256: 'FP' },
    };
    assert.doesNotThrow(() => bus.emit(event));
    assert.deepEqual(got, ['typed:c', 'any:certificate.expiring']);
    await new Promise((resolve) => setImmediate(resolve)); // the rejected promise's catch runs on the microtask queue
    assert.equal(log.lines.filter((l) => l.level === 'error').length, 2, 'both failures logged');
    off();
    bus.emit(event);
    assert.deepEqual(got, ['typed:c', 'any:certificate.expiring', 'any:certificate.expiring']);
  });
});
