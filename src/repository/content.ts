// Owns turning content into repository references and back: a file (or bytes, or a file whose chunks
// were planned before, chunk-plan.ts) into chunks stored through a BlobWriter and the reference a manifest
// records for it (§6: inline chunk ids, chunk lists, or one blob), and a reference back into verified
// bytes (streamed into a file, or a buffer).

import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { BundleDamagedError, IoError, onFile, rethrownFrom } from '../model/errors.js';
import { type PackageModule, packageModule } from '../util/module-worker.js';
import type { ChunkPlan, PackedPlan } from './chunk-plan.js';
import { type ChunkerParams, chunkFile, gearChunks, listChunks } from './chunker.js';
import { hashDiffers, longerThanRecorded, sizeDiffers } from './content-errors.js';
import type { Located } from './manifest.js';
import { KIND_DATA, KIND_TREE } from './pack.js';
import type { BlobWriter, Repository } from './repository.js';

/** At most this many chunk ids are recorded inline; more go into chunk lists. */
const INLINE_CHUNKS = 64;
const ID_BYTES = 32;
/** Chunk ids per segment of storeContent's id list (64 KiB). */
const ID_SEGMENT = 2048;
/** writeContent writes about this many bytes at a time. */
const WRITE_BATCH = 1024 * 1024;

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

/**
 * Stores a file (`path`, chunked as SQLite when `sqlite`) or a buffer; returns its size, SHA-256 and
 * where its chunks are.
 */
export async function storeContent(
  writer: BlobWriter,
  params: ChunkerParams,
  src: { path: string; sqlite: boolean } | { data: Buffer },
): Promise<Located> {
  if ('data' in src && src.data.length > 0 && src.data.length <= params.single_max) {
    // one chunk: its id is the content's SHA-256, hashed once
    const id = createHash('sha256').update(src.data).digest('hex');
    await writer.add(KIND_DATA, id, src.data);
    return located(writer, [Buffer.from(id, 'hex')], 1, src.data.length, id);
  }
  const whole = createHash('sha256');
  let size = 0;
  // the chunk ids as 32 bytes each in segments of ID_SEGMENT ids, not a hex string per chunk (a 1.2 GB
  // database has ~75,000 chunks: ~7 MB of strings on the V8 heap against 2.4 MB here), nor one buffer
  // grown by doubling (each multi-MB buffer freed made glibc's mmap threshold rise: docs/operations.md)
  const ids: Buffer[] = [];
  let count = 0;
  const chunks =
    'path' in src
      ? chunkFile(src.path, params, src.sqlite, { views: true })
      : src.data.length === 0
        ? (async function* () {})()
        : gearChunks(once(src.data), params, { views: true });
  // each chunk may be a view valid until the next one is asked for: hashed and packed (copied) at once
  for await (const c of chunks) {
    whole.update(c.data);
    size += c.data.length;
    if (count % ID_SEGMENT === 0) ids.push(Buffer.allocUnsafe(ID_SEGMENT * ID_BYTES));
    ids[ids.length - 1]!.write(c.id, (count++ % ID_SEGMENT) * ID_BYTES, 'hex');
    await writer.add(KIND_DATA, c.id, c.data);
  }
  if (ids.length > 0)
    ids[ids.length - 1] = ids[ids.length - 1]!.subarray(0, (((count - 1) % ID_SEGMENT) + 1) * ID_BYTES);
  return located(writer, ids, count, size, whole.digest('hex'));
}

/** Bytes of neighbouring new chunks storePlanned reads back at once. */
const PLANNED_RUN = 1024 * 1024;

/**
 * Stores a file whose chunks were planned (chunk-plan.ts) from exactly its present bytes: only the
 * chunks the repository (or this writer) does not have are read back, and each is hashed again before
 * it is stored, so a file that changed since its plan fails (IoError) instead of storing bytes under
 * another chunk's id. The reference is the one storeContent would return for the same bytes.
 */
export async function storePlanned(writer: BlobWriter, path: string, plan: ChunkPlan): Promise<Located> {
  const n = plan.lengths.length;
  const ids = Buffer.from(plan.ids.buffer, plan.ids.byteOffset, plan.ids.byteLength);
  if (ids.length !== n * ID_BYTES) throw new Error('a chunk plan with unequal lists');
  const changed = () =>
    new IoError(`storing ${path}`, new Error('the file changed after its chunks were planned'));
  const idOf = (i: number) => ids.subarray(i * ID_BYTES, (i + 1) * ID_BYTES);
  const fh = await open(path, 'r');
  try {
    let offset = 0;
    let buf = Buffer.alloc(0);
    let i = 0;
    while (i < n) {
      const length = plan.lengths[i]!;
      if (writer.has(idOf(i))) {
        writer.countKnown();
        offset += length;
        i++;
        continue;
      }
      // a run of neighbouring new chunks (a change appended or rewrote a region) is one read
      let end = i + 1;
      let runBytes = length;
      while (end < n && runBytes + plan.lengths[end]! <= PLANNED_RUN && !writer.has(idOf(end)))
        runBytes += plan.lengths[end++]!;
      if (buf.length < runBytes) buf = Buffer.allocUnsafe(Math.max(runBytes, 256 * 1024));
      const run = buf.subarray(0, runBytes);
      if (!(await readFully(fh, run, offset))) throw changed();
      for (let at = 0; i < end; i++) {
        const view = run.subarray(at, at + plan.lengths[i]!);
        at += view.length;
        const id = idOf(i);
        if (!createHash('sha256').update(view).digest().equals(id)) throw changed();
        // compressed before add's first await: the view may be reused
        await writer.add(KIND_DATA, id.toString('hex'), view);
      }
      offset += runBytes;
    }
    if (offset !== plan.size || (await fh.stat()).size !== plan.size) throw changed();
  } finally {
    await fh.close();
  }
  return located(writer, [ids], n, plan.size, plan.sha256);
}

/** Fills `buf` from `fh` at `offset`; false when the file ends first. */
async function readFully(fh: FileHandle, buf: Buffer, offset: number): Promise<boolean> {
  let filled = 0;
  while (filled < buf.length) {
    const { bytesRead } = await fh.read(buf, filled, buf.length - filled, offset + filled);
    if (bytesRead === 0) return false;
    filled += bytesRead;
  }
  return true;
}

/**
 * Stores a file whose chunks were packed ahead (chunk-plan.ts, PlanJob `pack`): its pack files are
 * published as they are (BlobWriter.adoptPack); none of their bytes is read, hashed or compressed again
 * here. The reference is the one storeContent would return for the same bytes.
 */
export async function storePacked(writer: BlobWriter, plan: PackedPlan): Promise<Located> {
  const n = plan.lengths.length;
  const ids = Buffer.from(plan.ids.buffer, plan.ids.byteOffset, plan.ids.byteLength);
  if (ids.length !== n * ID_BYTES) throw new Error('a chunk plan with unequal lists');
  for (const p of plan.packs) await writer.adoptPack(p);
  return located(writer, [ids], n, plan.size, plan.sha256);
}

/**
 * The reference of content of `size` bytes hashing to `sha256`, cut into the `count` chunks whose ids
 * (32 bytes each) the segments of `list` hold in order (chunk lists stored as needed).
 */
async function located(
  writer: BlobWriter,
  list: readonly Buffer[],
  count: number,
  size: number,
  sha256: string,
): Promise<Located> {
  if (count <= INLINE_CHUNKS) {
    const chunks: string[] = [];
    for (const seg of list)
      for (let at = 0; at + ID_BYTES <= seg.length && chunks.length < count; at += ID_BYTES)
        chunks.push(seg.toString('hex', at, at + ID_BYTES));
    if (count === 1 && chunks[0] === sha256) return { size_bytes: size, sha256 };
    return { size_bytes: size, sha256, chunks };
  }
  const lists = listChunks(list, ID_BYTES, ID_BYTES - 1);
  for (const l of lists) await writer.add(KIND_TREE, l.id, l.data);
  return { size_bytes: size, sha256, chunk_lists: lists.map((l) => l.id) };
}

/** At most this many chunk ids of a reference are held at once by its readers (chunkIdBatches). */
export const CHUNK_ID_BATCH = 65_536;

/**
 * The chunk ids of a reference, in order, in batches of at least `batch` ids (a whole chunk list at a
 * time; the last batch may be smaller), the chunk lists read as the batches are asked for: a reader
 * holds one batch, never every id of a content whose lists name the same tree blob over and over. A list
 * comes from storage: as the lists are read, the chunks they name are counted against the reference's
 * `size_bytes` (every chunk is at least one byte, and the index records each chunk's length), so lists
 * that name more — one tree blob of 524,288 ids named 200 times for an 18-byte file — are damage at the
 * first list that goes over.
 */
export async function* chunkIdBatches(
  repo: Repository,
  ref: Located,
  batch = CHUNK_ID_BATCH,
): AsyncGenerator<string[], void, undefined> {
  if (ref.chunks) {
    if (ref.chunks.length > 0) yield ref.chunks;
    return;
  }
  if (!ref.chunk_lists) {
    if (ref.size_bytes > 0) yield [ref.sha256];
    return;
  }
  const tooMany = () =>
    new BundleDamagedError(`chunk lists name more chunks than the ${ref.size_bytes} bytes they hold`);
  // each list names at least one chunk
  if (ref.chunk_lists.length > ref.size_bytes) throw tooMany();
  const table = (await repo.ensureIndex()).table;
  let ids: string[] = [];
  let count = 0;
  let bytes = 0;
  for await (const list of repo.streamBlobs(ref.chunk_lists)) {
    if (list.length % ID_BYTES !== 0) throw new BundleDamagedError('a chunk list has a partial entry');
    count += list.length / ID_BYTES;
    if (count > ref.size_bytes) throw tooMany();
    for (let at = 0; at < list.length; at += ID_BYTES) {
      const id = list.subarray(at, at + ID_BYTES);
      const i = table.find(id);
      if (i < 0) {
        const hex = id.toString('hex');
        throw new BundleDamagedError(`blob ${hex} is not in the repository index (missing data)`);
      }
      // at least a byte each, as the index records them
      bytes += Math.max(1, table.rawOf(i));
      if (bytes > ref.size_bytes) throw tooMany();
      ids.push(id.toString('hex'));
    }
    if (ids.length >= batch) {
      yield ids;
      ids = [];
    }
  }
  if (ids.length > 0) yield ids;
}

/** The chunk ids of a reference, in order (reading its chunk lists; chunkIdBatches' checks). */
export async function chunkIds(repo: Repository, ref: Located): Promise<string[]> {
  if (ref.chunks) return ref.chunks;
  const ids: string[] = [];
  for await (const b of chunkIdBatches(repo, ref)) for (const id of b) ids.push(id);
  return ids;
}

/** The blobs a reference needs directly: its chunk lists and its chunks (for check and prune). */
export async function referencedBlobs(
  repo: Repository,
  ref: Located,
): Promise<{ trees: string[]; data: string[] }> {
  return { trees: ref.chunk_lists ?? [], data: await chunkIds(repo, ref) };
}

/**
 * How much of a reference readContent checks beyond every chunk against its id and the size: `whole`
 * (the default) also the SHA-256 of all its bytes against the reference's. The chunks of a sealed
 * manifest are its bytes already (a Merkle tree: chunk lists and chunks checked by their ids), so a
 * reader that only shows them (ls, cat, find) may leave the second full hash to verify, restore, diff
 * and export, which compare or publish the recorded SHA-256 itself.
 */
export type ContentCheck = 'whole' | 'chunks';

/**
 * Streams a reference's bytes, checking every chunk (by the reader) and then the whole size and (with
 * `check` 'whole') SHA-256 against the reference; throws BundleDamagedError at the first difference.
 * With `view`, a buffer yielded is valid only until the next one is asked for.
 */
export async function* readContent(
  repo: Repository,
  ref: Located,
  what: string,
  view = false,
  check: ContentCheck = 'whole',
): AsyncGenerator<Buffer> {
  const whole = check === 'whole' ? createHash('sha256') : undefined;
  let size = 0;
  for await (const ids of chunkIdBatches(repo, ref))
    for await (const b of repo.streamBlobs(ids, undefined, undefined, view)) {
      size += b.length;
      if (size > ref.size_bytes) throw longerThanRecorded(what);
      whole?.update(b);
      yield b;
    }
  if (size !== ref.size_bytes) throw sizeDiffers(what, size, ref.size_bytes);
  if (whole && whole.digest('hex') !== ref.sha256) throw hashDiffers(what);
}

/**
 * Writes a reference's bytes to a new file (exclusive create), verified as `check` says (readContent);
 * `sync` makes it durable.
 */
export async function writeContent(
  repo: Repository,
  ref: Located,
  path: string,
  what: string,
  sync = false,
  check: ContentCheck = 'whole',
): Promise<void> {
  const fh = await open(path, 'wx', 0o600);
  // chunks are small (16 KiB on average for databases), read as views: copied into one batch buffer,
  // written about WRITE_BATCH bytes at a time (a larger chunk is written from its view directly)
  const batch = Buffer.allocUnsafe(Math.min(WRITE_BATCH, ref.size_bytes));
  let batched = 0;
  const write = async (b: Buffer) => {
    let off = 0;
    while (off < b.length) off += (await fh.write(b, off)).bytesWritten;
  };
  const flush = async () => {
    await write(batch.subarray(0, batched));
    batched = 0;
  };
  try {
    for await (const b of readContent(repo, ref, what, true, check)) {
      if (batched + b.length > batch.length) await flush();
      if (b.length > batch.length) await write(b);
      else {
        b.copy(batch, batched);
        batched += b.length;
      }
    }
    if (batched > 0) await flush();
    if (sync) await fh.sync();
  } catch (err) {
    throw onFile(err, path); // (a write names no file: this one, stop 54)
  } finally {
    await fh.close();
  }
}

/**
 * A worker thread that runs a package module's functions in the order asked (a restore's SQLite
 * threads, sqlite/worker.ts): where writeContentOn opens, checks and writes an artifact's blobs.
 */
export interface ContentLane {
  call<T>(module: PackageModule, fn: string, ...args: unknown[]): Promise<T>;
}

/** The lane's side of writeContentOn. */
const LANE = packageModule(import.meta.url, 'write-lane');
/**
 * Runs handed to a lane before the oldest is waited for, and the bytes of each (a slot of the memory
 * shared with the lane; storedRuns' window). Measured on ref-170: 2 of 1 MiB left the threads waiting
 * for the main thread; 4 or 8 of 1 MiB or 256 KiB raised the restore's peak RSS by 10-25 MB; 8 of
 * 128 KiB are as fast and cost none (docs/operations.md, "stop 30").
 */
const LANE_RUNS_AHEAD = 8;
const LANE_SLOT = 128 * 1024;

/**
 * writeContent with the work on `lane`: the blobs' runs are read here (through the backend) and copied
 * into memory shared with the lane, one slot per run in flight (a run larger than a slot goes as a
 * copy of its own); the lane opens and checks each blob, writes the file and checks the whole
 * (write-lane.ts), with the same errors. Nothing is allocated per run on the lane's side: buffers moved
 * to a thread are freed only when its garbage collector runs, which let tens of MB pile up there.
 * `onRun` is told the plaintext bytes of each run written.
 */
export async function writeContentOn(
  repo: Repository,
  lane: ContentLane,
  ref: Located,
  path: string,
  what: string,
  onRun?: (bytes: number) => void,
): Promise<void> {
  const fromLane = (err: unknown): unknown => {
    const e = err as NodeJS.ErrnoException;
    return e?.code === 'BUNDLE_DAMAGED' ? rethrownFrom(BundleDamagedError, e.message) : err;
  };
  const shared = new SharedArrayBuffer(LANE_SLOT * LANE_RUNS_AHEAD);
  const token = await lane
    .call<number>(LANE, 'openArtifact', path, ref.size_bytes, what, shared, LANE_SLOT)
    .catch((err) => {
      throw fromLane(err);
    });
  const ahead: Promise<void>[] = [];
  let n = 0;
  try {
    for await (const ids of chunkIdBatches(repo, ref))
      for await (const run of repo.storedRuns(ids, LANE_RUNS_AHEAD, LANE_SLOT)) {
        // the slot of the run LANE_RUNS_AHEAD before this one, which has been written (awaited below)
        const slot = n++ % LANE_RUNS_AHEAD;
        const inSlot = run.bytes.length <= LANE_SLOT;
        if (inSlot) run.bytes.copy(new Uint8Array(shared, slot * LANE_SLOT, LANE_SLOT));
        const raw = run.blobs.reduce((sum, b) => sum + b.raw, 0);
        const done = lane
          .call<void>(LANE, 'writeRun', token, {
            pack: run.pack,
            // larger than a slot: a copy of its bytes alone (a view would be cloned with all of its buffer)
            ...(inSlot ? { slot, length: run.bytes.length } : { bytes: new Uint8Array(run.bytes) }),
            key: run.key,
            blobs: run.blobs,
          })
          .then(() => onRun?.(raw));
        done.catch(() => {}); // awaited below, in order
        ahead.push(done);
        if (ahead.length >= LANE_RUNS_AHEAD) await ahead.shift();
      }
    while (ahead.length > 0) await ahead.shift();
    await lane.call(LANE, 'closeArtifact', token, ref.sha256);
  } catch (err) {
    await Promise.allSettled(ahead);
    await lane.call(LANE, 'dropArtifact', token).catch(() => {});
    const e = fromLane(err);
    // the lane checks the whole, not each blob: the damaged blob is found in what it wrote
    if (e instanceof BundleDamagedError && e.message.endsWith(hashDiffers(what).message))
      throw (await damagedBlobIn(repo, ref, path).catch(() => undefined)) ?? e;
    throw e;
  }
}

/**
 * The blob of `ref` whose bytes in `path` (written whole, its SHA-256 found wrong) do not hash to its id,
 * as the error a check of each blob gives (pack.ts openStoredBlob), naming it and its pack; undefined
 * when every blob is right (then the manifest's chunk ids and SHA-256 disagree). Only a failure pays.
 */
async function damagedBlobIn(
  repo: Repository,
  ref: Located,
  path: string,
): Promise<BundleDamagedError | undefined> {
  const fh = await open(path, 'r');
  try {
    let at = 0;
    for await (const ids of chunkIdBatches(repo, ref))
      for (const id of ids) {
        const loc = repo.index.get(id);
        if (!loc) return undefined;
        const data = Buffer.allocUnsafe(loc.raw);
        const { bytesRead } = await fh.read(data, 0, loc.raw, at);
        at += loc.raw;
        if (bytesRead !== loc.raw || createHash('sha256').update(data).digest('hex') !== id)
          return new BundleDamagedError(
            `blob ${id} in packs/${loc.pack}: content does not hash to its id (damaged)`,
          );
      }
    return undefined;
  } finally {
    await fh.close();
  }
}

/** A reference's bytes in one buffer (small content: state values, memory files). */
export async function loadContent(repo: Repository, ref: Located, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of readContent(repo, ref, what)) parts.push(b);
  return Buffer.concat(parts);
}
