/**
 * LDAP: an LDAPv3 simple BindRequest — anonymous, or as `ldap_bind_dn` with `ldap_password` — and
 * its BindResponse (Scaleway's ldap_config: "the response is analyzed to find an LDAPv3 response
 * message"). resultCode 0 passes; any other fails with the code and the server's diagnostic, since
 * a server that refuses the bind (busy, unavailable, unwilling) is not one to send clients to.
 * BER is written by hand: the anonymous request is 14 bytes. An UnbindRequest ends the session.
 */
import type { Probe } from '../probe.ts';
import { converse, ProbeFailure, quote, tlsOptions, type Wire } from './wire.ts';

/** BER definite length: short form below 128, else 0x8N and N big-endian bytes. */
function berLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), berLength(content.length), content]);
}

/** LDAPMessage { messageID 1, [APPLICATION 0] BindRequest { version 3, name, simple [0] password } }. */
export function bindRequest(dn: string, password: string): Buffer {
  const bind = tlv(0x60, Buffer.concat([Buffer.from([0x02, 0x01, 0x03]), tlv(0x04, Buffer.from(dn)), tlv(0x80, Buffer.from(password))]));
  return tlv(0x30, Buffer.concat([Buffer.from([0x02, 0x01, 0x01]), bind]));
}

/** LDAPMessage { messageID 2, [APPLICATION 2] UnbindRequest NULL }. */
const UNBIND = Buffer.from([0x30, 0x05, 0x02, 0x01, 0x02, 0x42, 0x00]);

/** A reply larger than this is not a BindResponse. */
const MAX_MESSAGE = 64 * 1024;

const RESULT_NAMES: Record<number, string> = {
  1: 'operationsError',
  2: 'protocolError',
  7: 'authMethodNotSupported',
  8: 'strongerAuthRequired',
  13: 'confidentialityRequired',
  48: 'inappropriateAuthentication',
  49: 'invalidCredentials',
  50: 'insufficientAccessRights',
  51: 'busy',
  52: 'unavailable',
  53: 'unwillingToPerform',
  80: 'other',
};

/** One whole LDAPMessage: SEQUENCE tag, length, contents. */
async function readMessage(wire: Wire): Promise<Buffer> {
  const [tag, first] = await wire.read(2);
  if (tag !== 0x30) throw new ProbeFailure(`not an LDAP reply ${quote(Buffer.from([tag!, first!]))}`);
  let length = first!;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n < 1 || n > 3) throw new ProbeFailure('not an LDAP reply (bad length)');
    length = (await wire.read(n)).readUIntBE(0, n);
  }
  if (length > MAX_MESSAGE) throw new ProbeFailure('LDAP reply too long');
  return wire.read(length);
}

/** The element at `at`: its tag and where its contents start and end. */
function element(buf: Buffer, at: number): { tag: number; start: number; end: number } {
  const tag = buf[at];
  let length = buf[at + 1];
  let start = at + 2;
  if (tag === undefined || length === undefined) throw new ProbeFailure('not an LDAP reply (truncated)');
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n < 1 || n > 3 || start + n > buf.length) throw new ProbeFailure('not an LDAP reply (bad length)');
    length = buf.readUIntBE(start, n);
    start += n;
  }
  if (start + length > buf.length) throw new ProbeFailure('not an LDAP reply (truncated)');
  return { tag, start, end: start + length };
}

export const ldapProbe: Probe = (target, check, signal) =>
  converse(target, signal, check.tls_enabled ? tlsOptions(check) : undefined, async (wire) => {
    wire.write(bindRequest(check.ldap_bind_dn ?? '', check.ldap_password ?? ''));
    const message = await readMessage(wire);
    const id = element(message, 0);
    const op = element(message, id.end);
    // 0x61 BindResponse; 0x78 ExtendedResponse, which a server sends unsolicited (Notice of
    // Disconnection) when it is going away. Both start with an LDAPResult.
    if (op.tag !== 0x61 && op.tag !== 0x78) throw new ProbeFailure(`not a BindResponse (tag 0x${op.tag.toString(16)})`);
    const code = element(message, op.start);
    if (code.tag !== 0x0a || code.end === code.start) throw new ProbeFailure('not a BindResponse (no resultCode)');
    const resultCode = message.readUIntBE(code.start, Math.min(code.end - code.start, 4));
    if (op.tag === 0x61 && resultCode === 0) {
      wire.end(UNBIND);
      return { ok: true };
    }
    const matched = element(message, code.end);
    const diagnostic = element(message, matched.end);
    const text = message.toString('utf8', diagnostic.start, diagnostic.end);
    const name = RESULT_NAMES[resultCode] ?? 'error';
    const prefix = op.tag === 0x78 ? 'server disconnected: ' : '';
    return { ok: false, error: `${prefix}result ${resultCode} ${name}${text ? `: ${text}` : ''}` };
  });
