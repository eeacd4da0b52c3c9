/**
 * Builds small MaxMind DB files for tests, following the "MaxMind DB File Format Specification"
 * v2.0: a binary search tree over address bits, 16 zero bytes, a data section of typed values,
 * then the metadata map after the `\xab\xcd\xefMaxMind.com` marker. No maintained npm package
 * writes the format, and a real GeoLite2 file cannot be shipped in tests, so this writes the few
 * networks a test needs, in the record layout MaxMind's country databases use, and the test reads
 * them back through the same `maxmind` reader Fulcrum uses.
 *
 * Kept small on purpose: no pointers in the data section (identical records are written once and
 * shared by offset), no alias of `::ffff:0:0/96` to the IPv4 subtree (Fulcrum looks IPv4-mapped
 * clients up as IPv4).
 */
import { writeFileSync } from 'node:fs';
import ipaddr from 'ipaddr.js';

/** An integer of an explicit MaxMind type (plain numbers are written as uint32, or double when fractional). */
export class MmdbInt {
  readonly type: 'uint16' | 'uint32' | 'uint64';
  readonly value: bigint;

  constructor(type: 'uint16' | 'uint32' | 'uint64', value: number | bigint) {
    this.type = type;
    this.value = BigInt(value);
  }
}

export type MmdbValue = string | number | boolean | MmdbInt | MmdbValue[] | { [key: string]: MmdbValue };

export interface MmdbEntry {
  /** `192.0.2.0/24`, `2001:db8::/32`; a bare address is a /32 or /128. */
  network: string;
  data: MmdbValue;
}

export interface MmdbOptions {
  /** 6 (the default) holds IPv4 networks in its first 2^32 addresses, as MaxMind's databases do. */
  ipVersion?: 4 | 6;
  recordSize?: 24 | 28 | 32;
  databaseType?: string;
  /** Unix seconds. */
  buildEpoch?: number;
}

// Data section type numbers (spec "Output Data Section").
const T = { pointer: 1, string: 2, double: 3, bytes: 4, uint16: 5, uint32: 6, map: 7, int32: 8, uint64: 9, uint128: 10, array: 11, boolean: 14 } as const;

/** The control byte(s) of a field: type in the top three bits (or an extended type byte), then the size. */
function control(type: number, size: number): number[] {
  let sizeBits: number;
  const extra: number[] = [];
  if (size < 29) sizeBits = size;
  else if (size < 29 + 256) {
    sizeBits = 29;
    extra.push(size - 29);
  } else if (size < 285 + 65_536) {
    sizeBits = 30;
    const v = size - 285;
    extra.push(v >> 8, v & 0xff);
  } else {
    sizeBits = 31;
    const v = size - 65_821;
    extra.push((v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
  }
  const head = type <= 7 ? [(type << 5) | sizeBits] : [sizeBits, type - 7];
  return [...head, ...extra];
}

/** The shortest big-endian bytes of a non-negative integer (none for 0, as the spec allows). */
function uintBytes(value: bigint): number[] {
  const out: number[] = [];
  for (let v = value; v > 0n; v >>= 8n) out.unshift(Number(v & 0xffn));
  return out;
}

function encode(value: MmdbValue): number[] {
  if (typeof value === 'string') {
    const bytes = [...Buffer.from(value, 'utf8')];
    return [...control(T.string, bytes.length), ...bytes];
  }
  if (typeof value === 'boolean') return control(T.boolean, value ? 1 : 0);
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 0 && value < 2 ** 32) return encode(new MmdbInt('uint32', value));
    const b = Buffer.alloc(8);
    b.writeDoubleBE(value);
    return [...control(T.double, 8), ...b];
  }
  if (value instanceof MmdbInt) {
    const bytes = uintBytes(value.value);
    return [...control(T[value.type], bytes.length), ...bytes];
  }
  if (Array.isArray(value)) return [...control(T.array, value.length), ...value.flatMap(encode)];
  const pairs = Object.entries(value);
  return [...control(T.map, pairs.length), ...pairs.flatMap(([k, v]) => [...encode(k), ...encode(v)])];
}

interface TreeNode {
  children: [Slot, Slot];
  index: number;
}
/** A record: another node, data at an offset of the data section, or nothing. */
type Slot = TreeNode | { offset: number } | null;

function isNode(slot: Slot): slot is TreeNode {
  return slot !== null && 'children' in slot;
}

/** The network's bits from the top, and its prefix length, in a tree of `treeBits` bits. */
function networkBits(text: string, treeBits: 32 | 128): { bytes: number[]; prefix: number } {
  const [addr, len] = text.includes('/') ? text.split('/') : [text, undefined];
  const parsed = ipaddr.parse(addr!);
  const own = parsed.kind() === 'ipv4' ? 32 : 128;
  const prefix = len === undefined ? own : Number(len);
  if (parsed.kind() === 'ipv6' && treeBits === 32) throw new Error(`${text}: an IPv4 database cannot hold IPv6 networks`);
  // An IPv4 network in an IPv6 tree sits in the first 2^32 addresses (96 zero bits first).
  const bytes = parsed.kind() === 'ipv4' && treeBits === 128 ? [...new Array<number>(12).fill(0), ...parsed.toByteArray()] : parsed.toByteArray();
  return { bytes, prefix: prefix + (treeBits - own) };
}

/** A MaxMind DB file holding `entries`; a more specific network wins inside a broader one. */
export function buildMmdb(entries: readonly MmdbEntry[], options: MmdbOptions = {}): Buffer {
  const ipVersion = options.ipVersion ?? 6;
  const recordSize = options.recordSize ?? 24;
  const treeBits = ipVersion === 4 ? 32 : 128;

  // The data section: each distinct record once.
  const data: number[] = [];
  const offsets = new Map<string, number>();
  const offsetOf = (value: MmdbValue): number => {
    const key = JSON.stringify(value, (_k, v: unknown) => (v instanceof MmdbInt ? `${v.type}:${v.value}` : v));
    let at = offsets.get(key);
    if (at === undefined) {
      at = data.length;
      offsets.set(key, at);
      data.push(...encode(value));
    }
    return at;
  };

  // Broader networks first, so that a narrower one splits the record a broader one set.
  const placed = entries.map((e) => ({ ...networkBits(e.network, treeBits), data: { offset: offsetOf(e.data) } })).sort((a, b) => a.prefix - b.prefix);
  const root: TreeNode = { children: [null, null], index: 0 };
  for (const e of placed) {
    if (e.prefix === 0) throw new Error('a network of prefix 0 would be the whole tree');
    let node = root;
    for (let depth = 0; depth < e.prefix; depth++) {
      const bit = (e.bytes[depth >> 3]! >> (7 - (depth & 7))) & 1;
      if (depth === e.prefix - 1) {
        node.children[bit] = e.data;
        break;
      }
      const child: Slot = node.children[bit]!;
      if (isNode(child)) node = child;
      else {
        // Empty, or a broader network's record: a new node whose both halves keep what was there.
        const next: TreeNode = { children: [child, child], index: 0 };
        node.children[bit] = next;
        node = next;
      }
    }
  }

  // Number the nodes breadth first; node 0 is the root.
  const nodes: TreeNode[] = [];
  for (let queue: TreeNode[] = [root]; queue.length > 0; ) {
    const n = queue.shift()!;
    n.index = nodes.length;
    nodes.push(n);
    for (const c of n.children) if (isNode(c)) queue.push(c);
  }
  const nodeCount = nodes.length;
  const recordValue = (slot: Slot): number => (slot === null ? nodeCount : isNode(slot) ? slot.index : nodeCount + 16 + slot.offset);
  if (nodeCount + 16 + data.length >= 2 ** recordSize) throw new Error(`too much for ${recordSize}-bit records`);

  const nodeBytes = recordSize / 4;
  const tree = Buffer.alloc(nodeCount * nodeBytes);
  for (const n of nodes) {
    const at = n.index * nodeBytes;
    const left = recordValue(n.children[0]);
    const right = recordValue(n.children[1]);
    if (recordSize === 24) {
      tree.writeUIntBE(left, at, 3);
      tree.writeUIntBE(right, at + 3, 3);
    } else if (recordSize === 28) {
      // The top four bits of each record share the middle byte: left's high, right's low.
      tree.writeUIntBE(left & 0xff_ffff, at, 3);
      tree[at + 3] = (((left >>> 24) & 0x0f) << 4) | ((right >>> 24) & 0x0f);
      tree.writeUIntBE(right & 0xff_ffff, at + 4, 3);
    } else {
      tree.writeUInt32BE(left, at);
      tree.writeUInt32BE(right, at + 4);
    }
  }

  const metadata = encode({
    node_count: new MmdbInt('uint32', nodeCount),
    record_size: new MmdbInt('uint16', recordSize),
    ip_version: new MmdbInt('uint16', ipVersion),
    database_type: options.databaseType ?? 'Fulcrum-Test-Country',
    languages: ['en'],
    binary_format_major_version: new MmdbInt('uint16', 2),
    binary_format_minor_version: new MmdbInt('uint16', 0),
    build_epoch: new MmdbInt('uint64', options.buildEpoch ?? 1_700_000_000),
    description: { en: 'Fulcrum test database' },
  });
  const marker = Buffer.concat([Buffer.from([0xab, 0xcd, 0xef]), Buffer.from('MaxMind.com', 'ascii')]);
  return Buffer.concat([tree, Buffer.alloc(16), Buffer.from(data), marker, Buffer.from(metadata)]);
}

/** A record as MaxMind's country databases have it (`country`, `registered_country`, `continent`). */
export function countryRecord(iso: string, options: { registeredOnly?: boolean } = {}): MmdbValue {
  const country = { geoname_id: 1000 + iso.charCodeAt(0) * 26 + iso.charCodeAt(1), iso_code: iso, names: { en: `Country ${iso}` } };
  return options.registeredOnly ? { registered_country: country } : { continent: { code: 'EU', names: { en: 'Europe' } }, country, registered_country: country };
}

/** Writes a country database mapping each network to its ISO code, and returns its path. */
export function writeCountryMmdb(path: string, networks: Record<string, string>, options: MmdbOptions = {}): string {
  writeFileSync(path, buildMmdb(Object.entries(networks).map(([network, iso]) => ({ network, data: countryRecord(iso) })), options));
  return path;
}
