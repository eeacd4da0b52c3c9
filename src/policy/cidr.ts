/**
 * IPv4 and IPv6 networks (CIDRs) and fast membership tests for client addresses: access lists,
 * trusted PROXY protocol peers. Parsing is ipaddr.js's; membership is looked up per prefix length
 * in hash sets built once per configuration, so a test costs at most one lookup per distinct
 * prefix length present (≤ 33 for IPv4, ≤ 129 for IPv6), whatever the number of networks.
 */
import { isIPv4 } from 'node:net';
import ipaddr from 'ipaddr.js';

export interface Network {
  family: 4 | 6;
  prefix: number;
  /** `10.0.0.0/8`, `2001:db8::/32`; a single address is `/32` or `/128`. */
  canonical: string;
}

/** IPv4-mapped IPv6 (`::ffff:192.0.2.1`) as the IPv4 address it is; anything else unchanged. */
export function plainAddress(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/** Parses an address or CIDR; a string saying what is wrong when it cannot be used. */
export function parseNetwork(text: string): Network | string {
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  if (!ipaddr.isValid(addressText) || (addressText.includes('.') && !addressText.includes(':') && !ipaddr.IPv4.isValidFourPartDecimal(addressText))) {
    return `'${text}' is not an IPv4 or IPv6 address or CIDR`;
  }
  let address = ipaddr.parse(addressText);
  const textBits = address.kind() === 'ipv4' ? 32 : 128;
  let prefix = textBits;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > textBits) return `'${text}': the prefix length must be 0–${textBits}`;
    prefix = Number(p);
  }
  // An IPv4-mapped IPv6 network is the IPv4 network it maps (sockets show IPv4 clients that way).
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()) {
    if (prefix < 96) return `'${text}' reaches beyond IPv4-mapped addresses (the prefix must be 96 or more)`;
    address = (address as ipaddr.IPv6).toIPv4Address();
    prefix -= 96;
  }
  const network = address.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(`${address.toString()}/${prefix}`) : ipaddr.IPv6.networkAddressFromCIDR(`${address.toString()}/${prefix}`);
  if (network.toString() !== address.toString()) {
    return `'${text}' has host bits set: the network is ${network.toString()}/${prefix}`;
  }
  return { family: address.kind() === 'ipv4' ? 4 : 6, prefix, canonical: `${network.toString()}/${prefix}` };
}

/** An IPv4 address as an unsigned 32-bit number; -1 when it is not one. */
function ipv4Number(ip: string): number {
  let n = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= ip.length; i++) {
    const c = i < ip.length ? ip.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || part > 255) return -1;
      n = n * 256 + part;
      part = 0;
      digits = 0;
      parts++;
    } else if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      digits++;
    } else return -1;
  }
  return parts === 4 ? n : -1;
}

function maskV4(n: number, prefix: number): number {
  return prefix === 0 ? 0 : (n - (n % 2 ** (32 - prefix))) >>> 0;
}

function maskV6(bytes: number[], prefix: number): string {
  let out = '';
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    const b = keep === 8 ? bytes[i]! : keep === 0 ? 0 : bytes[i]! & (0xff << (8 - keep));
    out += b.toString(16).padStart(2, '0');
  }
  return out;
}

/** A set of networks, answering whether an address falls in any of them. */
export class CidrSet {
  readonly #v4 = new Map<number, Set<number>>();
  readonly #v6 = new Map<number, Set<string>>();
  readonly size: number;

  constructor(networks: readonly Network[]) {
    for (const n of networks) {
      const [addr] = n.canonical.split('/');
      if (n.family === 4) {
        let set = this.#v4.get(n.prefix);
        if (!set) this.#v4.set(n.prefix, (set = new Set()));
        set.add(maskV4(ipv4Number(addr!), n.prefix));
      } else {
        let set = this.#v6.get(n.prefix);
        if (!set) this.#v6.set(n.prefix, (set = new Set()));
        set.add(maskV6(ipaddr.IPv6.parse(addr!).toByteArray(), n.prefix));
      }
    }
    this.size = networks.length;
  }

  /** Whether `ip` (as a socket reports it, IPv4-mapped IPv6 included) is in one of the networks. */
  contains(ip: string): boolean {
    const plain = plainAddress(ip);
    if (isIPv4(plain)) {
      if (this.#v4.size === 0) return false;
      const n = ipv4Number(plain);
      for (const [prefix, set] of this.#v4) if (set.has(maskV4(n, prefix))) return true;
      return false;
    }
    if (this.#v6.size === 0 || !ipaddr.IPv6.isValid(plain)) return false;
    const bytes = ipaddr.IPv6.parse(plain).toByteArray();
    for (const [prefix, set] of this.#v6) if (set.has(maskV6(bytes, prefix))) return true;
    return false;
  }
}
