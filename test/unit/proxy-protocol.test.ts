/**
 * The PROXY protocol codec: round trips through both builders and the reader (IPv4, IPv6,
 * IPv4-mapped, mixed pairs), the spec's own lines, every split point, TLVs, LOCAL and UNKNOWN,
 * malformed headers refused as early as their bytes allow, a seeded random-mutation loop, and
 * HAProxy itself as the peer: HAProxy's send-proxy / send-proxy-v2 headers read by the parser, and
 * the builders' headers read by HAProxy's accept-proxy.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, writeFileSync } from 'node:fs';
import { connect, createServer, isIPv4, isIPv6, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import {
  parseProxyHeader,
  PROXY_HEADER_MAX_BYTES,
  proxyHeaderV1,
  proxyHeaderV2,
  type ProxiedAddresses,
  type ProxyHeaderResult,
} from '../../src/dataplane/proxy-protocol.ts';
import { freePort, tempDir } from '../helpers/fulcrum.ts';

const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const KINDS = new Set(['need-more', 'header', 'invalid']);

/** A v2 header from its parts, the length field counting `block` (addresses + TLVs). */
function v2(verCmd: number, fam: number, block: Buffer, length = block.length): Buffer {
  const fixed = Buffer.alloc(4);
  fixed[0] = verCmd;
  fixed[1] = fam;
  fixed.writeUInt16BE(length, 2);
  return Buffer.concat([SIGNATURE, fixed, block]);
}

/** A TLV (§2.2): type(1) length(2) value. */
function tlv(type: number, value: Buffer | string): Buffer {
  const v = typeof value === 'string' ? Buffer.from(value) : value;
  const h = Buffer.alloc(3);
  h[0] = type;
  h.writeUInt16BE(v.length, 1);
  return Buffer.concat([h, v]);
}

/** A v2 header with TLVs after the builder's address block, its length field fixed up. */
function withTlvs(header: Buffer, tlvs: Buffer[]): Buffer {
  const out = Buffer.concat([header, ...tlvs]);
  out.writeUInt16BE(out.length - 16, 14);
  return out;
}

function header(result: ProxyHeaderResult): Extract<ProxyHeaderResult, { kind: 'header' }> {
  assert.equal(result.kind, 'header', JSON.stringify(result));
  return result as Extract<ProxyHeaderResult, { kind: 'header' }>;
}

function assertInvalid(data: Buffer | string, reason: RegExp) {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  const result = parseProxyHeader(bytes);
  assert.equal(result.kind, 'invalid', `${JSON.stringify(bytes.toString('latin1'))} → ${JSON.stringify(result)}`);
  assert.match((result as { reason: string }).reason, reason);
}

/** Every strict prefix of `full` is need-more; `full` plus client bytes is the header, the client bytes untouched. */
function assertFraming(full: Buffer, addresses: ProxiedAddresses, version: 1 | 2) {
  for (let n = 0; n < full.length; n++) {
    const result = parseProxyHeader(full.subarray(0, n));
    assert.equal(result.kind, 'need-more', `prefix of ${n}/${full.length} bytes → ${JSON.stringify(result)}`);
  }
  const client = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  const data = Buffer.concat([full, client]);
  const copy = Buffer.from(data);
  for (const input of [full, data]) {
    const got = header(parseProxyHeader(input));
    assert.deepEqual(got, { kind: 'header', version, addresses, length: full.length });
  }
  assert.deepEqual(data, copy, 'the reader never writes to its input');
  assert.deepEqual(data.subarray(full.length), client);
}

describe('round trips: build, then read', () => {
  const cases: { name: string; client: [string, number]; server: [string, number]; v1: string; family: 4 | 6; expect: [string, string] }[] = [
    { name: 'IPv4', client: ['192.0.2.10', 51234], server: ['198.51.100.1', 443], v1: 'PROXY TCP4 192.0.2.10 198.51.100.1 51234 443\r\n', family: 4, expect: ['192.0.2.10', '198.51.100.1'] },
    { name: 'IPv6', client: ['2001:db8::10', 0], server: ['2001:db8:0:1::1', 65535], v1: 'PROXY TCP6 2001:db8::10 2001:db8:0:1::1 0 65535\r\n', family: 6, expect: ['2001:db8::10', '2001:db8:0:1::1'] },
    { name: 'IPv6 written in full and in upper case', client: ['2001:0DB8:0000:0000:0000:0000:0000:0010', 1], server: ['::1', 2], v1: 'PROXY TCP6 2001:db8::10 ::1 1 2\r\n', family: 6, expect: ['2001:db8::10', '::1'] },
    { name: 'IPv4-mapped on both sides (a dual-stack socket): sent as IPv4', client: ['::ffff:127.0.0.1', 40000], server: ['::ffff:127.0.0.2', 80], v1: 'PROXY TCP4 127.0.0.1 127.0.0.2 40000 80\r\n', family: 4, expect: ['127.0.0.1', '127.0.0.2'] },
    { name: 'IPv4-mapped client, IPv4 server', client: ['::FFFF:10.0.0.1', 40000], server: ['10.0.0.2', 80], v1: 'PROXY TCP4 10.0.0.1 10.0.0.2 40000 80\r\n', family: 4, expect: ['10.0.0.1', '10.0.0.2'] },
    { name: 'mixed: IPv4 client, IPv6 server (the client mapped)', client: ['192.0.2.10', 5000], server: ['2001:db8::1', 443], v1: 'PROXY TCP6 ::ffff:c000:20a 2001:db8::1 5000 443\r\n', family: 6, expect: ['::ffff:192.0.2.10', '2001:db8::1'] },
    { name: 'mixed: IPv6 client, IPv4 server (the server mapped)', client: ['2001:db8::7', 5000], server: ['198.51.100.1', 443], v1: 'PROXY TCP6 2001:db8::7 ::ffff:c633:6401 5000 443\r\n', family: 6, expect: ['2001:db8::7', '::ffff:198.51.100.1'] },
    { name: 'a link-local address with a zone id (the zone is not carried)', client: ['fe80::1%eth0', 1], server: ['fe80::2', 2], v1: 'PROXY TCP6 fe80::1 fe80::2 1 2\r\n', family: 6, expect: ['fe80::1', 'fe80::2'] },
    { name: 'RFC 5952: the first of two equal zero runs is compressed', client: ['2001:db8:0:0:1:0:0:1', 1], server: ['0:0:0:0:0:0:0:0', 2], v1: 'PROXY TCP6 2001:db8::1:0:0:1 :: 1 2\r\n', family: 6, expect: ['2001:db8::1:0:0:1', '::'] },
    { name: 'RFC 5952: a single zero group is not compressed', client: ['2001:db8:0:1:1:1:1:1', 1], server: ['1:0:0:2:0:0:0:3', 2], v1: 'PROXY TCP6 2001:db8:0:1:1:1:1:1 1:0:0:2::3 1 2\r\n', family: 6, expect: ['2001:db8:0:1:1:1:1:1', '1:0:0:2::3'] },
  ];
  for (const c of cases) {
    const client = { address: c.client[0], port: c.client[1] };
    const server = { address: c.server[0], port: c.server[1] };
    const addresses = (kind: ProxiedAddresses['kind']): ProxiedAddresses => ({
      kind,
      sourceAddress: c.expect[0],
      sourcePort: c.client[1],
      destinationAddress: c.expect[1],
      destinationPort: c.server[1],
    });
    it(`v1, ${c.name}`, () => {
      const line = proxyHeaderV1(client, server);
      assert.equal(line.toString('latin1'), c.v1);
      assertFraming(line, addresses(c.family === 4 ? 'TCP4' : 'TCP6'), 1);
    });
    it(`v2 STREAM and DGRAM, ${c.name}`, () => {
      const stream = proxyHeaderV2(client, server);
      assert.equal(stream.length, c.family === 4 ? 28 : 52);
      assert.deepEqual(stream.subarray(0, 12), SIGNATURE);
      assert.equal(stream[12], 0x21); // version 2, PROXY
      assert.equal(stream[13], c.family === 4 ? 0x11 : 0x21);
      assertFraming(stream, addresses(c.family === 4 ? 'TCP4' : 'TCP6'), 2);
      const dgram = proxyHeaderV2(client, server, 'DGRAM');
      assert.equal(dgram[13], c.family === 4 ? 0x12 : 0x22);
      assertFraming(dgram, addresses(c.family === 4 ? 'UDP4' : 'UDP6'), 2);
    });
  }

  it('an endpoint that cannot be written: v1 UNKNOWN, v2 LOCAL/UNSPEC, both read as LOCAL', () => {
    const good = { address: '10.0.0.1', port: 80 };
    const bad: { address: string; port: number }[] = [
      { address: '', port: 1 },
      { address: 'localhost', port: 1 },
      { address: '10.0.0', port: 1 },
      { address: '010.0.0.1', port: 1 },
      { address: '1::2::3', port: 1 },
      { address: '10.0.0.1', port: -1 },
      { address: '10.0.0.1', port: 65536 },
      { address: '10.0.0.1', port: 1.5 },
      { address: '10.0.0.1', port: Number.NaN },
      { address: undefined as unknown as string, port: 1 }, // socket.remoteAddress of a closed socket
    ];
    for (const b of bad) {
      for (const [client, server] of [[b, good], [good, b]] as const) {
        const line = proxyHeaderV1(client, server);
        assert.equal(line.toString('latin1'), 'PROXY UNKNOWN\r\n', JSON.stringify(b));
        assertFraming(line, { kind: 'LOCAL' }, 1);
        const binary = proxyHeaderV2(client, server);
        assert.equal(binary.toString('hex'), `${SIGNATURE.toString('hex')}20000000`, JSON.stringify(b));
        assertFraming(binary, { kind: 'LOCAL' }, 2);
      }
    }
  });
});

describe("the spec's own examples", () => {
  it('§2.1: the example line before an HTTP request', () => {
    const line = 'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n';
    const request = 'GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n';
    const got = header(parseProxyHeader(Buffer.from(line + request)));
    assert.deepEqual(got, {
      kind: 'header',
      version: 1,
      addresses: { kind: 'TCP4', sourceAddress: '192.168.0.1', sourcePort: 56324, destinationAddress: '192.168.0.11', destinationPort: 443 },
      length: line.length,
    });
    assert.equal(proxyHeaderV1({ address: '192.168.0.1', port: 56324 }, { address: '192.168.0.11', port: 443 }).toString(), line);
  });

  it('§2.1: the longest lines a receiver must support, and one byte more', () => {
    const f = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    const tcp4 = 'PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n';
    const tcp6 = `PROXY TCP6 ${f} ${f} 65535 65535\r\n`;
    const short = 'PROXY UNKNOWN\r\n';
    const worst = `PROXY UNKNOWN ${f} ${f} 65535 65535\r\n`;
    assert.deepEqual([tcp4.length, tcp6.length, short.length, worst.length], [56, 104, 15, 107]);
    assertFraming(Buffer.from(tcp4), { kind: 'TCP4', sourceAddress: '255.255.255.255', sourcePort: 65535, destinationAddress: '255.255.255.255', destinationPort: 65535 }, 1);
    assertFraming(Buffer.from(tcp6), { kind: 'TCP6', sourceAddress: f, sourcePort: 65535, destinationAddress: f, destinationPort: 65535 }, 1);
    assertFraming(Buffer.from(short), { kind: 'LOCAL' }, 1);
    assertFraming(Buffer.from(worst), { kind: 'LOCAL' }, 1);
    // 108 bytes: refused, both when the CRLF is there and as soon as 107 bytes came without one.
    const over = `PROXY UNKNOWN ${f} ${f} 65535 655350\r\n`;
    assertInvalid(over, /longer than 107 bytes/);
    assertInvalid(over.slice(0, 107), /longer than 107 bytes/); // the CR is byte 107: no room for the LF
    assertInvalid(`${worst.slice(0, 105)}55`, /no CRLF within the first 107 bytes/);
    assert.equal(parseProxyHeader(Buffer.from(`${worst.slice(0, 105)}5`)).kind, 'need-more');
  });

  it('§2.2: the struct of a TCP over IPv4 header, as the builder writes it', () => {
    const bytes = Buffer.from(`${SIGNATURE.toString('hex')}21 11 000c c0a80001 c0a8000b dc04 01bb`.replaceAll(' ', ''), 'hex');
    assert.deepEqual(proxyHeaderV2({ address: '192.168.0.1', port: 56324 }, { address: '192.168.0.11', port: 443 }), bytes);
    assertFraming(bytes, { kind: 'TCP4', sourceAddress: '192.168.0.1', sourcePort: 56324, destinationAddress: '192.168.0.11', destinationPort: 443 }, 2);
  });

  it('§2.2: the 13-byte signature plus version that tells v2 apart', () => {
    assert.equal(parseProxyHeader(Buffer.from('0d0a0d0a000d0a515549540a20', 'hex')).kind, 'need-more');
  });
});

describe('TLVs (§2.2) are walked and skipped', () => {
  const base = proxyHeaderV2({ address: '2001:db8::1', port: 1000 }, { address: '2001:db8::2', port: 443 });
  const expected: ProxiedAddresses = { kind: 'TCP6', sourceAddress: '2001:db8::1', sourcePort: 1000, destinationAddress: '2001:db8::2', destinationPort: 443 };

  it('registered, custom and empty TLVs: the length covers them, the addresses are read', () => {
    const full = withTlvs(base, [
      tlv(0x01, 'h2'), // PP2_TYPE_ALPN
      tlv(0x02, 'example.com'), // PP2_TYPE_AUTHORITY
      tlv(0x03, Buffer.from([1, 2, 3, 4])), // PP2_TYPE_CRC32C: not verified (module comment)
      tlv(0x04, Buffer.alloc(0)), // PP2_TYPE_NOOP, empty
      tlv(0x05, 'conn-42'), // PP2_TYPE_UNIQUE_ID
      tlv(0x20, Buffer.concat([Buffer.from([1, 0, 0, 0, 0]), tlv(0x21, 'TLSv1.3')])), // PP2_TYPE_SSL with a sub-TLV
      tlv(0xe0, Buffer.alloc(300, 7)), // PP2_TYPE_MIN_CUSTOM
    ]);
    assertFraming(full, expected, 2);
  });

  it('the largest header accepted: 16 + 2048 bytes; one more is refused as soon as the length is read', () => {
    const padded = withTlvs(base, [tlv(0x04, Buffer.alloc(2048 - 36 - 3))]);
    assert.equal(padded.length, PROXY_HEADER_MAX_BYTES);
    assertFraming(padded, expected, 2);
    const over = withTlvs(base, [tlv(0x04, Buffer.alloc(2048 - 36 - 2))]);
    assertInvalid(over.subarray(0, 16), /header of 2065 bytes \(Fulcrum accepts at most 2064\)/);
  });

  it('a TLV that runs past the header is refused as soon as its own header is read', () => {
    const bad = withTlvs(base, [tlv(0x01, 'h2'), tlv(0x02, 'example.com')]);
    bad.writeUInt16BE(bad.readUInt16BE(16 + 36 + 5 + 1) + 1, 16 + 36 + 5 + 1); // the second TLV one byte longer
    assertInvalid(bad, /TLV of type 0x02 runs 1 bytes past the end of the header/);
    assertInvalid(bad.subarray(0, 16 + 36 + 5 + 3), /TLV of type 0x02/);
    assert.equal(parseProxyHeader(bad.subarray(0, 16 + 36 + 5 + 2)).kind, 'need-more');
  });

  it('one or two bytes after the last TLV, too few for a TLV, are refused', () => {
    for (const stray of [1, 2]) {
      const bad = withTlvs(base, [tlv(0x01, 'h2'), Buffer.alloc(stray)]);
      assertInvalid(bad, /too few for a TLV header/);
      // Known from the length field alone, before those bytes arrive.
      assertInvalid(bad.subarray(0, 16 + 36 + 5), /too few for a TLV header/);
    }
  });
});

describe('LOCAL, UNKNOWN and the families used as LOCAL', () => {
  it('v1 UNKNOWN, short and with anything before the CRLF (§2.1: ignored)', () => {
    assertFraming(Buffer.from('PROXY UNKNOWN\r\n'), { kind: 'LOCAL' }, 1);
    assertFraming(Buffer.from('PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n'), { kind: 'LOCAL' }, 1);
    assertFraming(Buffer.from('PROXY UNKNOWN  whatever: not an address\t\x01\r\n', 'latin1'), { kind: 'LOCAL' }, 1);
  });

  it('v2 LOCAL: the address block is skipped, its family ignored (§2.2)', () => {
    assertFraming(v2(0x20, 0x00, Buffer.alloc(0)), { kind: 'LOCAL' }, 2);
    assertFraming(v2(0x20, 0x11, Buffer.alloc(12, 9)), { kind: 'LOCAL' }, 2); // "must not assume zero is presented"
    assertFraming(v2(0x20, 0xff, Buffer.alloc(5)), { kind: 'LOCAL' }, 2);
  });

  it('v2 PROXY with AF_UNSPEC or an UNSPEC transport: LOCAL', () => {
    assertFraming(v2(0x21, 0x00, Buffer.alloc(0)), { kind: 'LOCAL' }, 2);
    assertFraming(v2(0x21, 0x00, Buffer.alloc(40, 1)), { kind: 'LOCAL' }, 2);
    assertFraming(v2(0x21, 0x10, Buffer.alloc(12)), { kind: 'LOCAL' }, 2);
    assertFraming(v2(0x21, 0x02, Buffer.alloc(0)), { kind: 'LOCAL' }, 2);
  });

  it('v2 PROXY with AF_UNIX: LOCAL (the paths are not used), but the 216-byte block must fit', () => {
    const paths = Buffer.alloc(216);
    paths.write('/run/client.sock', 0);
    paths.write('/run/server.sock', 108);
    assertFraming(v2(0x21, 0x31, paths), { kind: 'LOCAL' }, 2);
    assertFraming(v2(0x21, 0x32, Buffer.concat([paths, tlv(0x04, '')])), { kind: 'LOCAL' }, 2);
    assertInvalid(v2(0x21, 0x31, paths.subarray(0, 215)), /length 215 is shorter than the 216-byte address block/);
  });
});

describe('malformed headers are invalid, with a reason', () => {
  const ipv4 = proxyHeaderV2({ address: '10.0.0.1', port: 1 }, { address: '10.0.0.2', port: 2 });

  it('not a PROXY header at all: refused on the first byte that shows it', () => {
    assert.equal(parseProxyHeader(Buffer.alloc(0)).kind, 'need-more');
    assertInvalid('G', /plain text starting with 'G'/);
    assertInvalid(Buffer.from([0x16, 0x03, 0x01]), /TLS handshake/);
    assertInvalid(Buffer.from([0x00]), /first byte 0x00/);
    assertInvalid('PRI * HTTP/2.0\r\n', /starts with "PRI \* " where "PROXY " was expected/);
    assertInvalid('proxy TCP4', /plain text starting with 'p'/);
    assertInvalid('PROXY\r\n', /ends before the protocol/);
    assertInvalid('PROXY\t', /where "PROXY " was expected/);
  });

  it('v2: a wrong signature byte, version, command, family or transport', () => {
    for (let i = 1; i < 12; i++) {
      const bad = Buffer.from(ipv4);
      bad[i] = bad[i]! ^ 0x40;
      assertInvalid(bad.subarray(0, i + 1), new RegExp(`byte ${i + 1} is 0x[0-9a-f]{2}, not 0x[0-9a-f]{2} of the v2 signature`));
    }
    const at = (index: number, value: number) => {
      const bad = Buffer.from(ipv4);
      bad[index] = value;
      return bad.subarray(0, index + 1); // refused on that byte, without the rest
    };
    assertInvalid(at(12, 0x11), /version 1 \(only 2 is defined\)/);
    assertInvalid(at(12, 0x31), /version 3/);
    assertInvalid(at(12, 0x01), /version 0/);
    assertInvalid(at(12, 0x22), /command 2 \(only LOCAL 0 and PROXY 1/);
    assertInvalid(at(12, 0x2f), /command 15/);
    assertInvalid(at(13, 0x41), /address family 4/);
    assertInvalid(at(13, 0xf1), /address family 15/);
    assertInvalid(at(13, 0x13), /transport protocol 3/);
  });

  it('v2: a length shorter than the address block, or a header that is not all there', () => {
    assertInvalid(v2(0x21, 0x11, Buffer.alloc(11)).subarray(0, 16), /length 11 is shorter than the 12-byte address block/);
    assertInvalid(v2(0x21, 0x21, Buffer.alloc(12)).subarray(0, 16), /length 12 is shorter than the 36-byte address block/);
    assertInvalid(v2(0x21, 0x22, Buffer.alloc(0)).subarray(0, 16), /length 0 is shorter/);
    // A declared length larger than what came is not malformed, only incomplete.
    assert.equal(parseProxyHeader(v2(0x21, 0x11, Buffer.alloc(12), 100)).kind, 'need-more');
  });

  const line = (fields: string) => `PROXY ${fields}\r\n`;
  const v1Cases: [string, string, RegExp][] = [
    ['two spaces after PROXY', 'PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n', /protocol "" is not TCP4, TCP6 or UNKNOWN/],
    ['an unknown protocol', line('TCP5 1.2.3.4 5.6.7.8 1 2'), /protocol "TCP5"/],
    ['a lower-case protocol', line('tcp4 1.2.3.4 5.6.7.8 1 2'), /protocol "tcp4"/],
    ['UNKNOWN run into the next word', line('UNKNOWNX'), /protocol "UNKNOWNX"/],
    ['TCP4 with nothing after it', line('TCP4'), /ends after the protocol/],
    ['a missing port', line('TCP4 1.2.3.4 5.6.7.8 1'), /ends after the source port/],
    ['two spaces between addresses', line('TCP4 1.2.3.4  5.6.7.8 1 2'), /empty destination address \(two spaces/],
    ['a space before the CRLF', line('TCP4 1.2.3.4 5.6.7.8 1 2 '), /more than four fields/],
    ['a fifth field', line('TCP4 1.2.3.4 5.6.7.8 1 2 3'), /more than four fields/],
    ['a tab for a space', line('TCP4 1.2.3.4\t5.6.7.8 1 2'), /source address "1.2.3.4\\t5.6.7.8"/],
    ['a port above 65535', line('TCP4 1.2.3.4 5.6.7.8 65536 2'), /source port "65536" is not a decimal number from 0 to 65535/],
    ['a port with a leading zero', line('TCP4 1.2.3.4 5.6.7.8 1 080'), /destination port "080"/],
    ['a port of two zeros', line('TCP4 1.2.3.4 5.6.7.8 00 1'), /source port "00"/],
    ['a negative port', line('TCP4 1.2.3.4 5.6.7.8 -1 2'), /source port "-1"/],
    ['a port with a letter', line('TCP4 1.2.3.4 5.6.7.8 1a 2'), /source port "1a"/],
    ['a six-digit port', line('TCP4 1.2.3.4 5.6.7.8 1 100000'), /destination port "100000"/],
    ['an octet above 255', line('TCP4 256.0.0.1 5.6.7.8 1 2'), /source address "256.0.0.1" is not an IPv4 address/],
    ['an octet with a leading zero', line('TCP4 1.2.3.4 5.6.7.08 1 2'), /destination address "5.6.7.08"/],
    ['three octets', line('TCP4 1.2.3 5.6.7.8 1 2'), /source address "1.2.3"/],
    ['five octets', line('TCP4 1.2.3.4.5 5.6.7.8 1 2'), /source address "1.2.3.4.5"/],
    ['two dots in a row', line('TCP4 1..3.4 5.6.7.8 1 2'), /source address "1..3.4"/],
    ['an IPv6 address under TCP4', line('TCP4 ::1 5.6.7.8 1 2'), /source address "::1" is not an IPv4 address/],
    ['an IPv4 address under TCP6', line('TCP6 ::1 5.6.7.8 1 2'), /destination address "5.6.7.8" is not an IPv6 address/],
    ['nine IPv6 groups', line('TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2'), /source address "1:2:3:4:5:6:7:8:9"/],
    ['seven IPv6 groups and no "::"', line('TCP6 1:2:3:4:5:6:7 ::1 1 2'), /source address "1:2:3:4:5:6:7"/],
    ['two "::"', line('TCP6 1::2::3 ::1 1 2'), /source address "1::2::3"/],
    ['":::"', line('TCP6 1:::2 ::1 1 2'), /source address "1:::2"/],
    ['a five-digit group', line('TCP6 12345::1 ::1 1 2'), /source address "12345::1"/],
    ['a non-hex digit', line('TCP6 g::1 ::1 1 2'), /source address "g::1"/],
    ['a zone id', line('TCP6 fe80::1%eth0 ::1 1 2'), /source address "fe80::1%eth0"/],
    ['a dotted IPv4 part that is not last', line('TCP6 ::1.2.3.4:1 ::1 1 2'), /source address "::1.2.3.4:1"/],
    ['a bracketed IPv6 address', line('TCP6 [::1] ::1 1 2'), /source address "\[::1\]"/],
    ['a line feed alone', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n', /a line feed without a carriage return before it at byte 31/],
    ['a carriage return alone', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX', /a carriage return not followed by a line feed at byte 31/],
    ['a line feed alone after UNKNOWN', 'PROXY UNKNOWN\n', /a line feed without a carriage return/],
    ['a non-ASCII byte', line('TCP4 1.2.3.4 5.6.7.\u00e9 1 2'), /destination address "5.6.7.é"/],
    ['107 bytes with no CRLF', `PROXY UNKNOWN ${'a'.repeat(93)}`, /no CRLF within the first 107 bytes/],
  ];
  for (const [name, bytes, reason] of v1Cases) {
    it(`v1: ${name}`, () => assertInvalid(bytes, reason));
  }

  it('v1: refused as soon as the bytes so far cannot start a valid line', () => {
    const early: [string, RegExp][] = [
      ['PRX', /starts with "PRX"/],
      ['PROXY  ', /protocol ""/],
      ['PROXY TCP7', /protocol "TCP7"/],
      ['PROXY UNKNOWNX', /protocol "UNKNOWNX"/],
      ['PROXY TCP4 1.2.3.4  ', /empty destination address/],
      ['PROXY TCP4 300', /source address "300"/],
      ['PROXY TCP4 1.2.3.4.', /source address "1.2.3.4."/],
      ['PROXY TCP4 01', /source address "01"/],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 01', /source port "01"/],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 65536', /source port "65536"/],
      ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ', /more than four fields/],
      ['PROXY TCP4 a', /source address "a"/],
      ['PROXY TCP6 1:::', /source address "1:::"/],
      ['PROXY TCP6 1::2::', /source address "1::2::"/],
      ['PROXY TCP6 12345', /source address "12345"/],
      ['PROXY TCP6 1.2', /source address "1.2"/],
      ['PROXY TCP6 ::ffff:1.2.3.4.5', /source address "::ffff:1.2.3.4.5"/],
    ];
    for (const [bytes, reason] of early) assertInvalid(bytes, reason);
    // ... while these may still become valid lines.
    for (const bytes of ['P', 'PROXY', 'PROXY ', 'PROXY T', 'PROXY TCP', 'PROXY U', 'PROXY UNKNOWN', 'PROXY UNKNOWN ', 'PROXY TCP4 1.2.3.', 'PROXY TCP6 ::ffff:1.2.', 'PROXY TCP6 2001:DB8::', 'PROXY TCP4 1.2.3.4 5.6.7.8 0', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r']) {
      assert.equal(parseProxyHeader(Buffer.from(bytes)).kind, 'need-more', bytes);
    }
  });
});

// -------------------------------------------------------------------------------------------------
// A seeded random-mutation loop

/** mulberry32: a small seeded PRNG, so a failure can be replayed from its seed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!,
  };
}
type Rng = ReturnType<typeof prng>;

function randomIPv4(rng: Rng): string {
  return [0, 1, 2, 3].map(() => (rng.next() < 0.2 ? rng.pick([0, 255]) : rng.int(256))).join('.');
}

/** An IPv6 address in one of its many valid spellings: full, short groups, upper case, "::", dotted tail. */
function randomIPv6(rng: Rng): string {
  const words = Array.from({ length: 8 }, () => (rng.next() < 0.4 ? 0 : rng.int(0x10000)));
  if (rng.next() < 0.2) words.splice(0, 6, 0, 0, 0, 0, 0, 0xffff); // IPv4-mapped
  const dotted = rng.next() < 0.25;
  const groups = words.map((w) => {
    const h = w.toString(16);
    const g = rng.next() < 0.3 ? h.padStart(4, '0') : h;
    return rng.next() < 0.3 ? g.toUpperCase() : g;
  });
  const tail = dotted ? [`${words[6]! >> 8}.${words[6]! & 0xff}.${words[7]! >> 8}.${words[7]! & 0xff}`] : [];
  const hexGroups = dotted ? groups.slice(0, 6) : groups;
  // Compress some run of zero groups (of length ≥ 1) with "::", or none.
  const runs: [number, number][] = [];
  for (let i = 0; i < hexGroups.length; i++) {
    if (words[i] !== 0) continue;
    let j = i;
    while (j < hexGroups.length && words[j] === 0) j++;
    runs.push([i, j]);
    i = j;
  }
  if (runs.length > 0 && rng.next() < 0.7) {
    const [i, j] = rng.pick(runs);
    const start = i + rng.int(j - i);
    const end = start + 1 + rng.int(j - start);
    const head = hexGroups.slice(0, start).join(':');
    const rest = [...hexGroups.slice(end), ...tail].join(':');
    return `${head}::${rest}`;
  }
  return [...hexGroups, ...tail].join(':');
}

/** The same address as the URL parser spells it: an oracle for "is this the same IPv6 address". */
function sameIPv6(a: string): string {
  return new URL(`http://[${a}]/`).hostname;
}

function randomPort(rng: Rng): number {
  return rng.next() < 0.2 ? rng.pick([0, 1, 65535]) : rng.int(65536);
}

/** A valid header of any kind, with what the reader must find in it. */
function randomHeader(rng: Rng): { bytes: Buffer; check: (found: ProxiedAddresses) => void } {
  const sp = randomPort(rng);
  const dp = randomPort(rng);
  switch (rng.int(6)) {
    case 0: {
      const [s, d] = [randomIPv4(rng), randomIPv4(rng)];
      return {
        bytes: Buffer.from(`PROXY TCP4 ${s} ${d} ${sp} ${dp}\r\n`),
        check: (f) => assert.deepEqual(f, { kind: 'TCP4', sourceAddress: s, sourcePort: sp, destinationAddress: d, destinationPort: dp }),
      };
    }
    case 1: {
      const [s, d] = [randomIPv6(rng), randomIPv6(rng)];
      return {
        bytes: Buffer.from(`PROXY TCP6 ${s} ${d} ${sp} ${dp}\r\n`),
        check: (f) => {
          assert.equal(f.kind, 'TCP6');
          assert.equal(sameIPv6(f.sourceAddress!), sameIPv6(s), `${s} read as ${f.sourceAddress}`);
          assert.equal(sameIPv6(f.destinationAddress!), sameIPv6(d), `${d} read as ${f.destinationAddress}`);
          assert.deepEqual([f.sourcePort, f.destinationPort], [sp, dp]);
        },
      };
    }
    case 2: {
      const rest = rng.next() < 0.5 ? '' : ` ${randomIPv6(rng)} ${randomIPv6(rng)} ${sp} ${dp}`;
      return { bytes: Buffer.from(`PROXY UNKNOWN${rest}\r\n`), check: (f) => assert.deepEqual(f, { kind: 'LOCAL' }) };
    }
    case 3:
    case 4: {
      const v6 = rng.next() < 0.5;
      const [s, d] = v6 ? [randomIPv6(rng), randomIPv6(rng)] : [randomIPv4(rng), randomIPv4(rng)];
      const transport = rng.pick(['STREAM', 'DGRAM'] as const);
      const tlvs = Array.from({ length: rng.int(4) }, () => tlv(rng.int(256), Buffer.alloc(rng.int(20), rng.int(256))));
      const built = proxyHeaderV2({ address: s, port: sp }, { address: d, port: dp }, transport);
      return {
        bytes: withTlvs(built, tlvs),
        check: (f) => {
          const mapped = built[13]! >> 4 === 1;
          assert.equal(f.kind, `${transport === 'STREAM' ? 'TCP' : 'UDP'}${mapped ? 4 : 6}`);
          if (mapped) assert.ok(isIPv4(f.sourceAddress!) && isIPv4(f.destinationAddress!));
          else assert.equal(sameIPv6(f.sourceAddress!), sameIPv6(s));
          assert.deepEqual([f.sourcePort, f.destinationPort], [sp, dp]);
        },
      };
    }
    default: {
      const block = Buffer.alloc(rng.pick([0, 12, 36, 216]), rng.int(256));
      const verCmd = rng.pick([0x20, 0x21]);
      const fam = verCmd === 0x20 ? rng.int(256) : rng.pick([0x00, 0x01, 0x02, 0x10, 0x20, 0x30, 0x31, 0x32].filter((x) => (x >> 4) !== 3 || block.length === 216));
      return { bytes: v2(verCmd, fam, block), check: (f) => assert.deepEqual(f, { kind: 'LOCAL' }) };
    }
  }
}

const SPECIAL = [0x20, 0x3a, 0x2e, 0x30, 0x0d, 0x0a, 0x00, 0xff, 0x50, 0x31, 0x39, 0x41];

function mutate(rng: Rng, input: Buffer): Buffer {
  let b = Buffer.from(input);
  for (let m = 1 + rng.int(3); m > 0; m--) {
    const at = rng.int(b.length + 1);
    switch (rng.int(7)) {
      case 0: // flip a bit
        if (at < b.length) b[at] = b[at]! ^ (1 << rng.int(8));
        break;
      case 1: // a byte that matters to the grammar
        if (at < b.length) b[at] = rng.pick(SPECIAL);
        break;
      case 2: // insert
        b = Buffer.concat([b.subarray(0, at), Buffer.from([rng.next() < 0.5 ? rng.pick(SPECIAL) : rng.int(256)]), b.subarray(at)]);
        break;
      case 3: // delete
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
        break;
      case 4: // truncate
        b = b.subarray(0, at);
        break;
      case 5: // a length byte of a v2 header or a TLV
        if (b.length > 15) b[rng.pick([14, 15, Math.min(b.length - 1, 16 + rng.int(60))])] = rng.int(256);
        break;
      default: // repeat a slice
        b = Buffer.concat([b.subarray(0, at), b.subarray(rng.int(at + 1), at), b.subarray(at)]);
    }
  }
  return b;
}

function checkAnswer(data: Buffer, result: ProxyHeaderResult, rng: Rng) {
  assert.ok(KINDS.has(result.kind), JSON.stringify(result));
  if (result.kind === 'invalid') {
    assert.ok(typeof result.reason === 'string' && result.reason.length > 0);
    // Refusal is final: more bytes never turn an invalid start into a header.
    const more = Buffer.concat([data, Buffer.from([rng.int(256), 0x0d, 0x0a])]);
    assert.equal(parseProxyHeader(more).kind, 'invalid', `${data.toString('hex')} was refused but ${more.toString('hex')} was not`);
  } else if (result.kind === 'header') {
    assert.ok(result.version === 1 || result.version === 2);
    assert.ok(result.length > 0 && result.length <= data.length && result.length <= PROXY_HEADER_MAX_BYTES);
    const a = result.addresses;
    if (a.kind !== 'LOCAL') {
      const ok = a.kind.endsWith('4') ? isIPv4 : isIPv6;
      assert.ok(ok(a.sourceAddress!) && ok(a.destinationAddress!), JSON.stringify(a));
      for (const port of [a.sourcePort!, a.destinationPort!]) assert.ok(Number.isInteger(port) && port >= 0 && port <= 65535);
    }
    // A header is self-delimiting: the same answer from its own bytes, need-more from any fewer.
    assert.deepEqual(parseProxyHeader(data.subarray(0, result.length)), result);
    assert.equal(parseProxyHeader(data.subarray(0, rng.int(result.length))).kind, 'need-more');
  }
}

describe('random headers and mutations of them (seeded)', () => {
  it('2,000 random valid headers: read back exactly, every prefix need-more', () => {
    const rng = prng(0x5eed);
    for (let i = 0; i < 2000; i++) {
      const { bytes, check } = randomHeader(rng);
      const got = header(parseProxyHeader(bytes));
      assert.equal(got.length, bytes.length, bytes.toString('latin1'));
      check(got.addresses);
      for (let n = 0; n < bytes.length; n++) {
        if (parseProxyHeader(bytes.subarray(0, n)).kind !== 'need-more') assert.fail(`prefix ${n} of ${JSON.stringify(bytes.toString('latin1'))}`);
      }
    }
  });

  it('20,000 mutations: never throws, always one of the three answers, consistent with more and fewer bytes', () => {
    const seed = 0xc0ffee;
    const rng = prng(seed);
    const counts: Record<string, number> = { 'need-more': 0, header: 0, invalid: 0 };
    for (let i = 0; i < 20_000; i++) {
      const { bytes } = randomHeader(rng);
      const data = mutate(rng, rng.next() < 0.3 ? Buffer.concat([bytes, Buffer.from('hello')]) : bytes);
      let result: ProxyHeaderResult;
      try {
        result = parseProxyHeader(data);
      } catch (err) {
        assert.fail(`seed ${seed}, iteration ${i}: threw ${String(err)} on ${data.toString('hex')}`);
      }
      checkAnswer(data, result, rng);
      counts[result.kind]!++;
    }
    // The loop reaches all three answers, so it exercises more than the first byte.
    assert.ok(counts['need-more']! > 500 && counts.header! > 500 && counts.invalid! > 5000, JSON.stringify(counts));
  });
});

// -------------------------------------------------------------------------------------------------
// Interoperability with HAProxy

const HAPROXY = '/usr/sbin/haproxy';

interface Seen {
  result: ProxyHeaderResult;
  bytes: Buffer;
}

/** A TCP server that reads a PROXY header off each connection, like a backend behind HAProxy. */
class HeaderSink {
  readonly seen: Seen[] = [];
  #waiters: (() => void)[] = [];
  #sockets = new Set<Socket>();
  readonly server: Server = createServer((socket) => {
    const entry: Seen = { result: { kind: 'need-more' }, bytes: Buffer.alloc(0) };
    this.seen.push(entry);
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      entry.bytes = Buffer.concat([entry.bytes, chunk]);
      entry.result = parseProxyHeader(entry.bytes);
      for (const wake of this.#waiters.splice(0)) wake();
    });
  });

  /** The first connection whose header and following bytes satisfy `match`, once they have come. */
  async waitFor(match: (header: Extract<ProxyHeaderResult, { kind: 'header' }>, rest: Buffer) => boolean): Promise<Seen> {
    for (;;) {
      const found = this.seen.find((s) => s.result.kind === 'header' && match(s.result, s.bytes.subarray(s.result.length)));
      if (found) return found;
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  async close() {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Connects, writes `bytes`, and keeps the socket open until the test ends it. */
async function send(host: string, port: number, bytes: Buffer | string): Promise<Socket> {
  const socket = connect({ host, port });
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(bytes);
  return socket;
}

async function ipv6Loopback(): Promise<boolean> {
  try {
    await freePort('::1');
    return true;
  } catch {
    return false;
  }
}

/**
 * HAProxy prints nothing when its listeners are up, so each port is tried until it accepts
 * (bounded); HAProxy exiting first fails at once with what it printed.
 */
async function waitUntilAccepting(child: ChildProcess, stderr: () => string, host: string, port: number) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`HAProxy exited (${child.exitCode ?? child.signalCode}): ${stderr()}`);
    const socket = connect({ host, port });
    const connected = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true));
      socket.once('error', () => resolve(false));
    });
    socket.destroy();
    if (connected) return;
    if (Date.now() > deadline) throw new Error(`HAProxy did not listen on ${host}:${port} within 10 s: ${stderr()}`);
    await delay(20);
  }
}

describe('interoperability with HAProxy', { timeout: 60_000 }, () => {
  let dir: ReturnType<typeof tempDir> | undefined;
  const sink = new HeaderSink();
  let haproxy: ChildProcess | undefined;
  let sinkPort = 0;
  let v6 = false;
  const ports = { v1: 0, v2: 0, v2tlv: 0, v1six: 0, v2six: 0, accept: 0 };

  /** Not a skip: without HAProxy these checks did not run, and each must show as a failure saying why. */
  const requireHaproxy = () => assert.ok(haproxy, `HAProxy is not installed (${HAPROXY}): the interoperability tests need it (apt-get install haproxy)`);

  before(async () => {
    if (!existsSync(HAPROXY)) return;
    dir = tempDir('fulcrum-haproxy-');
    await new Promise<void>((resolve) => sink.server.listen(0, '127.0.0.1', resolve));
    sinkPort = (sink.server.address() as AddressInfo).port;
    v6 = await ipv6Loopback();
    for (const key of Object.keys(ports) as (keyof typeof ports)[]) {
      if (key.endsWith('six') && !v6) continue;
      ports[key] = await freePort(key.endsWith('six') ? '::1' : '127.0.0.1');
    }
    const frontend = (name: string, bind: string, server: string, extra = '') => `
frontend fe_${name}
    bind ${bind}${extra}
    default_backend be_${name}
backend be_${name}
    server node 127.0.0.1:${sinkPort} ${server}
`;
    const config = [
      `# Written by test/unit/proxy-protocol.test.ts for one run.
global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
`,
      frontend('v1', `127.0.0.1:${ports.v1}`, 'send-proxy'),
      frontend('v2', `127.0.0.1:${ports.v2}`, 'send-proxy-v2'),
      // PP2_TYPE_CRC32C and PP2_TYPE_UNIQUE_ID TLVs after the addresses
      frontend('v2tlv', `127.0.0.1:${ports.v2tlv}\n    unique-id-format %{+X}o%ci:%cp`, 'send-proxy-v2 proxy-v2-options crc32c,unique-id'),
      v6 ? frontend('v1six', `[::1]:${ports.v1six}`, 'send-proxy') : '',
      v6 ? frontend('v2six', `[::1]:${ports.v2six}`, 'send-proxy-v2') : '',
      // HAProxy reads the header this module builds, then says what it read in a v2 header of its own.
      frontend('accept', `127.0.0.1:${ports.accept}`, 'send-proxy-v2', ' accept-proxy'),
    ].join('');
    const file = join(dir.path, 'haproxy.cfg');
    writeFileSync(file, config);
    let stderr = '';
    const child = spawn(HAPROXY, ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    haproxy = child;
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    for (const [key, port] of Object.entries(ports)) {
      if (port !== 0) await waitUntilAccepting(child, () => stderr, key.endsWith('six') ? '::1' : '127.0.0.1', port);
    }
  });

  after(async () => {
    if (haproxy && haproxy.exitCode === null && haproxy.signalCode === null) {
      const exited = once(haproxy, 'exit');
      haproxy.kill('SIGTERM');
      await exited;
    }
    if (sink.server.listening) await sink.close();
    dir?.remove();
  });

  /** Sends 'hello' through HAProxy's frontend and returns what the sink read and the client's port. */
  async function through(host: string, port: number, payload: Buffer | string = 'hello') {
    requireHaproxy();
    const client = await send(host, port, payload);
    const clientPort = client.localPort!;
    const seen = await sink.waitFor((h, rest) => h.addresses.sourcePort === clientPort && rest.toString() === 'hello');
    client.destroy();
    return { seen, header: header(seen.result), clientPort };
  }

  it('send-proxy (v1) over IPv4: the line is read, and is the line this module would write', async () => {
    const { seen, header: h, clientPort } = await through('127.0.0.1', ports.v1);
    const expected = { kind: 'TCP4', sourceAddress: '127.0.0.1', sourcePort: clientPort, destinationAddress: '127.0.0.1', destinationPort: ports.v1 };
    assert.deepEqual(h, { kind: 'header', version: 1, addresses: expected, length: h.length });
    assert.deepEqual(seen.bytes.subarray(0, h.length), proxyHeaderV1({ address: '127.0.0.1', port: clientPort }, { address: '127.0.0.1', port: ports.v1 }));
    assert.equal(seen.bytes.subarray(h.length).toString(), 'hello');
  });

  it('send-proxy-v2 over IPv4: the header is read, and is byte for byte the one this module would write', async () => {
    const { seen, header: h, clientPort } = await through('127.0.0.1', ports.v2);
    const expected = { kind: 'TCP4', sourceAddress: '127.0.0.1', sourcePort: clientPort, destinationAddress: '127.0.0.1', destinationPort: ports.v2 };
    assert.deepEqual(h, { kind: 'header', version: 2, addresses: expected, length: 28 });
    assert.deepEqual(seen.bytes.subarray(0, 28), proxyHeaderV2({ address: '127.0.0.1', port: clientPort }, { address: '127.0.0.1', port: ports.v2 }));
  });

  it('send-proxy-v2 with CRC32C and UNIQUE_ID TLVs: skipped, the client data after them untouched', async () => {
    const { seen, header: h, clientPort } = await through('127.0.0.1', ports.v2tlv);
    assert.deepEqual(h.addresses, { kind: 'TCP4', sourceAddress: '127.0.0.1', sourcePort: clientPort, destinationAddress: '127.0.0.1', destinationPort: ports.v2tlv });
    assert.ok(h.length > 28, `HAProxy sent TLVs (header of ${h.length} bytes)`);
    assert.deepEqual([seen.bytes[28], seen.bytes.readUInt16BE(29)], [0x03, 4]); // PP2_TYPE_CRC32C first
    assert.equal(seen.bytes.subarray(h.length).toString(), 'hello');
  });

  it('send-proxy and send-proxy-v2 over IPv6: TCP6 with the client address ::1', async (t) => {
    requireHaproxy();
    if (!v6) return t.skip('no IPv6 loopback (::1) on this machine');
    for (const [port, version] of [[ports.v1six, 1], [ports.v2six, 2]] as const) {
      const { seen, header: h, clientPort } = await through('::1', port);
      assert.deepEqual(h, {
        kind: 'header',
        version,
        addresses: { kind: 'TCP6', sourceAddress: '::1', sourcePort: clientPort, destinationAddress: '::1', destinationPort: port },
        length: h.length,
      });
      const build = version === 1 ? proxyHeaderV1 : proxyHeaderV2;
      assert.deepEqual(seen.bytes.subarray(0, h.length), build({ address: '::1', port: clientPort }, { address: '::1', port }));
    }
  });

  it("accept-proxy: HAProxy reads this module's v1 and v2 headers (IPv4, IPv6, mixed) and passes the same addresses on", async () => {
    requireHaproxy();
    const cases: { build: typeof proxyHeaderV1; client: [string, number]; server: [string, number]; expect: ProxiedAddresses }[] = [
      { build: proxyHeaderV1, client: ['192.0.2.10', 4201], server: ['198.51.100.1', 443], expect: { kind: 'TCP4', sourceAddress: '192.0.2.10', sourcePort: 4201, destinationAddress: '198.51.100.1', destinationPort: 443 } },
      { build: proxyHeaderV2, client: ['192.0.2.11', 4202], server: ['198.51.100.1', 443], expect: { kind: 'TCP4', sourceAddress: '192.0.2.11', sourcePort: 4202, destinationAddress: '198.51.100.1', destinationPort: 443 } },
      { build: proxyHeaderV1, client: ['2001:db8::10', 4203], server: ['2001:db8::1', 8443], expect: { kind: 'TCP6', sourceAddress: '2001:db8::10', sourcePort: 4203, destinationAddress: '2001:db8::1', destinationPort: 8443 } },
      { build: proxyHeaderV2, client: ['2001:db8::11', 4204], server: ['2001:db8::1', 8443], expect: { kind: 'TCP6', sourceAddress: '2001:db8::11', sourcePort: 4204, destinationAddress: '2001:db8::1', destinationPort: 8443 } },
      { build: proxyHeaderV1, client: ['192.0.2.12', 4205], server: ['2001:db8::1', 443], expect: { kind: 'TCP6', sourceAddress: '::ffff:192.0.2.12', sourcePort: 4205, destinationAddress: '2001:db8::1', destinationPort: 443 } },
      { build: proxyHeaderV2, client: ['::ffff:192.0.2.13', 4206], server: ['198.51.100.1', 443], expect: { kind: 'TCP4', sourceAddress: '192.0.2.13', sourcePort: 4206, destinationAddress: '198.51.100.1', destinationPort: 443 } },
    ];
    for (const c of cases) {
      const bytes = c.build({ address: c.client[0], port: c.client[1] }, { address: c.server[0], port: c.server[1] });
      const client = await send('127.0.0.1', ports.accept, Buffer.concat([bytes, Buffer.from('hello')]));
      const seen = await sink.waitFor((h, rest) => h.addresses.sourcePort === c.client[1] && rest.toString() === 'hello');
      client.destroy();
      assert.deepEqual(header(seen.result).addresses, c.expect, bytes.toString('latin1'));
    }
  });

  it('accept-proxy: v1 UNKNOWN and v2 LOCAL make HAProxy use the connection’s own addresses', async () => {
    for (const build of [proxyHeaderV1, proxyHeaderV2]) {
      const fallback = build({ address: '', port: 0 }, { address: '127.0.0.1', port: ports.accept });
      const { header: h, clientPort } = await through('127.0.0.1', ports.accept, Buffer.concat([fallback, Buffer.from('hello')]));
      assert.deepEqual(h.addresses, { kind: 'TCP4', sourceAddress: '127.0.0.1', sourcePort: clientPort, destinationAddress: '127.0.0.1', destinationPort: ports.accept });
    }
  });
});
