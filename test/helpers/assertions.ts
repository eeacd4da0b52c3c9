import assert from 'node:assert/strict';
import type { ApiResponse } from './fulcrum.ts';

export const ISO_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** Asserts a body is the standard error body (seed 000 "Standard Error Format") and returns `error`. */
export function assertErrorBody(body: any, code: string) {
  const err = body?.error;
  assert.ok(err, `an error body: ${JSON.stringify(body)}`);
  assert.equal(err.code, code, JSON.stringify(body));
  assert.equal(typeof err.message, 'string');
  assert.ok(err.message.length > 0);
  assert.equal(typeof err.details, 'object');
  assert.notEqual(err.details, null);
  assert.equal(typeof err.request_id, 'string');
  assert.ok(err.request_id.length > 0);
  assert.match(err.timestamp, ISO_SECONDS);
  assert.equal(err.documentation_url, `docs/errors.md#${code.toLowerCase()}`);
  return err;
}

/** Asserts the status, the standard error body, and that it carries the response's request id. */
export function assertError(res: ApiResponse, status: number, code: string) {
  assert.equal(res.status, status, JSON.stringify(res.body));
  const err = assertErrorBody(res.body, code);
  assert.equal(err.request_id, res.headers.get('x-request-id'));
  return err;
}

/** The field names a VALIDATION_ERROR / INVALID_PARAMETER names in details.fields. */
export function fieldsOf(err: { details: { fields?: { field: string }[] } }): string[] {
  assert.ok(Array.isArray(err.details.fields), `details.fields: ${JSON.stringify(err.details)}`);
  return err.details.fields.map((f) => f.field);
}
