// Owns the S3-compatible backend (AWS S3, MinIO, Ceph RGW, R2): objects are keys `<prefix>/<type>/<name>`
// of one bucket. A save buffers up to multipartThreshold and PUTs the object whole; a bigger one is a
// multipart upload (8 MiB parts, two in flight) completed only at the end and aborted on any failure, so
// nothing partial is ever visible. ifAbsent uses `If-None-Match: *` where a probe shows the endpoint
// honours it, otherwise claim objects under `<prefix>/.claims/` (docs/remote.md, S3-compatible storage).
// Loads are ranged GETs of 4 MiB blocks, `parallelReads` at once, each checked to be exactly as long as
// asked before it is yielded. Transient failures are retried here with exponential backoff and full
// jitter (the SDK's own retries are off); errors are classified into the StoreUnavailableError codes
// and never carry a credential.

import { createHash, randomUUID } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import {
  ConfigError,
  IoError,
  ObjectExistsError,
  ObjectNotFoundError,
  ShortReadError,
  SnapshotError,
  type StoreErrorCode,
  StoreUnavailableError,
} from '../model/errors.js';
import {
  type Backend,
  type Handle,
  isObjectType,
  isValidName,
  type ObjectInfo,
  type ObjectType,
  type Range,
  resolveRange,
  type SaveOptions,
  type SaveSource,
  type SweepReport,
  sourceChunks,
  validateHandle,
  validateRange,
  validateType,
} from './backend.js';
import type { BackendObserver, OpenS3Backend, S3BackendOptions } from './remote.js';
import { fullJitter } from './retry.js';

const MiB = 1 << 20;
const DEFAULT_THRESHOLD = 16 * MiB;
/** Bytes per part of a multipart upload (S3 wants ≥ 5 MiB for every part but the last). */
export const PART_SIZE = 8 * MiB;
/** Parts of one upload in flight at once. */
const PARTS_IN_FLIGHT = 2;
const MAX_PARTS = 10_000;
/** Bytes per ranged GET of a load (and the largest chunk a load yields). */
export const BLOCK_SIZE = 4 * MiB;
const DEFAULT_TIMEOUT_MS = 30_000;
/** A claim older than this (by the store's clock) belongs to a writer that died: it is ignored. */
const CLAIM_STALE_MS = 120_000;
/** Bounds of one listing: its keys (10 million packs are 160 TB), and pages in a row that add none. */
const MAX_LISTED_KEYS = 10_000_000;
const MAX_PAGES_WITHOUT_KEYS = 100;
const CLAIM_ROUNDS = 60;
/**
 * The most bytes of an answer read whole (a listing page of 1,000 keys of at most 1,024 bytes each is
 * ~1.5 MB; an error document a few hundred bytes): past it the answer is cut off, an IO error.
 */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

/** `body` passed on until `max` bytes; past them it is destroyed and the copy fails (AnswerTooLarge). */
function bounded(body: Readable, max: number): Readable {
  let seen = 0;
  const out = new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen <= max) return done(null, chunk);
      body.destroy();
      done(
        Object.assign(new Error(`an answer of more than ${max} bytes, cut off`), { name: 'AnswerTooLarge' }),
      );
    },
  });
  body.on('error', (err) => out.destroy(err));
  return body.pipe(out);
}

/** The id of a claim: a random UUID (claimAndWrite). */
const CLAIM_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Pages of incomplete uploads a sweep reads at most (1,000 uploads a page). */
const MAX_UPLOAD_PAGES = 10_000;

type Op = 'save' | 'load' | 'stat' | 'list' | 'remove';

/**
 * A failure worth another attempt of one request: connection reset or refused, timeout, HTTP 5xx/429,
 * SlowDown, or a body shorter than its Content-Length or range (`short`). Internal to this backend,
 * which retries its own requests: after the last attempt it becomes StoreUnavailableError
 * ('STORE_UNREACHABLE') or, for a short body, ShortReadError — never backend.ts's RetryableFailure,
 * so the retry wrapper (retry.ts) does not multiply the attempts.
 */
class RetryableFailure extends Error {
  constructor(
    readonly reason: string,
    readonly short = false,
  ) {
    super(reason);
    this.name = 'RetryableFailure';
  }
}

const TRANSIENT_ERRNO = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ERR_STREAM_PREMATURE_CLOSE',
]);
const TRANSIENT_NAMES = new Set([
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'SlowDown',
  'InternalError',
  'ServiceUnavailable',
  'ConditionalRequestConflict',
  'OperationAborted',
]);
/** A store out of room: MinIO's full disk and bucket quota, the generic 507 and quota answers. */
const FULL_NAMES = new Set([
  'XMinioStorageFull',
  'XMinioAdminBucketQuotaExceeded',
  'InsufficientStorage',
  'QuotaExceeded',
]);
const AUTH_NAMES = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'InvalidToken',
  'ExpiredToken',
  'TokenRefreshRequired',
  'CredentialsProviderError',
  'InvalidClientTokenId',
]);

interface SdkError {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  cause?: unknown;
}

function statusOf(err: unknown): number | undefined {
  return (err as SdkError | undefined)?.$metadata?.httpStatusCode;
}

function nameOf(err: unknown): string {
  const e = err as SdkError | undefined;
  return String(e?.Code ?? e?.name ?? 'Error');
}

/** The errno of `err` or of its causes (the SDK wraps socket errors). */
function errnoOf(err: unknown): string | undefined {
  for (let e = err as SdkError | undefined, i = 0; e && i < 5; e = e.cause as SdkError, i++)
    if (typeof e.code === 'string' && TRANSIENT_ERRNO.has(e.code)) return e.code;
  return undefined;
}

function isNotFound(err: unknown): boolean {
  const n = nameOf(err);
  return n === 'NoSuchKey' || n === 'NotFound' || (statusOf(err) === 404 && n !== 'NoSuchBucket');
}

function isPreconditionFailed(err: unknown): boolean {
  return nameOf(err) === 'PreconditionFailed' || statusOf(err) === 412;
}

function isInvalidRange(err: unknown): boolean {
  return nameOf(err) === 'InvalidRange' || statusOf(err) === 416;
}

/** A description of an SDK failure that holds no credential: the error's name and HTTP status. */
function describe(err: unknown): string {
  const errno = errnoOf(err);
  if (errno) return errno;
  const status = statusOf(err);
  return status ? `${nameOf(err)}, HTTP ${status}` : nameOf(err);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function md5(data: Uint8Array): Buffer {
  return createHash('md5').update(data).digest();
}

/** The ETag S3 gives an object, without quotes. */
function unquote(etag: string | undefined): string | undefined {
  return etag?.replace(/^"|"$/g, '');
}

/** `<scheme>://host[:port]/path` of an endpoint: no user info, query or fragment. */
function safeEndpoint(endpoint: string): string {
  try {
    const u = new URL(endpoint);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    throw new ConfigError('the S3 endpoint is not a URL');
  }
}

function checkOptions(o: S3BackendOptions): void {
  if (o === null || typeof o !== 'object') throw new ConfigError('S3 backend options are missing');
  if (typeof o.bucket !== 'string' || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(o.bucket))
    throw new ConfigError('the S3 bucket must be 3..63 characters of [a-z0-9.-]');
  if (typeof o.prefix !== 'string' || o.prefix.startsWith('/') || o.prefix.endsWith('/'))
    throw new ConfigError('the S3 prefix must be a string without a leading or trailing slash');
  if (o.prefix.split('/').some((s) => s === '.' || s === '..' || (o.prefix !== '' && s === '')))
    throw new ConfigError('the S3 prefix must not hold empty, . or .. segments');
  const positive = (v: unknown) => v === undefined || (Number.isSafeInteger(v) && (v as number) >= 1);
  for (const f of ['multipartThreshold', 'parallelReads', 'timeoutMs'] as const)
    if (!positive(o[f])) throw new ConfigError(`S3 option ${f} must be a positive integer`);
  const r = o.retry ?? {};
  for (const f of ['attempts', 'baseDelayMs', 'maxDelayMs'] as const)
    if (r[f] !== undefined && !(Number.isSafeInteger(r[f]) && (r[f] as number) >= (f === 'attempts' ? 1 : 0)))
      throw new ConfigError(`S3 retry option ${f} must be a non-negative integer (attempts ≥ 1)`);
}

/** The region: the option, else the SDK's chain (AWS_REGION, the profile), else us-east-1. */
async function defaultRegion(): Promise<string> {
  const probe = new S3Client({});
  try {
    return await probe.config.region();
  } catch {
    return 'us-east-1';
  } finally {
    probe.destroy();
  }
}

interface Block {
  readonly data: Buffer;
  /** The object's size, from Content-Range (or Content-Length of a whole-object answer). */
  readonly size: number;
  readonly etag: string | undefined;
}

export class S3Backend implements Backend {
  readonly location: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  /** `prefix/` or ''. */
  private readonly root: string;
  private readonly threshold: number;
  private readonly parallel: number;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly observer: BackendObserver | undefined;
  /** Whether the endpoint honours `If-None-Match: *` on writes (probed once, on the first ifAbsent save). */
  private conditional: Promise<boolean> | undefined;
  private closed = false;

  constructor(opts: S3BackendOptions) {
    checkOptions(opts);
    this.bucket = opts.bucket;
    this.root = opts.prefix === '' ? '' : `${opts.prefix}/`;
    this.threshold = opts.multipartThreshold ?? DEFAULT_THRESHOLD;
    this.parallel = opts.parallelReads ?? 4;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.attempts = opts.retry?.attempts ?? 5;
    this.baseDelayMs = opts.retry?.baseDelayMs ?? 200;
    this.maxDelayMs = opts.retry?.maxDelayMs ?? 5000;
    this.observer = opts.observer;
    const where = `s3://${opts.bucket}${opts.prefix ? `/${opts.prefix}` : ''}`;
    this.location = opts.endpoint ? `${where} at ${safeEndpoint(opts.endpoint)}` : where;
    let region: Promise<string> | undefined;
    const config: S3ClientConfig = {
      region: opts.region ?? (() => (region ??= defaultRegion())),
      forcePathStyle: opts.forcePathStyle ?? false,
      // Retries are ours (RetryOptions): one attempt per SDK call.
      maxAttempts: 1,
      // Plain bodies with Content-MD5: what every S3-compatible server understands.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // timeoutMs bounds connecting and any silence of a request or its answer (not a transfer's length).
      requestHandler: { connectionTimeout: this.timeoutMs, socketTimeout: this.timeoutMs },
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      ...(opts.credentials ? { credentials: { ...opts.credentials } } : {}),
    };
    this.client = new S3Client(config);
    // Every answer the SDK reads whole (a listing, an error document, all but an object's body, which
    // is streamed and bounded by its own range) is cut off past MAX_ANSWER_BYTES: the SDK buffers such a
    // body without bound, and a listing that never ended grew the process by ~400 MiB a second (stop 62
    // review). Innermost in the deserialize step: the raw answer, before the SDK reads it.
    this.client.middlewareStack.add(
      (next, context) => async (args) => {
        const out = await next(args);
        const response = (out as { response?: { statusCode?: number; body?: unknown } }).response;
        const whole = context.commandName !== 'GetObjectCommand' || (response?.statusCode ?? 200) >= 300;
        if (whole && response?.body instanceof Readable)
          response.body = bounded(response.body, MAX_ANSWER_BYTES);
        return out;
      },
      { step: 'deserialize', name: 'nexoBoundedAnswers', priority: 'low' },
    );
  }

  private key(h: Handle): string {
    return `${this.root}${h.type}/${h.name}`;
  }

  private observe(op: Op, outcome: 'ok' | 'error', bytes: number): void {
    try {
      this.observer?.request(op, outcome, bytes);
    } catch {
      // An observer's failure is not the store's.
    }
  }

  /** The typed error for a final failure, or a RetryableFailure for one worth retrying. */
  private classify(err: unknown, what: string): Error {
    if (err instanceof SnapshotError || err instanceof RetryableFailure) return err;
    const name = nameOf(err);
    const status = statusOf(err);
    const errno = errnoOf(err);
    // A store out of room (a quota or a full disk: 507 is a 5xx, but lasts): STORE_FULL, never retried.
    if (FULL_NAMES.has(name) || status === 507)
      return new StoreUnavailableError(
        'STORE_FULL',
        `${what}: the S3 store has no room for the write (${describe(err)}); raise the bucket's quota ` +
          "or free the store's space, then run the command again (prune needs to write its lock first)",
        { backend: 's3', location: this.location, cause: new Error(describe(err)) },
      );
    if (
      errno ||
      TRANSIENT_NAMES.has(name) ||
      (status !== undefined && (status >= 500 || status === 429 || status === 408))
    )
      return new RetryableFailure(describe(err));
    // A request that died before an HTTP answer (socket hang up, aborted body) is transient too.
    if (
      status === undefined &&
      !AUTH_NAMES.has(name) &&
      /aborted|socket|hang up|ECONN/i.test(String((err as SdkError)?.message))
    )
      return new RetryableFailure(describe(err));
    const fail = (code: StoreErrorCode, text: string) =>
      new StoreUnavailableError(code, `${what}: ${text} (${describe(err)})`, {
        backend: 's3',
        location: this.location,
        cause: new Error(describe(err)),
      });
    if (AUTH_NAMES.has(name))
      return fail(
        'STORE_AUTH',
        name === 'CredentialsProviderError' // the SDK found none to send: no request was made
          ? "no S3 credentials were found (store.s3's access_key_id and secret_access_key, or the SDK's credential chain)"
          : 'the S3 store refused the credentials',
      );
    if (name === 'NoSuchBucket') return fail('STORE_MISSING', `the bucket ${this.bucket} does not exist`);
    if (name === 'AnswerTooLarge')
      return new IoError(
        `${what}: the S3 store's answer went past ${MAX_ANSWER_BYTES} bytes, more than any answer read whole may be; cut off`,
      );
    if (name === 'AccessDenied' || name === 'AllAccessDisabled' || status === 403)
      return fail('STORE_DENIED', 'the credentials lack a permission this needs');
    // a bare "Error" without an HTTP status: what answered did not speak S3 (a wrong endpoint or port)
    if (status === undefined && (name === 'Error' || name === ''))
      return new IoError(
        `${what}: the endpoint did not answer as an S3 store (${String((err as SdkError)?.message ?? '').slice(0, 200)}); check store.s3.endpoint`,
      );
    return new IoError(`${what}: the S3 store answered ${describe(err)}`);
  }

  /**
   * Runs one request with the retries of RetryOptions. Every attempt is told to the observer; answers
   * about the object (not found, exists, range) count as ok. After the last attempt a transient failure
   * is STORE_UNREACHABLE, a short body SHORT_READ.
   */
  private async run<T>(op: Op, what: string, fn: () => Promise<T>, bytes: (v: T) => number): Promise<T> {
    if (this.closed) throw new IoError(`${what}: the S3 backend is closed`);
    for (let attempt = 1; ; attempt++) {
      let failure: Error;
      try {
        const v = await fn();
        this.observe(op, 'ok', bytes(v));
        return v;
      } catch (err) {
        const answer = isNotFound(err) || isPreconditionFailed(err) || isInvalidRange(err);
        this.observe(op, answer ? 'ok' : 'error', 0);
        if (answer) throw err;
        failure = this.classify(err, what);
      }
      if (!(failure instanceof RetryableFailure)) throw failure;
      if (attempt >= this.attempts) {
        if (failure.short) throw new ShortReadError(`${what}: ${failure.reason}`);
        throw new StoreUnavailableError(
          'STORE_UNREACHABLE',
          `${what}: the S3 store did not answer after ${attempt} attempt${attempt === 1 ? '' : 's'} (${failure.reason})`,
          { backend: 's3', location: this.location, cause: failure },
        );
      }
      const delay = fullJitter(this.baseDelayMs, this.maxDelayMs, attempt);
      try {
        this.observer?.retry?.(op, attempt, delay, failure.reason);
      } catch {}
      await sleep(delay);
    }
  }

  /** Checks that the bucket is there and the credentials work (one listing request). */
  async probe(): Promise<void> {
    const what = `open ${this.location}`;
    const r = await this.run(
      'list',
      what,
      () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.root, MaxKeys: 1 })),
      () => 0,
    );
    if (typeof r.IsTruncated !== 'boolean')
      throw new IoError(
        `${what}: the endpoint did not answer as an S3 store (a listing without IsTruncated); check store.s3.endpoint`,
      );
  }

  // ---- save ------------------------------------------------------------------------------------------

  async save(h: Handle, data: SaveSource, opts?: SaveOptions): Promise<void> {
    h = validateHandle(h);
    const key = this.key(h);
    const what = `save ${h.type}/${h.name} to ${this.location}`;
    const ifAbsent = opts?.ifAbsent === true;
    const source = sourceChunks(data)[Symbol.asyncIterator]();
    // Up to the threshold the object is gathered in memory (copies: the caller may reuse its buffers).
    const head: Buffer[] = [];
    let size = 0;
    let done = false;
    while (size < this.threshold) {
      const r = await source.next();
      if (r.done) {
        done = true;
        break;
      }
      if (r.value.length === 0) continue;
      head.push(Buffer.from(r.value));
      size += r.value.length;
    }
    if (done) {
      const body = Buffer.concat(head, size);
      head.length = 0;
      await this.publish(h, what, ifAbsent, (conditional) => this.putWhole(key, body, what, conditional));
      return;
    }
    await this.multipart(h, key, what, ifAbsent, head, source);
  }

  /** PUTs `body` as the object; with `conditional`, only if absent (false when it exists). */
  private async putWhole(key: string, body: Buffer, what: string, conditional: boolean): Promise<boolean> {
    const digest = md5(body);
    let attempts = 0;
    let answer: { ETag?: string };
    try {
      answer = await this.run(
        'save',
        what,
        () => {
          attempts++;
          return this.client.send(
            new PutObjectCommand({
              Bucket: this.bucket,
              Key: key,
              Body: body,
              ContentLength: body.length,
              ContentMD5: digest.toString('base64'),
              ...(conditional ? { IfNoneMatch: '*' } : {}),
            }),
          );
        },
        () => body.length,
      );
    } catch (err) {
      if (!(conditional && isPreconditionFailed(err))) throw err;
      // A retried PUT may find the object its lost first attempt wrote: that is a success.
      return attempts > 1 && (await this.etagOf(key, what)) === digest.toString('hex');
    }
    await this.confirmStored(
      key,
      what,
      body.length,
      unquote(answer.ETag) === digest.toString('hex'),
      unquote(answer.ETag),
    );
    return true;
  }

  /**
   * Confirms that the store holds the object it acknowledged (a PUT whose ETag is the body's MD5 does;
   * a store that encrypts with KMS answers another ETag, and then the object is asked for): a store
   * that drops writes it acknowledged would otherwise have the snapshot listed over data it never kept
   * (and later snapshots deduplicated against it). STORE_UNSAFE when the object is not there whole.
   */
  /**
   * After a PUT whose answered ETag is not the content's MD5 (a store encrypting with KMS answers
   * another; so does one that answered without writing): the object must be there with the size
   * written and the ETag the PUT answered. By the size alone, an object of the same size already
   * there made a write the store never performed count as done, and two hosts creating a repository at
   * once could both believe they had (stop 62 review).
   */
  private async confirmStored(
    key: string,
    what: string,
    size: number,
    etagMatches: boolean,
    answered: string | undefined,
  ): Promise<void> {
    if (etagMatches) return;
    const stored = await this.head(key, what);
    const problem =
      stored === undefined
        ? 'does not have the object'
        : stored.ContentLength !== size
          ? `holds ${stored.ContentLength} of its ${size} bytes`
          : answered !== undefined && unquote(stored.ETag) !== answered
            ? `holds an object of another ETag (${unquote(stored.ETag)}, not the ${answered} it answered)`
            : undefined;
    if (problem)
      throw new StoreUnavailableError(
        'STORE_UNSAFE',
        `${what}: the S3 store acknowledged the write but ${problem}: a store that loses acknowledged writes cannot hold a repository`,
        { backend: 's3', location: this.location },
      );
  }

  /**
   * Whether the object at `key` is the one a multipart upload of `size` bytes with the multipart ETag
   * `expected` made: that ETag, or (a store whose ETags of uploads are another digest, as s3rver's) that
   * size, which names one content for the objects uploaded in parts (packs, named by their hash).
   */
  private async completed(key: string, what: string, expected: string, size: number): Promise<boolean> {
    const stored = await this.head(key, what);
    return stored !== undefined && (unquote(stored.ETag) === expected || stored.ContentLength === size);
  }

  private async etagOf(key: string, what: string): Promise<string | undefined> {
    return unquote((await this.head(key, what))?.ETag);
  }

  /** The object's HEAD answer, or undefined when it is not there. */
  private async head(
    key: string,
    what: string,
  ): Promise<{ ETag?: string; ContentLength?: number } | undefined> {
    try {
      return await this.run(
        'stat',
        what,
        () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })),
        () => 0,
      );
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Makes the object visible through `write` (false: it existed). Without ifAbsent, `write` replaces.
   * With ifAbsent, `write` is conditional where the endpoint honours `If-None-Match: *`; elsewhere the
   * claim protocol decides who may write (docs/remote.md).
   */
  private async publish(
    h: Handle,
    what: string,
    ifAbsent: boolean,
    write: (conditional: boolean) => Promise<boolean>,
  ): Promise<void> {
    if (!ifAbsent) {
      await write(false);
      return;
    }
    const exists = () => new ObjectExistsError(h.type, h.name, this.location);
    if (await this.supportsConditional(what)) {
      if (!(await write(true))) throw exists();
      return;
    }
    await this.claimAndWrite(h, what, async () => {
      if (!(await write(false))) throw exists();
    });
  }

  private supportsConditional(what: string): Promise<boolean> {
    if (!this.conditional) {
      this.conditional = this.probeConditional(what);
      this.conditional.catch(() => {
        this.conditional = undefined;
      });
    }
    return this.conditional;
  }

  /** Writes a probe object twice with `If-None-Match: *`: the second must be refused (412). */
  private async probeConditional(what: string): Promise<boolean> {
    const key = `${this.root}.probe/${randomUUID()}`;
    const put = () =>
      this.run(
        'save',
        what,
        () =>
          this.client.send(
            new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: Buffer.alloc(0), IfNoneMatch: '*' }),
          ),
        () => 0,
      );
    try {
      try {
        await put();
      } catch (err) {
        if (nameOf(err) === 'NotImplemented' || statusOf(err) === 501) return false;
        throw err;
      }
      try {
        await put();
        return false;
      } catch (err) {
        if (isPreconditionFailed(err)) return true;
        if (nameOf(err) === 'NotImplemented' || statusOf(err) === 501) return false;
        throw err;
      }
    } finally {
      await this.deleteKey(key, what).catch(() => {});
    }
  }

  /**
   * ifAbsent without conditional writes: a writer puts a claim `<prefix>/.claims/<type>/<name>/<uuid>`,
   * lists the claims of the name and writes only when it sees no live claim but its own and the object
   * is still absent; otherwise it withdraws and tries again after a jittered pause. With a strongly
   * consistent store, of two writers at least one sees the other's claim, so at most one writes.
   */
  /**
   * Whether `key` is a claim as claimAndWrite writes them (`<prefix>.claims/<type>/<name>/<uuid>`, of the
   * name `of` when given): only such keys of a listing are ever counted or deleted as claims. A listing
   * is the store's word: a hostile one that named `config/config` or another snapshot's manifest under
   * `.claims/` had it deleted as a stale claim (stop 62 review).
   */
  private isClaim(key: string, of?: Handle): boolean {
    const base = `${this.root}.claims/`;
    if (!key.startsWith(base)) return false;
    const [type, name, id, ...rest] = key.slice(base.length).split('/');
    return (
      rest.length === 0 &&
      isObjectType(type) &&
      isValidName(type, name ?? '') &&
      CLAIM_ID.test(id ?? '') &&
      (of === undefined || (type === of.type && name === of.name))
    );
  }

  private async claimAndWrite(h: Handle, what: string, write: () => Promise<void>): Promise<void> {
    const prefix = `${this.root}.claims/${h.type}/${h.name}/`;
    const target = this.key(h);
    for (let round = 1; round <= CLAIM_ROUNDS; round++) {
      if ((await this.etagOf(target, what)) !== undefined)
        throw new ObjectExistsError(h.type, h.name, this.location);
      const mine = `${prefix}${randomUUID()}`;
      await this.run(
        'save',
        what,
        () =>
          this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: mine, Body: Buffer.alloc(0) })),
        () => 0,
      );
      let won = false;
      try {
        const claims = (await this.listKeys(prefix, what, 'save')).filter((c) => this.isClaim(c.key, h));
        const myTime = claims.find((c) => c.key === mine)?.modified ?? Date.now();
        const live = claims.filter((c) => c.key !== mine && myTime - c.modified < CLAIM_STALE_MS);
        for (const c of claims)
          if (c.key !== mine && myTime - c.modified >= CLAIM_STALE_MS)
            await this.deleteKey(c.key, what).catch(() => {});
        if (live.length === 0) {
          won = true;
          if ((await this.etagOf(target, what)) !== undefined)
            throw new ObjectExistsError(h.type, h.name, this.location);
          await write();
          return;
        }
      } finally {
        // The winner's claim goes only after its object is visible (or its write failed).
        await this.deleteKey(mine, what).catch(() => {});
      }
      if (!won) await sleep(Math.floor(Math.random() * Math.min(2000, 50 * 2 ** Math.min(round, 6))));
    }
    throw new IoError(`${what}: other writers of the same name kept their claims for too long`);
  }

  private async multipart(
    h: Handle,
    key: string,
    what: string,
    ifAbsent: boolean,
    head: Buffer[],
    source: AsyncIterator<Uint8Array>,
  ): Promise<void> {
    const created = await this.run(
      'save',
      what,
      () => this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key })),
      () => 0,
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new IoError(`${what}: the S3 store gave no upload id`);
    const parts: Array<{ PartNumber: number; ETag: string; md5: Buffer }> = [];
    const inFlight = new Set<Promise<void>>();
    let failed: { err: unknown } | undefined;
    let numbered = 0;
    let total = 0;
    const send = (body: Buffer) => {
      const PartNumber = ++numbered;
      total += body.length;
      if (PartNumber > MAX_PARTS)
        throw new IoError(`${what}: the object needs more than ${MAX_PARTS} parts of ${PART_SIZE} bytes`);
      const digest = md5(body);
      const p = this.run(
        'save',
        what,
        () =>
          this.client.send(
            new UploadPartCommand({
              Bucket: this.bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber,
              Body: body,
              ContentLength: body.length,
              ContentMD5: digest.toString('base64'),
            }),
          ),
        () => body.length,
      ).then(
        (r) => {
          parts.push({ PartNumber, ETag: r.ETag ?? '', md5: digest });
        },
        (err: unknown) => {
          failed ??= { err };
        },
      );
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    };
    const check = () => {
      if (failed) throw failed.err;
    };
    let part = Buffer.allocUnsafe(PART_SIZE);
    let fill = 0;
    const take = async (chunk: Uint8Array) => {
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(PART_SIZE - fill, chunk.length - off);
        part.set(chunk.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === PART_SIZE) {
          while (inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(inFlight);
          check();
          send(part);
          part = Buffer.allocUnsafe(PART_SIZE);
          fill = 0;
        }
      }
    };
    try {
      for (const chunk of head) await take(chunk);
      head.length = 0;
      for (;;) {
        const r = await source.next();
        if (r.done) break;
        await take(r.value);
        check();
      }
      if (fill > 0 || numbered === 0) send(part.subarray(0, fill));
      while (inFlight.size > 0) await Promise.race(inFlight);
      check();
      parts.sort((a, b) => a.PartNumber - b.PartNumber);
      const expected = `${md5(Buffer.concat(parts.map((p) => p.md5))).toString('hex')}-${parts.length}`;
      await this.publish(h, what, ifAbsent, async (conditional) => {
        let attempts = 0;
        let answer: { ETag?: string };
        try {
          answer = await this.run(
            'save',
            what,
            () => {
              attempts++;
              return this.client.send(
                new CompleteMultipartUploadCommand({
                  Bucket: this.bucket,
                  Key: key,
                  UploadId: uploadId,
                  MultipartUpload: { Parts: parts.map(({ PartNumber, ETag }) => ({ PartNumber, ETag })) },
                  ...(conditional ? { IfNoneMatch: '*' } : {}),
                }),
              );
            },
            () => 0,
          );
        } catch (err) {
          const exists = conditional && isPreconditionFailed(err);
          // A retried Complete whose first attempt completed the upload, its answer lost: the upload is
          // gone (NoSuchUpload) or, conditional, the object exists; the object as the upload made it is
          // the success (stop 62 review: a stored object was reported as a failed save).
          if (
            attempts > 1 &&
            (exists || isNotFound(err)) &&
            (await this.completed(key, what, expected, total))
          )
            return true;
          if (exists) return false;
          if (isNotFound(err))
            throw new IoError(
              `${what}: the S3 store no longer knows the upload (${nameOf(err) || 'HTTP 404'})`,
            );
          throw err;
        }
        await this.confirmStored(key, what, total, unquote(answer.ETag) === expected, unquote(answer.ETag));
        return true;
      });
    } catch (err) {
      // Nothing of the upload may stay: wait for the parts in flight, then abort it.
      await Promise.allSettled([...inFlight]);
      await this.run(
        'save',
        what,
        () =>
          this.client.send(
            new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
          ),
        () => 0,
      ).catch(() => {});
      throw err;
    }
  }

  // ---- load ------------------------------------------------------------------------------------------

  /**
   * GETs bytes [a, b) of the object (b may pass its end: the answer stops there). The body must hold
   * every byte its headers promise, else the attempt is retried; `etag` pins the version being read.
   */
  private async getBlock(
    key: string,
    a: number,
    b: number,
    what: string,
    etag: string | undefined,
    signal: AbortSignal,
  ): Promise<Block | 'invalid-range'> {
    try {
      return await this.run(
        'load',
        what,
        async () => {
          if (signal.aborted) throw new IoError(`${what}: the load was abandoned`);
          const r = await this.client.send(
            new GetObjectCommand({
              Bucket: this.bucket,
              Key: key,
              Range: `bytes=${a}-${b - 1}`,
              ...(etag ? { IfMatch: `"${etag}"` } : {}),
            }),
            { abortSignal: signal },
          );
          // a web page is no stored object (objects are stored without a type: never HTML)
          if (/^\s*text\/html\b/i.test(r.ContentType ?? '')) {
            (r.Body as { destroy?: () => void } | undefined)?.destroy?.();
            throw new IoError(
              `${what}: the endpoint did not answer as an S3 store (an HTML page for an object); check store.s3.endpoint`,
            );
          }
          let first = 0;
          let size: number;
          const cr = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(r.ContentRange ?? '');
          if (cr) {
            first = Number(cr[1]);
            size = Number(cr[3]);
          } else if (r.$metadata.httpStatusCode === 200 && r.ContentLength !== undefined) {
            size = r.ContentLength; // the whole object: the server ignored the range
          } else {
            (r.Body as { destroy?: () => void } | undefined)?.destroy?.();
            throw new RetryableFailure('an answer without Content-Range to a ranged GET', true);
          }
          const end = Math.min(b, size);
          const want = Math.max(0, end - a);
          const body = r.Body as (AsyncIterable<Uint8Array> & { destroy?: () => void }) | undefined;
          if (want === 0 || a < first) {
            body?.destroy?.();
            if (a < first) throw new RetryableFailure(`the answer starts at ${first}, not ${a}`, true);
            return { data: Buffer.alloc(0), size, etag: unquote(r.ETag) };
          }
          if (!body) throw new RetryableFailure('an answer without a body', true);
          const data = await this.readBody(body, a - first, want);
          return { data, size, etag: unquote(r.ETag) };
        },
        (v) => v.data.length,
      );
    } catch (err) {
      if (isInvalidRange(err)) return 'invalid-range';
      if (isNotFound(err)) throw err;
      if (etag && isPreconditionFailed(err))
        throw new IoError(`${what}: the object was replaced while it was being read`);
      throw err;
    }
  }

  /** Reads `want` bytes after skipping `skip` from `body`; a body that ends early is a short answer. */
  private async readBody(
    body: AsyncIterable<Uint8Array> & { destroy?: () => void },
    skip: number,
    want: number,
  ): Promise<Buffer> {
    const out = Buffer.allocUnsafe(want);
    let got = 0;
    let idle: NodeJS.Timeout | undefined;
    let stalled = false;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        stalled = true;
        body.destroy?.();
      }, this.timeoutMs);
    };
    try {
      arm();
      for await (const chunk of body) {
        arm();
        let c = chunk;
        if (skip > 0) {
          const s = Math.min(skip, c.length);
          skip -= s;
          c = c.subarray(s);
        }
        const n = Math.min(c.length, want - got);
        out.set(c.subarray(0, n), got);
        got += n;
        if (got === want) break;
      }
    } catch (err) {
      if (stalled) throw new RetryableFailure(`no data for ${this.timeoutMs} ms`);
      throw err;
    } finally {
      clearTimeout(idle);
      body.destroy?.();
    }
    if (stalled) throw new RetryableFailure(`no data for ${this.timeoutMs} ms`);
    if (got < want) throw new RetryableFailure(`the body ended after ${got} of ${want} bytes`, true);
    return out;
  }

  async *load(h: Handle, range?: Range): AsyncGenerator<Uint8Array> {
    h = validateHandle(h);
    range = validateRange(range);
    const key = this.key(h);
    const what = `load ${h.type}/${h.name} from ${this.location}`;
    const start = range?.offset ?? 0;
    const asked = range?.length === undefined ? undefined : start + range.length;
    const abort = new AbortController();
    const missing = () => new ObjectNotFoundError(h.type, h.name, this.location);
    try {
      let first: Block | 'invalid-range' | undefined;
      if (asked !== start) {
        const firstEnd = asked === undefined ? start + BLOCK_SIZE : Math.min(asked, start + BLOCK_SIZE);
        try {
          first = await this.getBlock(key, start, firstEnd, what, undefined, abort.signal);
        } catch (err) {
          if (isNotFound(err)) throw missing();
          throw err;
        }
      }
      if (first === undefined || first === 'invalid-range') {
        // A zero-length range, or one starting at or past the end: the size decides.
        const { size } = await this.stat(h);
        resolveRange(h, range, size);
        return;
      }
      const { start: s, end } = resolveRange(h, range, first.size);
      if (first.data.length > 0) yield first.data;
      const pending: Array<Promise<Block | 'invalid-range'>> = [];
      let next = s + first.data.length;
      const launch = () => {
        while (pending.length < this.parallel && next < end) {
          const a = next;
          const b = Math.min(end, a + BLOCK_SIZE);
          next = b;
          const p = this.getBlock(key, a, b, what, first.etag, abort.signal);
          p.catch(() => {});
          pending.push(p);
        }
      };
      launch();
      let pos = s + first.data.length;
      while (pending.length > 0) {
        let block: Block | 'invalid-range';
        try {
          block = await pending.shift()!;
        } catch (err) {
          if (isNotFound(err)) throw new IoError(`${what}: the object was removed while it was being read`);
          throw err;
        }
        const want = Math.min(BLOCK_SIZE, end - pos);
        if (block === 'invalid-range' || block.data.length !== want)
          throw new ShortReadError(`${h.type}/${h.name} ended at byte ${pos}, before ${end}`, {
            type: h.type,
            name: h.name,
            offset: pos,
            end,
          });
        pos += want;
        launch();
        yield block.data;
      }
    } finally {
      abort.abort();
    }
  }

  // ---- stat, list, remove ----------------------------------------------------------------------------

  async stat(h: Handle): Promise<ObjectInfo> {
    h = validateHandle(h);
    const what = `stat ${h.type}/${h.name} in ${this.location}`;
    try {
      const r = await this.run(
        'stat',
        what,
        () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(h) })),
        () => 0,
      );
      // a HEAD without the size is no answer: read as 0, it made every whole load of the object empty
      // (stop 62 review: list skipped every entry, check called a sound config "not JSON")
      const size = r.ContentLength;
      if (size === undefined || !Number.isSafeInteger(size) || size < 0)
        throw new IoError(`${what}: the store answered without the object's size (Content-Length)`);
      return { name: h.name, size };
    } catch (err) {
      if (isNotFound(err)) throw new ObjectNotFoundError(h.type, h.name, this.location);
      throw err;
    }
  }

  /** Every key under `prefix` (all pages), with its size and last-modified time. */
  private async listKeys(
    prefix: string,
    what: string,
    op: Op,
  ): Promise<Array<{ key: string; size: number; modified: number }>> {
    const out: Array<{ key: string; size: number; modified: number }> = [];
    for await (const page of this.pages(prefix, what, op))
      for (const o of page)
        out.push({ key: o.Key ?? '', size: o.Size ?? 0, modified: o.LastModified?.getTime() ?? 0 });
    return out;
  }

  /**
   * The pages of a listing of `prefix` (one level, with `delimiter`), as the store answers them, checked
   * to be a listing that can be whole: every answer says whether it is truncated, a truncated one gives
   * a continuation token never given before, and a key comes once. A store that answers otherwise (a
   * truncated page without a token, a page repeated, no end) is STORE_UNSAFE: prune and retention
   * decide what to delete from listings, and a short or doubled one would delete what is still in use.
   * `recursive`: every key under the prefix, not only the keys of its one level.
   */
  private async *pages(
    prefix: string,
    what: string,
    op: Op,
    recursive = false,
  ): AsyncGenerator<Array<{ Key?: string; Size?: number; LastModified?: Date }>> {
    let token: string | undefined;
    const tokens = new Set<string>();
    const keys = new Set<string>();
    let barren = 0;
    do {
      const r = await this.run(
        op,
        what,
        () =>
          this.client.send(
            new ListObjectsV2Command({
              Bucket: this.bucket,
              Prefix: prefix,
              ...(recursive ? {} : { Delimiter: '/' }),
              ...(token ? { ContinuationToken: token } : {}),
            }),
          ),
        () => 0,
      );
      const unsafe = (why: string) =>
        new StoreUnavailableError(
          'STORE_UNSAFE',
          `${what}: the S3 store answered a listing that cannot be whole (${why}); nothing was decided from it`,
          { backend: 's3', location: this.location },
        );
      if (typeof r.IsTruncated !== 'boolean')
        throw new IoError(
          `${what}: the endpoint did not answer as an S3 store (a listing without IsTruncated); check store.s3.endpoint`,
        );
      const fresh = (r.Contents ?? []).filter((o) => {
        const key = o.Key ?? '';
        if (keys.has(key)) return false;
        keys.add(key);
        return true;
      });
      if (keys.size > MAX_LISTED_KEYS) throw unsafe(`more than ${MAX_LISTED_KEYS} keys`);
      barren = fresh.length === 0 ? barren + 1 : 0;
      if (r.IsTruncated && barren >= MAX_PAGES_WITHOUT_KEYS)
        throw unsafe(`${barren} truncated pages in a row without a key not listed before`);
      if (r.IsTruncated) {
        token = r.NextContinuationToken;
        if (!token) throw unsafe('a page said to be truncated gave no continuation token');
        if (tokens.has(token)) throw unsafe('a continuation token came twice');
        tokens.add(token);
      } else token = undefined;
      yield fresh;
    } while (token);
  }

  async *list(type: ObjectType): AsyncGenerator<ObjectInfo> {
    type = validateType(type);
    const prefix = `${this.root}${type}/`;
    for await (const page of this.pages(prefix, `list ${type} in ${this.location}`, 'list'))
      for (const o of page) {
        const name = (o.Key ?? '').slice(prefix.length);
        if ((o.Key ?? '').startsWith(prefix) && isValidName(type, name)) yield { name, size: o.Size ?? 0 };
      }
  }

  private async deleteKey(key: string, what: string): Promise<void> {
    try {
      await this.run(
        'remove',
        what,
        () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })),
        () => 0,
      );
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
  }

  /**
   * The Backend's sweep: claim objects (`.claims/`) of writers that died and multipart uploads never
   * completed, both older than `olderThanMs` by the store's clock. An endpoint without
   * ListMultipartUploads (s3rver) keeps its uploads; the report's notes say so.
   */
  async sweepLeftovers(olderThanMs: number): Promise<SweepReport> {
    const what = `sweep leftovers of ${this.location}`;
    let removed = 0;
    let bytes = 0;
    const notes: string[] = [];
    // Ages by this host's clock: with ages of hours, its difference from the store's does not matter.
    const now = Date.now();
    const claims: Array<{ key: string; size: number; modified: number }> = [];
    for await (const page of this.pages(`${this.root}.claims/`, what, 'list', true))
      for (const o of page)
        claims.push({ key: o.Key ?? '', size: o.Size ?? 0, modified: o.LastModified?.getTime() ?? 0 });
    for (const c of claims)
      if (this.isClaim(c.key) && now - c.modified >= olderThanMs) {
        await this.deleteKey(c.key, what);
        removed++;
        bytes += c.size;
      }
    // Uploads of repository objects only (`<prefix>/<type>/<name>`): a bucket may hold others' too.
    const ours = (key: string): boolean => {
      if (!key.startsWith(this.root)) return false;
      const [type, name, ...rest] = key.slice(this.root.length).split('/');
      return rest.length === 0 && isObjectType(type) && isValidName(type, name ?? '');
    };
    {
      let keyMarker: string | undefined;
      let idMarker: string | undefined;
      const markersSeen = new Set<string>();
      for (;;) {
        const r = await this.run(
          'list',
          what,
          () =>
            this.client
              .send(
                new ListMultipartUploadsCommand({
                  Bucket: this.bucket,
                  Prefix: this.root,
                  ...(keyMarker ? { KeyMarker: keyMarker } : {}),
                  ...(idMarker ? { UploadIdMarker: idMarker } : {}),
                }),
              )
              .catch((err: unknown) => {
                // Not implemented (501, or 405 on some gateways) is an answer, not a failure to retry.
                const status = statusOf(err);
                if (nameOf(err) === 'NotImplemented' || status === 501 || status === 405)
                  return { unsupported: describe(err) } as const;
                throw err;
              }),
          () => 0,
        );
        if ('unsupported' in r) {
          notes.push(
            `incomplete multipart uploads were not swept: the endpoint does not support ListMultipartUploads (${r.unsupported}); a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes them`,
          );
          break;
        }
        for (const u of r.Uploads ?? []) {
          if (!u.Key || !u.UploadId || !ours(u.Key)) continue;
          if (now - (u.Initiated?.getTime() ?? now) < olderThanMs) continue;
          await this.run(
            'remove',
            what,
            () =>
              this.client.send(
                new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }),
              ),
            () => 0,
          ).catch((err: unknown) => {
            if (!isNotFound(err)) throw err;
          });
          removed++;
        }
        if (!r.IsTruncated) break;
        // markers seen before would list the same pages forever (two pages naming each other kept a
        // prune, and its exclusive lock, going for good: stop 62 review): what was swept stays swept
        const marker = `${r.NextKeyMarker ?? ''}\0${r.NextUploadIdMarker ?? ''}`;
        if (markersSeen.has(marker) || markersSeen.size >= MAX_UPLOAD_PAGES) {
          notes.push(
            `the store's list of uploads did not end (${markersSeen.size} pages); the rest were not swept`,
          );
          break;
        }
        markersSeen.add(marker);
        keyMarker = r.NextKeyMarker;
        idMarker = r.NextUploadIdMarker;
        if (!keyMarker && !idMarker) break;
      }
    }
    return { removed, bytes, ...(notes.length > 0 ? { notes } : {}) };
  }

  async remove(h: Handle): Promise<void> {
    h = validateHandle(h);
    await this.deleteKey(this.key(h), `remove ${h.type}/${h.name} from ${this.location}`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.destroy();
  }
}

/** Opens the backend and checks (one listing request) that the bucket exists and the credentials work. */
export const openS3Backend: OpenS3Backend = async (opts) => {
  const b = new S3Backend(opts);
  try {
    await b.probe();
  } catch (err) {
    await b.close();
    throw err;
  }
  return b;
};
