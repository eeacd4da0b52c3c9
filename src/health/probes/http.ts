/**
 * HTTP and HTTPS: a request whose answer must have an expected status (a list, or a regex as
 * Rackspace's statusRegex) and, when configured, a body matching a regex (Rackspace's bodyRegex).
 * At most 64 KiB of body is read: a health page is small, and a probe must not buffer a stream.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Probe, ProbeResult } from '../probe.ts';

const MAX_BODY = 64 * 1024;

export const httpProbe: Probe = (target, check, signal) =>
  new Promise<ProbeResult>((resolve) => {
    const secure = check.protocol === 'HTTPS' || check.tls_enabled;
    const send = secure ? httpsRequest : httpRequest;
    const req = send({
      host: target.host,
      port: target.port,
      method: check.method,
      path: check.path,
      headers: { 'user-agent': 'fulcrum-health-check', ...check.headers, ...(check.host_header ? { host: check.host_header } : {}) },
      signal,
      agent: false,
      rejectUnauthorized: check.tls_verify,
      servername: check.host_header,
    });
    req.once('error', (err: NodeJS.ErrnoException) =>
      resolve({ ok: false, error: err.name === 'AbortError' ? 'timed out' : `${err.code ?? err.message}` }),
    );
    req.once('response', (res) => {
      const status = res.statusCode ?? 0;
      const statusOk = check.expected_status_regex !== undefined ? new RegExp(check.expected_status_regex).test(String(status)) : check.expected_status_codes.includes(status);
      if (check.expected_body_regex === undefined) {
        res.destroy();
        resolve(statusOk ? { ok: true, statusCode: status } : { ok: false, statusCode: status, error: `status ${status}` });
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = () => {
        res.destroy();
        const matched = new RegExp(check.expected_body_regex!).test(Buffer.concat(chunks).toString('utf8'));
        const ok = statusOk && matched;
        resolve({ ok, statusCode: status, bodyMatched: matched, error: ok ? undefined : !statusOk ? `status ${status}` : 'body did not match' });
      };
      res.on('data', (c: Buffer) => {
        if (size >= MAX_BODY) return;
        chunks.push(c);
        size += c.length;
        if (size >= MAX_BODY) finish();
      });
      res.once('end', finish);
      res.once('error', (err) => resolve({ ok: false, statusCode: status, error: err.message }));
    });
    req.end();
  });
