/**
 * Readable resource ids: a type prefix plus a slug of the name (`pool-api-production`), made unique
 * by a short random suffix only when the plain form is taken. Words that merely repeat the type
 * ("API Production Pool" → `pool-api-production`) are dropped from the slug.
 */

const MAX_SLUG = 48;

export function slugify(name: string, redundantWords: readonly string[] = []): string {
  const words = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0);
  const meaningful = words.filter((w) => !redundantWords.includes(w));
  const chosen = meaningful.length > 0 ? meaningful : words;
  let slug = chosen.join('-');
  if (slug.length > MAX_SLUG) slug = slug.slice(0, MAX_SLUG).replace(/-+$/, '');
  return slug;
}

export type RandomSource = (bytes: number) => Uint8Array;

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

export function shortSuffix(random: RandomSource, length = 5): string {
  const bytes = random(length);
  let out = '';
  for (const b of bytes) out += ALPHABET[b % ALPHABET.length];
  return out;
}

/**
 * Picks the first id not yet taken: `prefix-slug`, then `prefix-slug-xxxxx` with a random suffix.
 * `taken` is asked inside the write transaction, so two creates cannot pick the same id.
 */
export async function allocateId(
  prefix: string,
  name: string,
  taken: (id: string) => Promise<boolean>,
  random: RandomSource,
  redundantWords: readonly string[] = [],
): Promise<string> {
  const slug = slugify(name, redundantWords);
  const base = slug.length > 0 ? `${prefix}-${slug}` : prefix;
  if (slug.length > 0 && !(await taken(base))) return base;
  for (let attempt = 0; attempt < 16; attempt++) {
    const candidate = `${base}-${shortSuffix(random)}`;
    if (!(await taken(candidate))) return candidate;
  }
  throw new Error(`could not allocate a unique id for ${base}`);
}
