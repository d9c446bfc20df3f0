// Owns the error taxonomy: every failure the library reports is a SnapshotError subclass with a stable
// `code`, the CLI exit status it maps to, and the metric `outcome` label. Pure: no I/O.

import { boundedErrnoMessage, shownPath } from './shown-path.js';

/** Metric outcome labels (the original's six, plus the ones the port needs). */
export type Outcome =
  | 'ok'
  | 'error'
  | 'concurrent'
  | 'schema_too_new'
  | 'checksum_mismatch'
  | 'refused'
  | 'not_found'
  | 'invalid_input'
  | 'damaged'
  | 'untrusted'
  | 'store_unavailable';

/** CLI exit statuses. Stable: scripts depend on them. */
export const ExitCode = {
  ok: 0,
  /** usage, config, I/O, git or SQLite failure, anything unexpected */
  error: 1,
  /** bundle damaged, unsafe, not a bundle, or unreadable by this version */
  damaged: 2,
  /** verify could not check everything (e.g. sibling missing, encrypted without identity) */
  unverified: 3,
  /** the agent lock is held by another operation */
  concurrent: 4,
  /** snapshot, agent or bundle not found */
  notFound: 5,
  /** refused by a rule (last-snapshot floor, existing target, restore refusal, tenant mismatch) */
  refused: 6,
  /** encryption or decryption failed */
  encryption: 7,
  /** the repository's store cannot be used: unreachable, credentials refused, bucket or stream missing, permission denied */
  storeUnavailable: 8,
} as const;

export abstract class SnapshotError extends Error {
  abstract readonly code: string;
  abstract readonly exitCode: number;
  abstract readonly outcome: Outcome;
  /** Optional structured details for JSON output (never secrets). */
  readonly details: Record<string, unknown> | undefined;
  /**
   * The message is made of the request alone (its route, token, body, ids, query, browse path) and names
   * no place on the host: a remote client gets it as it is (server/client-errors.ts), and the server's
   * log does not repeat it (a text searched for may be a secret). Set by those classes.
   */
  readonly describesRequest: boolean = false;

  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.details = options?.details;
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      exit_code: this.exitCode,
      outcome: this.outcome,
      ...(this.details ? { details: this.details } : {}),
    };
  }
  /**
   * toJSON for a client of the HTTP API or of MCP (an agent, a holder of a read token): the same
   * object, with the message and details of `forClient`. The CLI's (the operator's) stays toJSON.
   */
  toClientJSON(): Record<string, unknown> {
    const { message, details } = this.forClient();
    return {
      code: this.code,
      message,
      exit_code: this.exitCode,
      outcome: this.outcome,
      ...(details ? { details } : {}),
    };
  }
  /** What a client is told: the message and details, unless they name host paths (a subclass's choice). */
  protected forClient(): { message: string; details: Record<string, unknown> | undefined } {
    return { message: this.message, details: this.details };
  }
}

export class ConcurrentError extends SnapshotError {
  readonly code = 'CONCURRENT';
  readonly exitCode = ExitCode.concurrent;
  readonly outcome = 'concurrent' as const;
  /**
   * `refused`: the operation refused (`restore`, `delete`...); `holder`: what is running instead, as
   * recorded (the holder's operation, pid, host and start), or undefined when nothing names it;
   * `waitedMs`: how long the operation waited for it (the lock timeout, `lock_timeout_secs`).
   */
  constructor(
    readonly agentId: string,
    readonly tenant: string,
    readonly refused: string,
    holder?: string,
    waitedMs?: number,
  ) {
    super(
      `${refused} refused for agent ${agentId} (tenant ${tenant}): ${holder ?? 'another operation'} is running` +
        (waitedMs !== undefined
          ? ` (waited ${waitedSeconds(waitedMs)}; lock_timeout_secs sets how long)`
          : ''),
      {
        details: {
          agent_id: agentId,
          tenant,
          refused,
          ...(holder ? { holder } : {}),
          ...(waitedMs !== undefined ? { waited_ms: Math.round(waitedMs) } : {}),
        },
      },
    );
  }
}

/** A wait for a lock in words: `0.3 s`, `12 s`. */
const waitedSeconds = (ms: number): string =>
  ms < 10_000 ? `${(Math.max(0, ms) / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;

export class UnknownAgentError extends SnapshotError {
  readonly code = 'UNKNOWN_AGENT';
  readonly exitCode = ExitCode.notFound;
  readonly outcome = 'not_found' as const;
  constructor(
    readonly agentId: string,
    readonly tenant: string,
    searched: string[],
    /** Why the agent is unknown there, when it is not that nothing of it was found (the paths still are named). */
    readonly why = 'no memdir, no SQLite database and no state found',
  ) {
    searched = [...new Set(searched)];
    super(`unknown agent ${agentId} (tenant ${tenant}): ${why} (looked in ${searched.join(', ')})`, {
      details: { agent_id: agentId, tenant, searched },
    });
  }
  /** The agent, not where the host looked: state root and tenant directories are the operator's. */
  protected override forClient() {
    return {
      message: `unknown agent ${this.agentId} (tenant ${this.tenant}): ${this.why} on this host`,
      details: { agent_id: this.agentId, tenant: this.tenant },
    };
  }
}

export class CrossTenantError extends SnapshotError {
  readonly code = 'CROSS_TENANT';
  readonly exitCode = ExitCode.refused;
  readonly outcome = 'refused' as const;
  /** `path`: a path that escapes the tenant root; otherwise the full message. */
  constructor(message: string, kind: 'path' | 'message' = 'path') {
    super(kind === 'path' ? `escapes tenant root: ${message}` : message);
  }
}

export class ChecksumMismatchError extends SnapshotError {
  readonly code = 'CHECKSUM_MISMATCH';
  readonly exitCode = ExitCode.damaged;
  readonly outcome = 'checksum_mismatch' as const;
  constructor(message: string) {
    super(`checksum mismatch: ${message}`);
  }
}

export class SchemaTooNewError extends SnapshotError {
  readonly code = 'SCHEMA_TOO_NEW';
  readonly exitCode = ExitCode.damaged;
  readonly outcome = 'schema_too_new' as const;
  constructor(
    readonly bundleVersion: number,
    readonly runtimeVersion: number,
    what = 'manifest',
    /** What was written by the newer version: a bundle, or an object of a repository. */
    subject: 'bundle' | 'snapshot' | 'repository' = 'bundle',
  ) {
    // "manifest_version 6", "schema_versions.memdir 3", but "bundle_format … version 7" (stop 47: the
    // message said "version" twice)
    const field = /version/.test(what) ? `${what} ${bundleVersion}` : `${what} version ${bundleVersion}`;
    super(
      `${subject} schema too new: ${field} > supported ${runtimeVersion}: written by a newer nexo-memory-snapshot; upgrade nexo-memory-snapshot`,
      { details: { what, bundle: bundleVersion, runtime: runtimeVersion } },
    );
  }
}

export class MissingArtifactError extends SnapshotError {
  readonly code = 'MISSING_ARTIFACT';
  readonly exitCode = ExitCode.damaged;
  readonly outcome = 'damaged' as const;
  constructor(readonly artifact: string) {
    super(`bundle missing artifact: ${artifact}`);
  }
}

/** The bundle bytes are damaged: truncated, corrupt compression, bad tar, hash mismatch. */
export class BundleDamagedError extends SnapshotError {
  readonly code: string = 'BUNDLE_DAMAGED';
  readonly exitCode = ExitCode.damaged;
  readonly outcome = 'damaged' as const;
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(`bundle damaged: ${message}`, options);
  }
}

/** Not a bundle at all (no zstd magic, no manifest first). */
export class NotABundleError extends BundleDamagedError {
  override readonly code = 'NOT_A_BUNDLE';
}

/** The bundle is hostile or outside the declared layout: traversal, link, duplicate, bomb. */
export class UnsafeBundleError extends SnapshotError {
  readonly code = 'UNSAFE_ENTRY';
  readonly exitCode = ExitCode.damaged;
  readonly outcome = 'damaged' as const;
  constructor(message: string, details?: Record<string, unknown>) {
    super(`unsafe bundle: ${message}`, details ? { details } : undefined);
  }
}

export class RestoreRefusedError extends SnapshotError {
  readonly code = 'RESTORE_REFUSED';
  readonly exitCode = ExitCode.refused;
  readonly outcome = 'refused' as const;
  /** `details`: e.g. the errno of the failure that refused it (a full disk under the pre-snapshot). */
  constructor(message: string, details?: Record<string, unknown>) {
    super(`restore refused: ${message}`, details ? { details } : undefined);
  }
}

/**
 * A restore in place of a redacted bundle without an explicit permission: its placeholders would
 * replace the live secrets (`--allow-redacted`; the dry run lists where).
 */
export class RedactedBundleError extends SnapshotError {
  readonly code = 'REDACTED_BUNDLE';
  readonly exitCode = ExitCode.refused;
  readonly outcome = 'refused' as const;
  constructor(message: string, details?: Record<string, unknown>) {
    super(`restore refused: ${message}`, details ? { details } : undefined);
  }
}

export class EncryptionError extends SnapshotError {
  readonly code = 'ENCRYPTION';
  readonly exitCode = ExitCode.encryption;
  readonly outcome = 'error' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(`encryption: ${message}`, options);
  }
}

/** A bad, missing or untrusted signature: the manifest's authenticity could not be established. */
export class SignatureError extends SnapshotError {
  readonly exitCode = ExitCode.damaged;
  readonly outcome = 'untrusted' as const;
  constructor(
    readonly code: 'SIGNATURE_INVALID' | 'SIGNATURE_MISSING' | 'SIGNATURE_UNTRUSTED',
    message: string,
    details?: Record<string, unknown>,
  ) {
    super(`signature: ${message}`, details ? { details } : undefined);
  }
}

/** A signing or trusted key that cannot be used: unreadable, corrupt, or of the wrong type. */
export class KeyError extends SnapshotError {
  readonly code = 'KEY';
  readonly exitCode = ExitCode.error;
  readonly outcome = 'invalid_input' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(`key: ${message}`, options);
  }
}

export class RetentionError extends SnapshotError {
  readonly code = 'RETENTION';
  readonly exitCode = ExitCode.refused;
  readonly outcome = 'refused' as const;
  constructor(message: string) {
    super(`retention violation: ${message}`);
  }
}

export class NotFoundError extends SnapshotError {
  readonly code = 'NOT_FOUND';
  readonly exitCode = ExitCode.notFound;
  readonly outcome = 'not_found' as const;
  constructor(
    readonly snapshotId: string,
    detail?: string,
    /** The whole message, when what is missing is not the snapshot itself (missingIn, missingStore). */
    message?: string,
  ) {
    super(message ?? `snapshot ${snapshotId} not found${detail ? `: ${detail}` : ''}`);
  }
}

/** Something a snapshot that exists does not hold: a path, a table, a database, a state value. */
export function missingIn(snapshotId: string, what: string): NotFoundError {
  return new NotFoundError(snapshotId, undefined, `snapshot ${snapshotId} has no ${what}`);
}

export class AlreadyExistsError extends SnapshotError {
  readonly code = 'ALREADY_EXISTS';
  readonly exitCode = ExitCode.refused;
  readonly outcome = 'refused' as const;
  /** `hint`: what to do instead (default: `--force`, for the commands that take it). */
  constructor(
    readonly path: string,
    hint = 'pass --force to overwrite',
  ) {
    super(`${path} already exists (${hint})`, { details: { path } });
  }
}

/** Bad caller input: ids, labels, option values. The message names the rule that was broken. */
export class InvalidInputError extends SnapshotError {
  readonly code = 'INVALID_INPUT';
  readonly exitCode = ExitCode.error;
  readonly outcome = 'invalid_input' as const;
  override readonly describesRequest = true;
}

export class ConfigError extends SnapshotError {
  readonly code = 'CONFIG';
  readonly exitCode = ExitCode.error;
  readonly outcome = 'invalid_input' as const;
}

/**
 * ` for <file>`: the file a system call failed to write for want of space (a copy's `dest`, else its
 * `path`: onFile sets it where the call had none), when `message` does not name that file already (stop
 * 54: the git objects frozen into a snapshot's staging on a full disk said "snapshot of agent ana: no
 * space left on device", an export's copy named only its source); else nothing.
 */
function fullFor(cause: unknown, message: string): string {
  const e = cause as { path?: unknown; dest?: unknown } | undefined;
  const file = typeof e?.dest === 'string' ? e.dest : typeof e?.path === 'string' ? e.path : undefined;
  if (!file || message.includes(file) || message.includes(shownPath(file))) return '';
  return ` for ${shownPath(file)}`;
}

/**
 * `err` with `path` set to the file it was about, when it is a system call's error that names none (a
 * write or fsync on an open descriptor): IoError's message then says which file could not be written.
 * Anything else (a typed error, one that names its file) is returned as it is.
 */
export function onFile<T>(err: T, path: string): T {
  if (err instanceof Error && !(err instanceof SnapshotError)) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && e.path === undefined) e.path = path;
  }
  return err;
}

export class IoError extends SnapshotError {
  readonly code = 'IO';
  readonly exitCode = ExitCode.error;
  readonly outcome = 'error' as const;
  readonly errno: string | undefined;
  constructor(message: string, cause?: unknown) {
    const errno = (cause as NodeJS.ErrnoException | undefined)?.code;
    // the paths a system call's error quotes, bounded (stop 47: a path near PATH_MAX made 8 KB messages)
    const causeText = cause instanceof Error ? boundedErrnoMessage(cause, message) : undefined;
    super(
      errno === 'ENOSPC'
        ? `${message ? `${message}: ` : ''}no space left on device${fullFor(cause, message)}`
        : causeText
          ? message
            ? `${message}: ${causeText}`
            : causeText
          : message,
      {
        cause,
        ...(errno ? { details: { errno } } : {}),
      },
    );
    this.errno = errno;
  }
}

/**
 * A bundle path that names no file. One ending in `#<snapshot id>` (any UUID spelling) is the
 * `bundle_path` of a repository snapshot, which names a snapshot only in its own repository: the
 * message says how to reach it — for `import`, which takes only a bundle file, by exporting it first.
 */
export function bundleNotFound(
  path: string,
  cause: unknown,
  op: 'read' | 'import' = 'read',
  /** The argument as given, where a snapshot id would be taken too (restore --from): said when it is too short for one. */
  given?: string,
): IoError {
  // (the spellings of ids.ts parseSnapshotId, which imports this module)
  const repositoryPath = /#\s*(urn:uuid:)?\{?[0-9a-f]{8}(-?[0-9a-f]{4}){3}-?[0-9a-f]{12}\}?\s*$/i.test(path);
  const hint =
    op === 'import'
      ? 'a repository snapshot: import takes a bundle file; export it first (nexo-memory export --agent ID --id SNAP --to PATH)'
      : 'a repository snapshot: give its state root or --repo, or use --agent and --id';
  // one to three hex digits name no snapshot either (a prefix needs four): said, as pin and delete say it
  const short =
    given !== undefined && /^[0-9a-f]{1,3}$/i.test(given)
      ? ' (no such file; as a snapshot id it needs at least 4 hex digits of its prefix: `list` shows the ids)'
      : '';
  return new IoError(
    repositoryPath ? `bundle not found: ${path} (${hint})` : `bundle not found: ${path}${short}`,
    cause,
  );
}

export class GitError extends SnapshotError {
  readonly code = 'GIT';
  readonly exitCode = ExitCode.error;
  readonly outcome = 'error' as const;
  /**
   * git never ran to an exit status of its own: it could not start (not installed) or the program host
   * running it ended first. Never damage of what git was given (gitFailedOnContent).
   */
  readonly notRun: boolean;
  constructor(message: string, options?: { cause?: unknown; notRun?: boolean }) {
    super(`git: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.notRun = options?.notRun === true;
  }
}

/**
 * A git that ran on content (a pack, a bundle, refs) and failed: whether that content is damaged, as
 * opposed to a git that never ran (GitError.notRun: this host's trouble, not the content's).
 */
export const gitFailedOnContent = (err: unknown): err is GitError => err instanceof GitError && !err.notRun;

export class SqliteError extends SnapshotError {
  readonly code = 'SQLITE';
  readonly exitCode = ExitCode.error;
  readonly outcome = 'error' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(`sqlite: ${message}`, options);
  }
}

export class StateProviderError extends SnapshotError {
  readonly code = 'STATE';
  readonly exitCode = ExitCode.error;
  readonly outcome = 'error' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(`state provider: ${message}`, options);
  }
}

/** Surfaces (HTTP API, MCP): a request without the right bearer token. Nothing was done. */
export class UnauthorizedError extends SnapshotError {
  readonly code = 'UNAUTHORIZED';
  readonly exitCode = ExitCode.refused;
  readonly outcome = 'refused' as const;
  override readonly describesRequest = true;
}

/** Surfaces: the operation is switched off by configuration (e.g. no API token configured). */
export class ForbiddenError extends SnapshotError {
  readonly code = 'FORBIDDEN';
  readonly exitCode = ExitCode.refused;
  readonly outcome = 'refused' as const;
  override readonly describesRequest = true;
}

/**
 * HTTP API: a request a browser sent from another site (`Sec-Fetch-Site: cross-site`/`same-site`, or an
 * `Origin` that is not the daemon's own): refused whatever the tokens, so no web page can make the
 * daemon work (a diff against live memory closes the agent's write gate) even when reads are open.
 */
export class CrossSiteError extends SnapshotError {
  readonly code = 'CROSS_SITE';
  readonly exitCode = ExitCode.refused;
  readonly outcome = 'refused' as const;
  override readonly describesRequest = true;
}

/** HTTP API: no route with that path. */
export class RouteNotFoundError extends SnapshotError {
  readonly code = 'ROUTE_NOT_FOUND';
  readonly exitCode = ExitCode.notFound;
  readonly outcome = 'not_found' as const;
  override readonly describesRequest = true;
}

/** HTTP API: the route exists but not with that method. */
export class MethodNotAllowedError extends SnapshotError {
  readonly code = 'METHOD_NOT_ALLOWED';
  readonly exitCode = ExitCode.error;
  readonly outcome = 'invalid_input' as const;
  override readonly describesRequest = true;
  constructor(
    method: string,
    path: string,
    readonly allowed: string[],
  ) {
    super(`${method} is not allowed on ${path} (allowed: ${allowed.join(', ')})`, {
      details: { allowed },
    });
  }
}

/** HTTP API: a request body over the size limit. */
export class PayloadTooLargeError extends SnapshotError {
  readonly code = 'PAYLOAD_TOO_LARGE';
  readonly exitCode = ExitCode.error;
  readonly outcome = 'invalid_input' as const;
  override readonly describesRequest = true;
}

/** Daemon: shutting down, no new operation starts. */
export class ShuttingDownError extends SnapshotError {
  readonly code = 'SHUTTING_DOWN';
  readonly exitCode = ExitCode.error;
  readonly outcome = 'error' as const;
  /** `who`: what is shutting down, as its client knows it (default the daemon). */
  constructor(who = 'the daemon') {
    super(`${who} is shutting down; no new operation is started`);
  }
}

export class RedactionError extends SnapshotError {
  readonly code = 'REDACTION';
  readonly exitCode = ExitCode.error;
  readonly outcome = 'error' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(`redaction: ${message}`, options);
  }
}

/**
 * A restore journal (`<state root>/tenants/<t>/journals/<agent>.restore.json`) that cannot be read as
 * one: truncated, garbled, or of a shape or version this package does not write. It guards a swap that
 * may be half done, so nothing removes it: the agent stays as it is until the operator puts it right
 * (the message says how; docs/restore.md, "A damaged journal").
 */
export class JournalDamagedError extends SnapshotError {
  readonly code = 'JOURNAL_DAMAGED';
  readonly exitCode = ExitCode.error;
  readonly outcome = 'damaged' as const;
  constructor(
    readonly path: string,
    why: string,
    /** The agent and tenant the journal is of (its file name and directory say them). */
    who?: { agentId: string; tenant: string },
    options?: { cause?: unknown },
  ) {
    const agent = who
      ? `--agent ${who.agentId}${who.tenant === 'default' ? '' : ` --tenant ${who.tenant}`}`
      : '--agent <agent>';
    super(
      `restore journal ${path} is damaged (${why}): recover cannot tell how far the interrupted restore ` +
        'got, so it changes nothing, and the snapshots, restores and recoveries of the agent fail until the ' +
        'journal is dealt with. The versions that restore replaced are in the .pre-restore-<restore id> ' +
        'directories beside the memdir and the databases. Move the journal aside (keep it: what it still ' +
        `shows names the paths), then restore the agent whole: \`nexo-memory restore ${agent} --undo\` ` +
        `(the agent as it was before that restore) or \`nexo-memory restore ${agent} --from <id>\` (the ` +
        'snapshot it was restoring); docs/restore.md, "A damaged journal"',
      {
        ...options,
        details: { path, ...(who ? { agent_id: who.agentId, tenant: who.tenant } : {}) },
      },
    );
  }
}

/** Storage backend: no object with that type and name. */
export class ObjectNotFoundError extends SnapshotError {
  readonly code = 'OBJECT_NOT_FOUND';
  readonly exitCode = ExitCode.notFound;
  readonly outcome = 'not_found' as const;
  constructor(
    readonly objectType: string,
    readonly objectName: string,
    location: string,
  ) {
    super(`object ${objectType}/${objectName} not found in ${location}`, {
      details: { type: objectType, name: objectName },
    });
  }
}

/** Storage backend: a save with `ifAbsent` found the object already there (it was left unchanged). */
export class ObjectExistsError extends SnapshotError {
  readonly code = 'OBJECT_EXISTS';
  readonly exitCode = ExitCode.refused;
  readonly outcome = 'refused' as const;
  constructor(
    readonly objectType: string,
    readonly objectName: string,
    location: string,
  ) {
    super(`object ${objectType}/${objectName} already exists in ${location}`, {
      details: { type: objectType, name: objectName },
    });
  }
}

/** Storage backend: an object is shorter than the range read (truncated, or its stream ended early). */
export class ShortReadError extends SnapshotError {
  readonly code = 'SHORT_READ';
  readonly exitCode = ExitCode.damaged;
  readonly outcome = 'damaged' as const;
  constructor(message: string, details?: Record<string, unknown>) {
    super(`short read: ${message}`, details ? { details } : undefined);
  }
}

/** Storage backend: an object read whole is larger than the caller's cap (a damaged or hostile object). */
export class ObjectTooLargeError extends SnapshotError {
  readonly code = 'OBJECT_TOO_LARGE';
  readonly exitCode = ExitCode.damaged;
  readonly outcome = 'damaged' as const;
  /** `size`: the object's size, when the backend knows it (a range's objectMax, checked as a load starts). */
  constructor(
    objectType: string,
    objectName: string,
    maxBytes: number,
    readonly size?: number,
  ) {
    super(
      `object ${objectType}/${objectName} is ${size !== undefined ? `${size} bytes, ` : ''}larger than ${maxBytes} bytes`,
      {
        details: {
          type: objectType,
          name: objectName,
          max_bytes: maxBytes,
          ...(size !== undefined ? { size } : {}),
        },
      },
    );
  }
}

/** Storage backend: something that is not an object (symlink, directory, device) where one is expected. */
export class UnsafeObjectError extends SnapshotError {
  readonly code = 'UNSAFE_OBJECT';
  readonly exitCode = ExitCode.damaged;
  readonly outcome = 'damaged' as const;
  constructor(message: string) {
    super(`unsafe storage: ${message}`);
  }
}

/** A repository lock (docs/locking.md) stayed held by a conflicting operation past the timeout. */
export class RepositoryLockedError extends SnapshotError {
  readonly code = 'REPOSITORY_LOCKED';
  readonly exitCode = ExitCode.concurrent;
  readonly outcome = 'concurrent' as const;
  /**
   * `lock`: the blocking lock object and what it claims (stop 45), so an operator can find and remove it;
   * `waitedMs`: how long the operation waited for it.
   */
  constructor(holder: string, lock?: Record<string, unknown>, waitedMs?: number) {
    super(
      `the repository is locked: ${holder}` +
        (waitedMs !== undefined ? `; waited ${waitedSeconds(waitedMs)} for it` : ''),
      {
        details: { holder, ...lock, ...(waitedMs !== undefined ? { waited_ms: Math.round(waitedMs) } : {}) },
      },
    );
  }
}

export type StoreErrorCode =
  | 'STORE_UNREACHABLE'
  | 'STORE_AUTH'
  | 'STORE_MISSING'
  | 'STORE_DENIED'
  | 'STORE_FULL'
  | 'STORE_REPLACED'
  | 'STORE_UNSAFE';

/**
 * A remote store (NATS JetStream, S3) cannot be used: not reachable after the retries (STORE_UNREACHABLE),
 * credentials refused (STORE_AUTH), the bucket or stream does not exist (STORE_MISSING), the
 * credentials lack a permission (STORE_DENIED), or the store has no room for the write (STORE_FULL:
 * a JetStream storage limit reached; never retried); the repository is not the one this host's cache
 * knows (STORE_REPLACED: replaced behind it; the cache forgets the old one); a NATS stream of the
 * repository has settings that can drop its data (STORE_UNSAFE; checked when the backend opens).
 * `backend` is `nats` or `s3`; `location` never holds a secret. Nothing the failed operation wrote is
 * visible as a snapshot.
 */
export class StoreUnavailableError extends SnapshotError {
  readonly exitCode = ExitCode.storeUnavailable;
  readonly outcome = 'store_unavailable' as const;
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    opts: { backend: string; location: string; cause?: unknown },
  ) {
    super(message, {
      cause: opts.cause,
      details: { backend: opts.backend, location: opts.location },
    });
  }
}

/**
 * A native module (better-sqlite3, zstd-napi) cannot be loaded: built for another Node.js, for another
 * platform, or never built. The message says which, and how to fix it (`npm rebuild`).
 */
export class NativeModuleError extends SnapshotError {
  readonly code = 'NATIVE_MODULE';
  readonly exitCode = ExitCode.error;
  readonly outcome = 'error' as const;
}

/** NODE_MODULE_VERSION → the Node.js major version that uses it (Node's abi_version_registry.json). */
const NODE_OF_ABI: Readonly<Record<number, string>> = {
  93: '16',
  108: '18',
  111: '19',
  115: '20',
  120: '21',
  127: '22',
  131: '23',
  137: '24',
  141: '25',
};

/**
 * The error of class `Typed` that another thread threw with `message` (its full message, which the
 * class's prefix already starts): the same class and the same message as if thrown here.
 */
export function rethrownFrom<T extends Error>(Typed: new (message: string) => T, message: string): T {
  const prefix = new Typed('').message; // what the class puts before the message it is given
  return new Typed(message.startsWith(prefix) ? message.slice(prefix.length) : message);
}

/**
 * The NativeModuleError a load failure of a native module means, or undefined for any other error.
 * Recognises Node's loader errors (ERR_DLOPEN_FAILED, NODE_MODULE_VERSION), dlopen's `<file>.node:
 * <reason>`, and a compiled module that is missing (`bindings`, `require` of a `.node` file), also when
 * they come back from a worker thread as a bare message.
 */
export function nativeModuleError(err: unknown): NativeModuleError | undefined {
  if (err instanceof NativeModuleError) return err;
  if (!err || typeof err !== 'object' || typeof (err as Error).message !== 'string') return undefined;
  const message = (err as Error).message;
  const code = (err as { code?: unknown }).code;
  const versions = /NODE_MODULE_VERSION (\d+)\.[\s\S]*?requires\s+NODE_MODULE_VERSION (\d+)/.exec(message);
  const missing = /Could not locate the bindings file|Cannot find module '[^']*\.node'/.test(message);
  const dlopen = code === 'ERR_DLOPEN_FAILED' || /\.node: /.test(message);
  if (!versions && !missing && !dlopen) return undefined;
  const path =
    /'([^']+\.node)'/.exec(message)?.[1] ??
    /(\S+\.node): /.exec(message)?.[1] ??
    /(\/\S*\/node_modules\/\S+)/.exec(message)?.[1];
  const where = path ? /^(.*)\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path) : null;
  const module = where?.[2] ?? 'a native module';
  const fix =
    `run \`npm rebuild${where ? ` ${where[2]}` : ''}\`${where ? ` in ${where[1]}` : ''} with the Node.js ` +
    'that runs nexo-memory (or reinstall nexo-memory-snapshot with it)';
  const here = `Node.js ${process.version}`;
  const details: Record<string, unknown> = {
    module,
    node: process.version,
    node_module_version: Number(process.versions.modules),
  };
  let what: string;
  if (versions) {
    const built = Number(versions[1]);
    const node = NODE_OF_ABI[built];
    details.built_for_node_module_version = built;
    if (node) details.built_for_node = node;
    what =
      `was built for ${node ? `Node.js ${node}` : 'another Node.js'} (NODE_MODULE_VERSION ${built}), ` +
      `but this is ${here} (NODE_MODULE_VERSION ${versions[2]})`;
  } else if (missing) {
    what = 'is not built (its compiled .node file is missing)';
  } else {
    what = `cannot be loaded by ${here} on ${process.platform}-${process.arch} (${message.split('\n')[0]})`;
  }
  if (path) details.path = path;
  return new NativeModuleError(`native module ${module} ${what}: ${fix}`, { cause: err, details });
}

/**
 * The IoError (details.errno) a system call's failure that reached a surface unwrapped means: an error
 * of Node's with an errno and a system call (`EMFILE … open '<a module>'` of a lazy import under
 * `ulimit -n`, `ENOSPC … write`), its own message kept. Undefined for anything else (a bug stays INTERNAL).
 */
export function systemError(err: unknown): IoError | undefined {
  if (!(err instanceof Error) || err instanceof SnapshotError) return undefined;
  const e = err as NodeJS.ErrnoException;
  if (typeof e.code !== 'string' || !/^E[A-Z0-9]+$/.test(e.code)) return undefined;
  if (typeof e.errno !== 'number' && typeof e.syscall !== 'string') return undefined;
  return new IoError('', err);
}

/**
 * Wrap any thrown value: SnapshotErrors pass through, a native module that cannot be loaded becomes
 * NativeModuleError, Node errno errors become IoError.
 */
export function asSnapshotError(err: unknown, context: string): SnapshotError {
  if (err instanceof SnapshotError) return err;
  const native = nativeModuleError(err);
  if (native) return native;
  if (
    err &&
    typeof err === 'object' &&
    'code' in err &&
    typeof (err as { code: unknown }).code === 'string'
  ) {
    return new IoError(context, err);
  }
  return new IoError(`${context}: ${err instanceof Error ? err.message : String(err)}`);
}

/** Every error class with its code, exit status and outcome, for the README table and tests. */
export const ERROR_TABLE: ReadonlyArray<{
  code: string;
  exitCode: number;
  outcome: Outcome;
  meaning: string;
}> = [
  {
    code: 'INVALID_INPUT',
    exitCode: 1,
    outcome: 'invalid_input',
    meaning: 'bad agent id, tenant, label or option',
  },
  {
    code: 'CONFIG',
    exitCode: 1,
    outcome: 'invalid_input',
    meaning: 'invalid config file (names the dotted key)',
  },
  { code: 'IO', exitCode: 1, outcome: 'error', meaning: 'file system error (details.errno, e.g. ENOSPC)' },
  { code: 'GIT', exitCode: 1, outcome: 'error', meaning: 'git failed (e.g. corrupt memdir repository)' },
  { code: 'SQLITE', exitCode: 1, outcome: 'error', meaning: 'SQLite copy or check failed' },
  { code: 'STATE', exitCode: 1, outcome: 'error', meaning: 'the state provider failed' },
  {
    code: 'REDACTION',
    exitCode: 1,
    outcome: 'error',
    meaning: 'a staged copy could not be redacted (e.g. a constraint refused the redacted value)',
  },
  {
    code: 'BUNDLE_DAMAGED',
    exitCode: 2,
    outcome: 'damaged',
    meaning: 'truncated, corrupt or tampered bundle',
  },
  { code: 'NOT_A_BUNDLE', exitCode: 2, outcome: 'damaged', meaning: 'the file is not a snapshot bundle' },
  { code: 'UNSAFE_ENTRY', exitCode: 2, outcome: 'damaged', meaning: 'traversal, link, duplicate, bomb' },
  {
    code: 'MISSING_ARTIFACT',
    exitCode: 2,
    outcome: 'damaged',
    meaning: 'manifest names an entry the bundle lacks',
  },
  {
    code: 'CHECKSUM_MISMATCH',
    exitCode: 2,
    outcome: 'checksum_mismatch',
    meaning: 'a seal or hash does not match',
  },
  {
    code: 'SCHEMA_TOO_NEW',
    exitCode: 2,
    outcome: 'schema_too_new',
    meaning: 'bundle written by a newer version',
  },
  {
    code: 'SIGNATURE_INVALID',
    exitCode: 2,
    outcome: 'untrusted',
    meaning: 'the signature does not verify (manifest changed after signing)',
  },
  {
    code: 'SIGNATURE_MISSING',
    exitCode: 2,
    outcome: 'untrusted',
    meaning: 'a signature is required and the bundle is unsigned',
  },
  {
    code: 'SIGNATURE_UNTRUSTED',
    exitCode: 2,
    outcome: 'untrusted',
    meaning: 'validly signed, but by a key that is not trusted',
  },
  { code: 'KEY', exitCode: 1, outcome: 'invalid_input', meaning: 'unreadable, corrupt or wrong-type key' },
  { code: 'CONCURRENT', exitCode: 4, outcome: 'concurrent', meaning: 'agent lock held by another operation' },
  {
    code: 'REPOSITORY_LOCKED',
    exitCode: 4,
    outcome: 'concurrent',
    meaning: 'repository lock held by a conflicting operation (prune and the others exclude each other)',
  },
  { code: 'NOT_FOUND', exitCode: 5, outcome: 'not_found', meaning: 'snapshot id not found' },
  {
    code: 'UNKNOWN_AGENT',
    exitCode: 5,
    outcome: 'not_found',
    meaning: 'agent has no memdir, database or state',
  },
  {
    code: 'RETENTION',
    exitCode: 6,
    outcome: 'refused',
    meaning: "refusing to delete the agent's last snapshot",
  },
  {
    code: 'ALREADY_EXISTS',
    exitCode: 6,
    outcome: 'refused',
    meaning: 'target exists and --force was not given',
  },
  { code: 'RESTORE_REFUSED', exitCode: 6, outcome: 'refused', meaning: 'restore refused by a precondition' },
  {
    code: 'REDACTED_BUNDLE',
    exitCode: 6,
    outcome: 'refused',
    meaning:
      'restoring a redacted bundle in place needs --allow-redacted (placeholders would replace secrets)',
  },
  {
    code: 'CROSS_TENANT',
    exitCode: 6,
    outcome: 'refused',
    meaning: 'bundle or path belongs to another tenant',
  },
  { code: 'ENCRYPTION', exitCode: 7, outcome: 'error', meaning: 'age encryption or decryption failed' },
  {
    code: 'UNAUTHORIZED',
    exitCode: 6,
    outcome: 'refused',
    meaning: 'HTTP API: missing or wrong bearer token',
  },
  { code: 'FORBIDDEN', exitCode: 6, outcome: 'refused', meaning: 'switched off by configuration' },
  {
    code: 'CROSS_SITE',
    exitCode: 6,
    outcome: 'refused',
    meaning: 'HTTP API: a request a browser sent from another site or origin',
  },
  { code: 'ROUTE_NOT_FOUND', exitCode: 5, outcome: 'not_found', meaning: 'HTTP API: no such route' },
  {
    code: 'METHOD_NOT_ALLOWED',
    exitCode: 1,
    outcome: 'invalid_input',
    meaning: 'HTTP API: method not allowed on the route',
  },
  {
    code: 'PAYLOAD_TOO_LARGE',
    exitCode: 1,
    outcome: 'invalid_input',
    meaning: 'HTTP API: request body over the limit',
  },
  { code: 'SHUTTING_DOWN', exitCode: 1, outcome: 'error', meaning: 'daemon: shutting down' },
  {
    code: 'JOURNAL_DAMAGED',
    exitCode: 1,
    outcome: 'damaged',
    meaning: "an interrupted restore's journal cannot be read: the agent is left as it is",
  },
  {
    code: 'OBJECT_NOT_FOUND',
    exitCode: 5,
    outcome: 'not_found',
    meaning: 'storage: no object with that type and name',
  },
  {
    code: 'OBJECT_EXISTS',
    exitCode: 6,
    outcome: 'refused',
    meaning: 'storage: a save that must not replace found the object there',
  },
  {
    code: 'SHORT_READ',
    exitCode: 2,
    outcome: 'damaged',
    meaning: 'storage: an object is shorter than the range read',
  },
  {
    code: 'OBJECT_TOO_LARGE',
    exitCode: 2,
    outcome: 'damaged',
    meaning: 'storage: an object read whole is over the size cap',
  },
  {
    code: 'UNSAFE_OBJECT',
    exitCode: 2,
    outcome: 'damaged',
    meaning: 'storage: a symlink, directory or device where an object is expected',
  },
  {
    code: 'NATIVE_MODULE',
    exitCode: 1,
    outcome: 'error',
    meaning: 'better-sqlite3 or zstd-napi built for another Node.js or platform: `npm rebuild`',
  },
  {
    code: 'STORE_UNREACHABLE',
    exitCode: 8,
    outcome: 'store_unavailable',
    meaning: 'a remote repository did not answer after the retries',
  },
  {
    code: 'STORE_AUTH',
    exitCode: 8,
    outcome: 'store_unavailable',
    meaning: 'a remote repository refused the credentials',
  },
  {
    code: 'STORE_MISSING',
    exitCode: 8,
    outcome: 'store_unavailable',
    meaning: "a remote repository's bucket does not exist",
  },
  {
    code: 'STORE_DENIED',
    exitCode: 8,
    outcome: 'store_unavailable',
    meaning: 'the credentials lack a permission the operation needs',
  },
  {
    code: 'STORE_FULL',
    exitCode: 8,
    outcome: 'store_unavailable',
    meaning: 'a remote repository has no room for the write (a JetStream storage limit reached)',
  },
  {
    code: 'STORE_REPLACED',
    exitCode: 8,
    outcome: 'store_unavailable',
    meaning:
      "a remote repository was replaced behind this host's cache (its config id changed); nothing written",
  },
  {
    code: 'STORE_UNSAFE',
    exitCode: 8,
    outcome: 'store_unavailable',
    meaning: 'a NATS stream of the repository has settings that can drop its data; nothing written',
  },
];

/**
 * The metric outcome of an error code as a report carries it (`error_code`, a gc listing problem's
 * `code`): the table's, `error` for a code it does not have (INTERNAL, or none).
 */
export function outcomeOfCode(code: string | undefined): Outcome {
  return ERROR_TABLE.find((e) => e.code === code)?.outcome ?? 'error';
}
