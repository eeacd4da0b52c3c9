import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import {
  type ApiKey,
  type Change,
  type Expectation,
  type Kind,
  type ListQuery,
  type ListResult,
  type Scope,
  type Store,
  type StoredResource,
  VersionConflict,
  type WriteTx,
} from '../store.ts';
import { MIGRATIONS } from './migrations.ts';

export const SQLITE_FILE = 'fulcrum.db';

interface Row {
  kind: string;
  id: string;
  parent_id: string | null;
  org_id: string;
  project_id: string;
  version: number;
  body: string;
}

function toResource<T>(row: Row): StoredResource<T> {
  return {
    kind: row.kind as Kind,
    id: row.id,
    parentId: row.parent_id,
    scope: { org_id: row.org_id, project_id: row.project_id },
    version: row.version,
    body: JSON.parse(row.body) as T,
  };
}

function openDatabase(path: string): DatabaseSync {
  const db = new DatabaseSync(path);
  // WAL lets the reader connection see the last commit while a write is open; FULL makes each
  // acknowledged commit durable before the API answers (a SIGKILL or power cut loses nothing).
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;');
  return db;
}

function migrate(db: DatabaseSync): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT');
  const applied = new Set(
    (db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version),
  );
  for (const m of MIGRATIONS) {
    if (applied.has(m.version)) continue;
    db.exec('BEGIN IMMEDIATE');
    try {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        m.version,
        m.name,
        new Date().toISOString(),
      );
      db.exec('COMMIT');
    } catch (err) {
      db.exec('ROLLBACK');
      throw new Error(`store migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** The statements only the writer connection runs, prepared once. */
class WriteStatements {
  readonly upsert: StatementSync;
  readonly remove: StatementSync;
  readonly setRevision: StatementSync;
  readonly logChange: StatementSync;

  constructor(db: DatabaseSync) {
    this.upsert = db.prepare(
      `INSERT INTO resources (kind, id, parent_id, org_id, project_id, version, body) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (kind, id) DO UPDATE SET parent_id = excluded.parent_id, org_id = excluded.org_id,
         project_id = excluded.project_id, version = excluded.version, body = excluded.body`,
    );
    this.remove = db.prepare('DELETE FROM resources WHERE kind = ? AND id = ?');
    this.setRevision = db.prepare("UPDATE meta SET value = ? WHERE key = 'config_version'");
    this.logChange = db.prepare('INSERT INTO changes (revision, kind, id, op, version, at) VALUES (?, ?, ?, ?, ?, ?)');
  }
}

/** Prepared statements of one connection. */
class Statements {
  readonly get: StatementSync;
  readonly listAll: StatementSync;
  readonly countAll: StatementSync;
  readonly listByParent: StatementSync;
  readonly countByParent: StatementSync;
  readonly listNoParent: StatementSync;
  readonly countNoParent: StatementSync;
  readonly revision: StatementSync;

  constructor(db: DatabaseSync) {
    const cols = 'kind, id, parent_id, org_id, project_id, version, body';
    this.get = db.prepare(`SELECT ${cols} FROM resources WHERE kind = ? AND id = ?`);
    this.listAll = db.prepare(`SELECT ${cols} FROM resources WHERE kind = ? ORDER BY seq LIMIT ? OFFSET ?`);
    this.countAll = db.prepare('SELECT count(*) AS n FROM resources WHERE kind = ?');
    this.listByParent = db.prepare(
      `SELECT ${cols} FROM resources WHERE kind = ? AND parent_id = ? ORDER BY seq LIMIT ? OFFSET ?`,
    );
    this.countByParent = db.prepare('SELECT count(*) AS n FROM resources WHERE kind = ? AND parent_id = ?');
    this.listNoParent = db.prepare(
      `SELECT ${cols} FROM resources WHERE kind = ? AND parent_id IS NULL ORDER BY seq LIMIT ? OFFSET ?`,
    );
    this.countNoParent = db.prepare('SELECT count(*) AS n FROM resources WHERE kind = ? AND parent_id IS NULL');
    this.revision = db.prepare("SELECT value FROM meta WHERE key = 'config_version'");
  }

  currentRevision(): number {
    return Number((this.revision.get() as { value: string }).value);
  }

  read<T>(kind: Kind, id: string): StoredResource<T> | undefined {
    const row = this.get.get(kind, id) as Row | undefined;
    return row ? toResource<T>(row) : undefined;
  }

  list<T>(kind: Kind, query: ListQuery = {}): ListResult<T> {
    const limit = query.limit ?? -1;
    const offset = query.offset ?? 0;
    let rows: Row[];
    let total: number;
    if (query.parentId === undefined) {
      rows = this.listAll.all(kind, limit, offset) as unknown as Row[];
      total = (this.countAll.get(kind) as { n: number }).n;
    } else if (query.parentId === null) {
      rows = this.listNoParent.all(kind, limit, offset) as unknown as Row[];
      total = (this.countNoParent.get(kind) as { n: number }).n;
    } else {
      rows = this.listByParent.all(kind, query.parentId, limit, offset) as unknown as Row[];
      total = (this.countByParent.get(kind, query.parentId) as { n: number }).n;
    }
    return { items: rows.map((r) => toResource<T>(r)), total };
  }
}

function checkExpectation(kind: Kind, id: string, expect: Expectation, actual: number | null): void {
  if (expect === 'any') return;
  if (expect === 'absent') {
    if (actual !== null) throw new VersionConflict(kind, id, expect, actual);
    return;
  }
  if (actual !== expect) throw new VersionConflict(kind, id, expect, actual);
}

/**
 * The embedded store: one SQLite file in the data dir, opened with two connections. Writes go
 * through the writer connection one transaction at a time (an in-process queue serialises them,
 * since a transaction's callback may await); reads use the reader connection, which in WAL mode
 * sees the last committed state and never a write in progress.
 */
export class SqliteStore implements Store {
  readonly #writer: DatabaseSync;
  readonly #reader: DatabaseSync;
  readonly #w: Statements;
  readonly #r: Statements;
  readonly #ws: WriteStatements;
  readonly #watchers = new Set<(revision: number) => void>();
  #queue: Promise<unknown> = Promise.resolve();
  #open = true;

  private constructor(path: string) {
    this.#writer = openDatabase(path);
    migrate(this.#writer);
    this.#reader = openDatabase(path);
    this.#w = new Statements(this.#writer);
    this.#r = new Statements(this.#reader);
    this.#ws = new WriteStatements(this.#writer);
  }

  /** Opens (creating if needed) the store in `dataDir`, or `:memory:`-less temp use via a path. */
  static open(dataDir: string): SqliteStore {
    mkdirSync(dataDir, { recursive: true });
    return new SqliteStore(join(dataDir, SQLITE_FILE));
  }

  isOpen(): boolean {
    return this.#open;
  }

  async get<T>(kind: Kind, id: string): Promise<StoredResource<T> | undefined> {
    this.#assertOpen();
    return this.#r.read<T>(kind, id);
  }

  async list<T>(kind: Kind, query?: ListQuery): Promise<ListResult<T>> {
    this.#assertOpen();
    return this.#r.list<T>(kind, query);
  }

  async revision(): Promise<number> {
    this.#assertOpen();
    return this.#r.currentRevision();
  }

  async changesSince(revision: number, limit = 1000): Promise<Change[]> {
    this.#assertOpen();
    const rows = this.#reader
      .prepare('SELECT revision, kind, id, op, version, at FROM changes WHERE revision > ? ORDER BY seq LIMIT ?')
      .all(revision, limit);
    return rows.map((r) => ({ ...r }) as unknown as Change);
  }

  watch(listener: (revision: number) => void): () => void {
    this.#watchers.add(listener);
    return () => this.#watchers.delete(listener);
  }

  write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<{ result: T; revision: number }> {
    const run = this.#queue.then(() => this.#runWrite(fn));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #runWrite<T>(fn: (tx: WriteTx) => Promise<T>): Promise<{ result: T; revision: number }> {
    this.#assertOpen();
    const db = this.#writer;
    const w = this.#w;
    const ws = this.#ws;
    const now = new Date().toISOString();
    const changes: { kind: Kind; id: string; op: 'put' | 'delete'; version: number }[] = [];
    const tx: WriteTx = {
      get: async <U>(kind: Kind, id: string) => w.read<U>(kind, id),
      list: async <U>(kind: Kind, query?: ListQuery) => w.list<U>(kind, query),
      put: async <U>(kind: Kind, id: string, parentId: string | null, scope: Scope, body: U, expect: Expectation) => {
        const current = w.read(kind, id);
        checkExpectation(kind, id, expect, current?.version ?? null);
        const version = (current?.version ?? 0) + 1;
        const stored = { ...(body as object), version } as U;
        ws.upsert.run(kind, id, parentId, scope.org_id, scope.project_id, version, JSON.stringify(stored));
        changes.push({ kind, id, op: 'put', version });
        return { kind, id, parentId, scope, version, body: stored };
      },
      delete: async (kind: Kind, id: string, expect: Expectation = 'any') => {
        const current = w.read(kind, id);
        if (current === undefined) {
          if (expect === 'any') return;
          throw new VersionConflict(kind, id, expect, null);
        }
        checkExpectation(kind, id, expect, current.version);
        ws.remove.run(kind, id);
        changes.push({ kind, id, op: 'delete', version: current.version });
      },
    };

    db.exec('BEGIN IMMEDIATE');
    let result: T;
    let revision: number;
    try {
      result = await fn(tx);
      revision = w.currentRevision();
      if (changes.length > 0) {
        revision += 1;
        ws.setRevision.run(String(revision));
        for (const c of changes) ws.logChange.run(revision, c.kind, c.id, c.op, c.version, now);
      }
      db.exec('COMMIT');
    } catch (err) {
      if (db.isTransaction) db.exec('ROLLBACK');
      throw err;
    }
    if (changes.length > 0) for (const watcher of this.#watchers) watcher(revision);
    return { result, revision };
  }

  async findApiKeyByHash(tokenHash: string): Promise<ApiKey | undefined> {
    this.#assertOpen();
    const row = this.#reader
      .prepare('SELECT key_id, name, token_hash, role, org_id, project_id, created_at FROM api_keys WHERE token_hash = ?')
      .get(tokenHash);
    return row ? ({ ...row } as unknown as ApiKey) : undefined;
  }

  async listApiKeys(): Promise<ApiKey[]> {
    this.#assertOpen();
    const rows = this.#reader
      .prepare('SELECT key_id, name, token_hash, role, org_id, project_id, created_at FROM api_keys ORDER BY created_at')
      .all();
    return rows.map((r) => ({ ...r }) as unknown as ApiKey);
  }

  async putApiKey(key: ApiKey): Promise<void> {
    this.#assertOpen();
    await this.#serialised(() =>
      this.#writer
        .prepare(
          `INSERT INTO api_keys (key_id, name, token_hash, role, org_id, project_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (key_id) DO UPDATE SET name = excluded.name, token_hash = excluded.token_hash, role = excluded.role,
             org_id = excluded.org_id, project_id = excluded.project_id`,
        )
        .run(key.key_id, key.name, key.token_hash, key.role, key.org_id, key.project_id, key.created_at),
    );
  }

  async deleteApiKey(keyId: string): Promise<void> {
    this.#assertOpen();
    await this.#serialised(() => this.#writer.prepare('DELETE FROM api_keys WHERE key_id = ?').run(keyId));
  }

  async close(): Promise<void> {
    if (!this.#open) return;
    await this.#queue;
    this.#open = false;
    this.#reader.close();
    this.#writer.close();
  }

  #serialised<T>(fn: () => T): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #assertOpen(): void {
    if (!this.#open) throw new Error('store is closed');
  }
}
