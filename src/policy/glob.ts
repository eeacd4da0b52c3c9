/**
 * Globs as the API spells them (`/v2/*`, `BadBot/*`, `key-internal-*`): `*` matches any run of
 * characters (none included, `/` included), every other character is itself, and a glob matches
 * the whole string. There is no `?`, no character class and no escape: a glob cannot mean anything
 * else, so any string is a valid glob.
 *
 * `compileGlob` matches without a regular expression. The glob is cut at its stars into literal
 * pieces; the first must start the text, the last must end it, and each piece in between is found
 * with `indexOf` after the previous one. Taking the leftmost place for each middle piece is always
 * right (a later place only leaves less room for the pieces after it), so there is no
 * backtracking: a test costs O(text length × pieces) at worst, usually one or two `startsWith` /
 * `endsWith`. A regular expression built from the same glob (`globToRegExp`) backtracks on globs
 * with many stars; use it where a RegExp is required, not on a hot path.
 */

/**
 * The characters a RegExp gives a meaning to outside a character class; `*` is handled apart.
 * Not `-`: it means nothing there, and `\-` is a syntax error with the `u` and `v` flags.
 * `/` is escaped for a readable `source` (`\/` is valid with every flag).
 */
const REGEXP_SPECIAL = /[.+?^${}()|[\]\\/]/g;

/** An anchored RegExp equivalent to `glob` (`*` → any characters, newlines included). */
export function globToRegExp(glob: string, flags = ''): RegExp {
  let source = '^';
  const pieces = glob.split('*');
  for (let i = 0; i < pieces.length; i++) {
    if (i > 0) source += '[\\s\\S]*';
    source += pieces[i]!.replace(REGEXP_SPECIAL, '\\$&');
  }
  return new RegExp(`${source}$`, flags);
}

/** The literal part before the first `*` (the whole glob when it has none). */
export function literalPrefix(glob: string): string {
  const star = glob.indexOf('*');
  return star < 0 ? glob : glob.slice(0, star);
}

/**
 * How `glob` reads as a plain string test: `exact` without a star, `prefix` when its only stars
 * end it (`/v2/*`), `pattern` otherwise. An index can stand in for the first two entirely.
 */
export function globKind(glob: string): 'exact' | 'prefix' | 'pattern' {
  const star = glob.indexOf('*');
  if (star < 0) return 'exact';
  for (let i = star + 1; i < glob.length; i++) if (glob.charCodeAt(i) !== 42 /* * */) return 'pattern';
  return 'prefix';
}

export interface GlobOptions {
  /** Compare without regard to ASCII case (the text is lower-cased per test: one allocation). */
  ignoreCase?: boolean;
}

/** A glob compiled once; `test` is the hot-path call. */
export class Glob {
  /** The glob as given. */
  readonly source: string;
  /** Its literal part before the first `*` (lower-cased with `ignoreCase`). */
  readonly prefix: string;
  readonly #ignoreCase: boolean;
  /** null: the glob has no star and `#first` is the whole of it. */
  readonly #last: string | null;
  readonly #first: string;
  readonly #middle: readonly string[];
  readonly #minLength: number;

  constructor(glob: string, options: GlobOptions = {}) {
    this.source = glob;
    this.#ignoreCase = options.ignoreCase === true;
    const text = this.#ignoreCase ? glob.toLowerCase() : glob;
    const pieces = text.split('*');
    this.#first = pieces[0]!;
    this.prefix = this.#first;
    this.#last = pieces.length === 1 ? null : pieces.at(-1)!;
    // Empty middle pieces come from runs of stars (`a**b`): they constrain nothing.
    this.#middle = pieces.slice(1, -1).filter((p) => p !== '');
    this.#minLength = pieces.reduce((n, p) => n + p.length, 0);
  }

  test(input: string): boolean {
    const text = this.#ignoreCase ? input.toLowerCase() : input;
    if (this.#last === null) return text === this.#first;
    if (text.length < this.#minLength || !text.startsWith(this.#first) || !text.endsWith(this.#last)) return false;
    let at = this.#first.length;
    const end = text.length - this.#last.length;
    for (const piece of this.#middle) {
      const found = text.indexOf(piece, at);
      if (found < 0 || found + piece.length > end) return false;
      at = found + piece.length;
    }
    return true;
  }
}

export function compileGlob(glob: string, options?: GlobOptions): Glob {
  return new Glob(glob, options);
}
