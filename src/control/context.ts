import { randomBytes } from 'node:crypto';
import type { BackendState } from '../runtime/backend-state.ts';
import type { Expectation, Store, WriteTx } from '../store/store.ts';
import { VersionConflict } from '../store/store.ts';
import type { RandomSource } from './ids.ts';
import { FulcrumError } from './errors.ts';
import type { HostPort } from '../config/settings.ts';
import { isoSeconds } from '../model/common.ts';
import type { BreakerView } from '../runtime/circuit-breaker.ts';
import type { RequestFacts } from '../policy/request.ts';
import type { DryRunResult } from '../dataplane/http/policies.ts';

/** What the control plane needs of the data plane: apply config, try a bind, report listeners. */
export interface DataPlaneControl {
  /** Resolves once the data plane runs the store's current revision. */
  sync(): Promise<void>;
  /** Tries to bind address:port for `protocol` and releases it; rejects with the OS's reason. */
  probeBind(protocol: string, address: string, port: number): Promise<void>;
  listenerStatus(listenerId: string): { status: 'ACTIVE' | 'DISABLED' | 'ERROR' | 'PENDING'; message: string | null };
  /** The pool's circuit breaker as it stands; null when the pool has none enabled. */
  breakerView(poolId: string): BreakerView | null;
  /** A backend's health changed outside the data plane (an override): balancers re-read it. */
  healthChanged(serverId: string): void;
  /** The dry run of a request against the layer 7 policies served now; counts nothing. */
  routeTest(facts: RequestFacts, rawHeaders: readonly string[]): DryRunResult;
}

export interface Clock {
  now(): number;
}

export interface ControlContext {
  store: Store;
  state: BackendState;
  dataPlane: DataPlaneControl;
  clock: Clock;
  random: RandomSource;
  /** Addresses Fulcrum itself holds (the management API); listeners may not take them. */
  reserved: () => HostPort[];
}

export const systemClock: Clock = { now: () => Date.now() };
export const systemRandom: RandomSource = (n) => randomBytes(n);

export function isoNow(clock: Clock): string {
  return isoSeconds(clock.now());
}

/** The version an update must match: If-Match wins over a `version` field; none means any. */
export function expectedVersion(ifMatch: string | undefined, bodyVersion: number | undefined): Expectation {
  if (ifMatch !== undefined && ifMatch.trim() !== '*') {
    const m = /^(?:W\/)?"?(\d+)"?$/.exec(ifMatch.trim());
    if (!m) {
      throw new FulcrumError('INVALID_PARAMETER', `If-Match '${ifMatch}' is not a resource version such as "3"`, {
        header: 'If-Match',
      });
    }
    return Number(m[1]);
  }
  return bodyVersion ?? 'any';
}

/** Turns the store's conflict into the API's 409 VERSION_CONFLICT. */
export function asVersionConflict(err: unknown): never {
  if (err instanceof VersionConflict) {
    throw new FulcrumError(
      'VERSION_CONFLICT',
      `${err.id} was changed by someone else: it is at version ${err.actual ?? 'deleted'}, the request expected ${String(err.expected)}`,
      { resource_id: err.id, expected_version: err.expected, current_version: err.actual },
    );
  }
  throw err;
}

/** Runs a write and lets the data plane catch up before the API answers. */
export async function writeAndApply<T>(
  ctx: ControlContext,
  fn: (tx: WriteTx) => Promise<T>,
): Promise<T> {
  let out: { result: T; revision: number };
  try {
    out = await ctx.store.write(fn);
  } catch (err) {
    asVersionConflict(err);
  }
  await ctx.dataPlane.sync();
  return out.result;
}

/** Fills an absent page query and computes the `pagination` block. */
export function paging(query: { page?: number; per_page?: number }) {
  const page = query.page ?? 1;
  const perPage = query.per_page ?? 50;
  return {
    limit: perPage,
    offset: (page - 1) * perPage,
    block: (total: number) => ({ page, per_page: perPage, total, total_pages: Math.ceil(total / perPage) }),
  };
}
