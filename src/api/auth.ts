import { createHash, randomBytes } from 'node:crypto';
import type { ApiKey, Store } from '../store/store.ts';

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export const ADMIN_KEY_ID = 'key-admin';

export function extractBearer(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : undefined;
}

/** Looks a presented token up by its hash; the store never holds the token itself. */
export async function authenticate(store: Store, header: string | undefined): Promise<ApiKey | undefined> {
  const token = extractBearer(header);
  if (token === undefined) return undefined;
  return store.findApiKeyByHash(hashToken(token));
}

/**
 * Makes sure an admin key exists. A configured token always wins (it rotates the stored hash);
 * otherwise the first start generates one and returns it so it can be printed exactly once.
 */
export async function ensureAdminToken(store: Store, configured: string | undefined, now: string): Promise<{ generated?: string }> {
  const existing = (await store.listApiKeys()).find((k) => k.key_id === ADMIN_KEY_ID);
  if (configured !== undefined) {
    const hash = hashToken(configured);
    if (existing?.token_hash !== hash) {
      await store.putApiKey({ key_id: ADMIN_KEY_ID, name: 'admin', token_hash: hash, role: 'admin', org_id: '*', project_id: null, created_at: existing?.created_at ?? now });
    }
    return {};
  }
  if (existing) return {};
  const generated = `flc_${randomBytes(32).toString('base64url')}`;
  await store.putApiKey({ key_id: ADMIN_KEY_ID, name: 'admin', token_hash: hashToken(generated), role: 'admin', org_id: '*', project_id: null, created_at: now });
  return { generated };
}
