// Owns retrying a remote backend's transient failures (TransientStoreError, backend.ts): each call is
// tried up to `attempts` times, waiting a random time in [0, min(maxDelayMs, baseDelayMs · 2^n)] between
// tries ("full jitter", so many clients that failed together do not retry together). A save from an
// async iterable is buffered (up to REPLAY_LIMIT bytes) so it can be sent again; a bigger stream gets one
// attempt. A load that fails or ends early mid-stream resumes with a range from the byte it reached, so the caller
// sees each byte once; a load that ends before the range it asked for is a failure too. A list that fails
// mid-way starts again and skips the names it already gave. When the attempts are spent the error is
// StoreUnavailableError(STORE_UNREACHABLE) naming the store (never a secret) and the last failure.
// The end of a load without a length is the object's size, from the list that named it (types that
// never change) or a stat, so a stream cut short without an error is retried too; a backend whose loads
// never end short without an error (completeLoads: NATS checks chunk lengths and digests) needs neither.

import { ObjectExistsError, StoreUnavailableError } from '../model/errors.js';
import {
  type Backend,
  type Handle,
  listNames,
  type ObjectInfo,
  type ObjectType,
  type Packing,
  type Range,
  readAll,
  type SaveOptions,
  type SaveSource,
  type SweepReport,
  TransientStoreError,
  validateHandle,
  validateRange,
} from './backend.js';
import type { BackendObserver, RetryOptions } from './remote.js';

/**
 * Full jitter: the wait before retry number `n` (1 = the first retry), a random time in
 * [0, min(maxMs, baseMs · 2^(n-1))). Shared by this wrapper and the remote backends' own retries.
 */
export function fullJitter(
  baseMs: number,
  maxMs: number,
  n: number,
  random: () => number = Math.random,
): number {
  return Math.floor(random() * Math.min(maxMs, baseMs * 2 ** (n - 1)));
}

/** Bytes of a streamed save kept in memory so it can be sent again (a pack is at most ~16 MiB). */
export const REPLAY_LIMIT = 64 * 1024 * 1024;
/** Room after the first part of a streamed save for the parts that follow (a pack's header and trailer). */
const REPLAY_ROOM = 256 * 1024;

export interface RetryingOptions extends RetryOptions {
  /** `nats`, `s3`: named in the final error. */
  readonly backend: string;
  /** The store as shown in messages (default: the inner backend's location). Never a secret. */
  readonly location?: string;
  readonly observer?: BackendObserver;
  /** Waits `ms` (tests pass a recorder; default: a timer). */
  readonly sleep?: (ms: number) => Promise<void>;
  /** A number in [0, 1) (default Math.random). */
  readonly random?: () => number;
}

/** Types whose objects never change once written (a listed size stays true). */
const IMMUTABLE: ReadonlySet<ObjectType> = new Set([
  'config',
  'keys',
  'packs',
  'index',
  'snapshots',
  'listing',
]);

const isTransient = (err: unknown): boolean => err instanceof TransientStoreError;

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export class RetryingBackend implements Backend {
  private readonly attempts: number;
  private readonly base: number;
  private readonly max: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;
  /** Sizes of immutable objects seen in lists, `type/name` → bytes. */
  private readonly sizes = new Map<string, number>();

  constructor(
    readonly inner: Backend,
    private readonly opts: RetryingOptions,
  ) {
    this.attempts = Math.max(1, Math.floor(opts.attempts ?? 5));
    this.base = Math.max(0, opts.baseDelayMs ?? 200);
    this.max = Math.max(0, opts.maxDelayMs ?? 5000);
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.random = opts.random ?? Math.random;
  }

  get location(): string {
    return this.opts.location ?? this.inner.location;
  }

  get packing(): Packing | undefined {
    return this.inner.packing;
  }

  /** The wait before retry number `n` (1 = the first retry). */
  delayFor(n: number): number {
    return fullJitter(this.base, this.max, n, this.random);
  }

  private exhausted(what: string, tries: number, last: unknown): StoreUnavailableError {
    return new StoreUnavailableError(
      'STORE_UNREACHABLE',
      `${this.opts.backend} store ${this.location} unreachable: ${what} failed ${tries} time${tries === 1 ? '' : 's'} (last: ${message(last)})`,
      { backend: this.opts.backend, location: this.location, cause: last },
    );
  }

  /**
   * Decides after failure number `failed` of `what`: throws the error when it is not transient or the
   * attempts are spent, otherwise waits and returns.
   */
  private async backoff(op: string, what: string, failed: number, err: unknown): Promise<void> {
    if (!isTransient(err)) throw err;
    if (failed >= this.attempts) throw this.exhausted(what, failed, err);
    const delay = this.delayFor(failed);
    this.opts.observer?.retry?.(op, failed, delay, message(err));
    await this.sleep(delay);
  }

  private async run<T>(op: string, what: string, step: () => Promise<T>): Promise<T> {
    for (let failed = 0; ; ) {
      try {
        return await step();
      } catch (err) {
        await this.backoff(op, what, ++failed, err);
      }
    }
  }

  async save(h: Handle, data: SaveSource, opts?: SaveOptions): Promise<void> {
    h = validateHandle(h);
    const what = `save ${h.type}/${h.name}`;
    const source = await replayable(data);
    if (!(source instanceof Uint8Array)) return this.inner.save(h, source, opts); // too big to replay
    let failedBefore = false;
    for (let failed = 0; ; ) {
      try {
        await this.inner.save(h, source, opts);
        return;
      } catch (err) {
        // An attempt that failed after the store took the object (a lost answer) leaves it there: an
        // ifAbsent retry then finds it. The same bytes mean the save happened.
        if (err instanceof ObjectExistsError && failedBefore && (await this.holds(h, source))) return;
        failedBefore = true;
        await this.backoff('save', what, ++failed, err);
      }
    }
  }

  /** Whether the stored object `h` is exactly `bytes`. */
  private async holds(h: Handle, bytes: Uint8Array): Promise<boolean> {
    try {
      const stored = await this.run('load', `load ${h.type}/${h.name}`, () =>
        readAll(this.inner, h, { maxBytes: bytes.length }),
      );
      return Buffer.compare(stored, bytes) === 0;
    } catch {
      return false;
    }
  }

  async *load(h: Handle, range?: Range): AsyncGenerator<Uint8Array> {
    h = validateHandle(h);
    range = validateRange(range);
    const what = `load ${h.type}/${h.name}`;
    const start = range?.offset ?? 0;
    // A stream that ends early without an error must not pass for the whole object: the end is the
    // range's, else the size a list showed (objects that never change) or a stat; none is needed from a
    // backend whose loads never end short without an error (completeLoads).
    const end =
      range?.length !== undefined
        ? start + range.length
        : this.inner.completeLoads
          ? undefined
          : await this.sizeOf(h, what);
    let pos = start;
    for (let failed = 0; ; ) {
      const cap = range?.objectMax !== undefined ? { objectMax: range.objectMax } : {};
      const resumed: Range =
        end === undefined ? { offset: pos, ...cap } : { offset: pos, length: end - pos, ...cap };
      try {
        for await (const chunk of this.inner.load(h, pos === 0 && end === undefined ? undefined : resumed)) {
          if (chunk.length === 0) continue;
          pos += chunk.length;
          yield chunk;
        }
        if (end !== undefined && pos < end)
          throw new TransientStoreError(`${what}: the stream ended at byte ${pos}, before ${end}`, {
            backend: this.opts.backend,
            location: this.location,
          });
        return;
      } catch (err) {
        await this.backoff('load', what, ++failed, err);
      }
    }
  }

  /** The size of `h`: as a list showed it when its type never changes, else asked for. */
  private async sizeOf(h: Handle, what: string): Promise<number> {
    const known = IMMUTABLE.has(h.type) ? this.sizes.get(`${h.type}/${h.name}`) : undefined;
    if (known !== undefined) return known;
    return (await this.run('stat', what, () => this.inner.stat(h))).size;
  }

  stat(h: Handle): Promise<ObjectInfo> {
    h = validateHandle(h);
    return this.run('stat', `stat ${h.type}/${h.name}`, () => this.inner.stat(h));
  }

  async *list(type: ObjectType): AsyncGenerator<ObjectInfo> {
    const given = new Set<string>();
    for (let failed = 0; ; ) {
      try {
        for await (const info of this.inner.list(type)) {
          if (given.has(info.name)) continue;
          given.add(info.name);
          if (IMMUTABLE.has(type)) this.sizes.set(`${type}/${info.name}`, info.size);
          yield info;
        }
        return;
      } catch (err) {
        await this.backoff('list', `list ${type}`, ++failed, err);
      }
    }
  }

  /** The inner backend's names (listNames), retried as a whole. */
  listNames(type: ObjectType): Promise<string[]> {
    return this.run('list', `list ${type}`, () => listNames(this.inner, type));
  }

  /** The inner backend's state token (undefined when it has none), retried as a whole. */
  stateToken(): Promise<string | undefined> {
    const inner = this.inner;
    if (!inner.stateToken) return Promise.resolve(undefined);
    return this.run('stat', 'stat (state)', () => inner.stateToken!());
  }

  remove(h: Handle): Promise<void> {
    h = validateHandle(h);
    return this.run('remove', `remove ${h.type}/${h.name}`, () => this.inner.remove(h));
  }

  /** The inner backend's sweep (none: nothing to sweep), retried as a whole (a sweep can run again). */
  sweepLeftovers(olderThanMs: number): Promise<SweepReport> {
    const inner = this.inner;
    if (!inner.sweepLeftovers) return Promise.resolve({ removed: 0, bytes: 0 });
    return this.run('remove', 'sweep leftovers', () => inner.sweepLeftovers!(olderThanMs));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * The save source as one buffer when it can be sent again: a Uint8Array as is, an async iterable copied
 * (the caller may reuse its buffers) into one buffer while it stays within REPLAY_LIMIT. The buffer is
 * sized by the first part plus some room (a pack comes as its body and a small header and trailer), and
 * grown by doubling only when a part does not fit: a pack is copied once. A bigger stream comes back as
 * a stream of what was read and the rest, for one attempt.
 */
async function replayable(data: SaveSource): Promise<SaveSource> {
  if (data instanceof Uint8Array) return data;
  if (data === null || typeof data !== 'object' || !(Symbol.asyncIterator in data)) return data;
  const it = data[Symbol.asyncIterator]();
  let buf = Buffer.allocUnsafe(0);
  let total = 0;
  /** What was read, for the one attempt of a source too big (or not bytes). */
  const read = (): Uint8Array[] => (total > 0 ? [buf.subarray(0, total)] : []);
  for (;;) {
    const r = await it.next();
    if (r.done) return buf.subarray(0, total);
    if (!(r.value instanceof Uint8Array)) {
      // let the inner backend reject it with its own message
      const bad = r.value;
      const parts = read();
      return (async function* () {
        yield* parts;
        yield bad as Uint8Array;
      })();
    }
    const part = r.value;
    if (total + part.length > REPLAY_LIMIT) {
      const parts = [...read(), part];
      return (async function* () {
        yield* parts;
        for (;;) {
          const n = await it.next();
          if (n.done) return;
          yield n.value;
        }
      })();
    }
    if (total + part.length > buf.length) {
      const room = total === 0 ? part.length + REPLAY_ROOM : Math.max(total + part.length, 2 * buf.length);
      const grown = Buffer.allocUnsafe(Math.min(room, REPLAY_LIMIT));
      buf.copy(grown, 0, 0, total);
      buf = grown;
    }
    buf.set(part, total);
    total += part.length;
  }
}
