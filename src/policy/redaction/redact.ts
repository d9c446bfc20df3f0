// Owns redacting one snapshot's staging after the write gate is released and before anything is
// hashed: memory files and state values (main thread, in memory), staged large files and the SQLite
// copies (worker threads), and the git history (rewritten in scratch repositories only when it holds
// a secret). Updates the captured artifacts (bytes, sizes, hashes, HEAD) in place and returns the
// manifest's `redactions` report, which also says what was not scanned.

import { statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CaptureResult, StagedArtifact } from '../../capture/capture.js';
import { GIT_BUNDLE_PATH, MAX_MANIFEST_BYTES, sqlitePath } from '../../format/constants.js';
import { stateValueOf } from '../../format/json.js';
import { JsonNumber, jsonText } from '../../format/json-number.js';
import type { RedactionReport } from '../../format/manifest.js';
import { type DataKind, rewriteBundle } from '../../git/rewrite.js';
import { RedactionError, SnapshotError } from '../../model/errors.js';
import { sha256File, sha256Hex } from '../../util/hash.js';
import { allSettledOrThrow } from '../../util/settle.js';
import { addCounts, type RedactionPolicy, redactBytes, redactText } from './scan.js';
import { type NotScanned, redactDatabase } from './sqlite.js';
import { RedactionThread } from './thread.js';

/** Up to this many bytes of databases in all, redaction runs on the calling thread. */
const INLINE_SQLITE_BYTES = 8 * 1024 * 1024;

/** Staged files larger than this are not scanned (reported); they are read whole into memory. */
export const MAX_SCANNED_FILE_BYTES = 256 * 1024 * 1024;

interface Tally {
  counts: Record<string, number>;
  matches: number;
  touched: Set<string>;
  notScanned: NotScanned[];
}

function note(t: Tally, artifact: string, counts: Record<string, number>, matches: number): void {
  if (matches === 0) return;
  addCounts(t.counts, counts);
  t.matches += matches;
  t.touched.add(artifact);
}

function setBytes(a: StagedArtifact, bytes: Buffer): void {
  a.data = bytes;
  a.size = bytes.length;
  a.sha256 = sha256Hex(bytes);
}

/** Redacts every key and every string of a JSON value (fallback when text-level redaction breaks the JSON). */
function redactJsonValue(policy: RedactionPolicy, v: unknown, t: Tally, artifact: string): unknown {
  const text = (s: string) => {
    const r = redactText(policy, s);
    note(t, artifact, r.counts, r.matches);
    return r.text;
  };
  if (typeof v === 'string') return text(v);
  if (v instanceof JsonNumber) return v;
  if (Array.isArray(v)) return v.map((x) => redactJsonValue(policy, x, t, artifact));
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [text(k), redactJsonValue(policy, x, t, artifact)]),
    );
  return v;
}

function redactState(policy: RedactionPolicy, a: StagedArtifact, t: Tally): void {
  const r = redactBytes(policy, a.data!);
  if (r.binary || r.matches === 0) return;
  try {
    JSON.parse(r.bytes.toString('utf8'));
    note(t, a.pathInBundle, r.counts, r.matches);
    setBytes(a, r.bytes);
  } catch {
    // a repository snapshot's state value is not parsed by its verify: one that is not JSON is damage
    const value = redactJsonValue(policy, stateValueOf(a.data!, a.pathInBundle), t, a.pathInBundle);
    setBytes(a, Buffer.from(`${jsonText(value, 2)}\n`, 'utf8'));
  }
  // a placeholder is longer than most secrets: what every reader refuses is not written (a snapshot
  // or an export that could never be restored, or whose own check calls a sound source damaged)
  if (a.size > MAX_MANIFEST_BYTES)
    throw new RedactionError(
      `state value ${a.pathInBundle} grows to ${a.size} bytes once its secrets are replaced by placeholders, more than the ${MAX_MANIFEST_BYTES} a bundle's state value may have: nothing written (take or export it without redaction)`,
    );
}

async function redactMemory(
  policy: RedactionPolicy,
  files: StagedArtifact[],
  t: Tally,
  thread: () => RedactionThread,
): Promise<void> {
  for (const a of files) {
    if (a.data) {
      const r = redactBytes(policy, a.data);
      if (r.binary) {
        t.notScanned.push({ artifact: a.pathInBundle, what: 'file', reason: 'binary data', bytes: a.size });
        continue;
      }
      if (r.matches > 0) {
        note(t, a.pathInBundle, r.counts, r.matches);
        setBytes(a, r.bytes);
      }
      continue;
    }
    const r = await thread().file(a.stagedPath!, MAX_SCANNED_FILE_BYTES);
    if (r.status !== 'text') {
      t.notScanned.push({
        artifact: a.pathInBundle,
        what: 'file',
        reason: r.status === 'binary' ? 'binary data' : `larger than ${MAX_SCANNED_FILE_BYTES} bytes`,
        bytes: r.size,
      });
      continue;
    }
    if (r.matches > 0) {
      note(t, a.pathInBundle, r.counts, r.matches);
      Object.assign(a, await sha256File(a.stagedPath!));
    }
  }
}

async function redactHistory(
  policy: RedactionPolicy,
  c: CaptureResult,
  stagingDir: string,
  t: Tally,
  memdir: string | undefined,
): Promise<Pick<RedactionReport, 'git_history' | 'git'>> {
  // The manifest's copy of the HEAD commit's subject and author is text that ships too.
  for (const field of ['head_subject', 'head_author'] as const) {
    const r = redactText(policy, c.git[field]);
    if (r.matches > 0) {
      note(t, 'manifest.json', r.counts, r.matches);
      c.git[field] = r.text;
    }
  }
  if (!c.gitBundlePath) return { git_history: 'absent' };
  const stats = { scanned: 0, redacted: 0, messages: 0, binary: 0, binaryBytes: 0 };
  const work = join(stagingDir, '.redact-git');
  await mkdir(work, { recursive: true });
  const transform = (data: Buffer, kind: DataKind): Buffer | undefined => {
    const r = redactBytes(policy, data);
    if (r.binary) {
      stats.binary++;
      stats.binaryBytes += data.length;
      return undefined;
    }
    stats.scanned++;
    if (r.matches === 0) return undefined;
    stats.redacted++;
    note(t, GIT_BUNDLE_PATH, r.counts, r.matches);
    if (kind !== 'blob') stats.messages++;
    return r.bytes;
  };
  const original = c.git.head_oid;
  const result = await rewriteBundle(
    c.gitBundlePath,
    work,
    {
      ...(c.git.repository === 'present' ? { oid: original } : {}),
      ...(c.git.head_ref ? { ref: c.git.head_ref } : {}),
      detached: c.git.detached === true,
    },
    transform,
    memdir,
  );
  if (stats.binary > 0)
    t.notScanned.push({
      artifact: GIT_BUNDLE_PATH,
      what: 'blobs',
      reason: 'binary data',
      count: stats.binary,
      bytes: stats.binaryBytes,
    });
  if (result.changed && c.git.repository === 'present') {
    if (!result.headOid) throw new RedactionError('the rewritten history has no HEAD commit');
    c.git.head_oid = result.headOid;
  }
  return {
    git_history: result.changed ? 'rewritten' : 'unchanged',
    git: {
      commits: result.commits,
      data_scanned: stats.scanned,
      data_redacted: stats.redacted,
      messages_redacted: stats.messages,
      ...(result.objectRefs > 0 ? { object_refs: result.objectRefs } : {}),
      ...(result.changed && c.git.repository === 'present' ? { original_head_oid: original } : {}),
    },
  };
}

/**
 * Redacts the staging of `c` in place. Runs after the write gate is released; the caller hashes
 * afterwards (databases and the git bundle), memory and state artifacts are re-hashed here.
 */
export async function redactStaging(
  policy: RedactionPolicy,
  c: CaptureResult,
  stagingDir: string,
  /** The live memdir the history was bundled from: its objects are read in place (never written). */
  memdir?: string,
): Promise<RedactionReport> {
  const t: Tally = { counts: {}, matches: 0, touched: new Set(), notScanned: [] };
  const threads: RedactionThread[] = [];
  const wanted = Math.min(2, Math.max(1, c.databases.length));
  const thread = (i = 0): RedactionThread => {
    while (threads.length <= i % wanted) threads.push(new RedactionThread(policy.options));
    return threads[i % wanted]!;
  };
  try {
    for (const a of c.state) redactState(policy, a, t);
    const sqliteStats: NonNullable<RedactionReport['sqlite']> = {};
    const [history] = await allSettledOrThrow([
      redactHistory(policy, c, stagingDir, t, memdir),
      (async () => {
        // a shared queue, largest database first: each thread takes the next job when it is free
        const size = new Map(c.databases.map((d) => [d, statSync(d.stagedPath).size]));
        const queue = [...c.databases].sort((x, y) => size.get(y)! - size.get(x)!);
        // Small databases are redacted right here: starting a thread costs more than the work.
        const inline = [...size.values()].reduce((x, y) => x + y, 0) <= INLINE_SQLITE_BYTES;
        const lane = async (th: RedactionThread | undefined) => {
          for (let d = queue.shift(); d; d = queue.shift()) {
            const artifact = sqlitePath(d.db);
            let r: Awaited<ReturnType<RedactionThread['sqlite']>>;
            try {
              r = th
                ? await th.sqlite(d.stagedPath, artifact)
                : redactDatabase(policy, d.stagedPath, artifact);
            } catch (err) {
              throw new RedactionError(`${artifact}: ${(err as Error).message}`, { cause: err });
            }
            note(t, artifact, r.counts, r.matches);
            if (r.rewritten) t.touched.add(artifact); // samples removed, no value replaced: touched too
            t.notScanned.push(...r.not_scanned);
            sqliteStats[d.db] = {
              tables: r.tables,
              values_scanned: r.values_scanned,
              values_redacted: r.values_redacted,
              unique_conflicts: r.unique_conflicts,
            };
          }
        };
        if (inline) await lane(undefined);
        else await allSettledOrThrow(Array.from({ length: wanted }, (_, i) => lane(thread(i))));
        await redactMemory(policy, c.memory, t, () => thread(0));
      })(),
    ] as const);
    if (c.memdir) c.memdir.bytes = c.memory.reduce((sum, m) => sum + m.size, 0);
    const order = [
      ...c.databases.map((d) => sqlitePath(d.db)),
      ...c.state.map((s) => s.pathInBundle),
      GIT_BUNDLE_PATH,
      ...c.memory.map((m) => m.pathInBundle),
      'manifest.json',
    ];
    return {
      policy: policy.id,
      rules_applied: Object.keys(t.counts).sort(),
      matches_redacted: t.matches,
      artifacts_touched: order.filter((p) => t.touched.has(p)),
      ruleset: policy.rulesetVersion,
      rule_counts: Object.fromEntries(Object.entries(t.counts).sort(([a], [b]) => (a < b ? -1 : 1))),
      excluded_rules: [...(policy.options.excludeRules ?? [])].sort(),
      allowlist_entries: policy.allowlist.length,
      ...history,
      ...(c.databases.length > 0
        ? { sqlite: Object.fromEntries(c.databases.map((d) => [d.db, sqliteStats[d.db]!])) }
        : {}),
      not_scanned: [
        ...t.notScanned,
        {
          artifact: '*',
          what: 'paths, git author and committer identities, labels, SQLite schema',
          reason: 'names and metadata are not scanned',
        },
      ],
    };
  } catch (err) {
    if (err instanceof SnapshotError) throw err;
    throw new RedactionError((err as Error).message, { cause: err });
  } finally {
    await Promise.all(threads.map((th) => th.close()));
  }
}
