// Owns `nexo-memory migrate`: every bundle of a state root moves into the repository (created with the
// configured recipients when the first bundle moves, so `auto` picks it from then on), agent by agent under the
// agent lock, oldest first. Per bundle: verified fully and stored (ingest.ts) with its snapshot id,
// label, creator, time and pin, signed with the host's key (the bundle's signature, which signs another
// manifest, is recorded in `origin` as checked); the stored snapshot is checked against the bundle
// (ingest.ts checkStored), and only then are the bundle, its sibling, sidecar and pin removed. Every
// step is idempotent, so a run killed at any instant is finished by the next one: a snapshot stored
// from the same bundle is checked and its bundle removed (one not signed with the configured key, as
// `import --store-only` may store it, is forgotten and the bundle stored again, signed); leftovers are
// removed under the agent lock. A
// bundle that cannot move (damaged, untrusted, encrypted without the identity or into a plaintext
// repository, busy) stays where it is, and the report says why.

import { existsSync } from 'node:fs';
import { mkdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { type Identity, loadIdentities } from '../crypto/age.js';
import type { SigningKey } from '../crypto/sign.js';
import { readManifestOnly } from '../format/reader.js';
import type { TrustPolicy } from '../format/signature.js';
import {
  AlreadyExistsError,
  asSnapshotError,
  BundleDamagedError,
  EncryptionError,
  InvalidInputError,
  NotFoundError,
} from '../model/errors.js';
import { DEFAULT_TENANT, newSnapshotId } from '../model/ids.js';
import type { Repository } from '../repository/repository.js';
import { forgetSnapshot, loadSnapshot, pinOf, setPinned } from '../repository/snapshots.js';
import { removeQuietly } from '../store/atomic.js';
import { type BundleFile, bundleFiles, bundleMeta, storeAgents } from '../store/catalog.js';
import { STAGING_PREFIX, siblingPathOf, sidecarPathOf } from '../store/paths.js';
import { pin as pinBundle, pinNoteOf, pinPathOf } from '../store/pins.js';
import { fsyncDir } from '../util/new-file.js';
import { ensureListed } from './import.js';
import {
  checkStorableMeta,
  checkStored,
  encryptedIntoPlaintext,
  fromBundle,
  originOf,
  stageBundle,
  storedDifference,
  storeStaged,
} from './ingest.js';
import { type LocalSnapshotter, READERS } from './local.js';

/** The steps of one bundle's migration, as reported to `onBundle`. */
export type MigrateStep = 'stored' | 'checked' | 'removed';

export interface MigrateOptions {
  /** age identity file that opens encrypted bundles and the repository (default: the configured one). */
  decryptIdentity?: string;
  /** Told after each step of each bundle (progress; a test kills the process there). */
  onBundle?: (event: { id: string; agent_id: string; tenant: string; step: MigrateStep }) => void;
}

export interface MigratedBundle {
  id: string;
  agent_id: string;
  tenant: string;
  /** Where the bundle was. */
  bundle_path: string;
  /** `migrated` (in the repository, bundle removed), `skipped` (left as it is, by rule), `failed`. */
  outcome: 'migrated' | 'skipped' | 'failed';
  /** Stored by an earlier run that was interrupted; checked and its bundle removed by this one. */
  resumed?: boolean;
  /**
   * Already in the repository but not signed with the configured signing key (stored by
   * `import --store-only` unsigned, or under another key): that copy was forgotten and the bundle
   * stored again, signed, as a fresh migrate stores it.
   */
  stored_again?: boolean;
  pinned?: boolean;
  /** The bundle's signature as checked at migration (key id and status). */
  signature?: { key_id: string; status: string };
  /** Key id of the repository snapshot's signature (the host's key), when signed. */
  signed_by?: string;
  /** Bytes of new packs this bundle added to the repository. */
  added_bytes?: number;
  /** Why a bundle was skipped or failed: the typed error (code, message, exit_code). */
  error?: Record<string, unknown>;
}

export interface MigrateReport {
  repository: string;
  /** Whether this run created the repository. */
  created_repository: boolean;
  bundles: number;
  migrated: number;
  skipped: number;
  failed: number;
  added_bytes: number;
  results: MigratedBundle[];
  /**
   * What the operator should know of the run as a whole, once each (stop 47): signed bundles migrated
   * without a signing key became unsigned repository snapshots.
   */
  warnings?: string[];
}

/** The warning of a migrate that turned `n` signed bundles into unsigned repository snapshots. */
export function signatureLossWarning(n: number): string {
  return (
    `${n} signed bundle(s) became unsigned repository snapshots: no signing key is configured, so their ` +
    "signatures were not carried over (each one's key id and status are recorded in its manifest's origin). " +
    'To keep migrated snapshots signed, set signing.key_path (the host key that signs repository snapshots) ' +
    'before migrating'
  );
}

interface Context {
  s: LocalSnapshotter;
  /** The repository, opened (or created) on first use. */
  repo: () => Promise<Repository>;
  /** Whether the repository is (or, not there yet, will be created) encrypted. */
  encrypted: boolean;
  identities: readonly Identity[] | undefined;
  signingKey: SigningKey | undefined;
  /** The snapshotter's trust: what a bundle is checked against before it moves. */
  trust: TrustPolicy;
  opts: MigrateOptions;
}

export async function migrateBundles(s: LocalSnapshotter, opts: MigrateOptions = {}): Promise<MigrateReport> {
  const { trust, signingKey: keyOf } = await s.policies();
  const signingKey = keyOf(); // an unreadable key fails before anything moves
  if (trust.required && !signingKey)
    throw new InvalidInputError(
      'signatures are required (signing.require_signature) but no signing key is configured: migrated ' +
        'snapshots are signed with the host key, and unsigned ones could not be restored here',
    );
  const identityPath = opts.decryptIdentity ?? s.repository.identityFile;
  const identities = identityPath ? loadIdentities(identityPath) : undefined;
  // A repository that is not there yet is created when the first bundle moves into it: a run that
  // moves nothing (every bundle skipped or failed) leaves none behind. One made anyway would be used
  // by `auto` from then on, and, made without recipients, would refuse the encrypted snapshots that
  // the bundles took until then.
  const existed = await s.repository.exists(true); // a NATS repository's missing buckets: not there yet
  let opening: Promise<Repository> | undefined = existed
    ? s.repository.openForWriting(s.recipients, opts.decryptIdentity)
    : undefined;
  const encrypted = opening ? (await opening).encrypted : s.recipients.length > 0;
  const repo = () => {
    opening ??= s.repository.openForWriting(s.recipients, opts.decryptIdentity);
    return opening;
  };
  const ctx: Context = { s, repo, encrypted, identities, signingKey, trust, opts };
  const results: MigratedBundle[] = [];
  for (const [tenant, agent] of await storeAgents(s.layout)) {
    const dir = s.layout.snapshotsDir(tenant, agent);
    let lock: Awaited<ReturnType<LocalSnapshotter['lockAgent']>>;
    try {
      lock = await s.lockAgent(agent, tenant, 'migrate');
    } catch (err) {
      const error = asSnapshotError(err, `migrating agent ${agent}`).toJSON();
      for (const f of await bundleFiles(dir))
        results.push({ id: f.id, agent_id: agent, tenant, bundle_path: f.path, outcome: 'failed', error });
      continue;
    }
    try {
      await s.recoverInterrupted(agent, tenant);
      for (const file of await oldestFirst(await bundleFiles(dir)))
        results.push(await migrateOne(ctx, file, agent, tenant, dir));
    } finally {
      lock.release();
    }
  }
  const count = (o: MigratedBundle['outcome']) => results.filter((r) => r.outcome === o).length;
  // created only if its creation succeeded (stop 54: a state root without room said true for a
  // repository whose config could not be written)
  const created =
    !existed &&
    opening !== undefined &&
    (await opening.then(
      () => true,
      () => false,
    ));
  const unsigned = results.filter((r) => r.outcome === 'migrated' && r.signature && !r.signed_by).length;
  return {
    repository: s.repository.location,
    created_repository: created,
    bundles: results.length,
    migrated: count('migrated'),
    skipped: count('skipped'),
    failed: count('failed'),
    added_bytes: results.reduce((n, r) => n + (r.added_bytes ?? 0), 0),
    results,
    ...(unsigned > 0 ? { warnings: [signatureLossWarning(unsigned)] } : {}),
  };
}

/** Bundles by creation time (the sidecar's, else the head's; unreadable ones last), so chains grow in order. */
async function oldestFirst(files: BundleFile[]): Promise<BundleFile[]> {
  const at = new Map<string, number>();
  for (const f of files)
    at.set(
      f.id,
      await bundleMeta(f).then(
        (m) => m.created_at_ms,
        () => Number.MAX_SAFE_INTEGER,
      ),
    );
  return files.sort((a, b) => at.get(a.id)! - at.get(b.id)! || (a.id < b.id ? -1 : 1));
}

async function migrateOne(
  ctx: Context,
  file: BundleFile,
  agent: string,
  tenant: string,
  dir: string,
): Promise<MigratedBundle> {
  const { s } = ctx;
  const base = { id: file.id, agent_id: agent, tenant, bundle_path: file.path };
  const step = (st: MigrateStep) => ctx.opts.onBundle?.({ id: file.id, agent_id: agent, tenant, step: st });
  try {
    let pinned = existsSync(pinPathOf(file.path));
    let note = pinned ? pinNoteOf(file.path) : undefined;
    const plaintext = encryptedIntoPlaintext(file.encrypted, ctx.encrypted);
    if (plaintext) return skipped(plaintext);
    if (file.encrypted && !ctx.identities)
      return skipped(
        new EncryptionError(
          'an encrypted bundle needs the identity (--decrypt-identity) to be migrated; kept',
        ),
      );
    const m = (await readManifestOnly(file.path, file.encrypted ? ctx.identities : undefined)).parsed
      .manifest;
    if (m.snapshot_id !== file.id || m.agent_id !== agent || m.tenant !== tenant)
      throw new BundleDamagedError(
        `${file.name} holds snapshot ${m.snapshot_id} of agent ${m.agent_id} (tenant ${m.tenant}): not this directory's`,
      );
    // a label no snapshot may have (an original v1 bundle's free text, a forged one): the bundle stays
    try {
      checkStorableMeta(m, file.name);
    } catch (err) {
      return skipped(err as InvalidInputError);
    }
    const repo = await ctx.repo();
    const existing = await loadSnapshot(repo, file.id).catch((err: unknown) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
    let added: number | undefined;
    let resumed = false;
    let storedAgain = false;
    if (existing) {
      const e = existing.manifest;
      if (
        !fromBundle(e, m) ||
        storedDifference(e, m) !== undefined ||
        e.agent_id !== agent ||
        e.tenant !== tenant
      )
        throw new AlreadyExistsError(
          `repository snapshot ${file.id}`,
          `another snapshot than this bundle's; the bundle is kept: \`nexo-memory import --store-only ` +
            `--from ${file.path} --agent ${agent}${tenant === DEFAULT_TENANT ? '' : ` --tenant ${tenant}`}\` ` +
            'stores it under a new id, after which the bundle and its sibling can be removed',
        );
      if (ctx.signingKey && e.signature?.key_id !== ctx.signingKey.keyId) {
        // Stored unsigned (`import --store-only` without a key) or with another key: not as this
        // migrate stores it. Objects are never rewritten (docs/repository.md §1), so once the bundle
        // (still here) is verified again, that copy is forgotten and the bundle stored again, signed.
        storedAgain = true;
      } else {
        resumed = true;
        if (pinned) await setPinned(repo, file.id, true, note);
        await s.repository.locked(repo, false, 'migrate', (lock) => ensureListed(s, repo, e, lock));
      }
    }
    if (!existing || storedAgain) {
      await withStaging(dir, async (staging) => {
        const b = await stageBundle(file.path, staging, {
          ...(ctx.identities ? { identities: ctx.identities } : {}),
          trust: ctx.trust,
        });
        if (storedAgain) {
          // the copy's pin goes onto the bundle first: a kill between the forget and the store leaves
          // the bundle, pinned, for the next run
          const copy = await pinOf(repo, file.id);
          if (copy.pinned && (!pinned || (!note && copy.note))) {
            note ??= copy.note;
            pinned = true;
            await pinBundle(file.path, note);
          }
          await s.repository.locked(repo, false, 'forget', () => forgetSnapshot(repo, file.id));
        }
        const meta = await storeStaged(
          s.repository,
          repo,
          b,
          {
            id: m.snapshot_id,
            agentId: agent,
            tenant,
            ...(m.label !== undefined ? { label: m.label } : {}),
            createdAtMs: m.created_at_ms,
            createdBy: m.created_by,
            pinned,
            ...(note ? { pinNote: note } : {}),
          },
          originOf(b, 'migrate'),
          ctx.signingKey,
        );
        added = meta.added_bytes ?? undefined; // a number: storeStaged knows what it wrote
      });
    }
    step('stored');
    const stored = await withStaging(dir, async (work) => {
      try {
        return await s.repository.locked(repo, false, 'migrate', () => checkStored(repo, file.id, m, work));
      } catch (err) {
        // the bundle stays the one copy: the snapshot is not kept beside it (a re-run stores it again)
        await s.repository.locked(repo, false, 'forget', () => forgetSnapshot(repo, file.id)).catch(() => {});
        throw err;
      }
    });
    step('checked');
    await removeBundle(s, file, agent, tenant, dir);
    step('removed');
    const sig = stored.origin?.signature;
    return {
      ...base,
      outcome: 'migrated',
      ...(resumed ? { resumed: true } : {}),
      ...(storedAgain ? { stored_again: true } : {}),
      pinned,
      ...(sig ? { signature: sig } : {}),
      ...(stored.signature ? { signed_by: stored.signature.key_id } : {}),
      ...(added !== undefined ? { added_bytes: added } : {}),
    };
  } catch (err) {
    return { ...base, outcome: 'failed', error: asSnapshotError(err, `migrating ${file.path}`).toJSON() };
  }

  function skipped(error: EncryptionError | InvalidInputError): MigratedBundle {
    return { ...base, outcome: 'skipped', error: error.toJSON() };
  }
}

/** Runs `fn` with a new staging directory in the agent's snapshot directory (a leftover if killed). */
async function withStaging<T>(dir: string, fn: (staging: string) => Promise<T>): Promise<T> {
  const staging = join(dir, `${STAGING_PREFIX}${newSnapshotId()}`);
  await mkdir(staging, { mode: 0o700 });
  try {
    return await fn(staging);
  } finally {
    await rm(staging, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * Removes a migrated bundle as delete does (the bundle first: a sibling, sidecar or pin left by a kill
 * is a leftover the next run removes), with the agent's readers lock held exclusively (exports wait).
 */
async function removeBundle(
  s: LocalSnapshotter,
  file: BundleFile,
  agent: string,
  tenant: string,
  dir: string,
): Promise<void> {
  const readers = await s.takeLock(
    s.layout.readersLockPath(tenant, agent),
    'exclusive',
    agent,
    tenant,
    'migrate',
    READERS,
  );
  try {
    await unlink(file.path);
    await removeQuietly(siblingPathOf(file.path));
    await removeQuietly(sidecarPathOf(file.path));
    await removeQuietly(pinPathOf(file.path));
    await fsyncDir(dir);
  } finally {
    readers.release();
  }
}
