/**
 * REDIS: `PING` must be answered `+PONG` (Scaleway's redis_config: "the response is analyzed to
 * find the +PONG response message"). With `redis_password`, `AUTH` goes first, in the same write:
 * Redis answers pipelined commands in order. A server that is loading its dataset answers PING
 * with `-LOADING …` and so fails, as it should: it cannot serve yet.
 */
import type { Probe } from '../probe.ts';
import { converse, ProbeFailure, quote, tlsOptions } from './wire.ts';

/** A command as a RESP array of bulk strings: what every Redis since 1.2 reads. */
function command(...args: string[]): Buffer {
  let out = `*${args.length}\r\n`;
  for (const a of args) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
  return Buffer.from(out);
}

/** Error replies are one line; a longer first line is not Redis. */
const MAX_LINE = 4096;

function expectSimple(line: string, want: string): void {
  if (line === `+${want}`) return;
  if (line.startsWith('-')) throw new ProbeFailure(`redis error: ${line.slice(1)}`);
  throw new ProbeFailure(`unexpected reply ${quote(Buffer.from(line))}`);
}

export const redisProbe: Probe = (target, check, signal) =>
  converse(target, signal, check.tls_enabled ? tlsOptions(check) : undefined, async (wire) => {
    const auth = check.redis_password !== undefined;
    wire.write(Buffer.concat([...(auth ? [command('AUTH', check.redis_password!)] : []), command('PING')]));
    if (auth) expectSimple(await wire.readLine(MAX_LINE), 'OK');
    expectSimple(await wire.readLine(MAX_LINE), 'PONG');
    wire.end(command('QUIT'));
    return { ok: true };
  });
