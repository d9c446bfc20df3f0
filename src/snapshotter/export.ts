// Owns exporting one bundle out of the store — what leaves the host. A plaintext bundle that is not
// redacted is re-packed redacted unless the caller asks for an exact copy; an encrypted one is copied as
// it is (it is protected), or re-packed as plaintext (redacted unless asked) when the caller decrypts
// it; a redacted one is copied as it is. A copy is hashed while written beside the target, checked
// against the source sibling, verified fully (an encrypted one with the identity, when given; a
// signature against trusted keys, when given), then published with its sibling. An existing target
// is never replaced without `force`; a failed export leaves nothing; no directory is ever created (a
// target ending in `/` or naming a directory means "into it"); nothing is ever written into the store
// (the bundle itself, by any path, or any directory of the store: checkTarget), and every file is
// written through the target directory held open since it was checked (holdDirectory): a directory or
// link swapped in meanwhile cannot redirect it; a link at the target name is replaced, never followed.

import { constants } from 'node:fs';
import { type FileHandle, lstat, open, readlink, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { Identity } from '../crypto/age.js';
import type { SigningKey } from '../crypto/sign.js';
import { readManifestOnly } from '../format/reader.js';
import type { TrustPolicy } from '../format/signature.js';
import type { CompressOptions } from '../format/zstd.js';
import {
  AlreadyExistsError,
  BundleDamagedError,
  ChecksumMismatchError,
  EncryptionError,
  InvalidInputError,
} from '../model/errors.js';
import type { ExportResult, VerifyReport } from '../model/types.js';
import type { RedactionPolicy } from '../policy/redaction/scan.js';
import { removeQuietly, tempPathFor } from '../store/atomic.js';
import type { BundleFile } from '../store/catalog.js';
import { isWithin, PARTIAL_EXT, siblingPathOf, sidecarPathOf } from '../store/paths.js';
import { pinPathOf } from '../store/pins.js';
import { readSibling, writeSibling } from '../store/sibling.js';
import { faultPoint } from '../util/faults.js';
import { copyFileHashed } from '../util/hash.js';
import { fsyncDir, publishNoClobber } from '../util/new-file.js';
import { removeOnStop } from '../util/remove-on-stop.js';
import { problemsError, refused, type VerifyOptions, verifyBundleFile } from '../verify/verify.js';
import type { ExportOptions } from './interface.js';
import { repackBundle } from './repack.js';

/** What an export must never write over: the store it reads from. */
export interface ExportGuard {
  /** The bundle exported (a bundle store's), whose sibling, sidecar and pin go with it. */
  source?: string;
  /** The store's directories (bundles, repository, key pins, caches): no target lies inside one. */
  store: readonly string[];
}

export interface ExportBundleOptions extends Omit<ExportOptions, 'decryptIdentity' | 'trust' | 'redact'> {
  identities?: readonly Identity[];
  trust?: TrustPolicy;
  /** Redact a plaintext copy that is not redacted yet (resolved by the caller). */
  redact: boolean;
  policy: RedactionPolicy;
  /** The key a re-packed copy is signed with (read only when a copy is re-packed). */
  signingKey: () => SigningKey | undefined;
  zstd: CompressOptions;
}

/**
 * What the export does with the bundle, decided before anything is written: copy it as it is, or
 * re-pack it (decrypted, when it is encrypted; redacted here, when `redactHere`).
 */
export interface Plan {
  copy: ExportResult['copy'];
  repack: boolean;
  redactHere: boolean;
}

/** Whether a name exists, a symbolic link (dangling too) included: never followed. */
const exists = (p: string): Promise<boolean> =>
  lstat(p).then(
    () => true,
    () => false,
  );

/**
 * Where the copy goes: into `target` under the bundle's own name when `target` ends in `/` or names an
 * existing directory, else `target` itself; `-` is refused (no standard output form). The directory must exist: export never creates one (a
 * mistyped path would otherwise become a tree of directories and a file named like the last one).
 */
async function destinationFor(name: string, target: string): Promise<string> {
  if (target === '-')
    throw new InvalidInputError(
      'export target "-": export has no standard output form, it writes a file and its sibling (a file named - is ./-)',
    );
  const t = resolve(target);
  const intoDir = target.endsWith('/') || target.endsWith(sep);
  const s = await stat(t).catch(() => undefined);
  if (s?.isDirectory()) return join(t, name);
  const dir = intoDir ? t : dirname(t);
  const d = intoDir ? s : await stat(dir).catch(() => undefined);
  if (!d)
    throw new InvalidInputError(
      `export directory ${dir} does not exist (export never creates directories; create it first)`,
    );
  if (!d.isDirectory()) throw new InvalidInputError(`export target: ${dir} is not a directory`);
  return t;
}

/** What an export (or download) of `file` does; decided from the head of the bundle. */
export async function planExport(
  file: BundleFile,
  opts: Pick<ExportBundleOptions, 'redact' | 'decrypt' | 'identities'>,
): Promise<Plan> {
  if (file.encrypted) {
    if (!opts.decrypt) return { copy: 'encrypted', repack: false, redactHere: false };
    if (!opts.identities?.length)
      throw new InvalidInputError('a decrypted copy needs the identity (--decrypt-identity)');
  }
  const { parsed } = await readManifestOnly(file.path, file.encrypted ? opts.identities : undefined);
  // Only a sealed (v2+) manifest's redaction report is believed: the copy's verify checks the seal.
  const decrypt = file.encrypted;
  if (parsed.manifest.redactions && parsed.layout >= 2)
    return { copy: 'already_redacted', repack: decrypt, redactHere: false };
  if (opts.redact) return { copy: 'redacted', repack: true, redactHere: true };
  return { copy: 'exact', repack: decrypt, redactHere: false };
}

export async function exportBundle(
  file: BundleFile,
  target: string,
  store: readonly string[],
  opts: ExportBundleOptions,
): Promise<ExportResult> {
  const plan = await planExport(file, opts);
  // a decrypted copy is a plaintext bundle: `<id>.tar.zst`
  const name = file.encrypted && plan.repack ? file.name.replace(/\.age$/i, '') : file.name;
  return publishExport(name, target, { source: file.path, store }, opts, async (tmp) => {
    if (plan.repack) {
      const r = await repackBundle({
        source: file.path,
        dest: tmp,
        ...(plan.redactHere ? { policy: opts.policy } : {}),
        ...(opts.identities ? { identities: opts.identities } : {}),
        ...(opts.trust ? { trust: opts.trust } : {}),
        ...(opts.signingKey() ? { signingKey: opts.signingKey()! } : {}),
        zstd: opts.zstd,
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      });
      const red = r.manifest.redactions;
      return {
        size: r.size,
        sha256: r.sha256,
        copy: plan.copy,
        encrypted: false,
        repacked: true,
        ...(plan.redactHere && red
          ? {
              redaction: {
                policy: red.policy,
                rules_applied: red.rules_applied,
                matches_redacted: red.matches_redacted,
                ...(red.git_history ? { git_history: red.git_history } : {}),
                ...(red.git?.object_refs ? { git_object_refs: red.git.object_refs } : {}),
              },
            }
          : {}),
      };
    }
    const total = (await stat(file.path)).size;
    const source = await readSibling(file.path);
    const written = await copyFileHashed(file.path, tmp, {
      sync: true,
      mode: 0o600,
      onBytes: (n) => opts.onProgress?.({ phase: 'copy', bytes: n, total }),
    });
    if (source.status === 'ok' && source.sha256 !== written.sha256) {
      throw new ChecksumMismatchError(`${basename(file.path)} does not match its .sha256 sibling`);
    }
    return { ...written, copy: plan.copy, encrypted: file.encrypted, repacked: false };
  });
}

/** What an export wrote into its temporary file. */
export interface WrittenCopy {
  size: number;
  sha256: string;
  copy: ExportResult['copy'];
  encrypted: boolean;
  /** A new bundle (re-packed or written from the repository), signed (or not) by this host. */
  repacked: boolean;
  redaction?: ExportResult['redaction'];
}

/** A file's real path and identity (device, inode), when it exists. */
async function identify(p: string): Promise<{ real: string; dev: number; ino: number } | undefined> {
  try {
    const [real, s] = await Promise.all([realpath(p), stat(p)]);
    return { real, dev: s.dev, ino: s.ino };
  } catch {
    return undefined;
  }
}

/**
 * Refuses (INVALID_INPUT) a target the copy would be published over inside the store. What is
 * compared is what the paths are, never how they are spelled: the real path of the target's
 * directory (so a symbolic link, a bind mount or `..` on the way leads where the kernel goes), and of
 * an existing target or sibling also its own real path and its device and inode (a link to the bundle).
 * The bundle itself, its sibling, sidecar or pin: "the bundle itself". Any other place inside one of
 * the store's directories (another bundle, a lock, a journal, a repository object, a key pin, a cache):
 * refused too — an export leaves the store, it never writes into it. The publish is a rename, which
 * replaces the name at the target and never writes into the file it named, so a link elsewhere to a
 * store file is replaced, not written through.
 */
async function checkTarget(dest: string, guard: ExportGuard): Promise<void> {
  const dir = await realpath(dirname(dest)).catch(() => resolve(dirname(dest)));
  if (guard.source !== undefined) {
    const src = guard.source;
    const own = (
      await Promise.all([src, siblingPathOf(src), sidecarPathOf(src), pinPathOf(src)].map(identify))
    ).filter((x) => x !== undefined);
    for (const t of [dest, siblingPathOf(dest)]) {
      const at = join(dir, basename(t));
      const is = await identify(t);
      if (
        own.some(
          (o) => o.real === at || (is && (o.real === is.real || (o.dev === is.dev && o.ino === is.ino))),
        )
      )
        throw new InvalidInputError(`export target ${dest} is the bundle itself (or its sibling)`);
    }
  }
  await refuseInsideStore(dir, dest, guard);
}

/** Refuses (INVALID_INPUT) a real directory `dir` inside one of the store's directories. */
async function refuseInsideStore(dir: string, dest: string, guard: ExportGuard): Promise<void> {
  for (const d of guard.store) {
    const real = await realpath(d).catch(() => resolve(d));
    if (isWithin(real, dir))
      throw new InvalidInputError(
        `export target ${dest} is inside the snapshot store (${d}): an export is written outside the store`,
      );
  }
}

/** The target's directory, opened and checked; every file the export writes is named from `base`. */
interface HeldDirectory {
  /**
   * `/proc/<pid>/fd/<n>` of the open directory (Linux: a name through it reaches that very directory,
   * whatever has its path now), else its real path.
   */
  base: string;
  /** Refuses (INVALID_INPUT) when the target's directory, by the path given, is no longer the one held. */
  recheck(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Opens the target's directory (its real path, the last component not followed) and checks the
 * directory actually opened, not the path: on Linux its name as the kernel knows it
 * (`/proc/<pid>/fd/<n>`) must lie outside the store, and every file of the export is then created,
 * written, verified and renamed through that name, so a directory (or a link on the way) swapped in
 * after the check cannot redirect a write: the kernel resolves the name to the directory already
 * opened. The pid's name, not `/proc/self`, so a child process reading the copy (verify) reaches it too.
 * Without `/proc`: the path must still lead to the directory opened (device and inode), checked again
 * before the publish (`recheck`), which narrows the window to the publish itself.
 */
async function holdDirectory(dir: string, dest: string, guard: ExportGuard): Promise<HeldDirectory> {
  const real = await realpath(dir).catch(() => resolve(dir));
  let fh: FileHandle;
  try {
    fh = await open(real, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (err) {
    throw new InvalidInputError(
      `export directory ${dir} cannot be opened as a directory (${(err as NodeJS.ErrnoException).code ?? 'error'}): was it replaced?`,
    );
  }
  try {
    const held = await fh.stat();
    const proc = `/proc/${process.pid}/fd/${fh.fd}`;
    const opened = await readlink(proc).catch(() => undefined);
    const viaProc =
      opened?.startsWith('/') === true &&
      (await stat(proc).then(
        (p) => p.dev === held.dev && p.ino === held.ino,
        () => false,
      ));
    const recheck = async () => {
      const again = await realpath(dir).catch(() => undefined);
      const now = again === undefined ? undefined : await stat(again).catch(() => undefined);
      if (again !== real || now?.dev !== held.dev || now?.ino !== held.ino)
        throw new InvalidInputError(
          `export directory ${dir} was replaced during the export (a link or another directory in its place): nothing was published`,
        );
    };
    await refuseInsideStore(viaProc ? opened! : real, dest, guard);
    await recheck();
    return { base: viaProc ? proc : real, recheck, close: () => fh.close() };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/**
 * The steps every export shares: where the copy goes (`name` in a directory, or the target file; never
 * a directory created, never an existing file replaced without `force`), `write` into a temporary file
 * beside it, its sibling, a full verify of the copy (trust as asked; a new bundle's own signature is
 * this host's, so trust was required of its source instead), and the no-clobber publish. On failure
 * nothing is left at the target.
 */
export async function publishExport(
  name: string,
  target: string,
  guard: ExportGuard,
  opts: Pick<ExportBundleOptions, 'force' | 'identities' | 'trust' | 'onProgress'>,
  write: (tmp: string) => Promise<WrittenCopy>,
): Promise<ExportResult> {
  const dest = await destinationFor(name, target);
  await checkTarget(dest, guard);
  const destSibling = siblingPathOf(dest);
  const dir = await holdDirectory(dirname(dest), dest, guard);
  // every name the export writes, through the directory held (never through the path again)
  const at = join(dir.base, basename(dest));
  const atSibling = siblingPathOf(at);
  const tmp = tempPathFor(at);
  const tmpSibling = siblingPathOf(tmp);
  // outside the state root nothing cleans up after a process a signal ended: the temporaries (and the
  // `.partial` a re-pack writes first) go then too, where the program armed it (util/remove-on-stop.ts)
  const unlist = removeOnStop([tmp, `${tmp}${PARTIAL_EXT}`, tmpSibling]);
  try {
    if (!opts.force) {
      if (await exists(at)) throw new AlreadyExistsError(dest);
      if (await exists(atSibling)) throw new AlreadyExistsError(destSibling);
    }
    const written = await write(tmp);
    await writeSibling(tmp, written.sha256);
    const trust = written.repacked && opts.trust ? { ...opts.trust, required: false } : opts.trust;
    const report = await verifyCopy(tmp, written, {
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.identities ? { identities: opts.identities } : {}),
      ...(trust ? { trust } : {}),
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
    // the path given must still lead to the directory written into (else the copy is not where it says)
    await dir.recheck();
    if (opts.force) {
      // The old sibling goes first (stop 55): an interruption between the two renames then leaves a
      // bundle without a sibling (verify: not fully verified, exit 3), never the new bundle beside the
      // old one's checksum (damage). A rename replaces the name: a symbolic link there is replaced
      // itself, never written through.
      await unlink(atSibling).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      await rename(tmp, at);
      faultPoint('export.sibling');
      await rename(tmpSibling, atSibling);
      await fsyncDir(dir.base);
    } else {
      await publishNoClobber(tmp, at);
      try {
        await publishNoClobber(tmpSibling, atSibling);
      } catch (err) {
        await removeQuietly(at); // never leave the copy without its sibling
        throw err;
      }
    }
    return {
      path: dest,
      sibling_path: destSibling,
      bundle_size_bytes: written.size,
      file_sha256: written.sha256,
      verify: { ...report, bundle: dest },
      copy: written.copy,
      repacked: written.repacked,
      encrypted: written.encrypted,
      redacted: written.copy === 'redacted' || written.copy === 'already_redacted',
      ...(written.redaction ? { redaction: written.redaction } : {}),
    };
  } catch (err) {
    await removeQuietly(tmp);
    await removeQuietly(tmpSibling);
    // the names were written through the directory held (/proc/<pid>/fd/<n>, meaningless once this
    // process is gone): the error names them by the directory given (stop 54)
    if (err instanceof Error && dir.base !== dirname(dest)) {
      const real = (p: unknown) => (typeof p === 'string' ? p.split(dir.base).join(dirname(dest)) : p);
      const e = err as Error & { path?: unknown; dest?: unknown };
      err.message = real(err.message) as string;
      if (e.path !== undefined) e.path = real(e.path);
      if (e.dest !== undefined) e.dest = real(e.dest);
    }
    throw err;
  } finally {
    unlist();
    await dir.close();
  }
}

/**
 * Verifies the copy fully. A new encrypted bundle written to recipients the identity does not open
 * (exported to other keys) is checked from the outside only: sibling and age header.
 */
async function verifyCopy(tmp: string, written: WrittenCopy, o: VerifyOptions): Promise<VerifyReport> {
  try {
    return await verifyBundleFile(tmp, o);
  } catch (err) {
    if (!(err instanceof EncryptionError) || !written.repacked || !written.encrypted) throw err;
    const { identities: _none, ...outside } = o;
    return verifyBundleFile(tmp, outside);
  }
}
