/**
 * Client address → country, for the `source_countries` condition of ACLs. Fulcrum ships no
 * database: the operator points `geoip.database_path` at a MaxMind DB file (GeoLite2-Country,
 * GeoIP2-Country, or a City database, which holds the same country fields; a flat `country_code`
 * field, as some other databases in this format have, is read too), and the `maxmind` library
 * reads it.
 *
 * The file is read whole into memory once, at start-up, and never watched: a new database takes a
 * restart, so every request of a process sees the same answers. A lookup walks the database's
 * binary tree (one step per address bit: ≤ 32 for IPv4, ≤ 128 for IPv6) and decodes the record it
 * ends on. Both are kept in small bounded caches: decoded records by their offset (a country
 * database has a few hundred distinct records) and answers by client address (clients repeat), so a
 * client seen before costs one Map lookup.
 */
import { readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { type CountryResponse, Reader } from 'maxmind';
import { plainAddress } from './cidr.ts';

export interface GeoIp {
  /** The ISO 3166-1 alpha-2 code (upper-case) of the country of `ip`; null when the database has none. */
  country(ip: string): string | null;
}

export interface GeoIpInfo {
  path: string;
  /** The database's own `database_type`, e.g. `GeoLite2-Country`. */
  databaseType: string;
  /** 4: only IPv4 addresses are in it; 6: both. */
  ipVersion: number;
  /** When the database was built (ISO 8601); null when it does not say. */
  builtAt: string | null;
}

/** An opened database: the lookup, and what was opened (for the start-up log). */
export interface GeoIpDatabase extends GeoIp {
  readonly info: GeoIpInfo;
}

/** Entries each cache keeps; past that the oldest go first. */
const CACHE_ENTRIES = 10_000;

/**
 * A Map that forgets its oldest entries once full (insertion order is eviction order): enough for
 * caches whose every entry is cheap to recompute, without an LRU's bookkeeping on each hit.
 */
class BoundedCache<K, V> {
  readonly #entries = new Map<K, V>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  get(key: K): V | undefined {
    return this.#entries.get(key);
  }

  set(key: K, value: V): void {
    if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, value);
  }
}

/** The record shape of MaxMind's country and city databases, and the flat form some others use. */
type CountryRecord = CountryResponse & { country_code?: unknown };

/** The country a record names: where the address is, else where its network is registered. */
function countryOf(record: CountryRecord | null): string | null {
  // Some networks (anycast, satellite) have no located country, only a registered one; using that
  // is better than knowing nothing for an access rule.
  const code = record?.country?.iso_code ?? record?.registered_country?.iso_code ?? record?.country_code;
  return typeof code === 'string' && /^[A-Za-z]{2}$/.test(code) ? code.toUpperCase() : null;
}

class MaxMindGeoIp implements GeoIpDatabase {
  readonly info: GeoIpInfo;
  readonly #reader: Reader<CountryRecord>;
  readonly #answers = new BoundedCache<string, string | null>(CACHE_ENTRIES);

  constructor(reader: Reader<CountryRecord>, info: GeoIpInfo) {
    this.#reader = reader;
    this.info = info;
  }

  country(ip: string): string | null {
    const address = plainAddress(ip);
    const cached = this.#answers.get(address);
    if (cached !== undefined) return cached;
    let answer: string | null = null;
    // An IPv4-only database would walk an IPv6 address down its IPv4 tree and answer nonsense.
    if (isIPv4(address) || (isIPv6(address) && this.info.ipVersion === 6)) {
      try {
        answer = countryOf(this.#reader.get(address));
      } catch {
        // A corrupt record somewhere in the file: this address has no usable country.
        answer = null;
      }
    }
    this.#answers.set(address, answer);
    return answer;
  }
}

/** What starts a MaxMind DB's metadata section, at the end of the file (spec: "Database Metadata"). */
const METADATA_MARKER = Buffer.from('abcdef4d61784d696e642e636f6d', 'hex');

/** Whether `bytes` are a tar archive (POSIX `ustar` magic at offset 257). */
function isTar(bytes: Buffer): boolean {
  return bytes.length >= 262 && bytes.toString('latin1', 257, 262) === 'ustar';
}

/**
 * Opens the MaxMind DB at `path`. Throws an Error saying what is wrong (cannot be read, gzipped,
 * a tar archive, not a MaxMind DB) so that start-up stops with that reason rather than running
 * without countries.
 */
export function openGeoIp(path: string): GeoIpDatabase {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    // A plain Error (no errno code): the caller must not mistake it for a socket error.
    throw new Error(`geoip.database_path ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  const problem = (what: string) => new Error(`geoip.database_path ${path}: ${what}`);
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    throw problem('the file is gzip-compressed; give the uncompressed .mmdb file (a .tar.gz download: extract it with tar -xzf)');
  }
  // MaxMind's downloads are .mmdb files inside a tar.gz. A tar that holds one also holds the
  // metadata marker, so the reader would open it and then find no country for any address.
  if (isTar(bytes)) throw problem('the file is a tar archive; give the .mmdb file inside it (tar -xf, then the .mmdb path)');
  const metadataAt = bytes.lastIndexOf(METADATA_MARKER);
  if (metadataAt < 0) throw problem('not a MaxMind DB file (it has no MaxMind DB metadata section)');
  let reader: Reader<CountryRecord>;
  try {
    reader = new Reader<CountryRecord>(bytes, { cache: new BoundedCache<string | number, unknown>(CACHE_ENTRIES) });
  } catch (err) {
    throw new Error(`geoip.database_path ${path}: not a MaxMind DB file (${(err as Error).message})`, { cause: err });
  }
  const m = reader.metadata;
  if ((m.ipVersion !== 4 && m.ipVersion !== 6) || !Number.isInteger(m.nodeCount) || m.nodeCount <= 0) {
    throw problem(`not a usable MaxMind DB (ip_version ${String(m.ipVersion)}, node_count ${String(m.nodeCount)})`);
  }
  // The search tree is followed by 16 zero bytes, then the data section, then the metadata: a
  // file where that does not hold (cut short, or with something in front) would answer nonsense.
  const treeEnd = m.searchTreeSize;
  if (!Number.isInteger(treeEnd) || treeEnd + 16 > metadataAt || bytes.subarray(treeEnd, treeEnd + 16).some((b) => b !== 0)) {
    throw problem(`not a usable MaxMind DB (its search tree of ${m.nodeCount} nodes is not followed by the data section; is the file cut short or wrapped?)`);
  }
  return new MaxMindGeoIp(reader, {
    path,
    databaseType: String(m.databaseType),
    ipVersion: m.ipVersion,
    builtAt: Number.isNaN(m.buildEpoch.getTime()) ? null : m.buildEpoch.toISOString(),
  });
}
