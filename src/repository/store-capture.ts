// Owns storing one capture (capture/capture.ts) into the repository: every database, state value and
// memory file as chunks (only new chunks are written; a database whose chunks were planned before is
// read back only where its chunks are new), and the memdir history as the previous
// snapshot's pack chain plus what is new (or the pack of the capture's git bundle when the history was
// rewritten by redaction). Returns the manifest's artifacts in manifest order and the refs.

import { mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CaptureResult } from '../capture/capture.js';
import { sqliteKind, sqlitePath } from '../format/constants.js';
import type { GitRef } from '../git/history.js';
import type { DbName, ProgressListener } from '../model/types.js';
import { envInteger } from '../util/env-number.js';
import { allSettledOrThrow } from '../util/settle.js';
import { type ChunkPlan, isPacked } from './chunk-plan.js';
import { type ChunkerParams, expectedChunks } from './chunker.js';
import { storeContent, storePacked, storePlanned } from './content.js';
import {
  type PreparedHistory,
  type PreviousHistory,
  prepareLiveHistory,
  storeBundleHistory,
  storePreparedHistory,
} from './git-history.js';
import type { RepoArtifact } from './manifest.js';
import type { BlobWriter, Repository } from './repository.js';

/**
 * Databases stored in one pass from this many bytes on (a first snapshot, an import) are compressed
 * on a thread of their own (BlobWriter.compressOnThread): below it, starting the thread costs more
 * than it saves.
 * NEXO_MEMORY_COMPRESS_THREAD_MIN_BYTES sets another threshold (the tests take both ways with small
 * agents).
 */
export const COMPRESS_THREAD_MIN_BYTES = 32 * 1024 * 1024;

const compressThreadMinBytes = (): number =>
  envInteger('NEXO_MEMORY_COMPRESS_THREAD_MIN_BYTES', COMPRESS_THREAD_MIN_BYTES);

/**
 * The staged databases' chunk plans (chunk-plan.ts) made with the repository's chunker, where made;
 * `packed` when they are made with their chunks packed ahead (a first snapshot).
 */
export interface CapturePlans {
  byDb: ReadonlyMap<DbName, Promise<ChunkPlan | undefined>>;
  packed: boolean;
  /** Called once storing a database has failed: the plans still being made are not needed. */
  stop?: () => void;
}

export interface StoredCapture {
  artifacts: RepoArtifact[];
  refs: GitRef[];
}

export async function storeCapture(
  repo: Repository,
  writer: BlobWriter,
  c: CaptureResult,
  memdir: string,
  previous: PreviousHistory | undefined,
  work: string,
  onProgress?: ProgressListener,
  /** The databases' chunk plans; none when nothing is planned (every chunk stored in one pass). */
  plans?: CapturePlans,
  /** Told each staged database copy once stored and no longer read here. */
  stored?: (stagedPath: string) => void,
): Promise<StoredCapture> {
  const params = repo.config.chunker;
  const out: RepoArtifact[] = [];
  let bytes = 0;
  const progress = (n: number) => {
    bytes += n;
    onProgress?.({ phase: 'pack', bytes });
  };
  // the phase begins before its first bytes are stored (the progress display's rate counts from here)
  onProgress?.({ phase: 'pack', bytes: 0 });
  let refs: GitRef[] = [];
  let history: Promise<PreparedHistory | undefined> | undefined;
  if (!plans || plans.packed) {
    // every chunk is new (nearly): the writer's table sized for them at once (BlobWriter.reserve); stored
    // in one pass, the chunks of large databases are compressed on a thread of their own (packed ahead,
    // they were compressed on the copy threads)
    let expected = c.memory.length + c.state.length;
    let bytes = 0;
    for (const d of c.databases) {
      // a copy packed ahead is removed once its plan is made: its size is the plan's
      const size = await stat(d.stagedPath).then(
        (st) => st.size,
        async (err: unknown) => {
          const plan = plans?.packed ? await plans.byDb.get(d.db) : undefined;
          if (!plan) throw err;
          return plan.size;
        },
      );
      bytes += size;
      expected += expectedChunks(size, params, c.databaseInfo[d.db]?.page_size);
    }
    writer.reserve(expected);
    if (plans) writer.storedElsewhere();
    else if (bytes >= compressThreadMinBytes()) writer.compressOnThread();
  }
  const scratch = await mkdtemp(join(work, 'history-'));
  try {
    // git writes the live history's new pack (its own process) while the databases are stored; the
    // artifacts keep manifest order (databases, state, history, memory files). The memory files come
    // after the history as before: stored before it, the first snapshot's peak RSS rose by ~15 MB.
    if (!c.gitBundlePath && c.gitRefs && c.gitRefs.length > 0) {
      history = prepareLiveHistory(c.gitObjects ?? memdir, c.gitRefs, previous, scratch);
      history.catch(() => {}); // awaited below
    }
    // When the databases' chunks are being planned on the copy threads, the memory files (mostly
    // known already) are stored while those plans finish, instead of after them.
    const planned = plans !== undefined && plans.byDb.size > 0;
    const memory = planned ? await storeMemory(writer, params, c, progress) : undefined;
    // the live history's pack is stored as soon as git has written it, between two databases (stored
    // after them, it was the last ~0.1 s of ref-170's first snapshot, the copy threads idle by then)
    const historyStep = history?.then((prep) => () => storePreparedHistory(writer, params, prep));
    const a = await storeData(writer, params, c, out, progress, plans, stored, historyStep);
    if (c.gitBundlePath) {
      const h = await storeBundleHistory(writer, params, c.gitBundlePath, scratch);
      out.push(h.artifact);
      refs = h.refs;
    } else if (history) {
      if (a) out.push(a);
      refs = c.gitRefs!;
    }
    out.push(...(memory ?? (await storeMemory(writer, params, c, progress))));
    await writer.drain();
  } finally {
    await writer.close(); // after a failure: the compression thread (if any) ends here
    await history?.catch(() => {}); // git is done with the scratch directory
    // (in the snapshot's staging, which goes with it: never thrown over the snapshot's outcome, stop 54)
    await rm(scratch, { recursive: true, force: true }).catch(() => {});
  }
  return { artifacts: out, refs: [...refs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) };
}

/** The memory files, in manifest order. */
async function storeMemory(
  writer: BlobWriter,
  params: ChunkerParams,
  c: CaptureResult,
  progress: (n: number) => void,
): Promise<RepoArtifact[]> {
  const memory: RepoArtifact[] = [];
  for (const f of c.memory) {
    const ref = await storeContent(
      writer,
      params,
      f.data ? { data: f.data } : { path: f.stagedPath!, sqlite: false },
    );
    memory.push({ path_in_bundle: f.pathInBundle, kind: f.kind, ...ref });
    progress(ref.size_bytes);
  }
  return memory;
}

/**
 * The databases and state values, in manifest order, into `out`. Planned databases are stored one at a
 * time in the order their plans finish (two threads plan them, in any order), not in manifest order: a
 * plan that finishes early is not left waiting behind a larger one. Each database copy (not one
 * packed ahead: the snapshot removed it, and its pack files are the store's) is handed to `stored` once
 * its chunks are in the writer. `alongside`, once it gives its step, takes the next turn between two
 * databases (the history's pack); its result is returned.
 */
async function storeData<T>(
  writer: BlobWriter,
  params: ChunkerParams,
  c: CaptureResult,
  out: RepoArtifact[],
  progress: (n: number) => void,
  plans: CapturePlans | undefined,
  stored: ((stagedPath: string) => void) | undefined,
  alongside: Promise<() => Promise<T>> | undefined,
): Promise<T | undefined> {
  let turn: Promise<unknown> = Promise.resolve();
  let failure: { err: unknown } | undefined;
  /** Runs `step` once every step queued before it has ended; after one failed, the later ones do not run. */
  const inTurn = <R>(step: () => Promise<R>): Promise<R> => {
    const mine = turn.then(() => {
      if (failure) throw failure.err;
      return step();
    });
    turn = mine.catch((err: unknown) => {
      if (!failure) plans?.stop?.();
      failure ??= { err };
    });
    return mine;
  };
  const extraStored: Promise<T | undefined> = alongside ? alongside.then(inTurn) : Promise.resolve(undefined);
  const databases = allSettledOrThrow(
    c.databases.map((d) =>
      (plans?.byDb.get(d.db) ?? Promise.resolve(undefined)).then((plan) => {
        const packed = plan && isPacked(plan) ? plan : undefined;
        return inTurn(async () => {
          const ref = packed
            ? await storePacked(writer, packed)
            : plan
              ? await storePlanned(writer, d.stagedPath, plan)
              : await storeContent(writer, params, { path: d.stagedPath, sqlite: true });
          progress(ref.size_bytes);
          // (a pack file written ahead is removed by adoptPack once saved, re-packed or found known)
          if (!packed) stored?.(d.stagedPath);
          return ref;
        });
      }),
    ),
  );
  const [extra, refs] = await allSettledOrThrow([extraStored, databases] as const).catch((err: unknown) => {
    // the first database that failed to store, not a plan its failure stopped (`plans.stop`)
    throw failure ? failure.err : err;
  });
  c.databases.forEach((d, i) => {
    out.push({ path_in_bundle: sqlitePath(d.db), kind: sqliteKind(d.db), ...refs[i]! });
  });
  for (const s of c.state) {
    const ref = await storeContent(writer, params, { data: s.data! });
    out.push({ path_in_bundle: s.pathInBundle, kind: s.kind, ...ref });
  }
  return extra;
}
