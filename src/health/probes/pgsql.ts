/**
 * PGSQL: a StartupMessage (protocol 3.0) for `pgsql_user` (default `postgres`) and
 * `pgsql_database` (default: the user's name, as libpq does), then the server's first answer.
 *
 * What passes — the operator's question is "can this server take connections?":
 * - 'R' (an authentication request, of any kind): the server got as far as authenticating us, so it
 *   accepts connections. We never send a password; with AuthenticationOk (trust) we read on to
 *   ReadyForQuery and send Terminate, so the server logs a clean disconnect.
 * - 'E' in SQLSTATE class 53 (insufficient resources: too many connections), 57 (operator
 *   intervention: starting up, shutting down, in recovery) or 08 (connection exception): the
 *   server is up but refuses work — FAIL, with its message.
 * - any other 'E' (no such role, no pg_hba.conf entry, no such database): the server is alive and
 *   speaking the protocol; only the check's own login was refused. PASS, with the server's words in
 *   `error` so the operator can fix the check — failing here would take a whole healthy pool out of
 *   rotation for a mistake in the check's settings.
 * Closing before answering an authentication request is what psql itself does before prompting
 * for a password; the server exits quietly, without logging an error.
 */
import type { Probe, ProbeResult } from '../probe.ts';
import { converse, ProbeFailure, quote, tlsOptions, type Wire } from './wire.ts';

const PROTOCOL_3_0 = 196608;
const SSL_REQUEST_CODE = 80877103;
/** SQLSTATE classes that mean "up, but not taking connections now". */
const REFUSING_CLASSES = new Set(['53', '57', '08']);
/** Startup answers are small; a longer one means we are not talking to PostgreSQL. */
const MAX_MESSAGE = 64 * 1024;

function startupMessage(user: string, database: string): Buffer {
  const pairs = ['user', user, 'database', database, 'application_name', 'fulcrum-health-check'];
  const body = Buffer.from(pairs.map((s) => `${s}\0`).join('') + '\0');
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(PROTOCOL_3_0, 4);
  return Buffer.concat([head, body]);
}

const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]); // 'X', length 4

/** One backend message: its type byte and body. */
async function readMessage(wire: Wire): Promise<{ type: string; body: Buffer }> {
  const head = await wire.read(5);
  const length = head.readInt32BE(1);
  if (length < 4 || length > MAX_MESSAGE) throw new ProbeFailure(`not a PostgreSQL reply ${quote(head)}`);
  return { type: String.fromCharCode(head[0]!), body: await wire.read(length - 4) };
}

/** ErrorResponse fields: a type byte and a C string each, ending with a zero byte. */
function errorFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const end = body.indexOf(0, at + 1);
    if (end < 0) break;
    fields.set(String.fromCharCode(body[at]!), body.toString('utf8', at + 1, end));
    at = end + 1;
  }
  return fields;
}

function judgeError(body: Buffer): ProbeResult {
  const fields = errorFields(body);
  const code = fields.get('C') ?? '?????';
  const said = `${code} ${fields.get('M') ?? 'error'}`;
  return REFUSING_CLASSES.has(code.slice(0, 2)) ? { ok: false, error: said } : { ok: true, error: `server is up; the check's login was refused: ${said}` };
}

export const pgsqlProbe: Probe = (target, check, signal) =>
  converse(target, signal, undefined, async (wire) => {
    if (check.tls_enabled) {
      // TLS is negotiated in-protocol: SSLRequest, then one byte, 'S' or 'N'.
      const request = Buffer.alloc(8);
      request.writeInt32BE(8, 0);
      request.writeInt32BE(SSL_REQUEST_CODE, 4);
      wire.write(request);
      const answer = await wire.read(1);
      if (answer[0] === 0x4e) return { ok: false, error: 'server does not accept TLS' }; // 'N'
      if (answer[0] !== 0x53) throw new ProbeFailure(`not a PostgreSQL reply ${quote(answer)}`); // 'S'
      await wire.startTls(tlsOptions(check));
    }
    const user = check.pgsql_user ?? 'postgres';
    wire.write(startupMessage(user, check.pgsql_database ?? user));

    const first = await readMessage(wire);
    if (first.type === 'E') return judgeError(first.body);
    if (first.type !== 'R' || first.body.length < 4) throw new ProbeFailure(`not a PostgreSQL reply ${quote(Buffer.from(first.type))}`);
    if (first.body.readInt32BE(0) !== 0) return { ok: true }; // a password/SASL request: accepting connections

    // AuthenticationOk: parameters and key data follow, then ReadyForQuery — or a FATAL error
    // (a database that does not exist is only found after authentication).
    for (;;) {
      const m = await readMessage(wire);
      if (m.type === 'E') return judgeError(m.body);
      if (m.type === 'Z') break;
      if (!'SKNv'.includes(m.type)) throw new ProbeFailure(`not a PostgreSQL reply ${quote(Buffer.from(m.type))}`);
    }
    wire.end(TERMINATE);
    return { ok: true };
  });
