/**
 * One-line summaries of a rule for listings (seed 000 §6 `match_summary`, `action_summary`):
 * `Host: api.example.com, Path: /v2/*, Header: X-Canary=true` and
 * `Weighted: pool-canary(10%) + pool-stable(90%)`. Conditions are joined by ", ", alternatives of
 * one condition by "|"; long lists show their first five and a count. Every condition appears
 * (methods included, which the seed's example leaves out): a summary that hides one misleads.
 */
import type { RuleAction, RuleMatch } from '../../model/routing-rule.ts';
import { DEFAULT_CONTENT_TYPE, DEFAULT_REDIRECT_STATUS } from './rule.ts';

const SHOWN = 5;

function alternatives(values: readonly string[]): string {
  if (values.length <= SHOWN) return values.join('|');
  return `${values.slice(0, SHOWN).join('|')}|… +${values.length - SHOWN} more`;
}

export function summarizeMatch(m: RuleMatch): string {
  const parts: string[] = [];
  if (m.hosts) parts.push(`Host: ${alternatives(m.hosts)}`);
  if (m.paths) parts.push(`Path: ${alternatives(m.paths)}`);
  if (m.path_prefix !== undefined) parts.push(`Path prefix: ${m.path_prefix}`);
  if (m.path_exact !== undefined) parts.push(`Path exact: ${m.path_exact}`);
  if (m.path_regex !== undefined) parts.push(`Path regex: ${m.path_regex}`);
  for (const [name, values] of Object.entries(m.headers ?? {})) parts.push(`Header: ${name}=${alternatives(values)}`);
  if (m.methods) parts.push(`Method: ${alternatives(m.methods)}`);
  for (const [name, value] of Object.entries(m.query ?? {})) parts.push(`Query: ${name}=${value}`);
  if (m.source_ips) parts.push(`Source: ${alternatives(m.source_ips)}`);
  if (m.listener_ids) parts.push(`Listener: ${alternatives(m.listener_ids)}`);
  return parts.length === 0 ? 'Any request' : parts.join(', ');
}

/** A pool's display name by id (a Map of pool id → name will do); the id where it has none. */
export interface PoolNames {
  get(poolId: string): string | undefined;
}

function percent(weight: number, total: number): string {
  const p = total > 0 ? (weight * 100) / total : 0;
  return `${Number.isInteger(p) ? p : Math.round(p * 10) / 10}%`;
}

export function summarizeAction(a: RuleAction, poolNames?: PoolNames): string {
  const pool = (id: string | undefined) => (id === undefined ? '?' : (poolNames?.get(id) ?? id));
  switch (a.type) {
    case 'FORWARD':
      return `Forward: ${pool(a.pool_id)}`;
    case 'WEIGHTED_ROUTE': {
      const targets = a.targets ?? [];
      const total = targets.reduce((n, t) => n + t.weight, 0);
      return `Weighted: ${targets.map((t) => `${pool(t.pool_id)}(${percent(t.weight, total)})`).join(' + ')}`;
    }
    case 'REDIRECT':
      return `Redirect ${a.status_code ?? DEFAULT_REDIRECT_STATUS}: ${a.url ?? '?'}${a.keep_path_and_query ? ' (path and query kept)' : ''}`;
    case 'FIXED_RESPONSE':
      return `Fixed ${a.status_code ?? '?'}: ${a.content_type ?? DEFAULT_CONTENT_TYPE}`;
  }
}
