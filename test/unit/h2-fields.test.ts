/** What may cross from HTTP/1.1 to HTTP/2 and to backends: field lists, trailers, client certificate subjects. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { escapeDn, h2Fields, trailerFields } from '../../src/dataplane/http/headers.ts';

describe('h2Fields', () => {
  it('drops connection-specific fields and keeps a single-value field once (RFC 9113 §8.2.2)', () => {
    const out = h2Fields(['content-type', 'text/plain', 'http2-settings', 'AAMAAABkAAQAAP__', 'keep-alive', 'timeout=5', 'set-cookie', 'a=1', 'content-type', 'text/html', 'set-cookie', 'b=2', 'te', 'trailers']);
    assert.deepEqual(out, ['content-type', 'text/plain', 'set-cookie', 'a=1', 'set-cookie', 'b=2']);
  });

  it('returns the same list when nothing needs to go', () => {
    const fields = ['content-type', 'text/plain', 'x-a', '1', 'x-a', '2'];
    assert.equal(h2Fields(fields), fields);
  });
});

describe('trailerFields', () => {
  it('drops framing and connection fields, joins repeats for HTTP/1.1, keeps single-value ones once for HTTP/2', () => {
    const trailers = { connection: 'close', 'keep-alive': '5', 'content-length': '3', 'grpc-status': '0', 'x-sum': ['a', 'b'], etag: ['"1"', '"2"'] };
    assert.deepEqual(trailerFields(trailers, false), { 'grpc-status': '0', 'x-sum': 'a, b', etag: '"1", "2"' });
    assert.deepEqual(trailerFields(trailers, true), { 'grpc-status': '0', 'x-sum': ['a', 'b'], etag: '"1"' });
    assert.equal(trailerFields({ connection: 'close' }, true), null);
  });
});

describe('escapeDn', () => {
  it('escapes RFC 4514 specials, and control and non-ASCII characters as hex, so no value can break a header', () => {
    assert.equal(escapeDn('alice'), 'alice');
    assert.equal(escapeDn('Acme, Inc.'), 'Acme\\, Inc.');
    assert.equal(escapeDn('a+b=c;d<e>f"g\\h'), 'a\\+b\\=c\\;d\\<e\\>f\\"g\\\\h');
    assert.equal(escapeDn('#lead'), '\\#lead');
    assert.equal(escapeDn('alice\r\nX-Injected: yes'), 'alice\\0D\\0AX-Injected: yes');
    assert.equal(escapeDn('Жора'), '\\D0\\96\\D0\\BE\\D1\\80\\D0\\B0');
    for (const s of ['\u0000', '\u007f', '\u00e9', 'tab\there']) assert.match(escapeDn(s), /^[\x20-\x7e]*$/);
  });
});
