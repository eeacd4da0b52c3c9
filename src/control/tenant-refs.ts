/**
 * References from a tenant's policies (routing rules, rate limits, ACLs) to its pools and
 * listeners: each must exist in the same organisation, and a listener must carry HTTP requests.
 * Read through the write transaction's view, so that a check and its write agree.
 */
import type { Listener } from '../model/listener.ts';
import type { Pool } from '../model/pool.ts';
import type { ReadView } from '../store/store.ts';
import type { FieldProblem } from './errors.ts';

/** Listener protocols whose traffic is HTTP requests, which layer 7 policies act on. */
export const HTTP_PROTOCOLS: readonly string[] = ['HTTP', 'HTTPS'];

/** Each `[field, pool id]` names a pool of `orgId`. */
export async function checkPoolRefs(view: ReadView, refs: readonly (readonly [string, string])[], orgId: string, problems: FieldProblem[]): Promise<void> {
  for (const [field, id] of refs) {
    const found = await view.get<Pool>('pool', id);
    if (!found || found.body.org_id !== orgId) problems.push({ field, reason: `no pool '${id}' in organisation '${orgId}'` });
  }
}

/**
 * Each of `ids` (reported as `match.listener_ids[i]`) is an HTTP or HTTPS listener of `orgId`;
 * `why` ends the refusal of another protocol (what the policy acts on instead).
 */
export async function checkHttpListenerRefs(view: ReadView, ids: readonly string[], orgId: string, why: string, problems: FieldProblem[]): Promise<void> {
  for (const [i, id] of ids.entries()) {
    const found = await view.get<Listener>('listener', id);
    const field = `match.listener_ids[${i}]`;
    if (!found || found.body.org_id !== orgId) problems.push({ field, reason: `no listener '${id}' in organisation '${orgId}'` });
    else if (!HTTP_PROTOCOLS.includes(found.body.protocol)) problems.push({ field, reason: `listener '${id}' is a ${found.body.protocol} listener: ${why}` });
  }
}
