/**
 * The configuration store. Every implementation (SQLite embedded, PostgreSQL shared) passes the
 * same conformance suite (`test/store/conformance.ts`).
 *
 * - Every write runs in one transaction. A transaction that changes anything bumps the global
 *   revision (`config_version`) once and appends one change-log row per changed resource.
 * - Each resource has its own `version`, bumped on every update; a put may state the version it
 *   expects and fails with `VersionConflict` when it differs.
 * - Reads outside a transaction see only committed data.
 */

// certificate_rotation: a certificate's rotation records, parent = cert_id, deleted with it.
export const KINDS = ['load_balancer', 'listener', 'pool', 'backend', 'certificate', 'certificate_rotation', 'routing_rule', 'rate_limit', 'acl'] as const;
export type Kind = (typeof KINDS)[number];

export interface Scope {
  org_id: string;
  project_id: string;
}

export interface StoredResource<T = Record<string, unknown>> {
  kind: Kind;
  id: string;
  /** The owning resource: a listener's LB, a backend's pool, a pool's owning LB (or null). */
  parentId: string | null;
  scope: Scope;
  version: number;
  body: T;
}

export interface ListQuery {
  parentId?: string | null;
  /** Page window; without it every match is returned. */
  limit?: number;
  offset?: number;
}

export interface ListResult<T> {
  items: StoredResource<T>[];
  total: number;
}

/** `absent`: the id must not exist yet (a create). A number: the version the caller last read. */
export type Expectation = 'absent' | 'any' | number;

export interface ReadView {
  get<T = Record<string, unknown>>(kind: Kind, id: string): Promise<StoredResource<T> | undefined>;
  list<T = Record<string, unknown>>(kind: Kind, query?: ListQuery): Promise<ListResult<T>>;
}

export interface WriteTx extends ReadView {
  /** Creates or replaces; returns the stored resource with its new version. */
  put<T>(
    kind: Kind,
    id: string,
    parentId: string | null,
    scope: Scope,
    body: T,
    expect: Expectation,
  ): Promise<StoredResource<T>>;
  delete(kind: Kind, id: string, expect?: Expectation): Promise<void>;
}

export type ChangeOp = 'put' | 'delete';

export interface Change {
  revision: number;
  kind: Kind;
  id: string;
  op: ChangeOp;
  version: number;
  at: string;
}

export interface ApiKey {
  key_id: string;
  name: string;
  /** SHA-256 of the token, hex. The token itself is never stored. */
  token_hash: string;
  role: 'admin';
  org_id: string;
  project_id: string | null;
  created_at: string;
}

export interface Store extends ReadView {
  /** Runs `fn` in one transaction; the revision is bumped once if it changed anything. */
  write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<{ result: T; revision: number }>;
  revision(): Promise<number>;
  changesSince(revision: number, limit?: number): Promise<Change[]>;
  /** Called after each committed write with the new revision. Returns an unsubscribe function. */
  watch(listener: (revision: number) => void): () => void;

  findApiKeyByHash(tokenHash: string): Promise<ApiKey | undefined>;
  listApiKeys(): Promise<ApiKey[]>;
  putApiKey(key: ApiKey): Promise<void>;
  deleteApiKey(keyId: string): Promise<void>;

  /** True until close(); `/ready` reports it. */
  isOpen(): boolean;
  close(): Promise<void>;
}

export class VersionConflict extends Error {
  readonly kind: Kind;
  readonly id: string;
  readonly expected: Expectation;
  readonly actual: number | null;

  constructor(kind: Kind, id: string, expected: Expectation, actual: number | null) {
    super(
      actual === null
        ? `${kind} '${id}' does not exist (expected version ${String(expected)})`
        : `${kind} '${id}' is at version ${actual}, expected ${String(expected)}`,
    );
    this.name = 'VersionConflict';
    this.kind = kind;
    this.id = id;
    this.expected = expected;
    this.actual = actual;
  }
}
