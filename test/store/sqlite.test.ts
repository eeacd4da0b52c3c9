import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { it } from 'node:test';
import { SQLITE_FILE, SqliteStore } from '../../src/store/sqlite/sqlite-store.ts';
import { MIGRATIONS } from '../../src/store/sqlite/migrations.ts';
import { tempDir } from '../helpers/fulcrum.ts';
import { storeConformance } from './conformance.ts';

storeConformance('SQLite', {
  async create() {
    const dir = tempDir('fulcrum-store-');
    const opened: SqliteStore[] = [SqliteStore.open(dir.path)];
    return {
      store: opened[0]!,
      reopen: async () => {
        const s = SqliteStore.open(dir.path);
        opened.push(s);
        return s;
      },
      dispose: async () => {
        for (const s of opened) await s.close();
        dir.remove();
      },
    };
  },
});

it('SQLite store: creates the data dir, uses WAL and records applied migrations', async () => {
  const dir = tempDir('fulcrum-store-');
  const dataDir = join(dir.path, 'nested', 'data');
  const store = SqliteStore.open(dataDir);
  await store.close();
  assert.ok(existsSync(join(dataDir, SQLITE_FILE)));
  const db = new DatabaseSync(join(dataDir, SQLITE_FILE));
  try {
    assert.equal((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode, 'wal');
    const versions = (db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as { version: number }[]).map((r) => r.version);
    assert.deepEqual(versions, MIGRATIONS.map((m) => m.version));
  } finally {
    db.close();
    dir.remove();
  }
});

it('SQLite store: reopening does not re-run migrations', async () => {
  const dir = tempDir('fulcrum-store-');
  try {
    const a = SqliteStore.open(dir.path);
    await a.write((tx) => tx.put('pool', 'p', null, { org_id: 'default', project_id: 'default' }, {}, 'absent'));
    await a.close();
    const b = SqliteStore.open(dir.path);
    assert.equal(await b.revision(), 1);
    await b.close();
  } finally {
    dir.remove();
  }
});
