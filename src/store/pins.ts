// Owns pins: a snapshot is pinned by a `<bundle>.pin` marker next to it (JSON: when, optional note).
// Retention never deletes a pinned snapshot; deleting it explicitly removes the pin with it.

import { unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { IoError } from '../model/errors.js';
import { fsyncDir } from '../util/new-file.js';
import { readRegularFileSync } from '../util/regular-file.js';
import { writeFileAtomic } from './atomic.js';

export const PIN_EXT = '.pin';
export const pinPathOf = (bundlePath: string): string => `${bundlePath}${PIN_EXT}`;

/** Pins the bundle; a marker that cannot be written (a full disk: ENOSPC) is an IoError naming it. */
export async function pin(bundlePath: string, note?: string): Promise<void> {
  const path = pinPathOf(bundlePath);
  try {
    await writeFileAtomic(
      path,
      `${JSON.stringify({ pinned_at_ms: Date.now(), ...(note ? { note } : {}) })}\n`,
      0o644,
    );
  } catch (err) {
    throw new IoError(`writing the pin ${path}`, err);
  }
}

/** The most a pin marker is read of (a note is one command-line argument: at most 128 KiB on Linux). */
const PIN_MAX_BYTES = 1024 * 1024;

/** The note of a bundle's pin, when its marker holds one (a marker that is not JSON has none). */
export function pinNoteOf(bundlePath: string): string | undefined {
  // a regular file only, never waited on (a FIFO made list wait forever) nor read past the bound: stop 48
  const read = readRegularFileSync(pinPathOf(bundlePath), PIN_MAX_BYTES);
  if (read.status !== 'ok') return undefined;
  try {
    const v = JSON.parse(read.bytes.toString('utf8')) as { note?: unknown };
    return typeof v.note === 'string' && v.note !== '' ? v.note : undefined;
  } catch {
    return undefined;
  }
}

export async function unpin(bundlePath: string): Promise<boolean> {
  try {
    await unlink(pinPathOf(bundlePath));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new IoError(`removing the pin ${pinPathOf(bundlePath)}`, err);
  }
  // the removal is durable as the pin's writing was (a power cut must not bring a pin back): stop 63
  try {
    await fsyncDir(dirname(bundlePath));
  } catch (err) {
    throw new IoError(`removing the pin ${pinPathOf(bundlePath)} (syncing its directory)`, err);
  }
  return true;
}
