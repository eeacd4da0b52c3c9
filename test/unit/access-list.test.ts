import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NetworkItem } from '../../src/model/listener.ts';
import { compileAccessList } from '../../src/policy/access-list.ts';

let n = 0;
const allow = (address: string): NetworkItem => ({ id: `ni-${n++}`, address, type: 'ALLOW' });
const deny = (address: string): NetworkItem => ({ id: `ni-${n++}`, address, type: 'DENY' });

/** [what, items, client address, allowed?] */
const table: [string, NetworkItem[], string, boolean][] = [
  // An empty list allows everyone.
  ['empty list, IPv4', [], '203.0.113.9', true],
  ['empty list, IPv6', [], '2001:db8::1', true],
  // Rule 1: a DENY that is not a catch-all refuses, even where an ALLOW also matches.
  ['DENY refuses its network', [deny('192.0.2.0/24')], '192.0.2.7', false],
  ['DENY refuses one address', [deny('192.0.2.7/32')], '192.0.2.7', false],
  ['DENY leaves the neighbour alone', [deny('192.0.2.7/32')], '192.0.2.8', true],
  ['DENY beats an equal-or-narrower ALLOW', [allow('192.0.2.7/32'), deny('192.0.2.0/24')], '192.0.2.7', false],
  ['DENY beats a wider ALLOW', [allow('10.0.0.0/8'), deny('10.1.0.0/16')], '10.1.2.3', false],
  ['DENY beats ALLOW inside an allow-list too', [deny('0.0.0.0/0'), allow('10.0.0.0/8'), deny('10.9.0.0/16')], '10.9.9.9', false],
  ['DENY of an IPv6 network', [deny('2001:db8::/32')], '2001:db8:1::5', false],
  ['DENY of an IPv6 network leaves others', [deny('2001:db8::/32')], '2001:db9::5', true],
  // Rule 2 and 4: ALLOW items without a catch-all DENY change nothing.
  ['ALLOW alone: a match is allowed', [allow('10.0.0.0/8')], '10.2.3.4', true],
  ['ALLOW alone: a non-match is allowed too', [allow('10.0.0.0/8')], '192.0.2.1', true],
  // Rule 3: the catch-all DENY of the family makes an allow-list.
  ['allow-list: listed IPv4 allowed', [deny('0.0.0.0/0'), allow('10.0.0.0/8'), allow('192.0.2.7/32')], '192.0.2.7', true],
  ['allow-list: unlisted IPv4 refused', [deny('0.0.0.0/0'), allow('10.0.0.0/8'), allow('192.0.2.7/32')], '192.0.2.8', false],
  ['0.0.0.0/0 alone refuses every IPv4', [deny('0.0.0.0/0')], '8.8.8.8', false],
  ['0.0.0.0/0 does not touch IPv6', [deny('0.0.0.0/0'), allow('10.0.0.0/8')], '2001:db8::1', true],
  ['::/0 refuses unlisted IPv6', [deny('::/0'), allow('2001:db8::/32')], '2001:db9::1', false],
  ['::/0 lets listed IPv6 in', [deny('::/0'), allow('2001:db8::/32')], '2001:db8:ffff::1', true],
  ['::/0 does not touch IPv4', [deny('::/0')], '192.0.2.1', true],
  ['both catch-alls: listed IPv4 in', [deny('0.0.0.0/0'), deny('::/0'), allow('192.0.2.0/24'), allow('2001:db8::/32')], '192.0.2.200', true],
  ['both catch-alls: listed IPv6 in', [deny('0.0.0.0/0'), deny('::/0'), allow('192.0.2.0/24'), allow('2001:db8::/32')], '2001:db8::9', true],
  ['both catch-alls: unlisted IPv6 out', [deny('0.0.0.0/0'), deny('::/0'), allow('192.0.2.0/24'), allow('2001:db8::/32')], '::1', false],
  ['an ALLOW 0.0.0.0/0 with a narrower DENY: a deny-list', [allow('0.0.0.0/0'), deny('198.51.100.0/24')], '198.51.100.1', false],
  // IPv4-mapped IPv6, as a dual-stack socket reports IPv4 clients.
  ['mapped client hits an IPv4 DENY', [deny('192.0.2.0/24')], '::ffff:192.0.2.7', false],
  ['mapped client in an IPv4 allow-list', [deny('0.0.0.0/0'), allow('192.0.2.0/24')], '::ffff:192.0.2.7', true],
  ['mapped client outside an IPv4 allow-list', [deny('0.0.0.0/0'), allow('192.0.2.0/24')], '::ffff:198.51.100.7', false],
  ['mapped client is IPv4, not caught by ::/0', [deny('::/0')], '::ffff:192.0.2.7', true],
  ['loopback IPv4 in an allow-list', [deny('0.0.0.0/0'), allow('127.0.0.1/32')], '127.0.0.1', true],
  ['loopback IPv6 in an allow-list', [deny('::/0'), allow('::1/128')], '::1', true],
];

describe('access list', () => {
  for (const [what, items, ip, allowed] of table) {
    it(`${what}: ${ip} ${allowed ? 'allowed' : 'refused'}`, () => {
      assert.equal(compileAccessList(items).allows(ip), allowed);
    });
  }

  it('an address that is not one is refused only under a catch-all DENY', () => {
    assert.equal(compileAccessList([deny('192.0.2.0/24')]).allows('not-an-ip'), true);
    assert.equal(compileAccessList([deny('0.0.0.0/0'), allow('10.0.0.0/8')]).allows('not-an-ip'), false);
  });

  it('many items: 10,000 networks of mixed prefixes, both families', () => {
    const items: NetworkItem[] = [deny('0.0.0.0/0'), deny('::/0')];
    for (let i = 0; i < 5000; i++) items.push(allow(`10.${(i >> 8) & 255}.${i & 255}.0/24`));
    for (let i = 0; i < 4000; i++) items.push(allow(`2001:db8:${i.toString(16)}::/48`));
    for (let i = 0; i < 998; i++) items.push(deny(`10.${(i >> 8) & 255}.${i & 255}.128/25`));
    const list = compileAccessList(items);
    assert.equal(list.size, 10_000);
    assert.equal(list.allows('10.0.5.7'), true, 'in an ALLOW /24, below its DENY /25');
    assert.equal(list.allows('10.0.5.200'), false, 'in the DENY /25');
    assert.equal(list.allows('10.19.135.1'), true, 'the last ALLOW /24 (4999 = 19·256 + 135)');
    assert.equal(list.allows('10.19.136.1'), false, 'past the last ALLOW');
    assert.equal(list.allows('::ffff:10.19.135.1'), true);
    assert.equal(list.allows('2001:db8:f9f:1::1'), true, 'in the last IPv6 ALLOW (0xf9f = 3999)');
    assert.equal(list.allows('2001:db8:fa0::1'), false);
  });

  it('an item whose address does not parse is an error at compile, never skipped', () => {
    assert.throws(() => compileAccessList([{ id: 'ni-bad', address: '10.0.0.1/8', type: 'DENY' }]), /ni-bad.*host bits/);
  });
});
