// Owns the mapping from the stable error codes (model/errors.ts) to HTTP statuses, so every surface
// error has one status: bad input 4xx, refusals 401/403/409, damaged bundles 422, failures 5xx (a
// remote repository that cannot be used: 502/503).

const STATUS: Record<string, number> = {
  INVALID_INPUT: 400,
  CONFIG: 400,
  KEY: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  CROSS_SITE: 403,
  RESTORE_REFUSED: 403,
  REDACTED_BUNDLE: 409,
  CROSS_TENANT: 403,
  NOT_FOUND: 404,
  OBJECT_NOT_FOUND: 404,
  UNKNOWN_AGENT: 404,
  ROUTE_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONCURRENT: 409,
  REPOSITORY_LOCKED: 409,
  RETENTION: 409,
  ALREADY_EXISTS: 409,
  OBJECT_EXISTS: 409,
  PAYLOAD_TOO_LARGE: 413,
  BUNDLE_DAMAGED: 422,
  NOT_A_BUNDLE: 422,
  UNSAFE_ENTRY: 422,
  MISSING_ARTIFACT: 422,
  CHECKSUM_MISMATCH: 422,
  SCHEMA_TOO_NEW: 422,
  SHORT_READ: 422,
  OBJECT_TOO_LARGE: 422,
  UNSAFE_OBJECT: 422,
  ENCRYPTION: 422,
  SIGNATURE_INVALID: 422,
  SIGNATURE_MISSING: 422,
  SIGNATURE_UNTRUSTED: 422,
  SHUTTING_DOWN: 503,
  // a remote repository is the daemon's upstream: unreachable 503 (try again), refused or full 502
  STORE_UNREACHABLE: 503,
  STORE_AUTH: 502,
  STORE_MISSING: 502,
  STORE_DENIED: 502,
  STORE_FULL: 502,
  STORE_REPLACED: 502,
  STORE_UNSAFE: 502,
};

/**
 * The HTTP status of an error code; 500 for failures (IO, GIT, SQLITE, STATE, REDACTION, NATIVE_MODULE,
 * JOURNAL_DAMAGED: the host's operator has to act) and unknown codes.
 */
export function httpStatusOf(code: string): number {
  return STATUS[code] ?? 500;
}
