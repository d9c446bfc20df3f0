// Owns the NATS JetStream backend (`nats://host:port/bucket`): repository objects in a JetStream object
// store bucket, locks in a KV bucket (create = ifAbsent, compare-and-set by revision). Object chunks are
// published with a message id (a retried publish is deduplicated) and their stream sequences recorded in
// the object's meta message, which is published last: that publish is the commit, so an interrupted save
// is never listed or loadable, and a ranged load fetches only the chunks it needs. A save of one buffer
// (a pack) publishes views of it and may take the caller's SHA-256 for the meta's digest; the backend
// asks the repository for 4 MiB packs, two saved at once (NATS_PACKING); a load keeps
// the chunks it read in part for the neighbouring range. Transient failures
// (connection refused, no responders, timeouts, no JetStream leader) are retried with backoff and jitter,
// then reported as StoreUnavailableError. docs/remote.md §NATS JetStream describes the layout.

import { createHash } from 'node:crypto';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  ChecksumMismatchError,
  InvalidInputError,
  IoError,
  ObjectExistsError,
  ObjectNotFoundError,
  ShortReadError,
  SnapshotError,
  StoreUnavailableError,
} from '../model/errors.js';
import { credsFileAuthenticator, natsClient } from '../util/nats-client.js';
import {
  type Backend,
  type Handle,
  isValidName,
  type ObjectInfo,
  type ObjectType,
  type Packing,
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
import type { BackendObserver, NatsBackendOptions, OpenNatsBackend, RetryOptions } from './remote.js';
import { fullJitter } from './retry.js';

/** Bytes per chunk message: a ranged load reads at most two chunks it does not need. */
export const NATS_CHUNK_SIZE = 256 * 1024;
/**
 * Chunk publishes of one save awaiting their acknowledgement. A stream's chunks are our copies (this
 * bounds their memory); a buffer's are views of it, copied only by the client as it writes them. With
 * two pack saves at once (NATS_PACKING) that is 16 publishes, 4 MiB, in flight, as one save of 16 had.
 */
const PUBLISH_WINDOW = 8;
/**
 * How a repository packs for NATS (Backend.packing): 4 MiB packs, two saved at once while the next
 * fills, instead of 16 MiB packs saved one at a time. The writer holds at most three pack buffers of
 * ~8 MiB capacity (~4-5 MiB used) instead of two of ~20 MiB (~17 MiB used), the client's copies of
 * what it sends are fewer, and the store stays busy across the packs' boundaries (one save's last
 * acknowledgements and its meta commit overlap the other's chunks). Measured: docs/operations.md,
 * "Remote repositories"; the decision: docs/decisions.md.
 */
export const NATS_PACKING: Packing = { target: 4 * 1024 * 1024, saving: 2 };
/** Chunk gets of one load in flight ahead of the consumer (bounds a load's memory). */
const READ_AHEAD = 4;
/** Bytes node reads from a socket at once (libuv's suggested size). */
const SOCKET_READ = 64 * 1024;
/** Chunks read in part kept for the neighbouring range (2 for each of 4 ranges read at once). */
const PARTIAL_CHUNKS = 8;
/** Lock objects live in KV values, which a NATS message must hold whole. */
export const NATS_LOCK_MAX = 512 * 1024;
/** Server error codes (JetStream API). */
const WRONG_LAST_SEQUENCE = [10071, 10164];
const STREAM_NOT_FOUND = 10059;
/** How long close() waits for the client to close. */
const CLOSE_WITHIN_MS = 2_000;

/** The object's meta message: the object store's meta fields plus where each chunk is. */
interface Meta {
  name: string;
  bucket: string;
  nuid: string;
  size: number;
  chunks: number;
  digest: string;
  mtime: string;
  deleted?: boolean;
  options: { max_chunk_size: number };
  /** Stream sequences of the chunks, in order, as runs [first sequence, count]. */
  seqs: Array<[number, number]>;
}

type Op = 'save' | 'load' | 'stat' | 'list' | 'remove';
type Kind = 'transient' | 'auth' | 'denied' | 'missing' | 'nojs' | 'exists' | 'full' | 'other';
/** JetStream API error: JetStream is not enabled for the account (configuration, never transient). */
const JS_NOT_ENABLED_FOR_ACCOUNT = 10039;

/**
 * JetStream's answers for a write that does not fit (insufficient resources, insufficient storage or
 * memory resources): not transient although sent as a 503 — they last until space is freed or a limit
 * raised, so they are STORE_FULL, never retried.
 */
const STORE_FULL_CODES: readonly number[] = [10023, 10028, 10047];
const STORE_FULL_TEXT =
  /insufficient (storage |memory )?resources|maximum bytes exceeded|resource limits exceeded|storage limit/i;

const has = (err: unknown, name: string): boolean =>
  err instanceof Error && (err.name === name || err.constructor?.name === name);

/** What a failure of the client or server means for us. */
export function classify(err: unknown): Kind {
  const {
    AuthorizationError,
    ConnectionError,
    NoRespondersError,
    PermissionViolationError,
    RequestError,
    TimeoutError,
    UserAuthenticationExpiredError,
  } = natsClient();
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof AuthorizationError || e instanceof UserAuthenticationExpiredError) return 'auth';
    if (e instanceof PermissionViolationError) return 'denied';
    const code = (e as { code?: unknown }).code;
    const apiCode = typeof code === 'number' ? code : undefined;
    if (apiCode === STREAM_NOT_FOUND || has(e, 'StreamNotFoundError')) return 'missing';
    if (
      apiCode === JS_NOT_ENABLED_FOR_ACCOUNT ||
      (has(e, 'JetStreamNotEnabled') && (e.cause as { code?: unknown })?.code === JS_NOT_ENABLED_FOR_ACCOUNT)
    )
      return 'nojs';
    if (apiCode !== undefined && WRONG_LAST_SEQUENCE.includes(apiCode)) return 'exists';
    if ((apiCode !== undefined && STORE_FULL_CODES.includes(apiCode)) || STORE_FULL_TEXT.test(e.message))
      return 'full';
    const status = (e as { status?: unknown }).status;
    if (status === 403 || status === 401) return 'denied';
    if (
      e instanceof TimeoutError ||
      e instanceof NoRespondersError ||
      e instanceof ConnectionError ||
      (e instanceof RequestError && e.isNoResponders()) ||
      has(e, 'JetStreamNotEnabled') ||
      status === 503 ||
      status === 408 ||
      apiCode === 503 ||
      apiCode === 408 ||
      ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH'].includes(String(code)) ||
      /no responders|timeout|timed out|temporarily unavailable|no suitable peers|leader|not current|disconnect|connection (closed|lost|refused)/i.test(
        e.message,
      )
    )
      return 'transient';
  }
  return 'other';
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

function checkBucket(bucket: unknown): string {
  if (typeof bucket !== 'string' || !/^[A-Za-z0-9_-]{1,200}$/.test(bucket))
    throw new InvalidInputError(
      `NATS bucket ${JSON.stringify(bucket)} must be 1 to 200 letters, digits, '-' or '_'`,
    );
  return bucket;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The repository's locks: a KV bucket beside its object store, its stream and its subjects' prefix. */
function locksOf(bucket: string): { bucket: string; stream: string; subjects: string } {
  const kv = `${bucket}-locks`;
  return { bucket: kv, stream: `KV_${kv}`, subjects: `$KV.${kv}` };
}

/** Sequences of chunks as runs [first, count]. */
function toRuns(seqs: number[]): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (const s of seqs) {
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === s) last[1]++;
    else runs.push([s, 1]);
  }
  return runs;
}

/**
 * The stream sequence of each chunk, by its index, from runs [first, count] (checked by parseMeta): a
 * binary search over the runs' starting indexes, so a meta naming a billion chunks allocates nothing
 * for them (a meta is the store's word: stop 62 review).
 */
function chunkSeqs(runs: ReadonlyArray<readonly [number, number]>): (i: number) => number {
  const starts: number[] = [];
  let at = 0;
  for (const [, count] of runs) {
    starts.push(at);
    at += count;
  }
  return (i) => {
    let lo = 0;
    let hi = runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= i) lo = mid;
      else hi = mid - 1;
    }
    return runs[lo]![0] + (i - starts[lo]!);
  };
}

const positive = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) > 0;

/**
 * A meta message, or null when it is not one this backend can read (damaged, foreign, a delete marker
 * without chunks): every field used is checked before use, the runs too (pairs of positive integers
 * whose counts add up to the chunks that `size` and `max_chunk_size` make).
 */
function parseMeta(data: Uint8Array): Meta | null {
  try {
    const m = JSON.parse(Buffer.from(data).toString('utf8')) as Meta;
    if (
      typeof m.nuid !== 'string' ||
      !Number.isSafeInteger(m.size) ||
      m.size < 0 ||
      !positive(m.options?.max_chunk_size) ||
      m.chunks !== Math.ceil(m.size / m.options.max_chunk_size) ||
      !Array.isArray(m.seqs)
    )
      return null;
    let total = 0;
    for (const run of m.seqs as unknown[]) {
      if (!Array.isArray(run) || run.length !== 2 || !positive(run[0]) || !positive(run[1])) return null;
      total += run[1];
      if (total > m.chunks) return null;
    }
    return total === m.chunks ? m : null;
  } catch {
    return null;
  }
}

/**
 * The `nuid` of a meta message another client of the object store wrote (its ObjectInfo JSON), when it
 * is one: the name of its chunks' subject (`$O.<bucket>.C.<nuid>`). Undefined when the message is not
 * such JSON.
 */
function foreignNuid(data: Uint8Array): string | undefined {
  try {
    const m = JSON.parse(Buffer.from(data).toString('utf8')) as { nuid?: unknown } | null;
    return typeof m?.nuid === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(m.nuid) ? m.nuid : undefined;
  } catch {
    return undefined;
  }
}

const sha256Digest = (hash: ReturnType<typeof createHash>): string => `SHA-256=${hash.digest('base64url')}=`;

/** The meta's digest of a SHA-256 given in hex (SaveOptions.sha256). */
function digestOfHex(hex: string): string {
  if (!/^[0-9a-f]{64}$/.test(hex))
    throw new InvalidInputError('SaveOptions.sha256 must be 64 lowercase hex characters');
  return `SHA-256=${Buffer.from(hex, 'hex').toString('base64url')}=`;
}

/** The NATS backend; `sweepOrphans` (with counts of chunks) is beyond the Backend interface. */
export class NatsBackend implements Backend {
  readonly location: string;
  /** A load checks each chunk's length and a whole one the digest: it never ends short without an error. */
  readonly completeLoads = true;
  /** Small packs, several saved at once (NATS_PACKING). */
  readonly packing = NATS_PACKING;
  private readonly stream: string;
  private readonly prefix: string;
  private readonly retry: RetryPolicy;
  private readonly observer: BackendObserver | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
    readonly bucket: string,
    opts: NatsBackendOptions,
    location: string,
  ) {
    this.location = location;
    this.stream = `OBJ_${bucket}`;
    this.prefix = `$O.${bucket}`;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.retry = retryPolicy(opts.retry, this.timeoutMs);
    this.observer = opts.observer;
  }

  private readonly timeoutMs: number;
  /** Chunks lately read in part, by subject and sequence (chunksOf), at most PARTIAL_CHUNKS. */
  private readonly partial = new Map<string, Promise<Buffer>>();

  private metaSubject(h: Handle): string {
    return `${this.prefix}.M.${h.type}.${h.name}`;
  }

  private chunkSubject(id: string): string {
    return `${this.prefix}.C.${id}`;
  }

  private run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    return withRetry(op, fn, this.retry, this.observer, this.location);
  }

  /** Runs one backend operation and reports it to the observer. */
  private async track<T>(op: Op, fn: (moved: (n: number) => void) => Promise<T>): Promise<T> {
    let bytes = 0;
    try {
      const r = await fn((n) => {
        bytes += n;
      });
      this.observer?.request(op, 'ok', bytes);
      return r;
    } catch (err) {
      this.observer?.request(op, 'error', bytes);
      throw err;
    }
  }

  /**
   * The last message on `h`'s meta subject: its stream sequence and the live meta it holds (null for a
   * deleted marker or a damaged one); null when the subject is empty. Read from the stream leader.
   */
  private async lastMeta(h: Handle): Promise<{ meta: Meta | null; seq: number } | null> {
    const m = await this.run('meta', () =>
      this.jsm.streams.getMessage(this.stream, { last_by_subj: this.metaSubject(h) }),
    );
    if (m === null) return null;
    const meta = parseMeta(m.data);
    return { meta: meta === null || meta.deleted ? null : meta, seq: m.seq };
  }

  /** The live meta of `h` and its stream sequence, or null. Read from the stream leader (never stale). */
  private async meta(h: Handle): Promise<{ meta: Meta; seq: number } | null> {
    const last = await this.lastMeta(h);
    return last?.meta ? { meta: last.meta, seq: last.seq } : null;
  }

  private async purge(subject: string): Promise<void> {
    await this.run('purge', () => this.jsm.streams.purge(this.stream, { filter: subject }));
  }

  /** Cleanup after a failed or replaced save: one attempt, never an error (docs/remote.md: leftovers). */
  private async purgeQuietly(subject: string): Promise<void> {
    const once = { ...this.retry, attempts: 1 };
    await withRetry(
      'purge',
      () => this.jsm.streams.purge(this.stream, { filter: subject }),
      once,
      undefined,
      this.location,
    ).catch(() => {});
  }

  save(h: Handle, data: SaveSource, opts?: SaveOptions): Promise<void> {
    return this.track('save', async (moved) => {
      h = validateHandle(h);
      if (h.type === 'locks') return this.saveLock(h, data, opts, moved);
      let expect: number | undefined;
      let old: Meta | undefined;
      const last = await this.lastMeta(h);
      if (opts?.ifAbsent) {
        if (last?.meta) throw new ObjectExistsError(h.type, h.name, this.location);
        expect = last?.seq ?? 0; // a deleted marker (another client's remove) may stand on the subject
      } else old = last?.meta ?? undefined;

      const id = natsClient().nuid.next();
      const subject = this.chunkSubject(id);
      const seqs: number[] = [];
      // The caller's SHA-256 of the bytes (a pack's name) spares hashing them again.
      const given = opts?.sha256 !== undefined ? digestOfHex(opts.sha256) : undefined;
      const hash = given === undefined ? createHash('sha256') : undefined;
      const inflight = new Set<Promise<void>>();
      let failure: unknown;
      let size = 0;
      let index = 0;
      const publish = async (payload: Uint8Array, i: number) => {
        const ack = await this.run('save', () =>
          this.js.publish(subject, payload, { msgID: `${id}.${i}`, timeout: this.timeoutMs }),
        );
        seqs[i] = ack.seq;
        moved(payload.length);
      };
      const send = async (payload: Uint8Array) => {
        hash?.update(payload);
        size += payload.length;
        const p = publish(payload, index++).then(
          () => {
            inflight.delete(p);
          },
          (err: unknown) => {
            inflight.delete(p);
            failure ??= err;
          },
        );
        inflight.add(p);
        while (inflight.size >= PUBLISH_WINDOW) await Promise.race(inflight);
        if (failure !== undefined) throw failure;
      };
      try {
        if (data instanceof Uint8Array) {
          // One buffer (the retry wrapper's replay copy, or the caller's, unchanged while we save):
          // its chunks are views of it, sent without a copy.
          for (let at = 0; at < data.length; at += NATS_CHUNK_SIZE)
            await send(data.subarray(at, Math.min(at + NATS_CHUNK_SIZE, data.length)));
        } else {
          // A stream's buffers may be reused once consumed: its bytes are copied into chunk buffers.
          let pending = Buffer.allocUnsafe(NATS_CHUNK_SIZE);
          let fill = 0;
          for await (const chunk of sourceChunks(data)) {
            let at = 0;
            while (at < chunk.length) {
              const n = Math.min(chunk.length - at, NATS_CHUNK_SIZE - fill);
              pending.set(chunk.subarray(at, at + n), fill);
              fill += n;
              at += n;
              if (fill === NATS_CHUNK_SIZE) {
                await send(pending);
                pending = Buffer.allocUnsafe(NATS_CHUNK_SIZE);
                fill = 0;
              }
            }
          }
          if (fill > 0) await send(pending.subarray(0, fill));
        }
        await Promise.all(inflight);
        if (failure !== undefined) throw failure;
      } catch (err) {
        await Promise.allSettled(inflight);
        await this.purgeQuietly(subject);
        throw err;
      }

      const meta: Meta = {
        name: `${h.type}/${h.name}`,
        bucket: this.bucket,
        nuid: id,
        size,
        chunks: seqs.length,
        digest: given ?? sha256Digest(hash!),
        mtime: new Date().toISOString(),
        deleted: false,
        options: { max_chunk_size: NATS_CHUNK_SIZE },
        seqs: toRuns(seqs),
      };
      const hdrs = natsClient().headers();
      hdrs.set('Nats-Rollup', 'sub');
      try {
        await this.run('save', () =>
          this.js.publish(this.metaSubject(h), JSON.stringify(meta), {
            msgID: `${id}.meta`,
            timeout: this.timeoutMs,
            headers: hdrs,
            ...(expect === undefined ? {} : { expect: { lastSubjectSequence: expect } }),
          }),
        );
      } catch (err) {
        // Every attempt's answer may have been lost after the stream took the meta (stop 55): the object
        // is then saved, and purging its chunks would leave it listed but unreadable. They are purged
        // only when the subject's last meta is not this save's; when that cannot be read, they stay (a
        // leftover for sweepLeftovers, as a killed save's) and the save fails.
        const landed = await this.lastMeta(h).then(
          (l) => l?.meta?.nuid === id,
          () => undefined,
        );
        if (landed !== true) {
          if (landed === false) await this.purgeQuietly(subject);
          if (classify(err) === 'exists') throw new ObjectExistsError(h.type, h.name, this.location);
          throw err;
        }
      }
      if (old && old.nuid !== id) await this.purgeQuietly(this.chunkSubject(old.nuid));
    });
  }

  private async saveLock(
    h: Handle,
    data: SaveSource,
    opts: SaveOptions | undefined,
    moved: (n: number) => void,
  ): Promise<void> {
    const parts: Buffer[] = [];
    let total = 0;
    for await (const chunk of sourceChunks(data)) {
      total += chunk.length;
      if (total <= NATS_LOCK_MAX) parts.push(Buffer.from(chunk));
    }
    if (total > NATS_LOCK_MAX)
      throw new InvalidInputError(
        `${h.type}/${h.name} has ${total} bytes; a lock on NATS holds at most ${NATS_LOCK_MAX}`,
      );
    const value = Buffer.concat(parts, total);
    let attempt = 0;
    try {
      await this.run('save', () => {
        attempt++;
        return opts?.ifAbsent ? this.kv.create(h.name, value) : this.kv.put(h.name, value);
      });
    } catch (err) {
      if (opts?.ifAbsent && (err instanceof ObjectExistsError || classify(err) === 'exists')) {
        // A retried create whose first attempt went through finds its own value: that is a success.
        if (attempt > 1) {
          const e = await this.run('load', () => this.kv.get(h.name));
          if (e?.operation === 'PUT' && Buffer.from(e.value).equals(value)) {
            moved(total);
            return;
          }
        }
        throw new ObjectExistsError(h.type, h.name, this.location);
      }
      throw err;
    }
    moved(total);
  }

  private async lockValue(h: Handle): Promise<Buffer> {
    const e = await this.run('load', () => this.kv.get(h.name));
    if (e === null || e.operation !== 'PUT') throw new ObjectNotFoundError(h.type, h.name, this.location);
    return Buffer.from(e.value);
  }

  load(h: Handle, range?: Range): AsyncIterable<Uint8Array> {
    const self = this;
    return {
      async *[Symbol.asyncIterator]() {
        let bytes = 0;
        try {
          for await (const c of self.loadChunks(h, range)) {
            bytes += c.length;
            yield c;
          }
          self.observer?.request('load', 'ok', bytes);
        } catch (err) {
          self.observer?.request('load', 'error', bytes);
          throw err;
        }
      },
    };
  }

  private async *loadChunks(h: Handle, range?: Range): AsyncGenerator<Uint8Array> {
    h = validateHandle(h);
    range = validateRange(range);
    if (h.type === 'locks') {
      const value = await this.lockValue(h);
      const { start, end } = resolveRange(h, range, value.length);
      if (end > start) yield value.subarray(start, end);
      return;
    }
    const found = await this.meta(h);
    if (!found) throw new ObjectNotFoundError(h.type, h.name, this.location);
    yield* this.chunksOf(h, found.meta, range);
  }

  /** The bytes of `range` of the object `meta` describes, chunk by chunk (READ_AHEAD fetched ahead). */
  private async *chunksOf(h: Handle, meta: Meta, range: Range | undefined): AsyncGenerator<Uint8Array> {
    const { start, end } = resolveRange(h, range, meta.size);
    if (start === end) return;
    const cs = meta.options.max_chunk_size;
    const seqAt = chunkSeqs(meta.seqs); // parseMeta checked they add up to the chunks of meta.size
    const first = Math.floor(start / cs);
    const last = Math.floor((end - 1) / cs);
    const whole = start === 0 && end === meta.size;
    const hash = whole ? createHash('sha256') : undefined;
    const subject = this.chunkSubject(meta.nuid);
    const span = (i: number) => {
      const length = i === meta.chunks - 1 ? meta.size - i * cs : cs;
      const from = i === first ? start - i * cs : 0;
      const to = i === last ? end - i * cs : length;
      return { length, from, to };
    };
    const fetchChunk = (i: number): Promise<Buffer> => {
      const { length, from, to } = span(i);
      // A chunk used in part (a range's first or last) is kept a while: the neighbouring range, read next
      // or alongside, starts or ends in it. Kept by subject and sequence, it is used only by loads whose
      // meta (read by each load) names that subject: never a removed or replaced object's bytes.
      if (from === 0 && to === length) return this.chunk(h, subject, seqAt(i), length);
      const id = `${subject} ${seqAt(i)}`;
      let p = this.partial.get(id);
      if (!p) {
        p = this.chunk(h, subject, seqAt(i), length);
        p.catch(() => this.partial.delete(id));
        if (this.partial.size >= PARTIAL_CHUNKS) this.partial.delete(this.partial.keys().next().value!);
        this.partial.set(id, p);
      }
      return p;
    };
    const ahead: Array<Promise<Buffer>> = [];
    let next = first;
    const fillAhead = () => {
      while (next <= last && ahead.length < READ_AHEAD) {
        const p = fetchChunk(next++);
        p.catch(() => {}); // surfaced when awaited; an abandoned load leaves no unhandled rejection
        ahead.push(p);
      }
    };
    for (let i = first; i <= last; i++) {
      fillAhead();
      const data = await ahead.shift()!;
      hash?.update(data);
      const { length, from, to } = span(i);
      // a whole chunk is this load's own; a part of a kept one is copied (each buffer is the caller's)
      yield from === 0 && to === length ? data : Buffer.from(data.subarray(from, to));
    }
    if (hash && sha256Digest(hash) !== meta.digest)
      throw new ChecksumMismatchError(`${h.type}/${h.name} in ${this.location} does not match its digest`);
  }

  /** One chunk by sequence: from any replica (direct get), from the leader when that one lacks it. */
  private async chunk(h: Handle, subject: string, seq: number, length: number): Promise<Buffer> {
    let m = await this.run('load', () => this.jsm.direct.getMessage(this.stream, { seq }));
    if (m === null || m.subject !== subject)
      m = await this.run('load', () => this.jsm.streams.getMessage(this.stream, { seq }));
    if (m === null || m.subject !== subject) throw new ObjectNotFoundError(h.type, h.name, this.location); // removed or replaced while read
    if (m.data.length !== length)
      throw new ShortReadError(
        `${h.type}/${h.name}: chunk at ${seq} has ${m.data.length} bytes, not ${length}`,
      );
    // A payload larger than a socket read was gathered by the client into a buffer of its own: ours
    // without a copy. A smaller one may be a view of a read shared with other messages: copied.
    const d = m.data;
    return d.length > SOCKET_READ ? Buffer.from(d.buffer, d.byteOffset, d.length) : Buffer.from(d);
  }

  stat(h: Handle): Promise<ObjectInfo> {
    return this.track('stat', async () => {
      h = validateHandle(h);
      if (h.type === 'locks') return { name: h.name, size: (await this.lockValue(h)).length };
      const found = await this.meta(h);
      if (!found) throw new ObjectNotFoundError(h.type, h.name, this.location);
      return { name: h.name, size: found.meta.size };
    });
  }

  /**
   * The object stream's creation time, last sequence and message count: any save (a message, so a higher
   * last sequence; sequences never repeat) or remove (a purge: fewer messages) changes it, and a stream
   * deleted and made again has another creation time. One stream-info request without subjects.
   */
  stateToken(): Promise<string | undefined> {
    return this.track('stat', async () => {
      const si = await this.run('stat', () => this.jsm.streams.info(this.stream));
      return `${si.created}/${si.state.last_seq}/${si.state.messages}`;
    });
  }

  list(type: ObjectType): AsyncIterable<ObjectInfo> {
    const self = this;
    return {
      async *[Symbol.asyncIterator]() {
        const all = await self.track('list', () => self.listAll(validateType(type)));
        yield* all;
      },
    };
  }

  /**
   * The names of `type`'s objects from the stream's subjects: one stream-info request (per 100,000)
   * instead of a consumer reading every meta message. A subject holds a meta message only once its save
   * committed, and remove purges it; another program's object-store delete leaves a marker, so such a
   * name can be given (its load finds it missing).
   */
  listNames(type: ObjectType): Promise<string[]> {
    return this.track('list', async () => {
      if (validateType(type) === 'locks') return (await this.listAll(type)).map((o) => o.name);
      const filter = `${this.prefix}.M.${type}.>`;
      const si = await this.run('list', () =>
        this.jsm.streams.info(this.stream, { subjects_filter: filter }),
      );
      return Object.keys(si.state.subjects ?? {})
        .map((subject) => subject.slice(filter.length - 1))
        .filter((name) => isValidName(type, name));
    });
  }

  private async listAll(type: ObjectType): Promise<ObjectInfo[]> {
    if (type === 'locks') {
      return this.run('list', async () => {
        const out: ObjectInfo[] = [];
        // The KV stream's subjects (one stream-info request, which the stream's leader answers), not
        // kv.keys(): its watcher can end the initial replay early on a clustered stream and give fewer
        // keys (stop 56: CI listed no lock while one was held), and a locker that misses a held lock
        // would run beside it. A removed lock's subject keeps a purge marker, which get() tells apart;
        // the marker is purged from the stream then (lock names are never used again), so a listing
        // reads the locks held and the markers of the last removals, not every lock ever taken.
        const locks = locksOf(this.bucket);
        const stream = locks.stream;
        const kvSubjects = `${locks.subjects}.`;
        const si = await this.jsm.streams.info(stream, { subjects_filter: `${kvSubjects}>` });
        for (const subject of Object.keys(si.state.subjects ?? {})) {
          const name = subject.slice(kvSubjects.length);
          if (!isValidName(type, name)) continue; // not a lock of ours: never handed on (stop 62 review)
          const e = await this.kv.get(name);
          if (e?.operation === 'PUT') out.push({ name, size: e.value.length });
          else await this.jsm.streams.purge(stream, { filter: subject }).catch(() => {});
        }
        return out;
      });
    }
    const filter = `${this.prefix}.M.${type}.>`;
    return this.run('list', async () => {
      const found: ObjectInfo[] = [];
      for (const [subject, meta] of await this.metas(filter)) {
        const name = subject.slice(filter.length - 1);
        if (isValidName(type, name)) found.push({ name, size: meta.size }); // as the other backends
      }
      return found;
    });
  }

  /** The live meta message of every subject under `filter` (one request per 1,000). */
  private async metas(filter: string): Promise<Map<string, Meta>> {
    const found = new Map<string, Meta>();
    await this.eachLast(filter, (subject, data) => {
      const meta = parseMeta(data);
      if (meta && !meta.deleted) found.set(subject, meta);
      else found.delete(subject);
    });
    return found;
  }

  /** Calls `visit` with the last message of each subject `filter` matches (none: no call). */
  private async eachLast(filter: string, visit: (subject: string, data: Uint8Array) => void): Promise<void> {
    const any = await this.jsm.streams.getMessage(this.stream, { last_by_subj: filter });
    if (any === null) return;
    const consumer = await this.js.consumers.get(this.stream, {
      filter_subjects: filter,
      deliver_policy: natsClient().DeliverPolicy.LastPerSubject,
    });
    try {
      for (;;) {
        const batch = await consumer.fetch({ max_messages: 1000, expires: Math.max(1000, this.timeoutMs) });
        let got = 0;
        let done = false;
        for await (const m of batch) {
          got++;
          visit(m.subject, m.data);
          if (m.info.pending === 0) {
            done = true;
            break;
          }
        }
        if (done) return;
        // The probe saw a meta message, or pending said more were coming: a batch that ends without the
        // last one is a pull that expired (a slow or changing cluster), retried from the start.
        if (got === 0) throw new (natsClient().TimeoutError)();
      }
    } finally {
      await consumer.delete().catch(() => {});
    }
  }

  /**
   * Purges the chunks of saves that never committed (a process killed or a connection lost mid-save):
   * chunk subjects no meta message names whose last chunk is older than `minAgeMs`. Run it where no
   * save can be under way, e.g. under the repository's exclusive lock (prune): a save that stalled
   * longer than `minAgeMs` between its last chunk and its commit would otherwise lose its chunks.
   * Returns how many subjects (saves) and chunk messages were purged.
   */
  async sweepOrphans(minAgeMs = 60 * 60 * 1000): Promise<{ saves: number; chunks: number; bytes: number }> {
    return this.run('sweep', async () => {
      const chunkFilter = `${this.prefix}.C.>`;
      const si = await this.jsm.streams.info(this.stream, { subjects_filter: chunkFilter });
      const subjects = Object.keys(si.state.subjects ?? {});
      if (subjects.length === 0) return { saves: 0, chunks: 0, bytes: 0 };
      // What every meta message names, ours or not: a bucket may hold objects another client of the
      // object store wrote (its meta names its chunks by `nuid` too), whose chunks are never orphans
      // (stop 63: purged as ours, they lost another application's files). A meta message that names
      // none readably leaves nothing to sweep safely: the sweep skips.
      const referenced = new Set<string>();
      let unreadable = false;
      await this.eachLast(`${this.prefix}.M.>`, (_subject, data) => {
        const ours = parseMeta(data);
        if (ours) {
          if (!ours.deleted) referenced.add(this.chunkSubject(ours.nuid));
          return;
        }
        const nuid = foreignNuid(data);
        if (nuid === undefined) unreadable = true;
        else referenced.add(this.chunkSubject(nuid));
      });
      if (unreadable) return { saves: 0, chunks: 0, bytes: 0 };
      let saves = 0;
      let chunks = 0;
      let bytes = 0;
      for (const subject of subjects) {
        if (referenced.has(subject)) continue;
        const last = await this.jsm.streams.getMessage(this.stream, { last_by_subj: subject });
        if (last === null || Date.now() - last.time.getTime() < minAgeMs) continue;
        const r = await this.jsm.streams.purge(this.stream, { filter: subject });
        saves++;
        chunks += r.purged;
        // Every chunk of a save but its last is full.
        if (r.purged > 0) bytes += (r.purged - 1) * NATS_CHUNK_SIZE + last.data.length;
      }
      return { saves, chunks, bytes };
    });
  }

  /** The Backend's sweep: the orphaned chunks of saves that never committed (sweepOrphans). */
  async sweepLeftovers(olderThanMs: number): Promise<SweepReport> {
    const r = await this.sweepOrphans(olderThanMs);
    return { removed: r.saves, bytes: r.bytes };
  }

  remove(h: Handle): Promise<void> {
    return this.track('remove', async () => {
      h = validateHandle(h);
      if (h.type === 'locks') {
        await this.run('remove', () => this.kv.purge(h.name));
        return;
      }
      const found = await this.meta(h);
      await this.purge(this.metaSubject(h));
      if (found) await this.purge(this.chunkSubject(found.meta.nuid));
    });
  }

  /**
   * Closes the connection. Bounded: a client whose server was killed under it can leave close() pending
   * forever, and a command must still end once its work is done (nothing is in flight by then).
   */
  async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.nc.close().catch(() => {}),
      new Promise<void>((r) => {
        timer = setTimeout(r, CLOSE_WITHIN_MS);
      }),
    ]);
    clearTimeout(timer);
  }
}

interface RetryPolicy extends Required<RetryOptions> {
  /** An attempt lasts this long: a request refused at once (no responders, no leader) is repeated within it. */
  readonly attemptMs: number;
}

function retryPolicy(r: RetryOptions | undefined, timeoutMs: number): RetryPolicy {
  return {
    attempts: Math.max(1, r?.attempts ?? 5),
    baseDelayMs: r?.baseDelayMs ?? 200,
    maxDelayMs: r?.maxDelayMs ?? 5000,
    attemptMs: timeoutMs,
  };
}

/** Full jitter (backend/retry.ts) before the retry after `step` earlier ones. */
const jitter = (p: RetryPolicy, step: number): number => fullJitter(p.baseDelayMs, p.maxDelayMs, step + 1);

/**
 * Runs `fn`, retrying transient failures with exponential backoff and full jitter; maps what is left to
 * the typed errors: unreachable, auth, denied, missing; our own SnapshotErrors pass through. A failure
 * that comes back faster than a timeout would (no responders while a leader is elected, a refused
 * connection) does not use up an attempt until the attempt has lasted `attemptMs`: a leader election of a
 * few seconds is waited out as a timeout would be.
 */
async function withRetry<T>(
  op: string,
  fn: () => Promise<T>,
  policy: RetryPolicy,
  observer: BackendObserver | undefined,
  location: string,
): Promise<T> {
  let attempt = 1;
  let started = Date.now();
  let within = 0;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof SnapshotError) throw err;
      const kind = classify(err);
      if (kind !== 'transient') throw storeError(kind, err, location, attempt);
      let delay: number;
      if (Date.now() - started < policy.attemptMs) {
        delay = Math.min(jitter(policy, within++), Math.max(0, started + policy.attemptMs - Date.now()));
      } else if (attempt < policy.attempts) {
        delay = jitter(policy, attempt - 1);
        attempt++;
        within = 0;
        started = Date.now() + delay;
      } else throw storeError(kind, err, location, attempt);
      observer?.retry?.(op, attempt, delay, message(err));
      await sleep(delay);
    }
  }
}

function storeError(kind: Kind, err: unknown, location: string, attempts: number): Error {
  const opts = { backend: 'nats', location, cause: err };
  switch (kind) {
    case 'transient':
      return new StoreUnavailableError(
        'STORE_UNREACHABLE',
        `the NATS store ${location} did not answer after ${attempts} attempt(s): ${message(err)}`,
        opts,
      );
    case 'auth':
      return new StoreUnavailableError(
        'STORE_AUTH',
        `the NATS server refused the credentials for ${location}: ${message(err)}`,
        opts,
      );
    case 'denied':
      return new StoreUnavailableError(
        'STORE_DENIED',
        `permission denied on the NATS store ${location}: ${message(err)}`,
        opts,
      );
    case 'missing':
      return new StoreUnavailableError(
        'STORE_MISSING',
        `the NATS bucket of ${location} does not exist (the first snapshot or migrate into it creates it; or check the name)`,
        opts,
      );
    case 'nojs':
      return noJetStream(location, err);
    case 'full':
      return new StoreUnavailableError(
        'STORE_FULL',
        `the NATS store ${location} is full: JetStream refused the write (${message(err)}). Raise the ` +
          "limit it hit (the server's jetstream max_file_store, the account's JetStream limits, the " +
          "stream's max_bytes), then run the command again. prune cannot run while JetStream is full " +
          '(its lock is a write too): raise the limit first, then prune to drop what retention allows',
        opts,
      );
    case 'exists':
      return err instanceof Error ? err : new Error(message(err));
    default:
      return new IoError(`NATS store ${location}`, err);
  }
}

/** The stream settings streamDataLoss reads (JetStream's stream config, as stream info gives it). */
interface StreamSettings {
  storage: string;
  retention: string;
  discard: string;
  max_age: number;
  max_bytes: number;
  max_msgs: number;
  max_msgs_per_subject: number;
  subjects: string[];
}

/**
 * What in a repository stream's settings can drop stored messages (then a save acknowledged now is
 * lost later), or undefined. What this backend creates drops nothing: file storage, limits retention,
 * discard new, no max_age, and (objects) no per-subject limit. Refused: memory storage (gone with a
 * server restart); interest or work-queue retention (messages go once consumed, or with no consumer);
 * a max_age (expiry); discard old with a max_bytes or max_msgs (the oldest go when it is full; with
 * discard new a full stream refuses the write instead: STORE_FULL, nothing lost); on the object stream
 * a max_msgs_per_subject (an object's chunks share a subject: all but the last would go; the locks' KV
 * keeps one message per key by design); and subjects that do not include ours (our publishes would go
 * to no stream, or to another). Exported for tests.
 */
export function streamDataLoss(
  c: Partial<StreamSettings>,
  kind: 'objects' | 'locks',
  subjects: readonly string[],
): string | undefined {
  const limited = (n: number | undefined) => typeof n === 'number' && n > 0;
  if (c.storage !== undefined && c.storage !== 'file')
    return `storage is ${c.storage} (lost when the server restarts; file storage keeps it)`;
  if (c.retention !== undefined && c.retention !== 'limits')
    return `retention is ${c.retention} (messages are removed once consumed or without interest; limits keeps them)`;
  if (limited(c.max_age)) return `max_age is ${c.max_age! / 1e9} s (older messages expire; 0 keeps them)`;
  if (c.discard === 'old' && limited(c.max_bytes))
    return `discard is old with max_bytes ${c.max_bytes} (the oldest messages go when it is full; discard new refuses the write instead)`;
  if (c.discard === 'old' && limited(c.max_msgs))
    return `discard is old with max_msgs ${c.max_msgs} (the oldest messages go when it is full; discard new refuses the write instead)`;
  if (kind === 'objects' && limited(c.max_msgs_per_subject))
    return `max_msgs_per_subject is ${c.max_msgs_per_subject} (an object's chunks share a subject: all but the last would be dropped; -1 keeps them)`;
  const have = new Set(c.subjects ?? []);
  const missing = subjects.filter((s) => !have.has(s));
  if (missing.length > 0)
    return `subjects are ${JSON.stringify(c.subjects ?? [])}, without ${missing.join(', ')}`;
  return undefined;
}

/**
 * Whether `err` says JetStream is not there: the account has none (API error 10039), or no server
 * answered the JetStream API (no responders, which the client reports as JetStreamNotEnabled too).
 */
function isJetStreamNotEnabled(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (has(e, 'JetStreamNotEnabled')) return true;
    const { RequestError, NoRespondersError } = natsClient();
    if (e instanceof NoRespondersError || (e instanceof RequestError && e.isNoResponders())) return true;
  }
  return false;
}

/** STORE_MISSING for a server or account without JetStream (never retried). */
function noJetStream(location: string, err: unknown): StoreUnavailableError {
  return new StoreUnavailableError(
    'STORE_MISSING',
    `JetStream is not enabled for ${location}: a NATS repository needs JetStream on the server (nats-server -js, ` +
      `or a jetstream block in its config) and for the account (${message(err)})`,
    { backend: 'nats', location, cause: err },
  );
}

/** `nats://host:port[,host:port…]/bucket` for messages (open.ts's display form): no credentials. */
function describe(servers: readonly string[], bucket: string): string {
  const shown = servers.map((s) => {
    try {
      const u = new URL(s.includes('://') ? s : `nats://${s}`);
      return u.host;
    } catch {
      return '?';
    }
  });
  return `nats://${shown.join(',')}/${bucket}`;
}

export const openNatsBackend: OpenNatsBackend = async (opts: NatsBackendOptions): Promise<Backend> => {
  const bucket = checkBucket(opts?.bucket);
  if (!Array.isArray(opts.servers) || opts.servers.length === 0)
    throw new InvalidInputError('a NATS repository needs at least one server URL');
  const location = describe(opts.servers, bucket);
  const timeout = opts.timeoutMs ?? 10_000;
  const retry = retryPolicy(opts.retry, timeout);
  const { connect, jetstream, Kvm, Objm, StorageType } = natsClient();
  const auth = opts.credsFile ? credsFileAuthenticator(opts.credsFile) : undefined;
  const nc = await withRetry(
    'connect',
    () =>
      connect({
        servers: [...opts.servers],
        name: 'nexo-memory',
        timeout,
        // no Error (with its stack) captured per request for async traces: a save is a request per chunk
        noAsyncTraces: true,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        ...(opts.user !== undefined ? { user: opts.user, pass: opts.password ?? '' } : {}),
        ...(opts.token !== undefined ? { token: opts.token } : {}),
        ...(auth ? { authenticator: auth } : {}),
      }),
    retry,
    opts.observer,
    location,
  );
  try {
    const js = jetstream(nc, { timeout });
    const jsm = await js.jetstreamManager(false);
    // A server that says it has no JetStream is asked once, not retried: no responders from it is not a
    // cluster between leaders (its nodes have JetStream and answer 503), it is a server without it.
    if (nc.info?.jetstream !== true)
      try {
        await jsm.getAccountInfo();
      } catch (err) {
        if (isJetStreamNotEnabled(err)) throw noJetStream(location, err);
      }
    const replicas = opts.replicas ?? 1;
    const lockNames = locksOf(bucket);
    const kvName = lockNames.bucket;
    // A stream found (not created now) is checked before anything is written: settings that drop
    // messages make saves "succeed" while the data goes (streamDataLoss).
    const ensure = async (stream: string, kind: 'objects' | 'locks', create: () => Promise<unknown>) => {
      let config: Partial<StreamSettings>;
      try {
        config = (await withRetry('open', () => jsm.streams.info(stream), retry, opts.observer, location))
          .config as Partial<StreamSettings>;
      } catch (err) {
        if (!(err instanceof StoreUnavailableError && err.code === 'STORE_MISSING') || !opts.create)
          throw err;
        await withRetry('create', create, retry, opts.observer, location);
        return;
      }
      const subjects =
        kind === 'objects' ? [`$O.${bucket}.C.>`, `$O.${bucket}.M.>`] : [`${lockNames.subjects}.>`];
      const problem = streamDataLoss(config, kind, subjects);
      if (problem)
        throw new StoreUnavailableError(
          'STORE_UNSAFE',
          `the NATS stream ${stream} of ${location} can drop repository data: ${problem}. Nothing was ` +
            'written. Set it back to what this tool creates (file storage, limits retention, discard new, ' +
            `no max_age, no per-subject limit on the objects, subjects ${subjects.join(' ')}), then run the command again`,
          { backend: 'nats', location },
        );
    };
    // The two buckets at once (a `list` waits for these round trips); both settle before an error counts.
    const [objects, locks] = await Promise.allSettled([
      ensure(`OBJ_${bucket}`, 'objects', () =>
        new Objm(js).create(bucket, { replicas, storage: StorageType.File }),
      ),
      ensure(lockNames.stream, 'locks', () =>
        new Kvm(js).create(kvName, { replicas, history: 1, allow_direct: false, timeout }),
      ).then(() =>
        withRetry('open', () => new Kvm(js).open(kvName, { timeout }), retry, opts.observer, location),
      ),
    ]);
    if (objects.status === 'rejected') throw objects.reason;
    if (locks.status === 'rejected') throw locks.reason;
    return new NatsBackend(nc, js, jsm, locks.value, bucket, opts, location);
  } catch (err) {
    await nc.close().catch(() => {});
    throw err;
  }
};
