// Owns exporting one bundle out of the store: copy (hashed) to a temporary name beside the target,
// check the copy's bytes against the source sibling, verify the copy fully (an encrypted one with the
// identity, when given; its signature against trusted keys, when given), then publish bundle and
// sibling. An existing target is never replaced without `force`; a failed export leaves nothing; no
// directory is ever created (a target ending in `/` or naming a directory means "into it").

import { rename, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { Identity } from '../crypto/age.js';
import type { TrustPolicy } from '../format/signature.js';
import {
  AlreadyExistsError,
  BundleDamagedError,
  ChecksumMismatchError,
  InvalidInputError,
} from '../model/errors.js';
import type { ExportResult } from '../model/types.js';
import { fsyncDir, publishNoClobber, removeQuietly, tempPathFor } from '../store/atomic.js';
import type { BundleFile } from '../store/catalog.js';
import { siblingPathOf } from '../store/paths.js';
import { readSibling, writeSibling } from '../store/sibling.js';
import { copyFileHashed } from '../util/hash.js';
import { problemsError, refused, verifyBundleFile } from '../verify/verify.js';
import type { ExportOptions } from './interface.js';

export interface ExportBundleOptions extends Omit<ExportOptions, 'decryptIdentity' | 'trust'> {
  identities?: readonly Identity[];
  trust?: TrustPolicy;
}

const exists = (p: string): Promise<boolean> =>
  stat(p).then(
    () => true,
    () => false,
  );

/**
 * Where the copy goes: into `target` under the bundle's own name when `target` ends in `/` or names an
 * existing directory, else `target` itself. The directory must exist: export never creates one (a
 * mistyped path would otherwise become a tree of directories and a file named like the last one).
 */
async function destinationFor(file: BundleFile, target: string): Promise<string> {
  const t = resolve(target);
  const intoDir = target.endsWith('/') || target.endsWith(sep);
  const s = await stat(t).catch(() => undefined);
  if (s?.isDirectory()) return join(t, file.name);
  const dir = intoDir ? t : dirname(t);
  const d = intoDir ? s : await stat(dir).catch(() => undefined);
  if (!d)
    throw new InvalidInputError(
      `export directory ${dir} does not exist (export never creates directories; create it first)`,
    );
  if (!d.isDirectory()) throw new InvalidInputError(`export target: ${dir} is not a directory`);
  return t;
}

export async function exportBundle(
  file: BundleFile,
  target: string,
  opts: ExportBundleOptions,
): Promise<ExportResult> {
  const dest = await destinationFor(file, target);
  if (dest === resolve(file.path)) throw new InvalidInputError('export target is the bundle itself');
  const destSibling = siblingPathOf(dest);
  if (!opts.force) {
    if (await exists(dest)) throw new AlreadyExistsError(dest);
    if (await exists(destSibling)) throw new AlreadyExistsError(destSibling);
  }
  const tmp = tempPathFor(dest);
  const tmpSibling = siblingPathOf(tmp);
  try {
    const total = (await stat(file.path)).size;
    const source = await readSibling(file.path);
    const copied = await copyFileHashed(file.path, tmp, {
      sync: true,
      mode: 0o600,
      onBytes: (n) => opts.onProgress?.({ phase: 'copy', bytes: n, total }),
    });
    if (source.status === 'ok' && source.sha256 !== copied.sha256) {
      throw new ChecksumMismatchError(`${basename(file.path)} does not match its .sha256 sibling`);
    }
    await writeSibling(tmp, copied.sha256);
    const report = await verifyBundleFile(tmp, {
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.identities ? { identities: opts.identities } : {}),
      ...(opts.trust ? { trust: opts.trust } : {}),
    });
    if (refused(report)) {
      const first = report.problems[0];
      if (first?.code.startsWith('SIGNATURE_')) throw problemsError(report.problems);
      throw new BundleDamagedError(
        `the exported copy does not verify: ${first?.message ?? 'unknown problem'}`,
        {
          details: { problems: report.problems },
        },
      );
    }
    if (opts.force) {
      await rename(tmp, dest);
      await rename(tmpSibling, destSibling);
      await fsyncDir(dirname(dest));
    } else {
      await publishNoClobber(tmp, dest);
      try {
        await publishNoClobber(tmpSibling, destSibling);
      } catch (err) {
        await removeQuietly(dest); // never leave the copy without its sibling
        throw err;
      }
    }
    return {
      path: dest,
      sibling_path: destSibling,
      bundle_size_bytes: copied.size,
      file_sha256: copied.sha256,
      verify: { ...report, bundle: dest },
    };
  } catch (err) {
    await removeQuietly(tmp);
    await removeQuietly(tmpSibling);
    throw err;
  }
}
