// Owns durable file publication: fsync of files, directories and whole staged trees, atomic
// small-file writes (temp → fsync → rename → fsync dir). A new file that must not replace one:
// util/new-file.ts.

import { closeSync, existsSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { type FileHandle, open, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { onFile } from '../model/errors.js';
import { fsyncDir } from '../util/new-file.js';
import { randomBytes } from '../util/random.js';

/** A unique temporary name beside `path` (same directory, so rename is atomic). */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${randomBytes(6).toString('hex')}`);
}

/**
 * Writes `data` to `path` atomically: readers see the old file or the whole new one, never a part. On
 * any failure (a full disk part way through the write) the temporary file goes too.
 */
export async function writeFileAtomic(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const tmp = tempPathFor(path);
  let fh: FileHandle | undefined = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
    const done = fh;
    fh = undefined;
    await done.close();
    await rename(tmp, path);
  } catch (err) {
    await fh?.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw onFile(err, path); // (a write names no file: this one, stop 54)
  }
  await fsyncDir(dirname(path));
}

/**
 * Like writeFileAtomic (readers never see a part, no temporary file is left by a failure),
 * synchronous and without fsync: for advisory files that a power cut may lose, written once per agent
 * by sweeps over thousands of agents.
 */
export function writeFileAtomicUnsynced(path: string, data: string, mode = 0o600): void {
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, 'wx', mode); // (a name taken already is someone else's: left alone)
  try {
    try {
      writeFileSync(fd, data);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw onFile(err, path);
  }
}

export async function removeQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => {});
}

/**
 * Makes everything written under `paths` durable: one `sync --file-system` (syncfs(2)) per call, which
 * flushes thousands of staged files at the cost of one system call (run on the program host when it is
 * up, util/program-host.ts); per-file fsync is the fallback.
 */
export async function syncFileSystemsOf(paths: string[]): Promise<void> {
  const existing = paths.filter((p) => existsSync(p));
  if (existing.length === 0) return;
  const args = ['--file-system', ...existing];
  // loaded here, not at start-up: a command that never writes (list, verify) needs neither
  const [{ runOnHost }, { spawn }] = await Promise.all([
    import('../util/program-host.js'),
    import('node:child_process'),
  ]);
  const hosted = runOnHost({ file: 'sync', args, cwd: process.cwd(), env: process.env });
  const ok = hosted
    ? await hosted.then(
        (r) => r.code === 0,
        () => false,
      )
    : await new Promise<boolean>((resolvePromise) => {
        const child = spawn('sync', args, { stdio: 'ignore' });
        child.on('error', () => resolvePromise(false));
        child.on('close', (code) => resolvePromise(code === 0));
      });
  if (ok) return;
  for (const p of existing) await fsyncTree(p);
}

async function fsyncTree(path: string): Promise<void> {
  const entries = await readdir(path, { withFileTypes: true }).catch(() => undefined);
  if (entries) {
    for (const e of entries) if (!e.isSymbolicLink()) await fsyncTree(join(path, e.name));
    await fsyncDir(path);
    return;
  }
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
