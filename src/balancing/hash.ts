/**
 * The string hash behind IP_HASH and CONSISTENT_HASH: FNV-1a (32-bit) over the UTF-16 code units,
 * finished with MurmurHash3's fmix32. Plain FNV-1a leaves keys that differ only in their last
 * characters (10.0.0.1, 10.0.0.2) close in the low bits, and the algorithms take the hash modulo a
 * table size; the finalizer spreads every input bit over the whole result.
 */
const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** An unsigned 32-bit hash of `s`; a different `seed` gives an independent-looking hash. */
export function hashKey(s: string, seed = 0): number {
  let h = FNV_OFFSET_BASIS ^ seed;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  return mix32(h);
}

/** MurmurHash3's fmix32: a bijection on 32-bit values in which every input bit affects every output bit. */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}
