// Owns reading one snapshot out of the store as a bundle byte stream (the HTTP API's download) — what
// leaves the host, so a plaintext bundle that is not redacted is re-packed redacted (into a temporary
// file that is removed when the stream closes) unless the caller asks for the exact bundle; an
// encrypted or already redacted one is streamed as it is. A bundle is found by id or unique prefix,
// the agent's readers lock is held shared from the open until the stream closes (delete and retention
// wait or skip meanwhile, as for `export`). A repository snapshot is written as a bundle by
// repo-export.ts (the same rules) into such a temporary file. The SHA-256 of the bytes streamed is
// handed out with the stream so the receiver can check what it got.
// A temporary file is removed as soon as it is open (the open handle streams it): a copy that may hold
// secrets never outlives the process on disk, even when the process exits right after the download.
// One left by a process killed while writing it (its directory names the pid) is removed by the next
// download of any process.

import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { asSnapshotError } from '../model/errors.js';
import type { ExportResult } from '../model/types.js';
import type { ListingMeta } from '../repository/snapshots.js';
import { readSibling } from '../store/sibling.js';
import { privateScratch, removeScratch } from '../util/scratch.js';
import { planExport } from './export.js';
import type { LocalSnapshotter } from './local.js';
import { repackBundle } from './repack.js';
import { exportName, exportRecipients, writeRepoBundle } from './repo-export.js';

export interface BundleDownload {
  id: string;
  /** File name of the bundle (`<id>.tar.zst` or `<id>.tar.zst.age`). */
  name: string;
  encrypted: boolean;
  size: number;
  /** What is streamed: a redacted re-pack, or the bundle as it is (already redacted, encrypted, exact). */
  copy: ExportResult['copy'];
  /** Whether the bytes streamed are redacted. */
  redacted: boolean;
  /** SHA-256 of the bytes streamed (the sibling's, for a bundle streamed as it is, when it has one). */
  sha256?: string;
  /** The bundle bytes; the readers lock is released when it closes (ends, fails or is destroyed). */
  stream: Readable;
}

export async function openDownload(
  s: LocalSnapshotter,
  agentId: string,
  tenant: string | undefined,
  id: string,
  /** `redact`: default the snapshotter's `redactExports`. */
  opts: { redact?: boolean } = {},
): Promise<BundleDownload> {
  // the one way to a snapshot by id: its manifest must be this agent's (LocalSnapshotter.findSnapshot)
  const found = await s.findSnapshot(agentId, tenant, id);
  if (found.repository) return openRepoDownload(s, found.repository, opts);
  const { file, reading } = await s.locateForReading(agentId, tenant, found.bundle.id, 'export');
  let scratch: string | undefined;
  const done = () => {
    reading.release();
    if (scratch) void removeScratch(scratch);
  };
  try {
    const plan = await planExport(file, { redact: opts.redact ?? s.redactExports });
    let path = file.path;
    let sha256: string | undefined;
    if (plan.repack) {
      scratch = await privateScratch('download');
      path = join(scratch, file.name);
      const policies = await s.policies();
      const signingKey = policies.signingKey();
      sha256 = (
        await repackBundle({
          source: file.path,
          dest: path,
          policy: policies.redaction,
          ...(signingKey ? { signingKey } : {}),
          zstd: { level: s.zstdLevel, workers: s.zstdWorkers },
        })
      ).sha256;
    } else {
      const sibling = await readSibling(file.path);
      if (sibling.status === 'ok') sha256 = sibling.sha256;
    }
    const handle = await open(path, 'r');
    if (scratch) await removeScratch(scratch); // the handle streams it
    try {
      const size = (await handle.stat()).size;
      const stream = handle.createReadStream({ autoClose: true });
      stream.once('close', done);
      return {
        id: file.id,
        name: file.name,
        encrypted: file.encrypted,
        size,
        copy: plan.copy,
        redacted: plan.copy === 'redacted' || plan.copy === 'already_redacted',
        ...(sha256 ? { sha256 } : {}),
        stream,
      };
    } catch (err) {
      await handle.close().catch(() => {});
      throw err;
    }
  } catch (err) {
    done();
    throw asSnapshotError(err, `opening ${file.path}`);
  }
}

/**
 * A repository snapshot as a download: a bundle written from it (repo-export.ts: redacted unless asked
 * otherwise, or encrypted to the configured recipients for an encrypted repository) into a temporary
 * file that is removed when the stream closes.
 */
async function openRepoDownload(
  s: LocalSnapshotter,
  meta: ListingMeta,
  opts: { redact?: boolean },
): Promise<BundleDownload> {
  const scratch = await privateScratch('download');
  const done = () => void removeScratch(scratch);
  try {
    const encrypted = exportRecipients(s, meta.encrypted, false).length > 0;
    const name = exportName(meta.id, encrypted);
    const path = join(scratch, name);
    const { trust } = await s.policies();
    const written = await writeRepoBundle(s, meta.id, path, {
      redact: opts.redact ?? s.redactExports,
      ...(trust.required ? { trust } : {}),
    });
    const handle = await open(path, 'r');
    await removeScratch(scratch); // the handle streams it
    try {
      const stream = handle.createReadStream({ autoClose: true });
      stream.once('close', done);
      return {
        id: meta.id,
        name,
        encrypted: written.encrypted,
        size: written.size,
        copy: written.copy,
        redacted: written.copy === 'redacted' || written.copy === 'already_redacted',
        sha256: written.sha256,
        stream,
      };
    } catch (err) {
      await handle.close().catch(() => {});
      throw err;
    }
  } catch (err) {
    done();
    throw asSnapshotError(err, `exporting snapshot ${meta.id}`);
  }
}
