/**
 * The PROXY protocol, versions 1 and 2 (HAProxy, "The PROXY protocol Versions 1 & 2", 2020/03/05;
 * sections cited as §n below): a header the connection initiator puts before any other byte, naming
 * the real client and server of a relayed connection. Fulcrum sends one to backends that ask for it
 * ({@link proxyHeaderV1}, {@link proxyHeaderV2}) and reads one at the start of client connections on
 * listeners that enable it, from trusted peers only ({@link parseProxyHeader}). A listener never
 * guesses whether a header is there (§5): that is configuration, so this module has no "maybe".
 *
 * Reading is incremental, like the ClientHello reader: call it with all bytes so far each time more
 * arrive, until it answers something other than `need-more`. Each call is one pass over at most
 * {@link PROXY_HEADER_MAX_BYTES} bytes; a v1 line (at most 107 bytes) is decoded to a string once.
 * Every byte is judged as soon as it is here: the first byte must be 'P' (v1) or CR (v2), each
 * byte of the v2 signature and of "PROXY " is compared as it arrives, v1 fields are checked as
 * prefixes before the CRLF comes (two spaces, a letter in a port, a fifth dot: refused at once),
 * and a v2 length or TLV that cannot fit is refused as soon as its bytes are read.
 *
 * Strictness: anything that does not match the grammar is `invalid` (§2.1: "Any sequence which does
 * not exactly match the protocol must be discarded"), since the header decides which address the
 * rest of Fulcrum trusts as the client's.
 *
 * Choices the spec leaves to the receiver:
 * - v2 AF_UNIX (and AF_UNSPEC, or an UNSPEC transport) under the PROXY command: `LOCAL`, i.e. use
 *   the connection's own addresses, as §2.2 allows a receiver to "fall back to the UNSPEC mode for
 *   the valid combinations above that it does not support". Fulcrum keys logs, forwarded headers
 *   and access rules on IP addresses; a UNIX path says nothing it could use.
 * - v2 headers longer than 16 + 2048 bytes are refused, though the length field allows 65535:
 *   the addresses take at most 216 bytes, and the TLVs after them (ALPN, authority, SSL details,
 *   §2.2.1–§2.2.7) are skipped, not used, so 2 KiB of them is generous and bounds what a listener
 *   buffers per connection before it knows who the client is.
 * - TLVs are walked to check that each fits inside the header (so a truncated or overlong one is
 *   `invalid`), then skipped. PP2_TYPE_CRC32C is not verified: §2.2.3 binds only receivers that
 *   support the checksum, and the peer is trusted by configuration anyway.
 * - Under the LOCAL command the whole address block is discarded unread, family included (§2.2:
 *   "discard the protocol block including the family which is ignored"); its TLVs cannot even be
 *   located without trusting that family, so they are not walked.
 * - v1 IPv6 addresses: hexadecimal groups with at most one "::" (§2.1), plus a dotted IPv4 tail
 *   ("::ffff:192.0.2.1", RFC 4291 §2.2 form 3) because common senders write IPv4-mapped addresses
 *   that way and every inet_pton-based receiver takes it. No zone ids.
 * - Addresses are returned in one canonical text form whatever the sender wrote: dotted decimal for
 *   IPv4, RFC 5952 for IPv6 (lower case, longest zero run as "::", IPv4-mapped as
 *   "::ffff:a.b.c.d" as RFC 5952 §5 recommends) — the same forms as Node's `socket.remoteAddress`,
 *   so a proxied address compares equal to a direct one.
 *
 * Written by hand rather than with the npm package proxy-protocol-js (4.0.6, read in full): its v1
 * reader takes any non-space bytes as an address, any digit string as a port (no 0–65535 bound, no
 * leading-zero rule), scans with no 107-byte bound and refuses the short "PROXY UNKNOWN\r\n" form;
 * its v2 reader never checks that the bytes are there (missing ones become NaN ports and undefined
 * octets) and splits header from data by the address block alone, ignoring the length field, so
 * TLVs come back as the client's data instead of being skipped, and its addresses are byte arrays.
 * Both readers report errors by throwing objects that are not `Error`s, and neither tells "need
 * more bytes" from "malformed". Its builders take addresses as byte arrays and check neither them
 * nor the ports. What would be left to use is the signature constant and a few byte writes.
 */

/** One address pair carried by a header, or `LOCAL`: use the connection's own addresses. */
export interface ProxiedAddresses {
  /** 'TCP4' | 'TCP6' for proxied connections; 'LOCAL' (v2 LOCAL command, or v1 UNKNOWN): no addresses, use the connection's own. */
  kind: 'TCP4' | 'TCP6' | 'UDP4' | 'UDP6' | 'LOCAL';
  sourceAddress?: string;
  sourcePort?: number;
  destinationAddress?: string;
  destinationPort?: number;
}

export type ProxyHeaderResult =
  /** Not enough bytes yet to decide: read more and call again with everything so far. */
  | { kind: 'need-more' }
  /** `length`: bytes of the header; what follows is the client's own data. */
  | { kind: 'header'; version: 1 | 2; addresses: ProxiedAddresses; length: number }
  /** Not a PROXY header, or a malformed one: a reason an operator can read. */
  | { kind: 'invalid'; reason: string };

type Invalid = Extract<ProxyHeaderResult, { kind: 'invalid' }>;

/** §2.1: the longest v1 line a receiver must take, CRLF included ("PROXY UNKNOWN" + two full IPv6 pairs). */
const V1_MAX_LINE = 107;
/** §2.2: signature(12) ver_cmd(1) fam(1) len(2). */
const V2_FIXED = 16;
/** Fulcrum's own bound on the v2 length field (the spec allows 65535): see the module comment. */
const V2_MAX_LENGTH = 2048;

/** The most bytes a header can take here; a listener never needs to buffer more before deciding. */
export const PROXY_HEADER_MAX_BYTES = V2_FIXED + V2_MAX_LENGTH;

// §2.2: "\x0D \x0A \x0D \x0A \x00 \x0D \x0A \x51 \x55 \x49 \x54 \x0A"
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = 'PROXY '; // §2.1: "PROXY" then exactly one space
const CR = 0x0d;
const LF = 0x0a;
const V2_VERSION = 0x2; // §2.2: the high nibble of the 13th byte "must always be sent as \x2"
const CMD_LOCAL = 0x0; // §2.2
const CMD_PROXY = 0x1; // §2.2
const AF_UNSPEC = 0x0; // §2.2, high nibble of the 14th byte
const AF_INET = 0x1;
const AF_INET6 = 0x2;
const AF_UNIX = 0x3;
const TRANSPORT_UNSPEC = 0x0; // §2.2, low nibble of the 14th byte
const TRANSPORT_STREAM = 0x1;
const TRANSPORT_DGRAM = 0x2;
/** §2.2: address block bytes per family: 2×4+2×2, 2×16+2×2, 2×108. */
const ADDRESS_BLOCK: Record<number, number> = { [AF_INET]: 12, [AF_INET6]: 36, [AF_UNIX]: 216 };
const TLV_HEADER = 3; // §2.2: type(1) length(2)

const NEED_MORE: ProxyHeaderResult = Object.freeze({ kind: 'need-more' });
const LOCAL: ProxiedAddresses = Object.freeze({ kind: 'LOCAL' });

function notProxy(what: string): Invalid {
  return { kind: 'invalid', reason: `not a PROXY protocol header: ${what}` };
}

function malformed(version: 1 | 2, what: string): Invalid {
  return { kind: 'invalid', reason: `malformed PROXY v${version} header: ${what}` };
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(2, '0')}`;
}

/** Why a connection's first byte starts neither a v1 nor a v2 header. */
function describeStart(first: number): string {
  if (first === 0x16) return 'the client sent a TLS handshake (0x16) with no PROXY header before it';
  if (first > 0x20 && first < 0x7f) return `the client sent plain text starting with '${String.fromCharCode(first)}' and no PROXY header before it`;
  return `first byte ${hex(first)} is neither 'P' (v1) nor 0x0d (v2)`;
}

/**
 * Reads a PROXY v1 or v2 header from the start of a connection's bytes. Pure, never throws.
 * Accepts both versions. Bytes after the header are not looked at.
 */
export function parseProxyHeader(data: Buffer): ProxyHeaderResult {
  if (data.length === 0) return NEED_MORE;
  const first = data[0]!;
  // §2.2: the v2 signature starts with CR, "PROXY" with 'P'; the two can never be confused.
  if (first === V2_SIGNATURE[0]) return parseV2(data);
  if (first === 0x50) return parseV1(data);
  return notProxy(describeStart(first));
}

// ---------------------------------------------------------------------------------------------
// Version 1 (§2.1)

const FIELD_NAMES = ['protocol', 'source address', 'destination address', 'source port', 'destination port'];

function parseV1(data: Buffer): ProxyHeaderResult {
  // §2.1: the line ends at the first CRLF, which must come within 107 bytes; "the receiver must not
  // tolerate a single CR or LF character to end the line".
  const scan = Math.min(data.length, V1_MAX_LINE);
  let cr = -1;
  for (let i = 0; i < scan; i++) {
    const c = data[i]!;
    if (c === LF) return malformed(1, `a line feed without a carriage return before it at byte ${i + 1}`);
    if (c === CR) {
      cr = i;
      break;
    }
  }
  if (cr !== -1) {
    if (cr + 2 > V1_MAX_LINE) return malformed(1, `the line is longer than ${V1_MAX_LINE} bytes with its CRLF`);
    const after = data[cr + 1];
    if (after !== undefined && after !== LF) return malformed(1, `a carriage return not followed by a line feed at byte ${cr + 1}`);
  }
  const complete = cr !== -1 && cr + 1 < data.length;
  const line = data.toString('latin1', 0, cr === -1 ? scan : cr);
  const read = readV1Line(line, complete, cr + 2);
  if (read !== null) return read;
  // §2.1: "If the CRLF sequence is not found in the first 107 characters, the receiver should
  // declare the line invalid."
  if (cr === -1 && data.length >= V1_MAX_LINE) return malformed(1, `no CRLF within the first ${V1_MAX_LINE} bytes`);
  return NEED_MORE;
}

/**
 * The v1 line without its CRLF. `complete`: the CRLF followed it; otherwise every field so far is
 * checked and the last one as a prefix of a valid one. Null: a valid prefix, read more.
 */
function readV1Line(line: string, complete: boolean, length: number): ProxyHeaderResult | null {
  const have = Math.min(line.length, V1_PREFIX.length);
  if (line.slice(0, have) !== V1_PREFIX.slice(0, have)) {
    return notProxy(`starts with ${JSON.stringify(line.slice(0, have))} where ${JSON.stringify(V1_PREFIX)} was expected`);
  }
  if (line.length < V1_PREFIX.length) return complete ? malformed(1, 'the line ends before the protocol') : null;
  // §2.1: fields are separated by exactly one space, so an empty field is two spaces in a row.
  const fields = line.slice(V1_PREFIX.length).split(' ');
  const protocol = fields[0]!;
  if (fields.length === 1 && !complete) {
    if ('TCP4'.startsWith(protocol) || 'TCP6'.startsWith(protocol) || 'UNKNOWN'.startsWith(protocol)) return null;
    return malformed(1, `protocol ${JSON.stringify(protocol)} is not TCP4, TCP6 or UNKNOWN`);
  }
  // §2.1: for "UNKNOWN" "the receiver must ignore anything presented before the CRLF is found" and
  // "use the real connection's parameters".
  if (protocol === 'UNKNOWN') return complete ? { kind: 'header', version: 1, addresses: LOCAL, length } : null;
  if (protocol !== 'TCP4' && protocol !== 'TCP6') return malformed(1, `protocol ${JSON.stringify(protocol)} is not TCP4, TCP6 or UNKNOWN`);
  const v6 = protocol === 'TCP6';
  for (let i = 1; i < fields.length && i < 5; i++) {
    const field = fields[i]!;
    const partial = !complete && i === fields.length - 1;
    const name = FIELD_NAMES[i]!;
    if (field === '' && !partial) return malformed(1, `empty ${name} (two spaces in a row, or a space before the CRLF)`);
    if (i <= 2) {
      // §2.1: both addresses in the advertised family's canonical format.
      const ok = partial ? (v6 ? isIPv6Prefix(field) : isIPv4Prefix(field)) : (v6 ? parseIPv6(field) : parseIPv4(field)) !== null;
      if (!ok) return malformed(1, `${name} ${JSON.stringify(field)} is not an ${v6 ? 'IPv6' : 'IPv4'} address`);
    } else if (!(partial ? isPortPrefix(field) : parsePort(field) !== null)) {
      // §2.1: "a decimal integer in the range [0..65535] inclusive. Heading zeroes are not permitted".
      return malformed(1, `${name} ${JSON.stringify(field)} is not a decimal number from 0 to 65535 without leading zeros`);
    }
  }
  if (fields.length > 5) return malformed(1, 'more than four fields after the protocol (a trailing space?)');
  if (!complete) return null;
  if (fields.length < 5) return malformed(1, `the line ends after the ${FIELD_NAMES[fields.length - 1]}`);
  const source = v6 ? parseIPv6(fields[1]!)! : parseIPv4(fields[1]!)!;
  const destination = v6 ? parseIPv6(fields[2]!)! : parseIPv4(fields[2]!)!;
  return {
    kind: 'header',
    version: 1,
    addresses: {
      kind: protocol,
      sourceAddress: formatAddress(source),
      sourcePort: parsePort(fields[3]!)!,
      destinationAddress: formatAddress(destination),
      destinationPort: parsePort(fields[4]!)!,
    },
    length,
  };
}

// ---------------------------------------------------------------------------------------------
// Version 2 (§2.2)

function parseV2(data: Buffer): ProxyHeaderResult {
  const available = data.length;
  const signature = Math.min(available, V2_SIGNATURE.length);
  for (let i = 1; i < signature; i++) {
    if (data[i] !== V2_SIGNATURE[i]) {
      return notProxy(`starts with 0x0d but byte ${i + 1} is ${hex(data[i]!)}, not ${hex(V2_SIGNATURE[i]!)} of the v2 signature`);
    }
  }
  if (available <= 12) return NEED_MORE;
  // §2.2: 13th byte: version (high nibble) "the receiver must only accept" 2; command (low nibble)
  // LOCAL or PROXY, "Receivers must drop connections presenting unexpected values here".
  const version = data[12]! >> 4;
  const command = data[12]! & 0x0f;
  if (version !== V2_VERSION) return malformed(2, `version ${version} (only 2 is defined)`);
  if (command !== CMD_LOCAL && command !== CMD_PROXY) return malformed(2, `command ${command} (only LOCAL 0 and PROXY 1 are defined)`);
  if (available <= 13) return NEED_MORE;
  // §2.2: 14th byte: address family (high nibble) and transport (low nibble); values past the
  // defined ones "must be rejected as invalid by receivers". Under LOCAL the family "is ignored".
  const family = data[13]! >> 4;
  const transport = data[13]! & 0x0f;
  if (command === CMD_PROXY) {
    if (family > AF_UNIX) return malformed(2, `address family ${family} (only UNSPEC, INET, INET6 and UNIX are defined)`);
    if (transport > TRANSPORT_DGRAM) return malformed(2, `transport protocol ${transport} (only UNSPEC, STREAM and DGRAM are defined)`);
  }
  if (available < V2_FIXED) return NEED_MORE;
  // §2.2: 15th and 16th bytes: the bytes after the fixed 16, big-endian; "the length of the protocol
  // header in bytes is always exactly 16 + this value".
  const declared = data.readUInt16BE(14);
  if (declared > V2_MAX_LENGTH) return malformed(2, `a header of ${V2_FIXED + declared} bytes (Fulcrum accepts at most ${PROXY_HEADER_MAX_BYTES})`);
  const end = V2_FIXED + declared;
  // The families whose address block is read; every other case falls back to LOCAL (module comment).
  const addressed = command === CMD_PROXY && family !== AF_UNSPEC && transport !== TRANSPORT_UNSPEC;
  if (addressed) {
    const block = ADDRESS_BLOCK[family]!;
    // §2.2: the addresses are part of the header, so the declared length must cover them.
    if (declared < block) return malformed(2, `length ${declared} is shorter than the ${block}-byte address block of its family`);
    // §2.2: TLVs fill the rest of the header: type(1) length(2) value. Walked as far as the bytes
    // go, so one that runs past the header is refused before the header is complete.
    let p = V2_FIXED + block;
    while (p < end) {
      if (p + TLV_HEADER > end) return malformed(2, `${end - p} bytes after the last TLV, too few for a TLV header`);
      if (p + TLV_HEADER > available) break;
      const tlvEnd = p + TLV_HEADER + data.readUInt16BE(p + 1);
      if (tlvEnd > end) return malformed(2, `TLV of type ${hex(data[p]!)} runs ${tlvEnd - end} bytes past the end of the header`);
      p = tlvEnd;
    }
  }
  // §2.2: "The receiver must not start to parse an address before the whole address block is received."
  if (available < end) return NEED_MORE;
  if (!addressed) return { kind: 'header', version: 2, addresses: LOCAL, length: end };
  let addresses: ProxiedAddresses;
  if (family === AF_INET) {
    // §2.2 ipv4_addr: src_addr(4) dst_addr(4) src_port(2) dst_port(2), network byte order.
    addresses = {
      kind: transport === TRANSPORT_STREAM ? 'TCP4' : 'UDP4',
      sourceAddress: formatAddress(data.subarray(16, 20)),
      sourcePort: data.readUInt16BE(24),
      destinationAddress: formatAddress(data.subarray(20, 24)),
      destinationPort: data.readUInt16BE(26),
    };
  } else if (family === AF_INET6) {
    // §2.2 ipv6_addr: src_addr(16) dst_addr(16) src_port(2) dst_port(2).
    addresses = {
      kind: transport === TRANSPORT_STREAM ? 'TCP6' : 'UDP6',
      sourceAddress: formatAddress(data.subarray(16, 32)),
      sourcePort: data.readUInt16BE(48),
      destinationAddress: formatAddress(data.subarray(32, 48)),
      destinationPort: data.readUInt16BE(50),
    };
  } else {
    // AF_UNIX: §2.2 lets a receiver fall back to UNSPEC, i.e. the connection's own addresses.
    addresses = LOCAL;
  }
  return { kind: 'header', version: 2, addresses, length: end };
}

// ---------------------------------------------------------------------------------------------
// Building

type Endpoint = { address: string; port: number };

/** The pair as same-family byte addresses with their ports, or null when it cannot be written. */
function addressPair(client: Endpoint, server: Endpoint): { source: Uint8Array; destination: Uint8Array; sourcePort: number; destinationPort: number } | null {
  let source = endpointBytes(client);
  let destination = endpointBytes(server);
  if (source === null || destination === null) return null;
  // §2.1 and §2.2: both addresses are of the one advertised family. IPv4 has an IPv6 form (the
  // IPv4-mapped ::ffff:a.b.c.d, RFC 4291 §2.5.5.2) and IPv6 has no IPv4 one, so a mixed pair is sent
  // as IPv6 (§4.2: the protocol carries an IPv6 client over an IPv4 hop).
  if (source.length !== destination.length) {
    if (source.length === 4) source = mapIPv4(source);
    else destination = mapIPv4(destination);
  }
  return { source, destination, sourcePort: client.port, destinationPort: server.port };
}

/**
 * An endpoint's address as 4 or 16 bytes, IPv4-mapped IPv6 turned back into IPv4 (so a dual-stack
 * socket's "::ffff:10.0.0.1" goes out as TCP4), or null for an address or port that cannot be sent.
 * A zone id ("fe80::1%eth0") is dropped: neither version has room for one.
 */
function endpointBytes(endpoint: Endpoint): Uint8Array | null {
  const { address, port } = endpoint;
  if (typeof address !== 'string' || !Number.isInteger(port) || port < 0 || port > 0xffff) return null;
  if (address.includes(':')) {
    const zone = address.indexOf('%');
    const bytes = parseIPv6(zone === -1 ? address : address.slice(0, zone));
    if (bytes === null) return null;
    return isMapped(bytes) ? bytes.subarray(12) : bytes;
  }
  return parseIPv4(address);
}

/**
 * The v1 text line for a connection from client → server (§2.1): "PROXY TCP4 src dst sport dport\r\n".
 * IPv4-mapped IPv6 addresses are written as IPv4, a mixed pair as TCP6 with the IPv4 one mapped.
 * When an address or a port cannot be written (a socket that already closed has none), the line is
 * "PROXY UNKNOWN\r\n": §2.1 keeps UNKNOWN for when "it is not possible to correctly fill the PROXY
 * line", and the receiver then uses the connection's own addresses.
 */
export function proxyHeaderV1(client: Endpoint, server: Endpoint): Buffer {
  const pair = addressPair(client, server);
  if (pair === null) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const v6 = pair.source.length === 16;
  // §2.1 IPv6: "series of sets of 4 hexadecimal digits": written without the dotted IPv4 tail.
  const line = `PROXY ${v6 ? 'TCP6' : 'TCP4'} ${formatAddress(pair.source, false)} ${formatAddress(pair.destination, false)} ${pair.sourcePort} ${pair.destinationPort}\r\n`;
  return Buffer.from(line, 'latin1');
}

/**
 * The v2 binary header (§2.2): PROXY command, STREAM (default) or DGRAM, INET or INET6, no TLVs.
 * Addresses are paired as in {@link proxyHeaderV1}. When they cannot be written the header is the
 * 16-byte LOCAL command with AF_UNSPEC, which §2.2 says a receiver "must accept" using the
 * connection's real endpoints: the v2 counterpart of v1's UNKNOWN.
 */
export function proxyHeaderV2(client: Endpoint, server: Endpoint, transport: 'STREAM' | 'DGRAM' = 'STREAM'): Buffer {
  const pair = addressPair(client, server);
  if (pair === null) {
    const header = Buffer.alloc(V2_FIXED);
    V2_SIGNATURE.copy(header, 0);
    header[12] = (V2_VERSION << 4) | CMD_LOCAL;
    header[13] = (AF_UNSPEC << 4) | TRANSPORT_UNSPEC; // length 0: "it should not present any address"
    return header;
  }
  const size = pair.source.length; // 4 or 16
  const family = size === 4 ? AF_INET : AF_INET6;
  const block = ADDRESS_BLOCK[family]!;
  const header = Buffer.alloc(V2_FIXED + block);
  V2_SIGNATURE.copy(header, 0);
  header[12] = (V2_VERSION << 4) | CMD_PROXY;
  header[13] = (family << 4) | (transport === 'DGRAM' ? TRANSPORT_DGRAM : TRANSPORT_STREAM);
  header.writeUInt16BE(block, 14);
  // §2.2: source address, destination address, source port, destination port, network byte order.
  header.set(pair.source, V2_FIXED);
  header.set(pair.destination, V2_FIXED + size);
  header.writeUInt16BE(pair.sourcePort, V2_FIXED + 2 * size);
  header.writeUInt16BE(pair.destinationPort, V2_FIXED + 2 * size + 2);
  return header;
}

// ---------------------------------------------------------------------------------------------
// Addresses and ports, as text (no regular expressions: every field is at most 45 characters)

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** A decimal number of 1–`digits` digits without a leading zero, at most `max`; -1 otherwise. */
function decimal(s: string, digits: number, max: number): number {
  if (s.length === 0 || s.length > digits || (s.length > 1 && s.charCodeAt(0) === 0x30)) return -1;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!isDigit(c)) return -1;
    n = n * 10 + (c - 0x30);
  }
  return n <= max ? n : -1;
}

/** §2.1 port: "[0..65535] inclusive", no heading zeroes. */
function parsePort(s: string): number | null {
  const n = decimal(s, 5, 0xffff);
  return n === -1 ? null : n;
}

function isPortPrefix(s: string): boolean {
  // Any valid prefix of a port is itself a valid port (or empty).
  return s === '' || parsePort(s) !== null;
}

/** §2.1 IPv4: "exactly 4 integers in the range [0..255] ... separated by exactly one dot", no heading zeroes. */
function parseIPv4(s: string): Uint8Array | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const n = decimal(parts[i]!, 3, 255);
    if (n === -1) return null;
    bytes[i] = n;
  }
  return bytes;
}

function isIPv4Prefix(s: string): boolean {
  const parts = s.split('.');
  if (parts.length > 4) return false;
  // Every octet but the last must be whole; the last may be empty or a whole octet so far.
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (i === parts.length - 1 && part === '') return true;
    if (decimal(part, 3, 255) === -1) return false;
  }
  return true;
}

/**
 * §2.1 IPv6: groups of 1–4 hexadecimal digits separated by single colons, at most one "::" standing
 * for one or more zero groups, 128 bits in all; the last 32 bits may be written as dotted IPv4.
 */
function parseIPv6(s: string): Uint8Array | null {
  if (s.length < 2 || s.length > 45) return null;
  const gap = s.indexOf('::');
  if (gap !== -1 && s.indexOf('::', gap + 1) !== -1) return null; // a second "::", or ":::"
  const head = gap === -1 ? s : s.slice(0, gap);
  const tail = gap === -1 ? '' : s.slice(gap + 2);
  const headWords = ipv6Words(head, gap === -1);
  const tailWords = ipv6Words(tail, true);
  if (headWords === null || tailWords === null) return null;
  const count = headWords.length + tailWords.length;
  if (gap === -1 ? count !== 8 : count > 7) return null;
  const bytes = new Uint8Array(16);
  for (let i = 0; i < headWords.length; i++) {
    bytes[2 * i] = headWords[i]! >> 8;
    bytes[2 * i + 1] = headWords[i]! & 0xff;
  }
  for (let i = 0, at = 8 - tailWords.length; i < tailWords.length; i++, at++) {
    bytes[2 * at] = tailWords[i]! >> 8;
    bytes[2 * at + 1] = tailWords[i]! & 0xff;
  }
  return bytes;
}

/** Colon-separated 16-bit words; a dotted IPv4 last group (when `ipv4Last`) counts as two. */
function ipv6Words(s: string, ipv4Last: boolean): number[] | null {
  if (s === '') return [];
  const groups = s.split(':');
  const words: number[] = [];
  for (let g = 0; g < groups.length; g++) {
    const group = groups[g]!;
    if (ipv4Last && g === groups.length - 1 && group.includes('.')) {
      const v4 = parseIPv4(group);
      if (v4 === null) return null;
      words.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      continue;
    }
    if (group.length === 0 || group.length > 4) return null;
    let w = 0;
    for (let i = 0; i < group.length; i++) {
      const d = hexDigit(group.charCodeAt(i));
      if (d === -1) return null;
      w = (w << 4) | d;
    }
    words.push(w);
  }
  return words;
}

/**
 * Whether `s` can still become an IPv6 address: its characters, at most one "::", groups of at most
 * four digits, a dotted tail that is an IPv4 prefix. The full check waits for the CRLF (§2.1: "The
 * receiver must wait for the CRLF sequence before starting to decode the addresses").
 */
function isIPv6Prefix(s: string): boolean {
  if (s.length > 45) return false;
  const gap = s.indexOf('::');
  if (gap !== -1 && s.indexOf('::', gap + 1) !== -1) return false;
  const groups = s.split(':');
  for (let g = 0; g < groups.length; g++) {
    const group = groups[g]!;
    if (group.includes('.')) {
      // Only as the last group, after at least one colon.
      if (g === 0 || g !== groups.length - 1 || !isIPv4Prefix(group)) return false;
      continue;
    }
    if (group.length > 4) return false;
    for (let i = 0; i < group.length; i++) if (hexDigit(group.charCodeAt(i)) === -1) return false;
  }
  return true;
}

function isMapped(b: Uint8Array): boolean {
  // RFC 4291 §2.5.5.2: ::ffff:0:0/96
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

function mapIPv4(v4: Uint8Array): Uint8Array {
  const b = new Uint8Array(16);
  b[10] = 0xff;
  b[11] = 0xff;
  b.set(v4, 12);
  return b;
}

/**
 * Dotted decimal for 4 bytes; RFC 5952 §4 text for 16 (lower case, no leading zeros, the longest
 * run of two or more zero groups — the first of equals — as "::"). `mixed`: an IPv4-mapped address
 * as "::ffff:a.b.c.d" (RFC 5952 §5), as Node shows one.
 */
function formatAddress(b: Uint8Array, mixed = true): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (mixed && isMapped(b)) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i]! << 8) | b[i + 1]!);
  let bestStart = -1;
  let bestLength = 1; // RFC 5952 §4.2.2: "::" never stands for a single zero group
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const text = (from: number, to: number) => words.slice(from, to).map((w) => w.toString(16)).join(':');
  if (bestStart === -1) return text(0, 8);
  return `${text(0, bestStart)}::${text(bestStart + bestLength, 8)}`;
}
