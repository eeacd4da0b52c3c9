/**
 * The one error catalogue. Every error Fulcrum reports carries a stable code, the HTTP status it
 * maps to, and details a client can act on. Callers decide from `code`, never from message text.
 */

export const ErrorCodes = {
  INVALID_PARAMETER: 400,
  VALIDATION_ERROR: 400,
  MALFORMED_JSON: 400,
  AUTHENTICATION_REQUIRED: 401,
  INSUFFICIENT_PERMISSIONS: 403,
  NOT_FOUND: 404,
  POOL_NOT_FOUND: 404,
  BACKEND_NOT_FOUND: 404,
  LOAD_BALANCER_NOT_FOUND: 404,
  LISTENER_NOT_FOUND: 404,
  CERTIFICATE_NOT_FOUND: 404,
  ROTATION_NOT_FOUND: 404,
  NETWORK_ITEM_NOT_FOUND: 404,
  ACL_NOT_FOUND: 404,
  RULE_NOT_FOUND: 404,
  RATE_LIMIT_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  BACKEND_HAS_CONNECTIONS: 409,
  DUPLICATE_BACKEND: 409,
  DUPLICATE_NAME: 409,
  DUPLICATE_RULE: 409,
  POOL_NOT_EMPTY: 409,
  POOL_IN_USE: 409,
  CERTIFICATE_IN_USE: 409,
  LISTENER_PORT_CONFLICT: 409,
  VERSION_CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  PROTOCOL_NOT_SUPPORTED: 422,
  INVALID_CERTIFICATE: 422,
  LISTENER_BIND_FAILED: 422,
  INTERNAL_ERROR: 500,
  SERVICE_UNAVAILABLE: 503,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ErrorCodes;

export class FulcrumError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'FulcrumError';
    this.code = code;
    this.status = ErrorCodes[code];
    this.details = details;
  }
}

/** One bad field of a request: where it is and why it is refused. */
export interface FieldProblem {
  field: string;
  reason: string;
}

export function validationError(problems: FieldProblem[]): FulcrumError {
  const summary = problems.map((p) => `${p.field}: ${p.reason}`).join('; ');
  return new FulcrumError('VALIDATION_ERROR', `Request validation failed: ${summary}`, { fields: problems });
}

export const notFound = {
  pool: (poolId: string) =>
    new FulcrumError('POOL_NOT_FOUND', `Pool '${poolId}' not found`, { pool_id: poolId }),
  backend: (poolId: string, serverId: string) =>
    new FulcrumError('BACKEND_NOT_FOUND', `Backend server '${serverId}' not found in pool '${poolId}'`, {
      pool_id: poolId,
      server_id: serverId,
    }),
  certificate: (certId: string) => new FulcrumError('CERTIFICATE_NOT_FOUND', `Certificate '${certId}' not found`, { cert_id: certId }),
  loadBalancer: (lbId: string) =>
    new FulcrumError('LOAD_BALANCER_NOT_FOUND', `Load balancer '${lbId}' not found`, { lb_id: lbId }),
  listener: (lbId: string, listenerId: string) =>
    new FulcrumError('LISTENER_NOT_FOUND', `Listener '${listenerId}' not found in load balancer '${lbId}'`, {
      lb_id: lbId,
      listener_id: listenerId,
    }),
  networkItem: (lbId: string, listenerId: string, itemId: string) =>
    new FulcrumError('NETWORK_ITEM_NOT_FOUND', `Network item '${itemId}' not found in the access list of listener '${listenerId}'`, {
      lb_id: lbId,
      listener_id: listenerId,
      item_id: itemId,
    }),
  acl: (aclId: string) => new FulcrumError('ACL_NOT_FOUND', `ACL '${aclId}' not found`, { acl_id: aclId }),
  rule: (ruleId: string) => new FulcrumError('RULE_NOT_FOUND', `routing rule '${ruleId}' not found`, { rule_id: ruleId }),
  rateLimit: (id: string) => new FulcrumError('RATE_LIMIT_NOT_FOUND', `rate limit '${id}' not found`, { rate_limit_id: id }),
};
