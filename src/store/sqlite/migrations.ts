/**
 * Schema migrations of the embedded store, applied in order at open. Never edit a shipped
 * migration; add the next one.
 */
export const MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'resources, revision, change log, api keys',
    sql: `
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT;
      INSERT INTO meta (key, value) VALUES ('config_version', '0');

      CREATE TABLE resources (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        kind       TEXT NOT NULL,
        id         TEXT NOT NULL,
        parent_id  TEXT,
        org_id     TEXT NOT NULL,
        project_id TEXT NOT NULL,
        version    INTEGER NOT NULL,
        body       TEXT NOT NULL,
        UNIQUE (kind, id)
      ) STRICT;
      CREATE INDEX resources_parent ON resources (kind, parent_id, seq);
      CREATE INDEX resources_scope ON resources (kind, org_id, project_id, seq);

      CREATE TABLE changes (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        revision INTEGER NOT NULL,
        kind     TEXT NOT NULL,
        id       TEXT NOT NULL,
        op       TEXT NOT NULL CHECK (op IN ('put', 'delete')),
        version  INTEGER NOT NULL,
        at       TEXT NOT NULL
      ) STRICT;
      CREATE INDEX changes_revision ON changes (revision);

      CREATE TABLE api_keys (
        key_id     TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        role       TEXT NOT NULL,
        org_id     TEXT NOT NULL,
        project_id TEXT,
        created_at TEXT NOT NULL
      ) STRICT;
    `,
  },
];
