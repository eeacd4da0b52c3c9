import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ConnectionThrottle as Settings, THROTTLE_DEFAULTS } from '../../src/model/listener.ts';
import { ConnectionThrottle } from '../../src/policy/throttle.ts';

/** A throttle on a clock the test moves by hand (milliseconds). */
function setup(settings: Partial<Settings> | null, maxTracked?: number) {
  const clock = { t: 0 };
  const throttle = new ConnectionThrottle({ now: () => clock.t, ...(maxTracked !== undefined ? { maxTracked } : {}) });
  throttle.configure(settings === null ? null : { ...THROTTLE_DEFAULTS, ...settings });
  /** Admits and returns the release, or fails with the refusal. */
  const open = (ip: string) => {
    const a = throttle.admit(ip);
    assert.ok(a.ok, `${ip} admitted, got ${a.ok ? '' : a.reason}`);
    return a.release;
  };
  const refused = (ip: string) => {
    const a = throttle.admit(ip);
    return a.ok ? 'admitted' : a.reason;
  };
  return { clock, throttle, open, refused };
}

describe('connection throttle', () => {
  it('max_connections caps open connections per client IP; a release makes room', () => {
    const { open, refused } = setup({ max_connections: 2 });
    const first = open('192.0.2.1');
    open('192.0.2.1');
    assert.equal(refused('192.0.2.1'), 'max_connections');
    open('192.0.2.2');
    first();
    open('192.0.2.1');
    assert.equal(refused('192.0.2.1'), 'max_connections');
  });

  it('an IPv4-mapped address is the same client as its IPv4 form', () => {
    const { open, refused } = setup({ max_connections: 2 });
    open('::ffff:192.0.2.1');
    open('192.0.2.1');
    assert.equal(refused('::ffff:192.0.2.1'), 'max_connections');
    assert.equal(refused('192.0.2.1'), 'max_connections');
    open('2001:db8::1');
  });

  it('release() is idempotent', () => {
    const { open, refused } = setup({ max_connections: 1 });
    const release = open('192.0.2.1');
    release();
    release();
    open('192.0.2.1');
    assert.equal(refused('192.0.2.1'), 'max_connections', 'a second release did not free a second slot');
  });

  it('max_connection_rate: a bucket of the rate, refilled continuously over the interval', () => {
    const { clock, open, refused } = setup({ max_connection_rate: 3, rate_interval_seconds: 60 });
    for (let i = 0; i < 3; i++) open('192.0.2.1')();
    assert.equal(refused('192.0.2.1'), 'max_connection_rate');
    open('192.0.2.2');
    clock.t = 19_999;
    assert.equal(refused('192.0.2.1'), 'max_connection_rate', 'not yet one token');
    clock.t = 20_000;
    open('192.0.2.1')();
    assert.equal(refused('192.0.2.1'), 'max_connection_rate');
    clock.t = 20_000 + 600_000;
    for (let i = 0; i < 3; i++) open('192.0.2.1')();
    assert.equal(refused('192.0.2.1'), 'max_connection_rate', 'a long idle spell fills the bucket, never beyond it');
  });

  it('a token refilled in many small fractions is a whole token', () => {
    const { clock, open, refused } = setup({ max_connection_rate: 3, rate_interval_seconds: 60 });
    for (let i = 0; i < 3; i++) open('192.0.2.1')();
    // An attempt each millisecond refills 1/20000 of a token; 20,000 such binary fractions add up
    // to 0.9999999999998981, not 1.
    for (let t = 1; t < 20_000; t++) {
      clock.t = t;
      if (refused('192.0.2.1') !== 'max_connection_rate') assert.fail(`admitted at ${t} ms`);
    }
    clock.t = 20_000;
    open('192.0.2.1');
  });

  it('refused attempts take no rate budget', () => {
    const { clock, open, refused } = setup({ max_connection_rate: 1, rate_interval_seconds: 10 });
    open('192.0.2.1')();
    clock.t = 5_000;
    for (let i = 0; i < 100; i++) assert.equal(refused('192.0.2.1'), 'max_connection_rate');
    clock.t = 10_000;
    open('192.0.2.1');
  });

  it('min_connections: within it a client is never refused, but its connections still count', () => {
    const { clock, open, refused } = setup({ min_connections: 2, max_connections: 3, max_connection_rate: 2, rate_interval_seconds: 60 });
    // Two exempt connections take both tokens.
    const a = open('192.0.2.1');
    const b = open('192.0.2.1');
    a();
    b();
    // Exempt again (one open afterwards), though the bucket is empty.
    const c = open('192.0.2.1');
    open('192.0.2.1');
    // The third open one is not exempt: the exempt ones spent the rate.
    assert.equal(refused('192.0.2.1'), 'max_connection_rate');
    clock.t = 30_000;
    open('192.0.2.1');
    assert.equal(refused('192.0.2.1'), 'max_connections', 'three open: the cap applies above min_connections');
    c();
    assert.equal(refused('192.0.2.1'), 'max_connection_rate', 'room under the cap, but the token went at 30 s');
    clock.t = 60_000;
    open('192.0.2.1');
  });

  it('configure(null) refuses nothing but keeps counting; a later configure sees the open connections', () => {
    const { throttle, open, refused } = setup(null);
    const releases = Array.from({ length: 5 }, () => open('192.0.2.1'));
    throttle.configure({ ...THROTTLE_DEFAULTS, max_connections: 3 });
    assert.equal(refused('192.0.2.1'), 'max_connections');
    releases.slice(0, 3).forEach((r) => r());
    open('192.0.2.1');
    assert.equal(refused('192.0.2.1'), 'max_connections');
  });

  it('a new rate (or interval) starts every client on a full bucket; other changes keep the bucket', () => {
    const { throttle, open, refused } = setup({ max_connection_rate: 1 });
    open('192.0.2.1')();
    assert.equal(refused('192.0.2.1'), 'max_connection_rate');
    throttle.configure({ ...THROTTLE_DEFAULTS, max_connection_rate: 1, max_connections: 10 });
    assert.equal(refused('192.0.2.1'), 'max_connection_rate', 'only max_connections changed');
    throttle.configure({ ...THROTTLE_DEFAULTS, max_connection_rate: 4, max_connections: 10 });
    for (let i = 0; i < 4; i++) open('192.0.2.1')();
    assert.equal(refused('192.0.2.1'), 'max_connection_rate');
    throttle.configure({ ...THROTTLE_DEFAULTS, max_connection_rate: 4, rate_interval_seconds: 1, max_connections: 10 });
    open('192.0.2.1');
  });

  it('a clock that steps back mints no tokens and does not stall refilling', () => {
    const { clock, open, refused } = setup({ max_connection_rate: 1, rate_interval_seconds: 10 });
    clock.t = 100_000;
    open('192.0.2.1')();
    clock.t = 50_000;
    assert.equal(refused('192.0.2.1'), 'max_connection_rate');
    clock.t = 60_000;
    open('192.0.2.1');
  });

  describe('the table of tracked clients is bounded', () => {
    it('idle clients with a full bucket are dropped first, whatever their age', () => {
      const { clock, throttle, open, refused } = setup({ max_connection_rate: 1, rate_interval_seconds: 60 }, 4);
      const full = open('192.0.2.2'); // bucket spent at 0 s
      clock.t = 50_000;
      const partial = open('192.0.2.1'); // bucket spent at 50 s
      partial(); // longest idle
      full();
      open('192.0.2.3');
      open('192.0.2.4');
      clock.t = 60_000; // .2's bucket is full again, .1's is not
      assert.equal(throttle.tracked, 4);
      open('192.0.2.5');
      assert.equal(throttle.tracked, 4, 'only .2 was dropped: an eighth of the bound was free');
      assert.equal(refused('192.0.2.1'), 'max_connection_rate', 'the longer-idle .1 is still tracked');
    });

    it('when no idle bucket is full, the longest idle clients are forgotten (they may burst again)', () => {
      const { clock, throttle, open, refused } = setup({ max_connection_rate: 1, rate_interval_seconds: 60 }, 4);
      for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4']) open(ip)();
      clock.t = 1_000;
      open('192.0.2.5');
      assert.equal(throttle.tracked, 4);
      assert.equal(refused('192.0.2.2'), 'max_connection_rate', '.2 is remembered');
      open('192.0.2.1'); // forgotten, so a fresh bucket
    });

    it('a client with open connections is never dropped; beyond the bound new clients are still admitted and counted', () => {
      const { throttle, open, refused } = setup({ max_connections: 1 }, 4);
      for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4']) open(ip);
      const e = open('192.0.2.5');
      assert.equal(throttle.tracked, 5);
      assert.equal(refused('192.0.2.5'), 'max_connections', 'tracked beyond the bound: the cap holds');
      e();
      open('192.0.2.6');
      assert.equal(throttle.tracked, 5, 'the idle .5 made way for .6');
      for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4', '192.0.2.6']) assert.equal(refused(ip), 'max_connections');
    });

    it('stays within the bound under a stream of one-off clients', () => {
      const { clock, throttle, open } = setup({ max_connection_rate: 5, rate_interval_seconds: 60 }, 1000);
      for (let i = 0; i < 20_000; i++) {
        clock.t = i;
        open(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)();
        assert.ok(throttle.tracked <= 1000);
      }
    });
  });
});
