/**
 * Globs as the API spells them (src/policy/glob.ts): `*` is any run of characters, `/` included,
 * everything else is itself, the whole string must match. Checked against a regular expression
 * built independently here, on a table and on seeded random globs and texts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileGlob, Glob, globKind, globToRegExp, literalPrefix } from '../../src/policy/glob.ts';
import { seeded } from '../balancing/fake-load.ts';

/** [glob, text, matches?] */
const table: [string, string, boolean][] = [
  ['/v2/*', '/v2/users/123', true],
  ['/v2/*', '/v2/', true],
  ['/v2/*', '/v2', false],
  ['/v2/*', '/v3/x', false],
  ['*', '', true],
  ['*', 'anything/at/all', true],
  ['', '', true],
  ['', 'x', false],
  ['/health', '/health', true],
  ['/health', '/healthz', false],
  ['/health', '/Health', false],
  ['*.png', '/a/b/c.png', true],
  ['*.png', '/a/b/c.png.txt', false],
  ['/a/*/c', '/a/b/c', true],
  ['/a/*/c', '/a/b/x/y/c', true],
  ['/a/*/c', '/a/c', false],
  ['/a/*/c', '/a//c', true],
  ['a*b*c', 'abc', true],
  ['a*b*c', 'aXbYc', true],
  ['a*b*c', 'acb', false],
  ['a*b*c', 'abcbc', true],
  ['ab*ba', 'aba', false],
  ['ab*ba', 'abba', true],
  ['a**b', 'ab', true],
  ['a**b', 'aXXb', true],
  ['***', '', true],
  ['*a*', 'bab', true],
  ['*a*', 'bbb', false],
  ['*ab*ab*', 'abab', true],
  ['*ab*ab*', 'aba', false],
  ['x*y', 'x\ny', true],
  // Regex metacharacters are themselves.
  ['/a.b', '/a.b', true],
  ['/a.b', '/aXb', false],
  ['/(v1|v2)/*', '/(v1|v2)/x', true],
  ['/(v1|v2)/*', '/v1/x', false],
  ['/a+b?c', '/a+b?c', true],
  ['/a+b?c', '/aab', false],
  ['^/a$', '^/a$', true],
  ['[a-z]', '[a-z]', true],
  ['[a-z]', 'q', false],
  ['/a\\b', '/a\\b', true],
  ['{1,2}', '{1,2}', true],
  ['key-internal-*', 'key-internal-7', true],
  ['BadBot/*', 'BadBot/2.1', true],
  ['BadBot/*', 'badbot/2.1', false],
  ['/café/*', '/café/x', true],
];

describe('Glob.test', () => {
  for (const [glob, text, want] of table) {
    it(`'${glob}' ${want ? 'matches' : 'does not match'} ${JSON.stringify(text)}`, () => {
      assert.equal(new Glob(glob).test(text), want);
      assert.equal(compileGlob(glob).test(text), want);
      assert.equal(globToRegExp(glob).test(text), want, 'globToRegExp agrees');
      assert.equal(globToRegExp(glob, 'u').test(text), want, 'with the u flag too');
      assert.equal(globToRegExp(glob, 'v').test(text), want, 'with the v flag too');
    });
  }
});

describe('glob helpers', () => {
  it('globKind', () => {
    const kinds: [string, ReturnType<typeof globKind>][] = [
      ['/health', 'exact'],
      ['', 'exact'],
      ['/v2/*', 'prefix'],
      ['/v2/**', 'prefix'],
      ['*', 'prefix'],
      ['/v2*', 'prefix'],
      ['/v2/*/x', 'pattern'],
      ['*.png', 'pattern'],
      ['/a/*b*', 'pattern'],
    ];
    for (const [g, k] of kinds) assert.equal(globKind(g), k, g);
  });

  it('literalPrefix', () => {
    const prefixes: [string, string][] = [
      ['/v2/*', '/v2/'],
      ['/v2/*/x', '/v2/'],
      ['*.png', ''],
      ['/health', '/health'],
      ['', ''],
    ];
    for (const [g, p] of prefixes) {
      assert.equal(literalPrefix(g), p, g);
      assert.equal(new Glob(g).prefix, p, `Glob.prefix of ${g}`);
    }
  });

  it('source keeps the glob as given', () => {
    assert.equal(new Glob('/V2/*', { ignoreCase: true }).source, '/V2/*');
  });

  it('ignoreCase compares without ASCII case, on both sides', () => {
    const g = new Glob('BadBot/*', { ignoreCase: true });
    assert.equal(g.test('badbot/1'), true);
    assert.equal(g.test('BADBOT/1'), true);
    assert.equal(g.test('GoodBot/1'), false);
    assert.equal(g.prefix, 'badbot/');
    assert.equal(new Glob('*-INTERNAL-*', { ignoreCase: true }).test('key-Internal-7'), true);
    assert.equal(new Glob('BadBot/*').test('badbot/1'), false, 'case counts by default');
  });

  it('globToRegExp with a metacharacter-heavy glob compiles under every flag set', () => {
    const glob = '/a-b.c+d?e^f$g{h}(i)|j[k]\\l/m*n';
    for (const flags of ['', 'u', 'v', 'i', 's']) {
      const re = globToRegExp(glob, flags);
      assert.equal(re.test('/a-b.c+d?e^f$g{h}(i)|j[k]\\l/mXYZn'), true, flags);
      assert.equal(re.test('/aXb.c+d?e^f$g{h}(i)|j[k]\\l/mn'), false, flags);
    }
  });
});

describe('Glob: no catastrophic backtracking', () => {
  it('many stars, ends that fit and a middle piece that is missing: answers false', () => {
    // A backtracking matcher (the equivalent regex) tries every way to spread 30 stars over 100,000
    // characters before giving up; leftmost placement finds the 30 'a's at once and then scans
    // once for the missing 'aab'.
    const glob = `*${'a*'.repeat(30)}aab*c`;
    const text = `${'a'.repeat(100_000)}c`;
    assert.equal(new Glob(glob).test(text), false);
    assert.equal(new Glob(glob).test(`${'a'.repeat(100_000)}aabc`), true);
  });

  it('a long path with many inner stars and a missing segment', () => {
    const glob = '/a/*/*/*/*/q/*/*/*/z';
    const text = `/a/${'x/'.repeat(50_000)}z`;
    assert.equal(new Glob(glob).test(text), false);
    assert.equal(new Glob(glob).test(`/a/${'x/'.repeat(25_000)}q/${'x/'.repeat(25_000)}z`), true);
  });
});

describe('Glob: equals a regular expression on random globs (seeded)', () => {
  const ALPHABET = ['a', 'b', '/', '.', '*'];
  const TEXT = ['a', 'b', '/', '.'];
  const reference = (glob: string) => new RegExp(`^${glob.split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('[\\s\\S]*')}$`);
  for (const seed of [1, 2, 3, 4, 5]) {
    it(`seed ${seed}: 2,000 globs × 20 texts`, () => {
      const random = seeded(seed);
      const draw = (alphabet: string[], max: number) => Array.from({ length: Math.floor(random() * (max + 1)) }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
      for (let k = 0; k < 2_000; k++) {
        const glob = draw(ALPHABET, 8);
        const g = new Glob(glob);
        const re = reference(glob);
        for (let t = 0; t < 20; t++) {
          const text = draw(TEXT, 10);
          assert.equal(g.test(text), re.test(text), `seed ${seed}: '${glob}' on '${text}'`);
        }
      }
    });
  }
});
