/**
 * Reads the server name (SNI) and the ALPN list from the ClientHello a TLS client sends first,
 * without terminating TLS: a TLS_PASSTHROUGH listener picks a pool by name from this, then
 * forwards every byte untouched, so the backend's TLS stack stays the judge of everything else.
 *
 * Called once per new connection, and again with all bytes so far each time more arrive, until it
 * returns something other than `need-more`. Each call is one pass over the record headers and one
 * over the hello. A hello in one record (nearly every client) is read in place; one spread over
 * several records is copied once, and only its handshake bytes. No regular expressions: hostname
 * characters are checked against a 256-entry table.
 *
 * Strictness: every length field is bounds-checked and anything that does not parse is `not-tls`,
 * because routing on a name the backend would read differently (a second host_name, a second
 * server_name extension) would let a client reach a pool it did not name.
 */

export type HelloResult =
  /** Not enough bytes yet to decide: read more and call again with everything so far. */
  | { kind: 'need-more' }
  /** `length`: bytes of the TLS records that carried the ClientHello. */
  | { kind: 'hello'; serverName: string | null; alpn: string[]; length: number }
  /** Not a TLS ClientHello (plain HTTP, SSLv2, garbage, too big, malformed), with a reason an operator can read. */
  | { kind: 'not-tls'; reason: string };

type NotTls = Extract<HelloResult, { kind: 'not-tls' }>;

/**
 * The default bound on bytes read before the ClientHello must be complete: 64 KiB.
 * Real hellos are 0.2–2 KB (a post-quantum key share adds ~1.2 KB, PSK tickets and ECH a few KB
 * more), so one full record (2^14 + 5 bytes) nearly always suffices; but RFC 8446 §5.1 lets a
 * handshake message span records and its length field allows 2^24 bytes. 64 KiB leaves room for
 * unusual clients while bounding what a listener buffers per connection before deciding anything
 * (Go's crypto/tls puts the same 64 KiB ceiling on any handshake message).
 */
export const CLIENT_HELLO_MAX_BYTES = 65_536;

const RECORD_HEADER = 5; // RFC 8446 §5.1: type(1) legacy_record_version(2) length(2)
const MAX_FRAGMENT = 16_384; // RFC 8446 §5.1: a TLSPlaintext fragment is at most 2^14 bytes
const HANDSHAKE_HEADER = 4; // RFC 8446 §4: msg_type(1) length(3)
const CONTENT_HANDSHAKE = 22; // RFC 8446 §5.1 ContentType.handshake
const CLIENT_HELLO = 1; // RFC 8446 §4 HandshakeType.client_hello
const EXT_SERVER_NAME = 0; // RFC 6066 §3
const EXT_ALPN = 16; // RFC 7301 §3.1
const NAME_TYPE_HOST = 0; // RFC 6066 §3 NameType.host_name
const MAX_HOST_NAME = 253; // RFC 1035 §2.3.4: 255 octets on the wire, 253 characters as text
const MAX_LABEL = 63; // RFC 1035 §2.3.4

const NEED_MORE: HelloResult = Object.freeze({ kind: 'need-more' });
const TOO_LARGE: HelloResult = Object.freeze({ kind: 'not-tls', reason: 'ClientHello too large' });

/** Bytes allowed in a host_name label: letters, digits, '-', and '_' (seen in real internal names). */
const HOST_CHAR = new Uint8Array(256);
for (let c = 0x30; c <= 0x39; c++) HOST_CHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) HOST_CHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) HOST_CHAR[c] = 1;
HOST_CHAR[0x2d] = 1;
HOST_CHAR[0x5f] = 1;

const RECORD_NAMES: Record<number, string> = { 20: 'change_cipher_spec', 21: 'alert', 23: 'application_data', 24: 'heartbeat' };

function notTls(reason: string): NotTls {
  return { kind: 'not-tls', reason };
}

function malformed(what: string): NotTls {
  return { kind: 'not-tls', reason: `malformed ClientHello: ${what}` };
}

function hex(n: number, digits: number): string {
  return `0x${n.toString(16).padStart(digits, '0')}`;
}

function u16(b: Buffer, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

/** Why the first byte of a connection is not the start of a TLS handshake record. */
function describeStart(data: Buffer): string {
  const first = data[0]!;
  // An SSLv2-format hello starts with a 2-byte length whose high bit is set (RFC 5246 App. E.2).
  if (first & 0x80) return `an SSLv2-format hello (first byte ${hex(first, 2)}), which TLS passthrough does not accept`;
  const known = RECORD_NAMES[first];
  if (known) return `a TLS ${known} record where a ClientHello was expected`;
  if (first >= 0x41 && first <= 0x5a) return `not TLS: the client sent plain text starting with '${String.fromCharCode(first)}' (plain HTTP on a TLS port?)`;
  return `not TLS: first byte ${hex(first, 2)} is not a TLS handshake record`;
}

/**
 * Reads a ClientHello from the start of a connection's bytes. Pure; never throws.
 * `maxBytes` bounds the bytes read before the hello must be complete (default
 * {@link CLIENT_HELLO_MAX_BYTES}); bytes after the hello's last record (early data) are ignored.
 */
export function parseClientHello(data: Buffer, maxBytes: number = CLIENT_HELLO_MAX_BYTES): HelloResult {
  const limit = maxBytes >= 0 ? maxBytes : CLIENT_HELLO_MAX_BYTES; // NaN or negative: the default
  const available = data.length;
  if (available === 0) return NEED_MORE;
  if (data[0] !== CONTENT_HANDSHAKE) return notTls(describeStart(data));

  // Handshake fragments as [start, end) pairs into `data`, one per record, in order.
  const fragments: number[] = [];
  let collected = 0; // handshake bytes in `fragments`
  let headerHave = 0; // handshake header bytes seen so far (it may itself span records)
  let msgLength = 0; // the handshake header's 24-bit length, once headerHave reaches 4
  let offset = 0;
  for (;;) {
    // RFC 8446 §5.1: records of the handshake. Check each header field as soon as its byte is here,
    // so garbage is refused without waiting for a whole header.
    const type = data[offset];
    if (type === undefined) return offset + RECORD_HEADER > limit ? TOO_LARGE : NEED_MORE;
    // RFC 8446 §5.1: handshake messages MUST NOT be interleaved with other record types.
    if (type !== CONTENT_HANDSHAKE) return notTls(`a TLS record of type ${type} arrived before the ClientHello was complete`);
    const major = data[offset + 1];
    const minor = data[offset + 2];
    // legacy_record_version: 0x0301 (TLS 1.3 clients' first hello, RFC 8446 §5.1) up to 0x0304.
    if ((major !== undefined && major !== 3) || (minor !== undefined && (minor < 1 || minor > 4))) {
      return notTls(`TLS record version ${hex(major ?? 0, 2)}${minor === undefined ? '??' : hex(minor, 2).slice(2)} is not TLS 1.0–1.3`);
    }
    if (offset + RECORD_HEADER > available) return offset + RECORD_HEADER > limit ? TOO_LARGE : NEED_MORE;
    const recordLength = u16(data, offset + 3);
    // RFC 8446 §5.1: zero-length handshake fragments MUST NOT be sent; a fragment is at most 2^14.
    if (recordLength === 0) return malformed('an empty handshake record');
    if (recordLength > MAX_FRAGMENT) return malformed(`a record of ${recordLength} bytes (more than 2^14)`);
    const start = offset + RECORD_HEADER;
    const end = start + recordLength;
    if (end > limit) return TOO_LARGE;

    // RFC 8446 §4: the handshake header, read as soon as its bytes are here (even mid-record) so a
    // wrong message type or an impossible length is refused at once.
    for (let i = start; headerHave < HANDSHAKE_HEADER && i < end && i < available; i++, headerHave++) {
      const byte = data[i]!;
      if (headerHave === 0) {
        if (byte !== CLIENT_HELLO) return notTls(`handshake message type ${byte} where a ClientHello (1) was expected`);
      } else {
        msgLength = (msgLength << 8) | byte;
      }
      if (headerHave === HANDSHAKE_HEADER - 1) {
        // The fewest bytes the whole hello can take, in full-size records: refuse now, not after buffering.
        const total = HANDSHAKE_HEADER + msgLength;
        if (total + RECORD_HEADER * Math.ceil(total / MAX_FRAGMENT) > limit) return TOO_LARGE;
      }
    }
    if (end > available) return NEED_MORE;

    fragments.push(start, end);
    collected += recordLength;
    offset = end;
    if (headerHave === HANDSHAKE_HEADER && collected >= HANDSHAKE_HEADER + msgLength) break;
  }

  const helloEnd = HANDSHAKE_HEADER + msgLength;
  let hello: Buffer;
  if (fragments.length === 2) {
    hello = data.subarray(fragments[0]!, fragments[0]! + helloEnd);
  } else {
    // RFC 8446 §5.1: a handshake message may be split over records; join the fragments once.
    const parts: Buffer[] = [];
    for (let i = 0; i < fragments.length; i += 2) parts.push(data.subarray(fragments[i]!, fragments[i + 1]!));
    hello = Buffer.concat(parts, helloEnd);
  }
  // Handshake bytes after the hello in its last record are left to the backend to refuse: they
  // are forwarded untouched, and the hello itself is complete.
  return readHello(hello, helloEnd, offset);
}

/** RFC 8446 §4.1.2 ClientHello body, from after the handshake header to `end`. */
function readHello(b: Buffer, end: number, length: number): HelloResult {
  let p = HANDSHAKE_HEADER;
  // legacy_version: 0x0303 from TLS 1.2/1.3 clients, 0x0301–0x0302 from older ones.
  if (p + 2 > end) return malformed('legacy_version is cut short');
  if (b[p] !== 3 || b[p + 1]! < 1) return malformed(`legacy_version ${hex(u16(b, p), 4)} is not TLS`);
  p += 2;
  // random: 32 bytes.
  if (p + 32 > end) return malformed('random is cut short');
  p += 32;
  // legacy_session_id<0..32>
  if (p + 1 > end) return malformed('legacy_session_id length is cut short');
  const sessionId = b[p]!;
  p += 1;
  if (sessionId > 32) return malformed(`legacy_session_id of ${sessionId} bytes (at most 32)`);
  if (p + sessionId > end) return malformed('legacy_session_id runs past the end of the hello');
  p += sessionId;
  // cipher_suites<2..2^16-2>: two bytes per suite.
  if (p + 2 > end) return malformed('cipher_suites length is cut short');
  const suites = u16(b, p);
  p += 2;
  if (suites < 2 || suites % 2 !== 0) return malformed(`cipher_suites length ${suites} (must be even and at least 2)`);
  if (p + suites > end) return malformed('cipher_suites run past the end of the hello');
  p += suites;
  // legacy_compression_methods<1..2^8-1>
  if (p + 1 > end) return malformed('legacy_compression_methods length is cut short');
  const methods = b[p]!;
  p += 1;
  if (methods < 1) return malformed('no legacy_compression_methods');
  if (p + methods > end) return malformed('legacy_compression_methods run past the end of the hello');
  p += methods;
  // RFC 5246 §7.4.1.2: up to TLS 1.2 the extensions block may be absent altogether.
  if (p === end) return { kind: 'hello', serverName: null, alpn: [], length };
  // extensions: a 2-byte length that must cover the rest of the hello exactly.
  if (p + 2 > end) return malformed('extensions length is cut short');
  const extensionsLength = u16(b, p);
  p += 2;
  if (p + extensionsLength > end) return malformed('extensions run past the end of the hello');
  if (p + extensionsLength < end) return malformed(`${end - p - extensionsLength} bytes after the extensions`);

  let serverName: string | null = null;
  let sawServerName = false;
  let alpn: string[] = [];
  let sawAlpn = false;
  while (p < end) {
    // RFC 8446 §4.2: extension_type(2) extension_data<0..2^16-1>
    if (p + 4 > end) return malformed('an extension header is cut short');
    const type = u16(b, p);
    const dataLength = u16(b, p + 2);
    p += 4;
    if (p + dataLength > end) return malformed(`extension ${type} runs past the extensions block`);
    // RFC 8446 §4.2: no two extensions of one type. Enforced here for the two this reads, so the
    // name routed on is the one the backend will see; the backend enforces it for the rest.
    if (type === EXT_SERVER_NAME) {
      if (sawServerName) return malformed('two server_name extensions');
      sawServerName = true;
      const name = readServerName(b, p, p + dataLength);
      if (typeof name !== 'string' && name !== null) return name;
      serverName = name;
    } else if (type === EXT_ALPN) {
      if (sawAlpn) return malformed('two ALPN extensions');
      sawAlpn = true;
      const list = readAlpn(b, p, p + dataLength);
      if (!Array.isArray(list)) return list;
      alpn = list;
    }
    p += dataLength;
  }
  return { kind: 'hello', serverName, alpn, length };
}

/** RFC 6066 §3 ServerNameList; null when it names no host_name. */
function readServerName(b: Buffer, start: number, end: number): string | null | NotTls {
  // An empty server_name extension is only valid in a server's reply (RFC 6066 §3), never here.
  if (start + 2 > end) return malformed('server_name extension too short');
  const listLength = u16(b, start);
  let p = start + 2;
  // server_name_list<1..2^16-1>, filling the extension exactly.
  if (listLength === 0 || p + listLength !== end) return malformed('server_name list length does not match its extension');
  let name: string | null = null;
  while (p < end) {
    // ServerName: name_type(1) then, for host_name, HostName<1..2^16-1>.
    if (p + 3 > end) return malformed('server_name entry is cut short');
    const nameType = b[p]!;
    const nameLength = u16(b, p + 1);
    p += 3;
    if (p + nameLength > end) return malformed('server_name entry runs past its list');
    if (nameType === NAME_TYPE_HOST) {
      // RFC 6066 §3: no more than one name of one name_type.
      if (name !== null) return malformed('two host_name entries in server_name');
      const host = readHostName(b, p, p + nameLength);
      if (typeof host !== 'string') return host;
      name = host;
    }
    // No other name_type is defined; such entries are assumed to share host_name's 2-byte-length
    // shape and are skipped, as most TLS servers do.
    p += nameLength;
  }
  return name;
}

/**
 * RFC 6066 §3 HostName: "ASCII encoding without a trailing dot". Held to DNS shape (RFC 1035
 * §2.3.4 lengths, no empty label) since it will be compared with configured names; returned
 * lower-cased because DNS names compare case-insensitively (RFC 4343 §2).
 */
function readHostName(b: Buffer, start: number, end: number): string | NotTls {
  const length = end - start;
  if (length === 0) return malformed('empty host_name');
  if (length > MAX_HOST_NAME) return malformed(`host_name of ${length} bytes (at most ${MAX_HOST_NAME})`);
  let label = 0;
  for (let i = start; i < end; i++) {
    const c = b[i]!;
    if (c === 0x2e) {
      if (label === 0) return malformed('host_name has an empty label');
      label = 0;
    } else if (HOST_CHAR[c] === 1) {
      if (++label > MAX_LABEL) return malformed(`host_name has a label longer than ${MAX_LABEL} bytes`);
    } else {
      return malformed(`host_name byte ${hex(c, 2)} is not a hostname character`);
    }
  }
  if (label === 0) return malformed('host_name ends with a dot (RFC 6066 §3 forbids it)');
  // Every byte is ASCII now, so latin1 decodes it exactly and toLowerCase only touches A–Z.
  return b.toString('latin1', start, end).toLowerCase();
}

/** RFC 7301 §3.1 ProtocolNameList: protocol_name_list<2..2^16-1> of ProtocolName<1..2^8-1>. */
function readAlpn(b: Buffer, start: number, end: number): string[] | NotTls {
  if (start + 2 > end) return malformed('ALPN extension too short');
  const listLength = u16(b, start);
  let p = start + 2;
  if (listLength < 2 || p + listLength !== end) return malformed('ALPN list length does not match its extension');
  const protocols: string[] = [];
  while (p < end) {
    const n = b[p]!;
    p += 1;
    // RFC 7301 §3.1: empty strings MUST NOT be included.
    if (n === 0) return malformed('an empty ALPN protocol name');
    if (p + n > end) return malformed('an ALPN protocol name runs past its list');
    // Protocol names are opaque bytes; latin1 maps each byte to one character, losing nothing.
    protocols.push(b.toString('latin1', p, p + n));
    p += n;
  }
  return protocols;
}
