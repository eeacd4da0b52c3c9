/**
 * The Store conformance suite. Every implementation runs exactly this (SQLite today; PostgreSQL
 * later) through `storeConformance(name, factory)`; the factory opens a fresh, empty store and
 * `reopen` opens the same data again, as a restart would.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Store, VersionConflict } from '../../src/store/store.ts';

export interface StoreFactory {
  /** A fresh, empty store, plus a way to reopen the same data and to dispose of it. */
  create(): Promise<{ store: Store; reopen: () => Promise<Store>; dispose: () => Promise<void> }>;
}

const scope = { org_id: 'default', project_id: 'default' };

export function storeConformance(name: string, factory: StoreFactory): void {
  describe(`Store conformance: ${name}`, () => {
    async function withStore(fn: (store: Store, reopen: () => Promise<Store>) => Promise<void>) {
      const { store, reopen, dispose } = await factory.create();
      try {
        await fn(store, reopen);
      } finally {
        await dispose();
      }
    }

    it('starts empty at revision 0', () =>
      withStore(async (store) => {
        assert.equal(await store.revision(), 0);
        assert.deepEqual(await store.list('pool'), { items: [], total: 0 });
        assert.equal(await store.get('pool', 'nope'), undefined);
      }));

    it('a write bumps the revision once, versions each resource, and logs every change', () =>
      withStore(async (store) => {
        const { revision, result } = await store.write(async (tx) => {
          const a = await tx.put('pool', 'pool-a', null, scope, { name: 'a' }, 'absent');
          const b = await tx.put('backend', 'backend-1', 'pool-a', scope, { port: 1 }, 'absent');
          return [a.version, b.version];
        });
        assert.equal(revision, 1);
        assert.deepEqual(result, [1, 1]);
        const changes = await store.changesSince(0);
        assert.deepEqual(
          changes.map((c) => [c.revision, c.kind, c.id, c.op, c.version]),
          [
            [1, 'pool', 'pool-a', 'put', 1],
            [1, 'backend', 'backend-1', 'put', 1],
          ],
        );
        const second = await store.write(async (tx) => tx.put('pool', 'pool-a', null, scope, { name: 'a2' }, 1));
        assert.equal(second.revision, 2);
        assert.equal(second.result.version, 2);
        const stored = await store.get<{ name: string; version: number }>('pool', 'pool-a');
        assert.equal(stored?.body.name, 'a2');
        assert.equal(stored?.body.version, 2, 'the body carries its version');
        assert.equal(stored?.version, 2);
        assert.deepEqual((await store.changesSince(1)).map((c) => c.revision), [2]);
      }));

    it('a write that changes nothing does not bump the revision', () =>
      withStore(async (store) => {
        const { revision } = await store.write(async (tx) => tx.get('pool', 'x'));
        assert.equal(revision, 0);
        assert.equal(await store.revision(), 0);
      }));

    it('refuses a create over an existing id and an update at a stale version', () =>
      withStore(async (store) => {
        await store.write((tx) => tx.put('pool', 'p', null, scope, { n: 1 }, 'absent'));
        await assert.rejects(
          store.write((tx) => tx.put('pool', 'p', null, scope, { n: 2 }, 'absent')),
          (err: unknown) => err instanceof VersionConflict && err.actual === 1,
        );
        await store.write((tx) => tx.put('pool', 'p', null, scope, { n: 2 }, 1));
        await assert.rejects(
          store.write((tx) => tx.put('pool', 'p', null, scope, { n: 3 }, 1)),
          (err: unknown) => err instanceof VersionConflict && err.expected === 1 && err.actual === 2,
        );
        await assert.rejects(
          store.write((tx) => tx.delete('pool', 'p', 1)),
          (err: unknown) => err instanceof VersionConflict,
        );
        assert.equal(await store.revision(), 2);
      }));

    it('rolls back the whole transaction when the callback throws', () =>
      withStore(async (store) => {
        await assert.rejects(
          store.write(async (tx) => {
            await tx.put('pool', 'p1', null, scope, {}, 'absent');
            throw new Error('domain rule failed');
          }),
          /domain rule failed/,
        );
        assert.equal(await store.get('pool', 'p1'), undefined);
        assert.equal(await store.revision(), 0);
        assert.deepEqual(await store.changesSince(0), []);
      }));

    it('sees its own writes inside a transaction; others see them only after commit', () =>
      withStore(async (store) => {
        let release!: () => void;
        const gate = new Promise<void>((resolve) => {
          release = resolve;
        });
        let insideSaw: unknown;
        const writing = store.write(async (tx) => {
          await tx.put('pool', 'p', null, scope, { n: 1 }, 'absent');
          insideSaw = (await tx.get('pool', 'p'))?.version;
          await gate;
        });
        // The write is open and waiting: a reader outside must not see it.
        await new Promise<void>((resolve) => setImmediate(resolve));
        assert.equal(await store.get('pool', 'p'), undefined);
        release();
        await writing;
        assert.equal(insideSaw, 1);
        assert.equal((await store.get('pool', 'p'))?.version, 1);
      }));

    it('serialises concurrent writes: every one lands with its own revision', () =>
      withStore(async (store) => {
        const writes = Array.from({ length: 20 }, (_, i) =>
          store.write(async (tx) => {
            const current = await tx.get<{ n: number }>('pool', 'counter');
            const n = (current?.body.n ?? 0) + 1;
            await tx.put('pool', 'counter', null, scope, { n }, current?.version ?? 'absent');
            return i;
          }),
        );
        const results = await Promise.all(writes);
        assert.deepEqual(results.map((r) => r.revision).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));
        assert.equal((await store.get<{ n: number }>('pool', 'counter'))?.body.n, 20);
      }));

    it('lists by parent and without parent, in creation order, with paging and totals', () =>
      withStore(async (store) => {
        await store.write(async (tx) => {
          await tx.put('pool', 'p1', null, scope, {}, 'absent');
          await tx.put('pool', 'p2', 'lb-1', scope, {}, 'absent');
          for (let i = 0; i < 5; i++) await tx.put('backend', `b${i}`, 'p1', scope, { i }, 'absent');
          await tx.put('backend', 'other', 'p2', scope, {}, 'absent');
        });
        const page = await store.list('backend', { parentId: 'p1', limit: 2, offset: 2 });
        assert.equal(page.total, 5);
        assert.deepEqual(page.items.map((r) => r.id), ['b2', 'b3']);
        assert.deepEqual((await store.list('pool', { parentId: null })).items.map((r) => r.id), ['p1']);
        assert.deepEqual((await store.list('pool', { parentId: 'lb-1' })).items.map((r) => r.id), ['p2']);
        assert.equal((await store.list('backend')).total, 6);
        // An update keeps the resource's place in the order.
        await store.write((tx) => tx.put('backend', 'b0', 'p1', scope, { i: 99 }, 1));
        assert.equal((await store.list('backend', { parentId: 'p1' })).items[0]?.id, 'b0');
      }));

    it('keeps the tenant scope of every resource', () =>
      withStore(async (store) => {
        await store.write((tx) => tx.put('load_balancer', 'lb', null, { org_id: 'acme', project_id: 'web' }, {}, 'absent'));
        assert.deepEqual((await store.get('load_balancer', 'lb'))?.scope, { org_id: 'acme', project_id: 'web' });
      }));

    it('deletes, logs the delete, and treats deleting a missing id as a no-op', () =>
      withStore(async (store) => {
        await store.write((tx) => tx.put('pool', 'p', null, scope, {}, 'absent'));
        const { revision } = await store.write((tx) => tx.delete('pool', 'p', 1));
        assert.equal(revision, 2);
        assert.equal(await store.get('pool', 'p'), undefined);
        assert.deepEqual((await store.changesSince(1)).map((c) => [c.op, c.id]), [['delete', 'p']]);
        const again = await store.write((tx) => tx.delete('pool', 'p'));
        assert.equal(again.revision, 2);
      }));

    it('tells watchers the new revision after each commit', () =>
      withStore(async (store) => {
        const seen: number[] = [];
        const unwatch = store.watch((r) => seen.push(r));
        await store.write((tx) => tx.put('pool', 'a', null, scope, {}, 'absent'));
        await store.write((tx) => tx.put('pool', 'b', null, scope, {}, 'absent'));
        unwatch();
        await store.write((tx) => tx.put('pool', 'c', null, scope, {}, 'absent'));
        assert.deepEqual(seen, [1, 2]);
      }));

    it('stores API keys by hash only', () =>
      withStore(async (store) => {
        const key = { key_id: 'k1', name: 'ci', token_hash: 'ab'.repeat(32), role: 'admin' as const, org_id: '*', project_id: null, created_at: '2026-01-01T00:00:00Z' };
        await store.putApiKey(key);
        assert.deepEqual(await store.findApiKeyByHash(key.token_hash), key);
        assert.equal(await store.findApiKeyByHash('cd'.repeat(32)), undefined);
        assert.equal((await store.listApiKeys()).length, 1);
        await store.deleteApiKey('k1');
        assert.equal(await store.findApiKeyByHash(key.token_hash), undefined);
        assert.equal(await store.revision(), 0, 'keys are not configuration: no revision bump');
      }));

    it('brings back every resource, version and the revision after a reopen', () =>
      withStore(async (store, reopen) => {
        await store.write(async (tx) => {
          await tx.put('load_balancer', 'lb', null, scope, { name: 'edge' }, 'absent');
          await tx.put('listener', 'l1', 'lb', scope, { port: 8080 }, 'absent');
        });
        await store.write((tx) => tx.put('listener', 'l1', 'lb', scope, { port: 8081 }, 1));
        const before = { lb: await store.get('load_balancer', 'lb'), l1: await store.get('listener', 'l1'), rev: await store.revision() };
        await store.close();
        assert.equal(store.isOpen(), false);
        const again = await reopen();
        try {
          assert.deepEqual(await again.get('load_balancer', 'lb'), before.lb);
          assert.deepEqual(await again.get('listener', 'l1'), before.l1);
          assert.equal(await again.revision(), before.rev);
          assert.equal((await again.changesSince(0)).length, 3);
        } finally {
          await again.close();
        }
      }));
  });
}
