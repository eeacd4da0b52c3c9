import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isoSeconds } from '../model/common.ts';
import { ErrorCodes, type ErrorCode, FulcrumError, type FieldProblem } from '../control/errors.ts';

/** Where error codes are explained; relative so that no host is assumed. */
export const DOCS_ERRORS = 'docs/errors.md#';

export function errorBody(code: ErrorCode, message: string, details: Record<string, unknown>, requestId: string) {
  return {
    error: {
      code,
      message,
      details,
      request_id: requestId,
      timestamp: isoSeconds(Date.now()),
      documentation_url: `${DOCS_ERRORS}${code.toLowerCase()}`,
    },
  };
}

interface AjvError {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

function dotted(path: string): string {
  return path.replace(/^\//, '').split('/').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~')).join('.');
}

function join(base: string, leaf: string): string {
  return base === '' ? leaf : `${base}.${leaf}`;
}

/** Turns schema validation errors into one problem per bad field, each saying why. */
export function fieldProblems(errors: AjvError[]): FieldProblem[] {
  const out: FieldProblem[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    // A nullable field reports its null branch and the anyOf umbrella too; only the real reason matters.
    if (e.keyword === 'anyOf' || (e.keyword === 'type' && e.params.type === 'null')) continue;
    const at = dotted(e.instancePath);
    let problem: FieldProblem;
    switch (e.keyword) {
      case 'additionalProperties':
        problem = { field: join(at, String(e.params.additionalProperty)), reason: 'unknown field' };
        break;
      case 'required':
        problem = { field: join(at, String(e.params.missingProperty)), reason: 'is required' };
        break;
      case 'minProperties':
        problem = { field: at || '(body)', reason: 'give at least one field to change' };
        break;
      case 'enum':
        problem = { field: at, reason: `must be one of ${(e.params.allowedValues as unknown[]).join(', ')}` };
        break;
      case 'type':
        problem = { field: at || '(body)', reason: `must be ${String(e.params.type)}` };
        break;
      default:
        problem = { field: at || '(body)', reason: e.message ?? e.keyword };
    }
    const key = `${problem.field}|${problem.reason}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(problem);
    }
  }
  return out;
}

/** Maps every failure to the standard error body; nothing leaves without a code. */
export function handleError(err: FastifyError & { validation?: AjvError[]; validationContext?: string }, request: FastifyRequest, reply: FastifyReply) {
  const send = (code: ErrorCode, message: string, details: Record<string, unknown> = {}) =>
    reply.status(ErrorCodes[code]).send(errorBody(code, message, details, request.id));

  if (err instanceof FulcrumError) return send(err.code, err.message, err.details);
  if (err.validation) {
    const problems = fieldProblems(err.validation);
    const where = err.validationContext ?? 'body';
    const summary = problems.map((p) => `${p.field}: ${p.reason}`).join('; ');
    if (where === 'body') return send('VALIDATION_ERROR', `Request validation failed: ${summary}`, { fields: problems });
    return send('INVALID_PARAMETER', `Invalid ${where}: ${summary}`, { location: where, fields: problems });
  }
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      if (err.statusCode === 415) {
        return send('UNSUPPORTED_MEDIA_TYPE', `Content-Type '${request.headers['content-type'] ?? ''}' is not accepted; send application/json`, {
          content_type: request.headers['content-type'] ?? null,
          accepted: ['application/json'],
        });
      }
      break;
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return send('PAYLOAD_TOO_LARGE', 'Request body is larger than the API accepts', {
        limit_bytes: request.routeOptions.bodyLimit ?? null,
      });
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return send('MALFORMED_JSON', 'Content-Type is application/json but the body is empty');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return send('MALFORMED_JSON', 'Body is not valid JSON');
  }
  if (err.statusCode === 400 && err instanceof SyntaxError) return send('MALFORMED_JSON', `Body is not valid JSON: ${err.message}`);
  if (err.statusCode === 400 && /prototype|constructor/i.test(err.message)) return send('MALFORMED_JSON', err.message);
  if (err.statusCode === 415) return send('UNSUPPORTED_MEDIA_TYPE', err.message, { accepted: ['application/json'] });
  if (err.statusCode === 413) return send('PAYLOAD_TOO_LARGE', err.message);
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return send('INVALID_PARAMETER', err.message);
  }
  request.log.error({ err }, 'unhandled error');
  return send('INTERNAL_ERROR', 'Internal error; the request id identifies it in the logs');
}
