import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { allocateId, slugify } from '../../src/control/ids.ts';

const counter = () => {
  let n = 0;
  return (size: number) => Uint8Array.from({ length: size }, () => n++);
};

describe('resource ids', () => {
  const table: [string, string[], string][] = [
    ['API Production Pool', ['pool'], 'api-production'],
    ['api-server-042.us-east-1a.internal', ['backend'], 'api-server-042-us-east-1a-internal'],
    ['Pool', ['pool'], 'pool'],
    ['  Café   Ünïcode!! ', [], 'cafe-unicode'],
    ['日本', [], ''],
  ];
  for (const [name, redundant, slug] of table) {
    it(`slugs ${JSON.stringify(name)} as ${JSON.stringify(slug)}`, () => assert.equal(slugify(name, redundant), slug));
  }

  it('caps long slugs without a trailing hyphen', () => {
    const slug = slugify('a'.repeat(47) + ' bbbb');
    assert.ok(slug.length <= 48);
    assert.ok(!slug.endsWith('-'));
  });

  it('takes the plain id when free and adds a short suffix on collision', async () => {
    const taken = new Set<string>();
    const random = counter();
    const first = await allocateId('pool', 'API Production Pool', async (id) => taken.has(id), random, ['pool']);
    assert.equal(first, 'pool-api-production');
    taken.add(first);
    const second = await allocateId('pool', 'API Production Pool', async (id) => taken.has(id), random, ['pool']);
    assert.match(second, /^pool-api-production-[a-z0-9]{5}$/);
  });

  it('always suffixes a name with nothing sluggable', async () => {
    const id = await allocateId('lb', '日本', async () => false, counter());
    assert.match(id, /^lb-[a-z0-9]{5}$/);
  });
});
