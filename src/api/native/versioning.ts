/** Optimistic concurrency on the wire: a resource's version goes out as its ETag and comes back as If-Match. */
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';

/** A resource id in a path. */
export const Id = Type.String({ minLength: 1, maxLength: 128 });

/** Lets a client compare before it writes: `If-Match` takes this value. */
export function etag<T extends { version: number }>(reply: FastifyReply, resource: T): T {
  reply.header('etag', `"${resource.version}"`);
  return resource;
}

export function ifMatch(headers: Record<string, string | string[] | undefined>): string | undefined {
  const v = headers['if-match'];
  return Array.isArray(v) ? v[0] : v;
}
