/**
 * MYSQL (and MariaDB): the server speaks first, with its handshake packet (protocol version 10,
 * every MySQL since 3.21). An ERR packet instead of it — too many connections, host blocked, host
 * not allowed — fails with the server's message.
 *
 * Without `mysql_user`, the greeting alone passes and the socket closes. MySQL counts a
 * connection closed mid-handshake against `max_connect_errors` and blocks the host after that
 * many in a row (HAProxy's mysql-check warns of the same). Set `mysql_user` — an account with no
 * password, e.g. `CREATE USER 'fulcrum'@'<lb address>'` — and the probe logs in fully, then sends
 * COM_QUIT: a clean session that clears the count. With it, OK passes; a refused login of the
 * check's own account (access denied, locked, expired) passes with the server's words in `error`,
 * like PGSQL: the server is alive, the check is misconfigured. `tls_enabled` applies to that login.
 */
import type { HealthCheck } from '../../model/health-check.ts';
import type { Probe, ProbeResult } from '../probe.ts';
import { converse, ProbeFailure, quote, tlsOptions, type Wire } from './wire.ts';

const CLIENT_LONG_PASSWORD = 0x1;
const CLIENT_PROTOCOL_41 = 0x200;
const CLIENT_SSL = 0x800;
const CLIENT_SECURE_CONNECTION = 0x8000;
const CLIENT_PLUGIN_AUTH = 0x80000;
const MAX_PACKET = 16 * 1024 * 1024;
const UTF8_GENERAL_CI = 33;

/** Error codes that refuse the check's account, not the server's service. */
const LOGIN_REFUSED = new Set([
  1044, // ER_DBACCESS_DENIED_ERROR
  1045, // ER_ACCESS_DENIED_ERROR
  1251, // ER_NOT_SUPPORTED_AUTH_MODE
  1524, // ER_PLUGIN_IS_NOT_LOADED
  1698, // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
  1862, // ER_MUST_CHANGE_PASSWORD_LOGIN
  3118, // ER_ACCOUNT_HAS_BEEN_LOCKED
  4151, // ER_ACCOUNT_HAS_BEEN_LOCKED (MariaDB)
]);

interface Packet {
  seq: number;
  payload: Buffer;
}

async function readPacket(wire: Wire): Promise<Packet> {
  const head = await wire.read(4);
  const length = head.readUIntLE(0, 3);
  if (length === 0) throw new ProbeFailure(`not a MySQL reply ${quote(head)}`);
  return { seq: head[3]!, payload: await wire.read(length) };
}

function packet(seq: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUIntLE(payload.length, 0, 3);
  head[3] = seq & 0xff;
  return Buffer.concat([head, payload]);
}

/** ERR: 0xff, code, then (protocol 4.1, after the greeting) '#' and a 5-character SQLSTATE, then the message. */
function errPacket(payload: Buffer): { code: number; message: string } {
  const code = payload.length >= 3 ? payload.readUInt16LE(1) : 0;
  const at = payload[3] === 0x23 ? 9 : 3;
  return { code, message: payload.toString('utf8', at) };
}

interface Greeting {
  capabilities: number;
  plugin: string;
}

function parseGreeting(p: Buffer): Greeting {
  const versionEnd = p.indexOf(0, 1);
  if (versionEnd < 0) throw new ProbeFailure(`not a MySQL greeting ${quote(p)}`);
  let at = versionEnd + 1 + 4 + 8 + 1; // connection id, auth data part 1, filler
  let capabilities = p.length >= at + 2 ? p.readUInt16LE(at) : 0;
  at += 2;
  if (p.length < at + 16) return { capabilities, plugin: 'mysql_native_password' };
  capabilities |= p.readUInt16LE(at + 3) << 16; // after character set and status flags
  const authDataLength = p[at + 5]!;
  at += 16; // character set, status, upper capabilities, auth data length, 10 reserved
  if (capabilities & CLIENT_SECURE_CONNECTION) at += Math.max(13, authDataLength - 8);
  const pluginEnd = p.indexOf(0, at);
  const plugin = capabilities & CLIENT_PLUGIN_AUTH && at < p.length ? p.toString('latin1', at, pluginEnd < 0 ? p.length : pluginEnd) : '';
  return { capabilities, plugin: plugin || 'mysql_native_password' };
}

/** The fixed head of HandshakeResponse41 and of the SSL request packet. */
function clientFlags(capabilities: number): Buffer {
  const head = Buffer.alloc(32);
  head.writeUInt32LE(capabilities >>> 0, 0);
  head.writeUInt32LE(MAX_PACKET, 4);
  head[8] = UTF8_GENERAL_CI; // 23 reserved zero bytes follow
  return head;
}

/** Logs in as `user` with an empty password; answers one auth switch with an empty response too. */
async function login(wire: Wire, greeting: Greeting, user: string, check: HealthCheck): Promise<ProbeResult> {
  if (!(greeting.capabilities & CLIENT_PROTOCOL_41)) return { ok: false, error: 'server predates MySQL 4.1; unset mysql_user to check its greeting only' };
  let capabilities = CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | (greeting.capabilities & CLIENT_PLUGIN_AUTH);
  let seq = 1;
  if (check.tls_enabled) {
    if (!(greeting.capabilities & CLIENT_SSL)) return { ok: false, error: 'server does not accept TLS' };
    capabilities |= CLIENT_SSL;
    wire.write(packet(seq++, clientFlags(capabilities)));
    await wire.startTls(tlsOptions(check));
  }
  const plugin = capabilities & CLIENT_PLUGIN_AUTH ? Buffer.from(`${greeting.plugin}\0`, 'latin1') : Buffer.alloc(0);
  // user, then the auth response as a length byte (0: empty password), then the plugin name.
  wire.write(packet(seq, Buffer.concat([clientFlags(capabilities), Buffer.from(`${user}\0`), Buffer.from([0]), plugin])));
  for (let round = 0; round < 4; round++) {
    const reply = await readPacket(wire);
    const kind = reply.payload[0];
    if (kind === 0x00) {
      wire.end(packet(0, Buffer.from([0x01]))); // COM_QUIT: a clean session end
      return { ok: true };
    }
    if (kind === 0xff) {
      const { code, message } = errPacket(reply.payload);
      const said = `error ${code}: ${message}`;
      return LOGIN_REFUSED.has(code) ? { ok: true, error: `server is up; the check's login was refused: ${said}` } : { ok: false, error: said };
    }
    if (kind === 0xfe) wire.write(packet(reply.seq + 1, Buffer.alloc(0))); // auth switch: an empty password is empty in every plugin
    else if (kind !== 0x01) throw new ProbeFailure(`not a MySQL reply ${quote(reply.payload)}`); // 0x01: more auth data, keep reading
  }
  throw new ProbeFailure('login did not finish');
}

export const mysqlProbe: Probe = (target, check, signal) =>
  converse(target, signal, undefined, async (wire) => {
    const first = await readPacket(wire);
    const kind = first.payload[0];
    if (kind === 0xff) {
      const { code, message } = errPacket(first.payload);
      return { ok: false, error: `error ${code}: ${message}` };
    }
    if (kind !== 10) throw new ProbeFailure(kind !== undefined && kind < 10 ? `unsupported MySQL protocol version ${kind}` : `not a MySQL greeting ${quote(first.payload)}`);
    const greeting = parseGreeting(first.payload);
    if (check.mysql_user === undefined) return { ok: true };
    return login(wire, greeting, check.mysql_user, check);
  });
