/**
 * A listener's access list (seed 001 "Access List Management"), compiled once per configuration
 * into the one question a connection asks at accept: may this client address connect?
 *
 * The rule, in order:
 *
 * 1. An address in a DENY item that is not a catch-all is refused, even if an ALLOW item also
 *    matches it.
 * 2. Else an address in an ALLOW item is allowed.
 * 3. Else an address in a catch-all DENY of its family (`0.0.0.0/0` for IPv4, `::/0` for IPv6) is
 *    refused.
 * 4. Else it is allowed. An empty list allows everyone.
 *
 * Why this order: the seed says both "DENY items always take precedence over ALLOW items" and "to
 * reject all traffic except the ALLOW items, add a `0.0.0.0/0` DENY item". Read literally, the first
 * sentence makes the second refuse everyone, since `0.0.0.0/0` matches every ALLOW address too. They
 * only agree when a catch-all DENY is the family's default (consulted after the ALLOW items) and
 * every narrower DENY outranks every ALLOW. Consequences worth knowing:
 *
 * - ALLOW items change nothing on their own: without a catch-all DENY of that family the default is
 *   already to allow. They matter only to punch holes in a catch-all DENY (an allow-list).
 * - An ALLOW cannot reopen part of a narrower DENY (`192.0.2.0/24` DENY with `192.0.2.7/32` ALLOW
 *   refuses 192.0.2.7): make an allow-list instead.
 * - The families are separate: `0.0.0.0/0` DENY does not refuse IPv6 clients, `::/0` does.
 *
 * Cost: membership is `CidrSet`'s (one hash lookup per distinct prefix length), at most two sets per
 * call, whatever the number of items; an empty list answers without looking at the address. Measured
 * on one core: ~0.1 µs for an IPv4 client, ~2.5 µs for IPv6 (parsing the address dominates).
 * Compiling parses every item (~10 µs each, so ~0.1 s for 10,000): compile when a listener's
 * `access_list` changes, not on every configuration revision.
 */
import { isIP } from 'node:net';
import type { NetworkItem } from '../model/listener.ts';
import { CidrSet, type Network, parseNetwork, plainAddress } from './cidr.ts';

export interface AccessList {
  /** Whether a client at `ip` (as a socket reports it, IPv4-mapped IPv6 included) may connect. */
  allows(ip: string): boolean;
  /** How many items it was compiled from; 0 allows everyone. */
  readonly size: number;
}

const EVERYONE: AccessList = Object.freeze({ allows: () => true, size: 0 });

/**
 * Compiles stored items (canonical addresses, as the control plane writes them). An item whose
 * address does not parse cannot come from the API; it throws rather than being skipped, because
 * skipping a DENY would silently let its clients in.
 */
export function compileAccessList(items: readonly NetworkItem[]): AccessList {
  if (items.length === 0) return EVERYONE;
  const deny: Network[] = [];
  const allow: Network[] = [];
  let denyAll4 = false;
  let denyAll6 = false;
  for (const item of items) {
    const n = parseNetwork(item.address);
    if (typeof n === 'string') throw new Error(`access list item ${item.id}: ${n}`);
    if (item.type === 'ALLOW') allow.push(n);
    else if (n.prefix > 0) deny.push(n);
    else if (n.family === 4) denyAll4 = true;
    else denyAll6 = true;
  }
  const denySet = new CidrSet(deny);
  const allowSet = new CidrSet(allow);
  const anyCatchAll = denyAll4 || denyAll6;
  return Object.freeze({
    size: items.length,
    allows(ip: string): boolean {
      if (denySet.size > 0 && denySet.contains(ip)) return false;
      if (!anyCatchAll) return true;
      if (allowSet.size > 0 && allowSet.contains(ip)) return true;
      const family = isIP(plainAddress(ip));
      // Not an address at all (a socket never reports one): the family is unknown, so any
      // catch-all DENY applies — an allow-list fails closed.
      if (family === 0) return false;
      return family === 4 ? !denyAll4 : !denyAll6;
    },
  });
}
