// Owns verifying a bundle file, streaming and in constant memory, by every rule restore applies before
// it writes: the sibling against the file's bytes, the seals, the signature (against trusted keys, when
// given), the version gate, the manifest's rules (format/rules.ts: layout, order, identity, git block),
// every entry's type, path, order and size, every artifact's SHA-256, the decompressed-size bound, the
// state values as strict JSON, and a v2 git bundle's header and pack (git-stream.ts, beside the
// stream). With `deep`: PRAGMA integrity_check on every database (restore runs it too) and, for v1's
// raw `.git` files, git fsck of the quarantined history. Content problems become report entries with stable codes; only I/O errors
// on the path itself are thrown.

import { createHash } from 'node:crypto';
import { closeSync, constants, mkdirSync, openSync, writeSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type Identity, readAgeHeader } from '../crypto/age.js';
import { GIT_BUNDLE_PATH, GIT_V1_PREFIX, MAX_MANIFEST_BYTES } from '../format/constants.js';
import { parseStrictJson } from '../format/json.js';
import { type Artifact, digestSeal, manifestSeal, type ParsedManifest } from '../format/manifest.js';
import { BundleReader, type KnownManifest } from '../format/reader.js';
import { manifestProblems } from '../format/rules.js';
import {
  checkSignature,
  signatureRefusal,
  signatureTrustNotChecked,
  type TrustPolicy,
} from '../format/signature.js';
import { fsckV1, isV1GitData } from '../git/quarantine.js';
import {
  BundleDamagedError,
  bundleNotFound,
  ChecksumMismatchError,
  IoError,
  MissingArtifactError,
  NotABundleError,
  SignatureError,
  SnapshotError,
  UnsafeBundleError,
} from '../model/errors.js';
import { shownPath } from '../model/shown-path.js';
import type { DeepReport, ProgressListener, VerifyProblem, VerifyReport } from '../model/types.js';
import { checkIntegrity } from '../sqlite/worker.js';
import { readSibling } from '../store/sibling.js';
import { faultPoint } from '../util/faults.js';
import { sha256File } from '../util/hash.js';
import { privateScratch, removeScratch } from '../util/scratch.js';
import { EarlyGitCheck } from './early-git.js';
import { GitStreamCheck } from './git-stream.js';

/**
 * Where verified artifacts are written while they stream (restore staging, dry runs, deep checks).
 * `target` returns a file path for an artifact, or undefined to only hash it. Files are created
 * exclusively, never through a symlink; bytes are hashed as they are written.
 */
export interface EntrySink {
  target(artifact: Artifact, layout: 1 | 2): string | undefined;
  /** fsync each written file (restore staging). */
  sync?: boolean;
  /**
   * A directory without a `.git` where a v2 bundle's git pack is checked: a repository is made there
   * and the pack indexed into it while it streams, kept (restore's staged memdir, which then holds the
   * history without indexing the pack again). Otherwise a scratch repository, always removed.
   */
  gitRepo?: string;
  /**
   * Called once every entry is written and checked, if none had a problem, while git may still be at
   * the history (its pack indexed beside the stream): artifact path → the file written (restore starts
   * its database checks here).
   */
  onStreamed?: (written: ReadonlyMap<string, string>) => void;
  /**
   * Called once every database the manifest lists (they come first in the stream) is written and
   * checked against its SHA-256, if nothing read so far had a problem: artifact path → the file written,
   * the databases' among them. A restore starts its database checks here, beside the rest of the
   * stream (the memory files: on these machines, mostly the creating of ~2,000 files).
   */
  onDatabasesStreamed?: (written: ReadonlyMap<string, string>) => void;
  /**
   * Called once a v2 bundle's history is indexed into `gitRepo` and checked (the git bundle's SHA-256
   * matches the manifest, git's checks of its pack and refs passed) and nothing read so far had a
   * problem, when that is before the stream ends: the refs of the bundle's header, and the bundle's
   * manifest. A restore sets up the staged repository's history here, beside the memory files that
   * follow it in the stream.
   */
  onHistory?: (refs: ReadonlyMap<string, string>, manifest: ParsedManifest) => void;
}

export interface VerifyOptions {
  deep?: boolean;
  onProgress?: ProgressListener;
  sink?: EntrySink;
  /** Identities to open age-encrypted bundles; without them only sibling and header are checked. */
  identities?: readonly Identity[];
  /** Trusted signing keys; with `required`, an unsigned or untrusted bundle is damaged (exit 2). */
  trust?: TrustPolicy;
  /**
   * The manifest as the caller read it before (a restore's head): when the bundle's manifest is the
   * same bytes, it is not parsed again. Every check on it still runs.
   */
  knownManifest?: KnownManifest;
}

export interface VerifyResult {
  report: VerifyReport;
  /** The parsed manifest, when it could be read. */
  manifest?: ParsedManifest;
  /** Artifact path in the bundle → the file the sink wrote it to. */
  written: Map<string, string>;
  /**
   * With `sink.gitRepo`: the git bundle's refs, when its pack passed and was indexed there (the refs
   * are not set yet: the caller sets them).
   */
  gitRefs?: ReadonlyMap<string, string>;
  /** The git bundle's refs (its header's), when the git bundle was checked and passed, indexed or not. */
  historyRefs?: ReadonlyMap<string, string>;
}

/** True for bundles whose name says they are age-encrypted (the original's rule). */
export const isEncryptedName = (path: string): boolean => /\.age$/i.test(path);

/** A report with nothing checked yet (every check false, status damaged until decided). */
export function emptyReport(path: string, encrypted: boolean): VerifyReport {
  return {
    bundle: path,
    manifest_ok: false,
    bundle_sha256_ok: false,
    per_artifact_ok: false,
    age_protected: encrypted,
    status: 'damaged',
    sibling: 'missing',
    layout_ok: false,
    size_ok: false,
    schema_ok: false,
    artifacts_checked: 0,
    artifacts_total: 0,
    bytes_checked: 0,
    problems: [],
    not_checked: [],
  };
}

/** The typed error for the first problem a verify found (all problems travel in `details`). */
export function problemsError(problems: VerifyProblem[]): SnapshotError {
  const p = problems[0]!;
  const details = { problems };
  // A problem's message may be an error's whole message, prefix included ("bundle damaged: …"): the
  // error made from it adds its own, once.
  const bare = (prefix: string): string => {
    const m = p.message.startsWith(prefix) ? p.message.slice(prefix.length) : p.message;
    return p.path && !m.startsWith(`${p.path}: `) ? `${p.path}: ${m}` : m;
  };
  const err =
    p.code === 'SIGNATURE_INVALID' || p.code === 'SIGNATURE_MISSING' || p.code === 'SIGNATURE_UNTRUSTED'
      ? new SignatureError(p.code, p.message.replace(/^signature: /, ''), details)
      : p.code === 'CHECKSUM_MISMATCH'
        ? new ChecksumMismatchError(bare('checksum mismatch: '))
        : p.code === 'MISSING_ARTIFACT'
          ? new MissingArtifactError(p.path ?? p.message.replace(/^bundle missing artifact: /, ''))
          : p.code === 'UNSAFE_ENTRY'
            ? new UnsafeBundleError(bare('unsafe bundle: '), details)
            : p.code === 'NOT_A_BUNDLE'
              ? new NotABundleError(bare('bundle damaged: '), { details })
              : new BundleDamagedError(bare('bundle damaged: '), { details });
  return err;
}

export { verifyExitCode } from '../model/types.js';

/** True when the report refuses the bundle (damaged, or untrusted under a required signature). */
export function refused(r: VerifyReport): boolean {
  return r.status === 'damaged' || r.status === 'untrusted';
}

export async function verifyBundleFile(path: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  return (await verifyBundle(path, opts)).report;
}

/** verifyBundleFile, also returning the manifest and where a sink wrote the artifacts. */
export async function verifyBundle(path: string, opts: VerifyOptions = {}): Promise<VerifyResult> {
  let size: number;
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new IoError(`${path} is not a regular file`);
    size = s.size;
  } catch (err) {
    if (err instanceof SnapshotError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw bundleNotFound(path, err);
    throw new IoError(`reading ${path}`, err);
  }
  let age: Awaited<ReturnType<typeof readAgeHeader>>;
  let ageProblem: string | undefined;
  try {
    age = await readAgeHeader(path);
  } catch (err) {
    ageProblem = (err as Error).message; // an age intro line but a malformed header
  }
  const encrypted = age !== undefined || ageProblem !== undefined || isEncryptedName(path);
  const report = emptyReport(path, encrypted);
  const sibling = await readSibling(path);
  const progress = (bytes: number) => opts.onProgress?.({ phase: 'verify', bytes, total: size });

  if (encrypted && (!opts.identities || opts.identities.length === 0 || ageProblem || !age)) {
    // Without an identity only the outside can be checked: the sibling and the age header.
    const file = await sha256File(path);
    report.file_sha256 = file.sha256;
    settleSibling(report, sibling, file.sha256);
    if (ageProblem || !age) {
      report.problems.push({
        code: 'BUNDLE_DAMAGED',
        message: `not a valid age file: ${ageProblem ?? 'no age header'}`,
      });
    } else {
      report.not_checked.push({
        check: 'contents',
        reason:
          'age-encrypted bundle and no identity given (--decrypt-identity): manifest, seals and artifacts were not checked',
      });
      if (opts.trust?.required)
        report.not_checked.push({
          check: 'signature',
          reason: 'the signature is inside the encrypted payload: give an identity to check it',
        });
    }
    report.status = report.problems.length > 0 ? 'damaged' : 'incomplete';
    return { report, written: new Map() };
  }

  const deepDir = opts.deep && !opts.sink ? await privateScratch('verify') : undefined;
  const sink = opts.sink ?? (deepDir ? deepSink(deepDir) : undefined);
  // A scratch check of the history starts now, beside the stream, from the git bundle's own zstd frame
  // (a restore's, indexed into its staging, waits for its entry: early-git.ts).
  const ahead: { early?: EarlyGitCheck } =
    !encrypted && sink?.gitRepo === undefined ? { early: EarlyGitCheck.start(path) } : {};
  const written = new Map<string, string>();
  let reader: BundleReader | undefined;
  let streamFailed = false;
  let refs: CheckedRefs = {};
  progress(0); // the phase begins before its first bytes are read
  try {
    try {
      reader = await BundleReader.open(path, {
        onRead: progress,
        offThread: true,
        ...(opts.identities ? { identities: opts.identities } : {}),
        ...(opts.knownManifest ? { knownManifest: opts.knownManifest } : {}),
      });
    } catch (err) {
      if (!(err instanceof SnapshotError) || err.exitCode !== 2) throw asIo(err, path);
      report.problems.push({ code: err.code, message: err.message });
      streamFailed = true;
      // No manifest, so none of the entry checks ran: false, and said not to have run (stop 51).
      const why = 'the stream or the manifest could not be read: no entry was checked';
      for (const check of ['layout', 'size', 'artifacts']) report.not_checked.push({ check, reason: why });
    }
    if (reader) {
      checkManifestSignature(reader, report, opts.trust);
      refs = await checkEntries(reader, report, sink, written, () => (streamFailed = true), ahead);
    }
    const fileSha = (reader && !streamFailed && reader.fileSha256()) || (await sha256File(path)).sha256;
    report.file_sha256 = fileSha;
    settleSibling(report, sibling, fileSha);
    if (opts.deep && reader && report.problems.length === 0)
      report.deep = await deepChecks(written, reader.manifest);
  } finally {
    await ahead.early?.discard();
    reader?.close();
    if (deepDir) await removeScratch(deepDir);
  }
  if (!opts.deep) {
    const v1Git =
      reader?.manifest.layout === 1 &&
      reader.manifest.manifest.artifacts.some((a) => a.kind === 'git_bundle');
    report.not_checked.push({
      check: 'deep',
      reason: v1Git
        ? "SQLite PRAGMA integrity_check and git fsck of the v1 bundle's raw .git files run with --deep (restore runs both)"
        : 'SQLite PRAGMA integrity_check runs with --deep (restore runs it)',
    });
  } else if (!report.deep) {
    report.not_checked.push({ check: 'deep', reason: 'skipped because the bundle is damaged' });
  } else {
    for (const [db, result] of Object.entries(report.deep.sqlite_integrity)) {
      if (result !== 'ok')
        report.problems.push({
          code: 'BUNDLE_DAMAGED',
          message: `integrity_check failed: ${result}`,
          path: `sqlite/${db}.sqlite`,
        });
    }
    if (report.deep.git !== undefined && report.deep.git !== 'ok') {
      report.problems.push({
        code: 'BUNDLE_DAMAGED',
        message: `git history check failed: ${report.deep.git}`,
      });
    }
  }
  const trustOnly =
    report.problems.length > 0 &&
    report.problems.every((p) => p.code === 'SIGNATURE_MISSING' || p.code === 'SIGNATURE_UNTRUSTED');
  report.status =
    report.problems.length > 0
      ? trustOnly
        ? 'untrusted'
        : 'damaged'
      : report.sibling !== 'ok'
        ? 'incomplete'
        : 'verified';
  return {
    report,
    ...(reader ? { manifest: reader.manifest } : {}),
    written,
    ...(refs.indexed ? { gitRefs: refs.indexed } : {}),
    ...(refs.header ? { historyRefs: refs.header } : {}),
  };
}

/** The git bundle's refs once it checked out: its header's, and the same when its pack was indexed. */
interface CheckedRefs {
  header?: ReadonlyMap<string, string>;
  indexed?: ReadonlyMap<string, string>;
}

function asIo(err: unknown, path: string): Error {
  return err instanceof SnapshotError ? err : new IoError(`reading ${path}`, err);
}

function settleSibling(
  report: VerifyReport,
  sibling: Awaited<ReturnType<typeof readSibling>>,
  fileSha: string,
): void {
  if (sibling.status === 'missing') {
    report.sibling = 'missing';
    report.not_checked.push({ check: 'sibling', reason: 'no .sha256 sibling next to the bundle' });
  } else if (sibling.status === 'unreadable') {
    report.sibling = 'unreadable';
    report.problems.push({
      code: 'CHECKSUM_MISMATCH',
      message: `sibling .sha256 unreadable: ${sibling.reason}`,
    });
  } else if (sibling.sha256 === fileSha) {
    report.sibling = 'ok';
    report.bundle_sha256_ok = true;
  } else {
    report.sibling = 'mismatch';
    report.problems.push({
      code: 'CHECKSUM_MISMATCH',
      message: 'sibling .sha256 does not match the bundle file',
    });
  }
}

/** The signature of the manifest against the trusted keys: a report field, and problems when it fails. */
function checkManifestSignature(
  reader: BundleReader,
  report: VerifyReport,
  trust: TrustPolicy | undefined,
): void {
  const check = checkSignature(reader.manifest, trust?.keys ?? []);
  report.signature = { status: check.status, ...(check.key_id ? { key_id: check.key_id } : {}) };
  const refusal = signatureRefusal(check, trust ?? { keys: [], required: false });
  if (refusal) report.problems.push({ code: refusal.code, message: refusal.message });
  else {
    const note = signatureTrustNotChecked(check);
    if (note) report.not_checked.push(note);
  }
}

async function checkEntries(
  reader: BundleReader,
  report: VerifyReport,
  sink: EntrySink | undefined,
  written: Map<string, string>,
  onStreamFailure: () => void,
  /** The history checked ahead of the stream, until its entry takes it. */
  ahead: { early?: EarlyGitCheck },
): Promise<CheckedRefs> {
  const { manifest: m, raw, layout } = reader.manifest;
  // where a restore indexes the history (and keeps it): a repository only when the snapshot had one
  const gitInto = (m.git.repository ?? 'absent') !== 'absent' ? sink?.gitRepo : undefined;
  report.schema_ok = true;
  report.schema_versions = m.schema_versions;
  report.manifest_version = m.manifest_version;
  report.bundle_format = m.bundle_format;
  report.snapshot_id = m.snapshot_id;
  report.agent_id = m.agent_id;
  report.tenant = m.tenant;
  report.created_at_ms = m.created_at_ms;
  report.artifacts_total = m.artifacts.length;

  // The manifest's own checks (its two seals, the rules of rules.ts), whose problems come first in the
  // report. Nothing a verify without a sink does while it reads the entries depends on them, so it makes
  // them once the entries are read (while git may still check the history), and puts their problems in
  // the same place: the main thread takes the first decompressed entries ~20 ms sooner, and the
  // decompression thread waits less for it (docs/operations.md, "stop 67"). A restore's sink acts on
  // what it has read when nothing was found so far, so there they come first.
  const checkManifest = (into: VerifyProblem[]): boolean => {
    const digestOk = digestSeal(m.artifacts) === m.bundle_sha256;
    if (!digestOk)
      into.push({
        code: 'CHECKSUM_MISMATCH',
        message: 'manifest bundle_sha256 does not match its artifact digests',
      });
    let sealOk = true;
    if (layout === 2) {
      if (m.manifest_seal === undefined) {
        sealOk = false;
        into.push({
          code: 'CHECKSUM_MISMATCH',
          message: 'manifest_seal missing from a v2 manifest',
        });
      } else if (manifestSeal(raw) !== m.manifest_seal) {
        sealOk = false;
        into.push({
          code: 'CHECKSUM_MISMATCH',
          message: 'manifest_seal does not match the manifest (tampered?)',
        });
      }
    } else {
      report.not_checked.push({
        check: 'manifest_seal',
        reason: 'v1 bundles have no whole-manifest seal; only the digest list is sealed',
      });
    }
    report.manifest_ok = digestOk && sealOk;

    let layoutOk = true;
    for (const p of manifestProblems(reader.manifest)) {
      if (p.layout) layoutOk = false;
      else report.manifest_ok = false;
      into.push({
        code: p.code,
        message: p.message.startsWith('manifest') ? p.message : `manifest: ${p.message}`,
        ...(p.path !== undefined ? { path: p.path } : {}),
      });
    }
    return layoutOk;
  };
  const manifestAt = report.problems.length;
  let layoutOk = sink ? checkManifest(report.problems) : true;

  let artifactsOk = true;
  const verified = new Set<string>();
  const madeDirs = new Set<string>();
  // (`finishing`: git's verdict, asked for as soon as the git bundle's entry checked out)
  let gitCheck: { check: GitStreamCheck; path: string; finishing?: Promise<string | undefined> } | undefined;
  let gitRefs: ReadonlyMap<string, string> | undefined;
  let indexed = false;
  // A content error of the stream itself (zstd, tar, the size bound) ends the reading: it is reported
  // below with what it left unchecked.
  let streamError: SnapshotError | undefined;
  let ended = true;
  try {
    try {
      for await (const e of reader.entries()) {
        if (e.problem) {
          if (e.problem.code === 'UNSAFE_ENTRY') layoutOk = false;
          else artifactsOk = false;
          report.problems.push({ code: e.problem.code, message: e.problem.message, path: e.path });
          continue;
        }
        const a = e.artifact!;
        const target = sink?.target(a, layout);
        const hash = createHash('sha256');
        // What restore reads besides the bytes: state values are parsed, the git bundle is rebuilt.
        const isState = a.kind.startsWith('state_');
        // the history: the check made ahead of the stream when it checked these very bytes, else one
        // fed from the stream (a repository is made in sink.gitRepo only when the snapshot had one)
        let git: GitStreamCheck | undefined;
        let fed = false;
        if (layout === 2 && a.kind === 'git_bundle') {
          const early = ahead.early;
          ahead.early = undefined;
          // (only a scratch check starts early: a repository to keep is never taken from one)
          if (gitInto !== undefined) await early?.discard();
          const taken = gitInto === undefined ? await early?.take(a.sha256, e.size) : undefined;
          taken?.expectHead(m.git);
          git = taken ?? new GitStreamCheck(m.git, gitInto, e.size);
          fed = taken === undefined;
          gitCheck = { check: git, path: a.path_in_bundle };
        }
        let body: AsyncIterable<Buffer> = e.body();
        if (git && fed) body = tee(body, (chunk) => git.write(chunk));
        if (isState && e.size > MAX_MANIFEST_BYTES) {
          artifactsOk = false;
          report.problems.push({
            code: 'BUNDLE_DAMAGED',
            message: `state value of ${e.size} bytes exceeds ${MAX_MANIFEST_BYTES}`,
            path: a.path_in_bundle,
          });
          continue;
        }
        let small: Buffer | undefined;
        if (target) {
          try {
            if (e.size <= SMALL_ENTRY) {
              // Small entries (thousands of memory files): one synchronous write each, ~20× cheaper.
              small = await collect(body, hash, e.size);
              faultPoint('stage.write');
              writeSmall(target, small, madeDirs);
            } else {
              await writeLarge(target, body, hash, madeDirs, sink?.sync === true);
            }
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code !== 'ENOTDIR' && code !== 'EEXIST' && code !== 'ELOOP' && code !== 'EISDIR') {
              throw err instanceof SnapshotError ? err : new IoError(`writing ${shownPath(target)}`, err);
            }
            // A path that collides with another entry ("a" and "a/b"): no real tree looks like that.
            layoutOk = false;
            report.problems.push({
              code: 'UNSAFE_ENTRY',
              message: `entry collides with another entry (${code})`,
              path: a.path_in_bundle,
            });
            continue;
          }
          written.set(a.path_in_bundle, target);
        } else if (isState) {
          small = await collect(body, hash, e.size);
        } else {
          for await (const chunk of body) hash.update(chunk);
        }
        // the git bundle's last byte is read: index-pack finishes beside the entries after it
        git?.end();
        report.bytes_checked += e.size;
        if (hash.digest('hex') !== a.sha256) {
          artifactsOk = false;
          report.problems.push({
            code: 'CHECKSUM_MISMATCH',
            message: 'artifact SHA-256 does not match the manifest',
            path: a.path_in_bundle,
          });
          continue;
        }
        const stateProblem = isState ? stateValueProblem(small!) : undefined;
        if (stateProblem) {
          artifactsOk = false;
          report.problems.push({ code: 'BUNDLE_DAMAGED', message: stateProblem, path: a.path_in_bundle });
          continue;
        }
        verified.add(a.path_in_bundle);
        report.artifacts_checked++;
        if (a.kind.startsWith('sqlite_') && report.problems.length === 0 && sink?.onDatabasesStreamed) {
          const dbs = m.artifacts.filter((x) => x.kind.startsWith('sqlite_'));
          if (dbs.every((x) => verified.has(x.path_in_bundle))) sink.onDatabasesStreamed(written);
        }
        if (git && gitCheck?.check === git) {
          // git's verdict comes beside the entries after it; a restore may start on the history then
          const finishing = git.finish();
          finishing.catch(() => undefined); // awaited after the stream
          gitCheck.finishing = finishing;
          const onHistory = sink?.onHistory;
          if (onHistory && git.keeps)
            finishing.then(
              (problem) => {
                if (problem === undefined && git.refs && report.problems.length === 0)
                  onHistory(git.refs, reader.manifest);
              },
              () => undefined,
            );
        }
      }
    } catch (err) {
      if (!(err instanceof SnapshotError) || err.exitCode !== 2) throw err;
      streamError = err;
    }
    // (here, while git may still check the history)
    if (!sink) {
      const found: VerifyProblem[] = [];
      if (!checkManifest(found)) layoutOk = false;
      report.problems.splice(manifestAt, 0, ...found);
    }
    // Read to the end-of-archive marker, every entry was (a failure after it is trailing bytes: a
    // layout problem, or the size bound); before it, the entries after the failure were never read,
    // so the layout and the size bound were not checked to the end, nor any artifact not reached yet.
    ended = streamError === undefined || reader.archiveEnded;
    const overBound = reader.overSizeBound;
    if (streamError) {
      onStreamFailure();
      const trailing = ended && !overBound;
      if (trailing) layoutOk = false;
      const bare = streamError.message.replace(/^bundle damaged: /, '');
      report.problems.push({
        code: streamError.code,
        message:
          !trailing || bare.includes('after the tar end-of-archive marker')
            ? streamError.message
            : bare.startsWith('truncated')
              ? `bundle damaged: the stream ends early after the tar end-of-archive marker: ${bare}`
              : bare.includes('Unknown frame descriptor')
                ? // the archive's zstd frame ended, and what follows it in the file is not zstd (stop 64)
                  `bundle damaged: trailing bytes after the tar end-of-archive marker, after the file's last zstd frame: ${bare}`
                : `bundle damaged: trailing bytes after the tar end-of-archive marker: ${bare}`,
      });
    }
    report.size_ok = ended && !overBound;
    if (report.problems.length === 0 && m.artifacts.every((a) => verified.has(a.path_in_bundle)))
      sink?.onStreamed?.(written);
    if (gitCheck && !ended && !gitCheck.finishing) {
      await gitCheck.check.abort(); // its entry was not read to its end
      gitCheck = undefined;
    }
    if (gitCheck) {
      const problem = await (gitCheck.finishing ?? gitCheck.check.finish());
      if (problem === undefined) {
        gitRefs = gitCheck.check.refs;
        indexed = gitCheck.check.keeps;
      }
      gitCheck = undefined;
      if (problem !== undefined && verified.has(GIT_BUNDLE_PATH)) {
        artifactsOk = false;
        report.problems.push({
          code: 'BUNDLE_DAMAGED',
          message: `git bundle: ${problem}`,
          path: GIT_BUNDLE_PATH,
        });
        verified.delete(GIT_BUNDLE_PATH);
        report.artifacts_checked--;
      }
    }
  } catch (err) {
    await gitCheck?.finishing?.catch(() => undefined);
    await gitCheck?.check.abort();
    throw err;
  }
  let unread = 0;
  for (const a of m.artifacts) {
    if (!verified.has(a.path_in_bundle) && !report.problems.some((p) => p.path === a.path_in_bundle)) {
      artifactsOk = false;
      if (!ended) {
        unread++;
        continue;
      }
      report.problems.push({
        code: 'MISSING_ARTIFACT',
        message: `bundle missing artifact: ${a.path_in_bundle}`,
        path: a.path_in_bundle,
      });
    }
  }
  if (!ended) {
    const why = `the stream could not be read past a failure (${report.artifacts_checked} of ${m.artifacts.length} artifacts checked before it)`;
    layoutOk = false;
    report.not_checked.push({ check: 'layout', reason: why });
    if (!reader.overSizeBound) report.not_checked.push({ check: 'size', reason: why });
    if (unread > 0) report.not_checked.push({ check: 'artifacts', reason: why });
  }
  report.layout_ok = layoutOk;
  report.per_artifact_ok = artifactsOk;
  return !streamError && verified.has(GIT_BUNDLE_PATH) && gitRefs
    ? { header: gitRefs, ...(indexed ? { indexed: gitRefs } : {}) }
    : {};
}

/** Passes `body` through, handing each chunk to `side` first (which may wait). */
async function* tee(
  body: AsyncIterable<Buffer>,
  side: (chunk: Buffer) => Promise<void>,
): AsyncGenerator<Buffer, void, undefined> {
  for await (const chunk of body) {
    await side(chunk);
    yield chunk;
  }
}

/**
 * The whole body of an entry of `size` bytes, hashed. The reader reuses its buffers once it reads on:
 * a body that comes as one chunk (nearly every small entry) is returned as that view, valid until the
 * next entry is read, and one in several chunks is copied as it comes. Copying every memory file into
 * new memory was slow (docs/decisions.md, "Performance and the bench").
 */
async function collect(
  body: AsyncIterable<Buffer>,
  hash: ReturnType<typeof createHash>,
  size: number,
): Promise<Buffer> {
  let whole: Buffer | undefined;
  const parts: Buffer[] = [];
  for await (const chunk of body) {
    hash.update(chunk);
    if (parts.length === 0 && chunk.length === size) whole = chunk;
    else parts.push(Buffer.from(chunk));
  }
  return whole ?? (parts.length === 1 ? parts[0]! : Buffer.concat(parts));
}

/** Why a state value cannot be restored (restore parses it with the same rules), or undefined. */
function stateValueProblem(bytes: Buffer): string | undefined {
  try {
    parseStrictJson(bytes);
    return undefined;
  } catch (err) {
    return `state value is not valid JSON: ${(err as Error).message}`;
  }
}

/** The sink of a plain `verify --deep`: databases and v1 raw git files into a temporary directory. */
function deepSink(dir: string): EntrySink {
  return {
    target(a, layout) {
      const p = a.path_in_bundle;
      if (p.startsWith('sqlite/')) return join(dir, p);
      // v1: only object and ref data is written, and checked in quarantine (git/quarantine.ts)
      if (layout === 1 && p.startsWith(GIT_V1_PREFIX) && isV1GitData(p.slice(GIT_V1_PREFIX.length)))
        return join(dir, 'v1-git', p.slice(GIT_V1_PREFIX.length));
      return undefined;
    },
  };
}

const SMALL_ENTRY = 1024 * 1024;
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

function ensureDir(dir: string, made: Set<string>): void {
  if (made.has(dir)) return;
  mkdirSync(dir, { recursive: true });
  made.add(dir);
}

/** Writes a small entry to a new file (exclusive create: an existing name or a symlink fails). */
function writeSmall(path: string, data: Buffer, made: Set<string>): void {
  ensureDir(dirname(path), made);
  const fd = openSync(path, CREATE_FLAGS, 0o600);
  try {
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off);
  } finally {
    closeSync(fd);
  }
}

/** Streams a large entry into a new file, hashing as it goes. */
async function writeLarge(
  path: string,
  body: AsyncIterable<Buffer>,
  hash: ReturnType<typeof createHash>,
  made: Set<string>,
  sync: boolean,
): Promise<void> {
  ensureDir(dirname(path), made);
  const out = await open(path, CREATE_FLAGS, 0o600);
  try {
    for await (const chunk of body) {
      hash.update(chunk);
      faultPoint('stage.write');
      let off = 0;
      while (off < chunk.length) off += (await out.write(chunk, off)).bytesWritten;
    }
    if (sync) await out.sync();
  } finally {
    await out.close();
  }
}

/**
 * integrity_check of every written database; the git history: v2's git bundle was checked while it
 * streamed (index-pack), v1's raw `.git` files get `git fsck`.
 */
async function deepChecks(written: Map<string, string>, parsed: ParsedManifest): Promise<DeepReport> {
  const deep: DeepReport = { sqlite_integrity: {} };
  deep.sqlite_integrity = await checkIntegrity(written);
  if (parsed.layout === 2) {
    if (parsed.manifest.artifacts.some((a) => a.path_in_bundle === GIT_BUNDLE_PATH)) deep.git = 'ok';
  } else {
    const head = [...written].find(([p]) => p === `${GIT_V1_PREFIX}HEAD`)?.[1];
    if (head) deep.git = await fsckV1(dirname(head));
  }
  return deep;
}
