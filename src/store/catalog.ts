// Owns the catalogue of the store: which agents it holds (a snapshot directory or a restore journal),
// and in one agent's snapshot directory which files are bundles (only `<uuid>.tar.zst` and
// `<uuid>.tar.zst.age`; partial files, staging dirs, orphan siblings and sidecars never count), their
// metadata (from the sidecar cache, else from the manifest at the head of the bundle), whether they
// are pinned, and finding a bundle by id or unique id prefix.

import { readdirSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CURRENT_SCHEMA, ZERO_OID } from '../format/constants.js';
import type { Manifest } from '../format/manifest.js';
import { InvalidInputError, IoError, NotFoundError, SnapshotError } from '../model/errors.js';
import {
  idHasPrefix,
  parseSnapshotId,
  parseSnapshotPrefix,
  validateAgentId,
  validateTenant,
} from '../model/ids.js';
import { wrongMetaField } from '../model/meta-check.js';
import type { SnapshotMeta } from '../model/types.js';
import { readRegularFileSync } from '../util/regular-file.js';
import { writeFileAtomic } from './atomic.js';
import {
  bundleFileName,
  IMPORT_RECORD_EXT,
  JOURNAL_EXT,
  parseBundleFileName,
  type StoreLayout,
  sidecarPathOf,
} from './paths.js';
import { PIN_EXT, pinNoteOf } from './pins.js';
import { readSibling } from './sibling.js';

export interface BundleFile {
  id: string;
  encrypted: boolean;
  name: string;
  path: string;
}

/** The names in `dir` (empty when the directory does not exist). */
export async function dirNames(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new IoError(`reading ${dir}`, err);
  }
}

/** Lists a directory's names ([] when it cannot be read); see `cachedLister`. */
export type DirLister = (dir: string) => Promise<readonly string[]>;

export const readNames: DirLister = (dir) => readdir(dir).catch(() => [] as string[]);

/**
 * A lister that reads each directory once. For a sweep over many agents whose memdirs share one parent
 * directory: names that appear later belong to operations younger than any grace period, and names
 * that disappear are tolerated by every caller (rm with force, stat that may fail).
 */
export function cachedLister(): DirLister {
  const seen = new Map<string, Promise<readonly string[]>>();
  return (dir) => {
    let names = seen.get(dir);
    if (!names) {
      names = readNames(dir);
      seen.set(dir, names);
    }
    return names;
  };
}

const isValid = (check: () => unknown): boolean => {
  try {
    check();
    return true;
  } catch {
    return false;
  }
};

/**
 * The (tenant, agent) pairs of the store, sorted: every agent with a snapshot directory (where
 * snapshots, exports and restores leave their staging) or a restore journal. Names that are not valid
 * ids are not agents. `tenant` restricts the scan to one tenant.
 */
export async function storeAgents(layout: StoreLayout, tenant?: string): Promise<Array<[string, string]>> {
  const tenants = tenant ? [tenant] : await readNames(join(layout.root, 'tenants'));
  const out: Array<[string, string]> = [];
  for (const t of [...tenants].sort()) {
    if (!isValid(() => validateTenant(t))) continue;
    const agents = new Set(await readNames(join(layout.tenantDir(t), 'snapshots')));
    for (const n of await readNames(join(layout.tenantDir(t), 'journals')))
      for (const ext of [JOURNAL_EXT, IMPORT_RECORD_EXT])
        if (n.endsWith(ext) && n.length > ext.length) agents.add(n.slice(0, -ext.length));
    for (const a of [...agents].sort()) if (isValid(() => validateAgentId(a))) out.push([t, a]);
  }
  return out;
}

/** The bundle files in `dir` (empty when the directory does not exist). */
export async function bundleFiles(dir: string): Promise<BundleFile[]> {
  return bundleFilesIn(dir, await dirNames(dir));
}

/** The bundle files among `names`, a listing of `dir`. */
export function bundleFilesIn(dir: string, names: readonly string[]): BundleFile[] {
  const out: BundleFile[] = [];
  for (const name of names) {
    const p = parseBundleFileName(name);
    if (p) out.push({ ...p, name, path: join(dir, name) });
  }
  return out;
}

/** SnapshotMeta from a manifest (v1 or v2), for the bundle at `path` of `size` bytes. */
export function metaFromManifest(m: Manifest, path: string, size: number, fileSha256?: string): SnapshotMeta {
  const hasCommit =
    m.git.head_oid !== ZERO_OID && m.git.repository !== 'absent' && m.git.repository !== 'empty';
  return {
    id: m.snapshot_id,
    agent_id: m.agent_id,
    tenant: m.tenant,
    ...(m.label !== undefined ? { label: m.label } : {}),
    created_at_ms: m.created_at_ms,
    bundle_path: path,
    bundle_size_bytes: size,
    bundle_sha256: m.bundle_sha256,
    ...(hasCommit ? { git_oid: m.git.head_oid } : {}),
    schema_versions: m.schema_versions,
    encrypted: m.encryption !== undefined,
    redactions_applied: m.redactions !== undefined,
    ...(fileSha256 ? { file_sha256: fileSha256 } : {}),
    created_by: m.created_by,
    bundle_format: m.bundle_format,
    ...(m.signature ? { signed_by: m.signature.key_id } : {}),
  };
}

/** `memdir_skipped` of a new snapshot's metadata, when its capture left memdir entries out. */
export function skippedOf(
  memdir: { skipped: Array<{ path: string; reason: string }> } | undefined,
): Pick<SnapshotMeta, 'memdir_skipped'> {
  return memdir && memdir.skipped.length > 0 ? { memdir_skipped: memdir.skipped } : {};
}

const SIDECAR_VERSION = 1;

/** Writes the list cache next to a bundle (atomically; bundle_path is not stored). */
export async function writeSidecar(meta: SnapshotMeta): Promise<void> {
  // Neither the path nor the pin is cached: the pin is its own file, read with the listing; nor
  // added_bytes, which list takes from the file's size.
  const { bundle_path: _path, pinned: _pinned, pin_note: _note, added_bytes: _added, ...rest } = meta;
  await writeFileAtomic(
    sidecarPathOf(meta.bundle_path),
    `${JSON.stringify({ sidecar_version: SIDECAR_VERSION, meta: rest })}\n`,
    0o644,
  );
}

/**
 * The largest sidecar read (one is a few hundred bytes: the listing fields, a label of at most 200
 * characters). A larger one is not read at all: it is no sidecar this program wrote.
 */
const SIDECAR_MAX_BYTES = 64 * 1024;

/**
 * What a sidecar says, read as the untrusted cache it is: `absent` (no file: nothing to say), `ok`
 * with the metadata when every listing field is there with its type and it describes this very file
 * (same id, size and encryption), else `unusable` with the reason (list warns and reads the bundle's
 * head instead). Only the fields `metaFromManifest` derives are taken (others are ignored), so a
 * listing never depends on whether the cache was there. Synchronous on purpose: 20,000 promise-based
 * calls for 10,000 bundles cost ~7× more. Read only when it is a regular file of at most
 * SIDECAR_MAX_BYTES (util/regular-file.ts: a FIFO is never waited on).
 */
function readSidecarSync(
  file: BundleFile,
  size: number,
): { status: 'absent' } | { status: 'ok'; meta: SnapshotMeta } | { status: 'unusable'; reason: string } {
  const unusable = (reason: string) => ({ status: 'unusable' as const, reason });
  const read = readRegularFileSync(sidecarPathOf(file.path), SIDECAR_MAX_BYTES);
  if (read.status !== 'ok') return read;
  const text = read.bytes.toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return unusable('not JSON');
  }
  const o = parsed as { sidecar_version?: unknown; meta?: unknown } | null;
  if (!o || typeof o !== 'object' || o.sidecar_version !== SIDECAR_VERSION)
    return unusable(`not a version ${SIDECAR_VERSION} sidecar`);
  const m = o.meta as Record<string, unknown> | null | undefined;
  if (!m || typeof m !== 'object' || Array.isArray(m)) return unusable('no meta object');
  // what it says must be this file: a sidecar left from another file (or copied) is stale
  if (m.id !== file.id) return unusable(`it describes snapshot ${JSON.stringify(m.id)}`);
  if (m.bundle_size_bytes !== size) return unusable("its size is not the bundle's");
  if (m.encrypted !== file.encrypted) return unusable("its encryption is not the bundle's");
  const wrong = wrongMetaField(m, /^nexo-memory-snapshot-v[1-3]$/);
  if (wrong) return unusable(`its ${wrong} is missing or of the wrong type`);
  const schema = m.schema_versions as Record<string, number>;
  // rebuilt field by field in the wire order, with the path where the file is now
  const str = (k: string) => (m[k] !== undefined ? { [k]: m[k] as string } : {});
  return {
    status: 'ok',
    meta: {
      id: file.id,
      agent_id: m.agent_id as string,
      tenant: m.tenant as string,
      ...str('label'),
      created_at_ms: m.created_at_ms as number,
      bundle_path: file.path,
      bundle_size_bytes: size,
      bundle_sha256: m.bundle_sha256 as string,
      ...str('git_oid'),
      schema_versions: {
        long_term: schema.long_term!,
        vector: schema.vector!,
        concepts: schema.concepts!,
        compactions: schema.compactions!,
        manifest: schema.manifest!,
      },
      encrypted: file.encrypted,
      redactions_applied: m.redactions_applied as boolean,
      ...str('file_sha256'),
      ...str('created_by'),
      ...str('bundle_format'),
      ...str('signed_by'),
    },
  };
}

/**
 * Metadata of one bundle: the sidecar when it matches the file, else the manifest at its head; `warn`
 * hears why a sidecar that is there was not used.
 */
export async function bundleMeta(file: BundleFile, warn?: (message: string) => void): Promise<SnapshotMeta> {
  const size = statSync(file.path).size;
  const cached = readSidecarSync(file, size);
  if (cached.status === 'ok') return cached.meta;
  if (cached.status === 'unusable')
    warn?.(
      `ignoring the sidecar ${file.name}.meta.json (${cached.reason}): listed from the bundle${file.encrypted ? "'s file (encrypted)" : "'s head"}`,
    );
  const sibling = await readSibling(file.path);
  if (file.encrypted) {
    // The manifest is inside the ciphertext: without the sidecar only the outside is known.
    return {
      id: file.id,
      agent_id: '',
      tenant: '',
      created_at_ms: Math.floor(statSync(file.path).mtimeMs),
      bundle_path: file.path,
      bundle_size_bytes: size,
      bundle_sha256: '',
      schema_versions: { ...CURRENT_SCHEMA },
      encrypted: true,
      redactions_applied: false,
      ...(sibling.status === 'ok' ? { file_sha256: sibling.sha256 } : {}),
    };
  }
  // The bundle reader (and the manifest schema) only for a bundle without a sidecar.
  const { readManifestOnly } = await import('../format/reader.js');
  const { parsed } = await readManifestOnly(file.path);
  return metaFromManifest(
    parsed.manifest,
    file.path,
    size,
    sibling.status === 'ok' ? sibling.sha256 : undefined,
  );
}

export interface ListResult {
  metas: SnapshotMeta[];
  warnings: string[];
  /**
   * The bundles left out of `metas` (each also among `warnings`): by id, why, and for one that could
   * not be read, the error's code and exit status (retention reports them as `listing_problems`).
   */
  skipped: Array<{ id: string; problem: string; code?: string; exit_code?: number }>;
}

/** Lists the bundles of one agent directory, newest first; unreadable or misplaced bundles are warned about. */
export async function listDir(dir: string, agentId: string, tenant: string): Promise<ListResult> {
  const names = await dirNames(dir);
  const files = bundleFilesIn(dir, names);
  // Pins are marker files beside the bundles: the listing already says which exist.
  const pins = new Set(names.filter((n) => n.endsWith(PIN_EXT)));
  const pinned = (f: BundleFile) => pins.has(`${f.name}${PIN_EXT}`);
  // what list adds: the pin, and what the snapshot cost the store (a bundle is self-contained: its file)
  const listed = (m: SnapshotMeta, f: BundleFile) => {
    const note = pinned(f) ? pinNoteOf(f.path) : undefined;
    return {
      pinned: pinned(f),
      ...(note !== undefined ? { pin_note: note } : {}),
      added_bytes: m.bundle_size_bytes,
    };
  };
  const metas: SnapshotMeta[] = [];
  const warnings: string[] = [];
  const skipped: ListResult['skipped'] = [];
  const skip = (f: BundleFile, problem: string, err?: unknown) => {
    warnings.push(
      err !== undefined
        ? `skipping unreadable bundle ${f.name}: ${problem}`
        : `skipping ${f.name}: ${problem}`,
    );
    const e = err instanceof SnapshotError ? err : undefined;
    skipped.push({
      id: f.id,
      problem,
      ...(err !== undefined ? { code: e?.code ?? 'IO', exit_code: e?.exitCode ?? 1 } : {}),
    });
  };
  const BATCH = 64;
  for (let i = 0; i < files.length; i += BATCH) {
    const batch = files.slice(i, i + BATCH);
    const results = await Promise.allSettled(batch.map((f) => bundleMeta(f, (w) => warnings.push(w))));
    results.forEach((r, j) => {
      const f = batch[j]!;
      if (r.status === 'rejected') {
        if ((r.reason as NodeJS.ErrnoException).code === 'ENOENT') return; // deleted meanwhile
        skip(f, (r.reason as Error).message, r.reason);
      } else if (r.value.id !== f.id) {
        skip(f, `its manifest says snapshot ${r.value.id}`);
      } else if (r.value.encrypted && r.value.agent_id === '') {
        // encrypted, no sidecar: its directory says whose
        metas.push({ ...r.value, agent_id: agentId, tenant, ...listed(r.value, f) });
      } else if (r.value.agent_id !== agentId || r.value.tenant !== tenant) {
        // not naming whose (stop 45): this agent's caller may be allowed no other
        skip(f, 'its manifest names another agent or tenant (run verify)');
      } else {
        metas.push({ ...r.value, ...listed(r.value, f) });
      }
    });
  }
  metas.sort((a, b) => b.created_at_ms - a.created_at_ms || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  return { metas, warnings, skipped };
}

/** Finds a bundle by full id (any UUID spelling) or by a unique prefix (model/ids.ts parseSnapshotPrefix). */
export async function locate(dir: string, idOrPrefix: string): Promise<BundleFile> {
  const files = await bundleFiles(dir);
  const full = parseSnapshotId(idOrPrefix);
  if (full) {
    const hit =
      files.find((f) => f.name === bundleFileName(full)) ??
      files.find((f) => f.name === bundleFileName(full, true));
    if (!hit) throw new NotFoundError(full);
    return hit;
  }
  const digits = parseSnapshotPrefix(idOrPrefix);
  const prefix = idOrPrefix.trim().toLowerCase();
  if (digits === undefined) {
    throw new InvalidInputError(
      `invalid snapshot id ${JSON.stringify(idOrPrefix)}: a UUID or a prefix of at least 4 hex digits (hyphens are ignored)`,
    );
  }
  const hits = files.filter((f) => idHasPrefix(f.id, digits));
  if (hits.length === 0) throw new NotFoundError(prefix);
  if (hits.length > 1) {
    throw new InvalidInputError(
      `snapshot id prefix ${prefix} is ambiguous: ${hits.map((h) => h.id).join(', ')}; give more of its digits`,
    );
  }
  return hits[0]!;
}

/**
 * Whether any agent of the store has a bundle file (a 0.2 state root): `auto` keeps such a root on
 * bundles until `migrate`. Stops at the first bundle found.
 */
export function hasBundles(layout: StoreLayout): boolean {
  const tenants = join(layout.root, 'tenants');
  for (const t of namesIn(tenants)) {
    const snaps = join(tenants, t, 'snapshots');
    for (const a of namesIn(snaps))
      if (namesIn(join(snaps, a)).some((n) => parseBundleFileName(n))) return true;
  }
  return false;
}

function namesIn(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
