// Owns the storage seam: the Backend interface that every store of repository objects implements (a local
// directory, memory, later NATS and S3), the object types, the one name check every backend runs before
// any I/O, range resolution, readAll, and reading many objects or names at once (loadObjects, listNames:
// through a backend's own loadMany/listNames where it has them). An object is a typed, named byte string,
// written whole or not at all; no file system path crosses this seam. docs/repository.md §1 defines types
// and names.

import {
  InvalidInputError,
  ObjectNotFoundError,
  ObjectTooLargeError,
  ShortReadError,
  StoreUnavailableError,
} from '../model/errors.js';

export const OBJECT_TYPES = [
  'config',
  'keys',
  'packs',
  'index',
  'snapshots',
  'listing',
  'pins',
  'locks',
] as const;

export type ObjectType = (typeof OBJECT_TYPES)[number];

/** Names an object. Backends check it with validateHandle before any I/O. */
export interface Handle {
  readonly type: ObjectType;
  readonly name: string;
}

export interface ObjectInfo {
  readonly name: string;
  /** Bytes. */
  readonly size: number;
}

/** A byte range of an object: `length` bytes from `offset` (to the end when `length` is absent). */
export interface Range {
  readonly offset: number;
  readonly length?: number;
  /**
   * Optional: the largest the whole object may be. A backend learns the object's size as it starts the
   * load (a local file's fstat, S3's Content-Range, NATS's meta) and refuses a larger object there
   * (resolveRange: ObjectTooLargeError with its size), before reading anything of it: a pack larger
   * than any pack may be is damage wherever a range of it is read (stop 45), at no extra request.
   */
  readonly objectMax?: number;
}

/** An object opened once for many range reads (Backend.openReader). */
export interface ObjectReader {
  /** The object's size when it was opened. */
  readonly size: number;
  /**
   * `length` bytes from `offset`, of the object as it was opened; a range past its end is a
   * ShortReadError, as a ranged load's.
   */
  read(offset: number, length: number): Promise<Buffer>;
  /** Closes it (reads after that fail); never throws. */
  close(): Promise<void>;
}

export interface SaveOptions {
  /** Fail with ObjectExistsError (leaving the object unchanged) when the name exists. */
  readonly ifAbsent?: boolean;
  /**
   * The SHA-256 (hex) of the bytes saved, when the caller has it (a content-addressed object: a pack is
   * named by it). A backend that records a digest of each object (NATS) takes it instead of hashing the
   * bytes again; a wrong one makes the object fail its digest check when it is loaded whole.
   */
  readonly sha256?: string;
}

/** What `sweepLeftovers` removed. */
export interface SweepReport {
  /** Leftovers removed (NATS: saves whose chunks went; S3: claims and aborted uploads). */
  readonly removed: number;
  /** Their bytes, where the store tells them (an aborted multipart upload's parts are not counted). */
  readonly bytes: number;
  /** What could not be swept and why (e.g. an endpoint without ListMultipartUploads). */
  readonly notes?: readonly string[];
}

export type SaveSource = Uint8Array | AsyncIterable<Uint8Array>;

/** Backend.packing: the pack size a repository writer closes packs at, and pack saves at once. */
export interface Packing {
  readonly target: number;
  readonly saving: number;
}

/**
 * A store of typed, named objects. Every method validates its handle or type first (InvalidInputError,
 * nothing touched) and reports a missing object as ObjectNotFoundError. Node errno failures are IoError.
 */
export interface Backend {
  /** Where the objects are, for messages. Never contains a secret. */
  readonly location: string;
  /**
   * Optional: true when a load that ends without an error always gave every byte it asked for (the
   * backend checks chunk lengths and the object's digest), so the retry wrapper needs no size (a stat)
   * to tell a stream cut short.
   */
  readonly completeLoads?: boolean;
  /**
   * Optional: true when a save given a stream costs no more than one given the whole object (the local
   * backend writes each piece as it comes; a remote one's retry wrapper copies a stream into one buffer
   * to send it again). A repository writer then streams a pack file to it instead of reading it whole.
   */
  readonly streamedSaves?: boolean;
  /**
   * Optional: how a repository writer packs for this store — packs closed at `target` bytes, at most
   * `saving` of them being saved at once while the next fills (so at most `saving + 1` pack buffers in
   * memory). Without it: 16 MiB packs, one saved at a time (repository/pack.ts PACK_TARGET). NATS asks
   * for smaller packs, more of them in flight (nats.ts NATS_PACKING).
   */
  readonly packing?: Packing;
  /**
   * Stores `data` under `h`. The object becomes visible (to load, stat, list, other clients) only once
   * complete; when the source throws, the save rejects with the source's own error and nothing of it is
   * visible. Without `ifAbsent` an existing object is replaced atomically (readers see the old or the new
   * one, whole). The source's buffers may be reused by the caller once `save` has consumed them.
   */
  save(h: Handle, data: SaveSource, opts?: SaveOptions): Promise<void>;
  /**
   * Streams the object, or the range of it. Errors (invalid handle, not found, a range past the end as
   * ShortReadError) surface on the first iteration; an object that ends before the range does is a
   * ShortReadError, never a silently short stream. Each yielded buffer belongs to the caller.
   */
  load(h: Handle, range?: Range): AsyncIterable<Uint8Array>;
  /**
   * Optional: reads the object from byte `offset` into the caller's buffer until it is full or the
   * object ends; returns the bytes read. Offered by backends over local files so that hot readers
   * (check --read-data) reuse one buffer instead of a fresh one per piece. Errors as `load`.
   */
  readInto?(h: Handle, offset: number, into: Uint8Array): Promise<number>;
  /**
   * Optional: the object opened once for many range reads, each as a load of that range would give it
   * (a repository restore reads ~800 runs of a few packs; as loads, each opened, checked and closed the
   * file again: docs/operations.md, stop 66). Opening fails as `load` does, and with `objectMax` refuses
   * a larger object as `Range.objectMax` says. Offered by the local backend.
   */
  openReader?(h: Handle, objectMax?: number): Promise<ObjectReader>;
  stat(h: Handle): Promise<ObjectInfo>;
  /**
   * Optional: the whole objects `names` of `type` (each at most `maxBytes`, else ObjectTooLargeError),
   * in the order of `names`; undefined for an object that is not there. `names` is every object of the
   * type the caller knows of (a list's), so a cache may drop what it holds of any other. Offered by the
   * cache (cache.ts), which answers the listing entries it holds from one file; without it, callers load
   * the objects one by one (loadObjects).
   */
  loadMany?(type: ObjectType, names: readonly string[], maxBytes: number): Promise<Array<Buffer | undefined>>;
  /** Every complete object of `type`, in no particular order. In-progress saves are never listed. */
  list(type: ObjectType): AsyncIterable<ObjectInfo>;
  /**
   * Optional: the names `list` would give, without sizes, where the store tells them cheaper (NATS: one
   * stream-info request instead of reading every object's meta message). It may also name an object that
   * another program removed leaving a marker (a NATS object-store delete; this project never does): a
   * load then finds it missing. Callers use listNames(), which falls back to `list`.
   */
  listNames?(type: ObjectType): Promise<string[]>;
  /**
   * Optional: a token of the whole store's state that changes whenever any client saves or removes any
   * object of it (locks excepted), never coming back to an earlier value; undefined when the store cannot
   * tell now. Asked of the store each time (one small request). NATS: the object stream's creation time,
   * last sequence and message count. The cache (cache.ts) answers listNames from the names it saw under
   * the same token, so a warm `list` does not fetch 10,000 names again when nothing changed.
   */
  stateToken?(): Promise<string | undefined>;
  /**
   * Optional: forgets any local copy of the object (the cache, cache.ts), so the next read of it goes to
   * the store. Callers call it when an object read turned out damaged (it does not parse, open or verify):
   * the damage may have been one download's, and a copy of it must not answer every later read. Never
   * throws.
   */
  evict?(h: Handle): Promise<void>;
  /**
   * Optional (a cache, cache.ts): a reader of the repository of config id `id` found an object of
   * another repository. Asks the store (one request): resolves when its repository is still `id` (the
   * object is damage); StoreUnavailableError STORE_REPLACED when it was replaced behind the cache (the
   * cache dropped).
   */
  confirmRepository?(id: string): Promise<void>;
  /** Optional (a cache): true once the repository was found replaced behind it (its handles are stale). */
  readonly replacedBehind?: boolean;
  /** Removes the object; removing a missing object is not an error (prune can be run again). */
  remove(h: Handle): Promise<void>;
  /**
   * Optional: removes what interrupted saves of this store left outside the objects (never listed, never
   * loadable, but paid for) when it is older than `olderThanMs`: NATS chunks no meta names, S3 claim
   * objects and multipart uploads never completed. Prune calls it under the exclusive repository lock
   * with an age well past the lock staleness, so a save still under way on another host is never touched.
   */
  sweepLeftovers?(olderThanMs: number): Promise<SweepReport>;
  /** Releases connections and handles. The backend is not used afterwards. */
  close(): Promise<void>;
}

/**
 * A failure of a remote backend that may pass if tried again (connection reset, timeout, HTTP 500/503,
 * no JetStream leader yet). Remote backends throw it; the retry wrapper (retry.ts) retries it and, once
 * the attempts are spent, reports StoreUnavailableError(STORE_UNREACHABLE). Unretried, it is that error.
 */
export class TransientStoreError extends StoreUnavailableError {
  constructor(message: string, opts: { backend: string; location: string; cause?: unknown }) {
    super('STORE_UNREACHABLE', message, opts);
  }
}

type NameRule = 'config' | 'hex' | 'uuid';

const NAME_RULES: Record<ObjectType, NameRule> = {
  config: 'config',
  keys: 'hex',
  packs: 'hex',
  index: 'hex',
  snapshots: 'uuid',
  listing: 'uuid',
  pins: 'uuid',
  locks: 'hex',
};

const HEX64 = /^[0-9a-f]{64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const RULE_TEXT: Record<NameRule, string> = {
  config: 'the name "config"',
  hex: '64 lowercase hex characters',
  uuid: 'a lowercase hyphenated UUID',
};

/** A value for an error message: quoted, control characters escaped, at most 80 characters. */
function shown(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : `a ${typeof value}`;
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

export function isObjectType(type: unknown): type is ObjectType {
  return typeof type === 'string' && (OBJECT_TYPES as readonly string[]).includes(type);
}

export function validateType(type: unknown): ObjectType {
  if (!isObjectType(type))
    throw new InvalidInputError(`object type ${shown(type)} is not one of ${OBJECT_TYPES.join(', ')}`);
  return type;
}

/** Whether `name` is a valid name for objects of `type` (list uses it to skip anything else). */
export function isValidName(type: ObjectType, name: string): boolean {
  const rule = NAME_RULES[type];
  if (rule === 'config') return name === 'config';
  return (rule === 'hex' ? HEX64 : UUID).test(name);
}

/** The one name check: `config` for type config, 64 lowercase hex or a lowercase UUID per type. */
export function validateHandle(h: unknown): Handle {
  if (h === null || typeof h !== 'object')
    throw new InvalidInputError('an object handle must be {type, name}');
  const { type, name } = h as { type: unknown; name: unknown };
  const t = validateType(type);
  if (typeof name !== 'string' || !isValidName(t, name))
    throw new InvalidInputError(
      `object name ${shown(name)} is not valid for type ${t}: it must be ${RULE_TEXT[NAME_RULES[t]]}`,
    );
  return { type: t, name };
}

function isByteCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

/** Checks a range's shape (non-negative integers); throws InvalidInputError. */
export function validateRange(range: Range | undefined): Range | undefined {
  if (range === undefined) return undefined;
  if (range === null || typeof range !== 'object')
    throw new InvalidInputError('a range must be {offset, length?}');
  if (!isByteCount(range.offset))
    throw new InvalidInputError(`range offset must be a non-negative integer (got ${String(range.offset)})`);
  if (range.length !== undefined && !isByteCount(range.length))
    throw new InvalidInputError(`range length must be a non-negative integer (got ${String(range.length)})`);
  if (range.objectMax !== undefined && !isByteCount(range.objectMax))
    throw new InvalidInputError(
      `range objectMax must be a non-negative integer (got ${String(range.objectMax)})`,
    );
  return range;
}

/**
 * The byte span [start, end) of `range` in an object of `size` bytes; past the end is a ShortReadError,
 * an object larger than the range's `objectMax` an ObjectTooLargeError (with its size).
 */
export function resolveRange(
  h: Handle,
  range: Range | undefined,
  size: number,
): { start: number; end: number } {
  if (range?.objectMax !== undefined && size > range.objectMax)
    throw new ObjectTooLargeError(h.type, h.name, range.objectMax, size);
  const start = range?.offset ?? 0;
  const end = range?.length === undefined ? Math.max(start, size) : start + range.length;
  if (end > size)
    throw new ShortReadError(
      `${h.type}/${h.name} has ${size} bytes; the range ${start}..${end} goes past its end`,
      { type: h.type, name: h.name, size, offset: start, end },
    );
  return { start, end };
}

/** The chunks of a save source, each checked to be bytes. */
export async function* sourceChunks(data: SaveSource): AsyncGenerator<Uint8Array> {
  if (data instanceof Uint8Array) {
    yield data;
    return;
  }
  if (data === null || typeof data !== 'object' || !(Symbol.asyncIterator in data))
    throw new InvalidInputError('save data must be a Uint8Array or an async iterable of them');
  for await (const chunk of data) {
    if (!(chunk instanceof Uint8Array))
      throw new InvalidInputError(`save data yielded ${shown(chunk)}, not a Uint8Array`);
    yield chunk;
  }
}

/**
 * Reads an object (or a range of it) into one Buffer, refusing more than `maxBytes` (ObjectTooLargeError):
 * before any I/O when the range's length is over it, otherwise as soon as the stream passes it.
 */
export async function readAll(
  backend: Backend,
  h: Handle,
  opts: { maxBytes: number; range?: Range },
): Promise<Buffer> {
  validateHandle(h);
  if (!isByteCount(opts.maxBytes))
    throw new InvalidInputError('readAll: maxBytes must be a non-negative integer');
  const range = validateRange(opts.range);
  if (range?.length !== undefined && range.length > opts.maxBytes)
    throw new ObjectTooLargeError(h.type, h.name, opts.maxBytes);
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of backend.load(h, range)) {
    total += chunk.length;
    if (total > opts.maxBytes) throw new ObjectTooLargeError(h.type, h.name, opts.maxBytes);
    parts.push(chunk);
  }
  return Buffer.concat(parts, total);
}

/**
 * `fn` over `items`, at most `limit` at once, results in order. After a failure no new call starts; the
 * first failure is thrown once every call under way has ended (nothing keeps running behind the caller).
 */
export async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  fn: (t: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failure: { err: unknown } | undefined;
  const run = async () => {
    while (next < items.length && !failure) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
  if (failure) throw failure.err;
  return out;
}

/** Objects loaded at once by loadObjects (each a request or two on a remote store). */
export const LOAD_PARALLEL = 32;

/**
 * The whole objects `names` of `type` (each at most `maxBytes`), undefined for those not there: through
 * the backend's loadMany when it has one (the cache), else LOAD_PARALLEL loads at a time.
 */
export function loadObjects(
  backend: Backend,
  type: ObjectType,
  names: readonly string[],
  maxBytes: number,
): Promise<Array<Buffer | undefined>> {
  if (backend.loadMany) return backend.loadMany(type, names, maxBytes);
  return mapBounded(names, LOAD_PARALLEL, (name) => loadIfPresent(backend, { type, name }, maxBytes));
}

/** The whole object, or undefined when it is not there. */
export async function loadIfPresent(
  backend: Backend,
  h: Handle,
  maxBytes: number,
): Promise<Buffer | undefined> {
  try {
    return await readAll(backend, h, { maxBytes });
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
}

/** Whether the object is there now (a stat): false when it is not, any other failure thrown. */
export async function objectExists(backend: Backend, h: Handle): Promise<boolean> {
  try {
    await backend.stat(h);
    return true;
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return false;
    throw err;
  }
}

/**
 * The names of `type`'s objects: the backend's listNames where it has one, else its list. Names that are
 * not valid for the type are skipped (as isValidName says), never handed on, and each name comes once
 * (a store that repeats a page must not make retention count a kept snapshot twice).
 */
export async function listNames(backend: Backend, type: ObjectType): Promise<string[]> {
  let names: string[];
  if (backend.listNames) names = await backend.listNames(type);
  else {
    names = [];
    for await (const o of backend.list(type)) names.push(o.name);
  }
  return [...new Set(names)].filter((n) => isValidName(type, n));
}
