import { type ErrorKind, SyError } from '../../errors.js';

/**
 * The one table from sy's error kinds to HTTP statuses (as EXIT_STATUS maps them to exit
 * codes). On a daemon, `store` means its store cannot be reached or read: 503. `failed` is a
 * target database that refused or was unreachable: 502.
 */
const HTTP_STATUS: Record<ErrorKind, number> = {
  usage: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  failed: 502,
  store: 503,
  interrupted: 503,
};

/** Codes whose kind says too little for HTTP: a lease that is no longer live is a conflict, not a target's failure. */
const CODE_STATUS: Record<string, number> = {
  lease_not_active: 409,
  lease_expired: 409,
};

/** The framework's own refusals, by fastify error code. */
const FRAMEWORK: Record<string, { status: number; code: string; message: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'body_too_large', message: 'The request body is over 64 KiB.' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 400, code: 'bad_content_type', message: 'The request body must be JSON (Content-Type: application/json).' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'bad_body', message: 'The request body is empty; it must be a JSON object.' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'bad_body', message: 'The request body is not valid JSON.' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'bad_body', message: 'The request body does not match its Content-Length.' },
};

export interface HttpError {
  status: number;
  body: { error: { code: string; message: string } };
}

/**
 * What a client sees of an error: sy's own message for a SyError (never a secret, by the
 * rule every SyError follows), one sentence for the framework's refusals and schema
 * failures, and nothing of an unexpected error but that it happened (its text may hold
 * anything, and goes to the daemon's log only as its class).
 */
export function httpError(error: unknown): HttpError {
  if (error instanceof SyError) {
    const message = error.hint ? `${error.message} ${error.hint}` : error.message;
    return { status: CODE_STATUS[error.code] ?? HTTP_STATUS[error.kind], body: { error: { code: error.code, message } } };
  }
  const e = error as { code?: string; validation?: unknown; statusCode?: number; message?: string };
  if (e.code && FRAMEWORK[e.code]) {
    const { status, code, message } = FRAMEWORK[e.code];
    return { status, body: { error: { code, message } } };
  }
  if (e.validation !== undefined) {
    return { status: 400, body: { error: { code: 'bad_request', message: `The request is not valid: ${e.message ?? 'see the API reference'}.` } } };
  }
  if (e instanceof SyntaxError || e.statusCode === 400) {
    return { status: 400, body: { error: { code: 'bad_request', message: 'The request is not valid.' } } };
  }
  return { status: 500, body: { error: { code: 'internal', message: 'The daemon failed to handle the request; see its log.' } } };
}

export const errorBody = (code: string, message: string) => ({ error: { code, message } });
