/**
 * The ClientHello reader, fed real hellos captured from Node's own TLS client (and edits of them):
 * SNI and ALPN, every split point, hellos spread over records, plain text, broken length fields,
 * the size bound, and a seeded random-mutation loop.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { connect, type ConnectionOptions } from 'node:tls';
import { CLIENT_HELLO_MAX_BYTES, type HelloResult, parseClientHello } from '../../src/dataplane/tls/client-hello.ts';

/**
 * The first TLS record a real `tls.connect` sends, read by a plain TCP server on port 0. The record
 * is framed here from its own header, not with the parser under test; both sockets are then closed.
 */
async function captureHello(options: Omit<ConnectionOptions, 'host' | 'port'>): Promise<Buffer> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const captured = new Promise<Buffer>((resolve, reject) => {
    server.once('connection', (socket) => {
      let bytes = Buffer.alloc(0);
      socket.on('error', reject);
      socket.on('data', (chunk: Buffer) => {
        bytes = Buffer.concat([bytes, chunk]);
        if (bytes.length >= 5 && bytes.length >= 5 + bytes.readUInt16BE(3)) {
          socket.destroy();
          resolve(bytes.subarray(0, 5 + bytes.readUInt16BE(3)));
        }
      });
    });
  });
  const client = connect({ host: '127.0.0.1', port, ...options });
  const clientClosed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  client.on('error', () => {}); // the server hangs up mid-handshake on purpose
  try {
    return await captured;
  } finally {
    client.destroy();
    await clientClosed;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** Offsets of a single-record hello's length fields, found by walking it here independently. */
function layout(hello: Buffer) {
  const session = 5 + 4 + 2 + 32;
  const suites = session + 1 + hello[session]!;
  const compression = suites + 2 + hello.readUInt16BE(suites);
  const extensions = compression + 1 + hello[compression]!;
  const byType = new Map<number, number>();
  for (let p = extensions + 2; p < hello.length; p += 4 + hello.readUInt16BE(p + 2)) byType.set(hello.readUInt16BE(p), p);
  return { session, suites, compression, extensions, byType };
}

/** TLS records of type 22 carrying `handshake`, cut at the given handshake offsets. */
function reframe(handshake: Buffer, cuts: number[], version = 0x0301): Buffer {
  const bounds = [0, ...cuts, handshake.length];
  const records: Buffer[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) records.push(record(22, handshake.subarray(bounds[i], bounds[i + 1]), version));
  return Buffer.concat(records);
}

function record(type: number, fragment: Buffer, version = 0x0301): Buffer {
  const header = Buffer.alloc(5);
  header[0] = type;
  header.writeUInt16BE(version, 1);
  header.writeUInt16BE(fragment.length, 3);
  return Buffer.concat([header, fragment]);
}

/** The captured hello with its extensions block replaced (null: no block at all), lengths fixed up. */
function withExtensions(hello: Buffer, extensions: Buffer | null): Buffer {
  return withTail(hello, extensions ? Buffer.concat([u16(extensions.length), extensions]) : Buffer.alloc(0));
}

/** The captured hello with everything after its compression methods replaced by `tail`. */
function withTail(hello: Buffer, tail: Buffer): Buffer {
  const { extensions: at } = layout(hello);
  const body = Buffer.concat([hello.subarray(9, at), tail]);
  const header = Buffer.from([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]);
  return record(22, Buffer.concat([header, body]), 0x0303);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function extension(type: number, data: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(data.length), data]);
}

function serverNameExt(...entries: [number, Buffer][]): Buffer {
  const list = Buffer.concat(entries.map(([type, name]) => Buffer.concat([Buffer.from([type]), u16(name.length), name])));
  return extension(0, Buffer.concat([u16(list.length), list]));
}

function notTls(result: HelloResult, pattern: RegExp): void {
  assert.equal(result.kind, 'not-tls', JSON.stringify(result));
  if (result.kind === 'not-tls') assert.match(result.reason, pattern);
}

/** mulberry32: a small seeded PRNG so a failing fuzz case can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KINDS = new Set(['need-more', 'hello', 'not-tls']);

describe('parseClientHello', () => {
  let sni: Buffer; // servername api.example.com, ALPN h2 and http/1.1
  let bare: Buffer; // to an IP without servername: Node sends no SNI, and no ALPN was asked for

  before(async () => {
    sni = await captureHello({ servername: 'api.example.com', ALPNProtocols: ['h2', 'http/1.1'] });
    bare = await captureHello({});
  });

  it('reads SNI and ALPN from a real hello, with the record length', () => {
    assert.deepEqual(parseClientHello(sni), { kind: 'hello', serverName: 'api.example.com', alpn: ['h2', 'http/1.1'], length: sni.length });
  });

  it('gives serverName null and no ALPN when the client sent neither', () => {
    assert.ok(layout(sni).byType.has(0) && !layout(bare).byType.has(0), 'the capture really has no server_name');
    assert.deepEqual(parseClientHello(bare), { kind: 'hello', serverName: null, alpn: [], length: bare.length });
  });

  it('answers need-more for every strict prefix, and hello for the whole', () => {
    for (let i = 0; i < sni.length; i++) assert.deepEqual(parseClientHello(sni.subarray(0, i)), { kind: 'need-more' }, `prefix of ${i} bytes`);
    assert.equal(parseClientHello(sni).kind, 'hello');
  });

  it('does not count bytes after the hello (early data) in its length', () => {
    const after = Buffer.concat([sni, record(20, Buffer.from([1]), 0x0303), record(23, Buffer.alloc(40), 0x0303)]);
    assert.deepEqual(parseClientHello(after), parseClientHello(sni));
  });

  it('reassembles a hello split over two records, at every prefix of the pair', () => {
    const handshake = sni.subarray(5);
    for (const cut of [1, 2, 3, 4, 5, 100, handshake.length - 1]) {
      const two = reframe(handshake, [cut]);
      assert.equal(two.length, sni.length + 5);
      assert.deepEqual(parseClientHello(two), { kind: 'hello', serverName: 'api.example.com', alpn: ['h2', 'http/1.1'], length: two.length }, `cut at ${cut}`);
    }
    const two = reframe(handshake, [Math.floor(handshake.length / 2)], 0x0303);
    for (let i = 0; i < two.length; i++) assert.equal(parseClientHello(two.subarray(0, i)).kind, 'need-more', `prefix of ${i} bytes`);
  });

  it('reassembles a hello sent one byte per record (the handshake header itself split)', () => {
    const handshake = sni.subarray(5);
    const tiny = reframe(handshake, Array.from({ length: handshake.length - 1 }, (_, i) => i + 1));
    assert.deepEqual(parseClientHello(tiny), { kind: 'hello', serverName: 'api.example.com', alpn: ['h2', 'http/1.1'], length: tiny.length });
  });

  it('refuses another record type before the hello is complete, and bad record headers', () => {
    const handshake = sni.subarray(5);
    const first = reframe(handshake.subarray(0, 50), []);
    notTls(parseClientHello(Buffer.concat([first, record(20, Buffer.from([1]))])), /type 20 arrived before the ClientHello was complete/);
    notTls(parseClientHello(reframe(handshake, [], 0x0300)), /record version 0x0300/);
    notTls(parseClientHello(reframe(handshake, [], 0x0305)), /record version/);
    notTls(parseClientHello(Buffer.from([22, 3, 1, 0, 0])), /empty handshake record/);
    notTls(parseClientHello(Buffer.from([22, 3, 1, 0x40, 0x01])), /more than 2\^14/);
    notTls(parseClientHello(Buffer.from([22, 3, 1, 0, 10, 2])), /type 2 where a ClientHello/);
  });

  it('refuses plain HTTP, SSLv2 and other records from the first byte', () => {
    notTls(parseClientHello(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n')), /plain text starting with 'G'/);
    notTls(parseClientHello(Buffer.from('G')), /plain HTTP/);
    notTls(parseClientHello(Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01])), /SSLv2/);
    notTls(parseClientHello(Buffer.from([21, 3, 3, 0, 2, 2, 40])), /alert record/);
    notTls(parseClientHello(Buffer.from([0x00, 0x01])), /first byte 0x00/);
  });

  it('finds each broken length field, never throwing', () => {
    const at = layout(sni);
    const edit = (offset: number, value: number) => {
      const copy = Buffer.from(sni);
      copy[offset] = value;
      return parseClientHello(copy);
    };
    const edit16 = (offset: number, delta: number) => {
      const copy = Buffer.from(sni);
      copy.writeUInt16BE(copy.readUInt16BE(offset) + delta, offset);
      return parseClientHello(copy);
    };
    notTls(edit(at.session, 33), /legacy_session_id of 33 bytes/);
    notTls(edit16(at.suites, 1), /cipher_suites length \d+ \(must be even/);
    notTls(edit16(at.suites, 0x4000), /cipher_suites run past/);
    notTls(edit(at.compression, 0), /no legacy_compression_methods/);
    notTls(edit16(at.extensions, 1), /extensions run past the end/);
    notTls(edit16(at.extensions, -1), /1 bytes after the extensions/);
    const sniAt = at.byType.get(0)!;
    notTls(edit16(sniAt + 2, 0x1000), /extension 0 runs past/);
    notTls(edit16(sniAt + 4, 1), /server_name list length/);
    notTls(edit16(sniAt + 7, 1), /server_name entry runs past/);
    const alpnAt = at.byType.get(16)!;
    notTls(edit16(alpnAt + 4, -1), /ALPN list length/);
    notTls(edit(alpnAt + 6, 0), /empty ALPN protocol name/);
    notTls(edit(alpnAt + 6, 9), /ALPN protocol name runs past/);
    notTls(edit(9, 2), /legacy_version 0x0203/);
    // The handshake length one longer: the hello continues in a record not yet sent.
    assert.equal(edit(8, sni[8]! + 1).kind, 'need-more');
    // One shorter: the extensions block now runs past the hello.
    notTls(edit(8, sni[8]! - 1), /runs? past/);
    // Every byte of the hello set to 0x00, 0xff and its complement: one of the three answers.
    for (let i = 0; i < sni.length; i++) {
      for (const value of [0x00, 0xff, sni[i]! ^ 0xff]) assert.ok(KINDS.has(edit(i, value).kind), `byte ${i} = ${value}`);
    }
  });

  it('accepts a hello with no extensions at all, and one with an empty extensions block', () => {
    for (const block of [null, Buffer.alloc(0)]) {
      const hello = withExtensions(sni, block);
      assert.deepEqual(parseClientHello(hello), { kind: 'hello', serverName: null, alpn: [], length: hello.length });
    }
    notTls(parseClientHello(withTail(sni, Buffer.from([0]))), /extensions length is cut short/);
  });

  it('lower-cases the server name and holds it to hostname shape', () => {
    const name = (replacement: string) => {
      const copy = Buffer.from(sni);
      const at = copy.indexOf('api.example.com');
      assert.equal(Buffer.byteLength(replacement, 'latin1'), 15);
      copy.write(replacement, at, 'latin1');
      return parseClientHello(copy);
    };
    assert.equal((name('API.Example.COM') as { serverName: string }).serverName, 'api.example.com');
    assert.equal((name('my_svc.internal') as { serverName: string }).serverName, 'my_svc.internal');
    notTls(name('api.example.co.'), /ends with a dot/);
    notTls(name('api..xample.com'), /empty label/);
    notTls(name('.pi.example.com'), /empty label/);
    notTls(name('api.exampl\xe9.com'), /byte 0xe9 is not a hostname character/);
    notTls(name('api.example com'), /byte 0x20/);
    notTls(name('api.exa\0ple.com'), /byte 0x00/);
  });

  it('refuses ambiguous server names; skips unknown name types', () => {
    const host = Buffer.from('a.example');
    const ext = (...parts: Buffer[]) => parseClientHello(withExtensions(sni, Buffer.concat(parts)));
    assert.equal((ext(serverNameExt([0, host])) as { serverName: string }).serverName, 'a.example');
    notTls(ext(serverNameExt([0, host]), serverNameExt([0, Buffer.from('b.example')])), /two server_name extensions/);
    notTls(ext(serverNameExt([0, host], [0, Buffer.from('b.example')])), /two host_name entries/);
    assert.equal((ext(serverNameExt([7, Buffer.from('x')], [0, host])) as { serverName: string }).serverName, 'a.example');
    assert.equal((ext(serverNameExt([7, Buffer.from('x')])) as { serverName: null }).serverName, null);
    notTls(ext(extension(0, Buffer.alloc(0))), /server_name extension too short/);
    notTls(ext(serverNameExt([0, Buffer.alloc(0)])), /empty host_name/);
    notTls(ext(serverNameExt([0, Buffer.from(`${'a'.repeat(64)}.example`)])), /label longer than 63/);
    notTls(ext(serverNameExt([0, Buffer.from(`${'a.'.repeat(127)}ab`)])), /host_name of 256 bytes/);
    const alpn = extension(16, Buffer.from([0, 3, 2, 0x68, 0x32]));
    assert.deepEqual((ext(alpn) as { alpn: string[] }).alpn, ['h2']);
    notTls(ext(alpn, alpn), /two ALPN extensions/);
    notTls(ext(extension(16, Buffer.from([0, 0]))), /ALPN list length/);
  });

  it('refuses a hello larger than the bound, early when its length says so', () => {
    assert.equal(parseClientHello(sni, sni.length).kind, 'hello');
    notTls(parseClientHello(sni, sni.length - 1), /^ClientHello too large$/);
    // A handshake header claiming 16 MB: refused from its first record, without waiting.
    notTls(parseClientHello(Buffer.from([22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff])), /^ClientHello too large$/);
    // Claims 65,000 bytes (fits the bound in full records) but arrives in 500-byte records,
    // whose headers take it past the bound.
    const header = Buffer.from([1, 0, 0xfd, 0xe8]);
    const stream = reframe(Buffer.concat([header, Buffer.alloc(65_000)]), Array.from({ length: 130 }, (_, i) => (i + 1) * 500));
    assert.ok(stream.length > CLIENT_HELLO_MAX_BYTES);
    assert.equal(parseClientHello(stream.subarray(0, 60_000)).kind, 'need-more');
    notTls(parseClientHello(stream), /^ClientHello too large$/);
    notTls(parseClientHello(stream.subarray(0, CLIENT_HELLO_MAX_BYTES + 1)), /^ClientHello too large$/);
  });

  it('never throws on 20,000 random mutations (seeded)', () => {
    const random = prng(0x5eed);
    const int = (n: number) => Math.floor(random() * n);
    const two = reframe(sni.subarray(5), [37]);
    for (let round = 0; round < 20_000; round++) {
      const source = round % 3 === 2 ? two : round % 3 === 1 ? bare : sni;
      let input = Buffer.from(source);
      for (let edits = 1 + int(4); edits > 0; edits--) {
        const choice = int(10);
        if (choice < 6) input[int(input.length)] = int(256);
        else if (choice < 8) input[int(input.length)]! ^= 1 << int(8);
        else if (choice < 9) input = input.subarray(0, int(input.length + 1));
        else input = Buffer.concat([input, Buffer.from([int(256), int(256)])]);
        if (input.length === 0) break;
      }
      const maxBytes = round % 7 === 0 ? int(2 * source.length) : undefined;
      let result: HelloResult;
      try {
        result = parseClientHello(input, maxBytes);
      } catch (error) {
        assert.fail(`round ${round} threw on ${input.toString('hex')}: ${String(error)}`);
      }
      assert.ok(KINDS.has(result.kind), `round ${round}: ${JSON.stringify(result)}`);
      if (result.kind === 'hello') assert.ok(result.length > 0 && result.length <= input.length);
      if (result.kind === 'not-tls') assert.ok(result.reason.length > 0);
    }
  });
});
