// Owns reading one bundle out of the store as a byte stream (the HTTP API's download): the bundle is
// found by id or unique prefix, the agent's readers lock is held shared from the open until the stream
// closes (delete and retention wait or skip meanwhile, as for `export`), and the sibling's SHA-256 is
// handed out with the stream so the receiver can check what it got.

import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { asSnapshotError } from '../model/errors.js';
import { readSibling } from '../store/sibling.js';
import type { LocalSnapshotter } from './local.js';

export interface BundleDownload {
  id: string;
  /** File name of the bundle (`<id>.tar.zst` or `<id>.tar.zst.age`). */
  name: string;
  encrypted: boolean;
  size: number;
  /** The `.sha256` sibling's digest of the file; absent when the sibling is missing or unreadable. */
  sha256?: string;
  /** The bundle bytes; the readers lock is released when it closes (ends, fails or is destroyed). */
  stream: Readable;
}

export async function openDownload(
  s: LocalSnapshotter,
  agentId: string,
  tenant: string | undefined,
  id: string,
): Promise<BundleDownload> {
  const { file, reading } = await s.locateForReading(agentId, tenant, id);
  try {
    const handle = await open(file.path, 'r');
    try {
      const size = (await handle.stat()).size;
      const sibling = await readSibling(file.path);
      const stream = handle.createReadStream({ autoClose: true });
      stream.once('close', () => reading.release());
      return {
        id: file.id,
        name: file.name,
        encrypted: file.encrypted,
        size,
        ...(sibling.status === 'ok' ? { sha256: sibling.sha256 } : {}),
        stream,
      };
    } catch (err) {
      await handle.close().catch(() => {});
      throw err;
    }
  } catch (err) {
    reading.release();
    throw asSnapshotError(err, `opening ${file.path}`);
  }
}
