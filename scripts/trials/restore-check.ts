// What the kill trials compare a restore with, and the comparison. A `Capture` is the agent's content
// as a snapshot saw it, recorded by the driver when it prepares the snapshot (the agent does not change
// while the operation runs): SHA-256 of every memdir working-tree file, the memdir's HEAD, the state
// files' values (state is snapshotted and restored as JSON values, written back formatted: the value is
// compared, not the bytes), and SHA-256 of each database's `sqlite3 .dump` (a database snapshot is a
// consistent copy, not the live file's bytes). `restoreMatches` restores a listed snapshot through the library into scratch
// roots (a second snapshotter on the same state root, other memdir and SQLite roots, no pre-restore
// snapshot: the trial's live agent and the repository's listing are untouched) and requires
//   - every restored memdir file (outside .git) to be byte-for-byte the captured one, the same set of
//     files, HEAD the captured commit, and the state values the captured ones;
//   - every restored database file to be byte-for-byte the one in an export of the same snapshot, read
//     back by GNU tar and zstd, whose SHA-256 is the one the snapshot's sealed manifest recorded at
//     capture; and its dump to be the captured dump.
// So a restore (or a repository read) that produces wrong bytes fails against data recorded before the
// operation ran, not against a second read through the same code.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { LocalSnapshotter } from '../../src/index.js';
import { DB_NAMES, STATE_KEYS } from '../../src/model/types.js';
import type { SampleAgentPaths } from '../sample-agent.js';

export interface Capture {
  /** memdir path (relative, `/`-separated) → SHA-256 of the bytes, `.git` excluded. */
  files: Record<string, string>;
  /** state file name → SHA-256 of its value as compact JSON. */
  state: Record<string, string>;
  /** database name → SHA-256 of `sqlite3 <db> .dump`. */
  dumps: Record<string, string>;
  head: string;
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function treeDigests(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (!(d === dir && e.name === '.git')) walk(p);
      } else out[relative(dir, p).split('\\').join('/')] = sha256(readFileSync(p));
    }
  };
  walk(dir);
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

const dumpOf = (db: string) =>
  sha256(execFileSync('sqlite3', ['-readonly', db, '.dump'], { maxBuffer: 1 << 30 }));

function contentOf(memdir: string, sqliteDir: string): Capture {
  const state: Record<string, string> = {};
  for (const key of STATE_KEYS) {
    const p = join(sqliteDir, `${key}.json`);
    if (existsSync(p)) state[`${key}.json`] = sha256(JSON.stringify(JSON.parse(readFileSync(p, 'utf8'))));
  }
  const dumps: Record<string, string> = {};
  for (const db of DB_NAMES) {
    const p = join(sqliteDir, `${db}.sqlite`);
    if (existsSync(p)) dumps[db] = dumpOf(p);
  }
  const head = execFileSync('git', ['-C', memdir, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
  return { files: treeDigests(memdir), state, dumps, head };
}

/** The live agent's content now: what a snapshot taken before it changes again holds. */
export const captureAgent = (p: SampleAgentPaths): Capture => contentOf(p.memdir, p.sqliteDir);

function differences(what: string, want: Record<string, string>, got: Record<string, string>): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(want), ...Object.keys(got)]))
    if (want[k] !== got[k])
      out.push(
        `${what} ${k}: ${got[k] === undefined ? 'missing' : want[k] === undefined ? 'not in the capture' : 'other bytes'}`,
      );
  return out;
}

/**
 * Restores snapshot `id` of the agent into scratch roots under `scratch` and compares it with `want`
 * and with the snapshot's export (see the top comment). Returns the differences (empty: identical).
 */
export async function restoreMatches(
  p: SampleAgentPaths,
  id: string,
  want: Capture,
  scratch: string,
): Promise<string[]> {
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  try {
    const roots = { memdirRoot: join(scratch, 'memdir'), sqliteRoot: join(scratch, 'sqlite') };
    const s = new LocalSnapshotter({
      stateRoot: p.stateRoot,
      ...roots,
      store: 'repository',
      lockTimeoutMs: 120_000,
    });
    await s.restore({ agentId: p.agentId, snapshot: id, autoPreSnapshot: false });
    const memdir = join(roots.memdirRoot, p.agentId);
    const sqliteDir = join(roots.sqliteRoot, p.agentId);
    // the database files' bytes, before anything opens them
    const dbBytes = new Map<string, string>();
    for (const db of DB_NAMES) {
      const f = join(sqliteDir, `${db}.sqlite`);
      if (existsSync(f)) dbBytes.set(db, sha256(readFileSync(f)));
    }
    const got = contentOf(memdir, sqliteDir);
    const out = [
      ...differences('memdir file', want.files, got.files),
      ...differences('state value', want.state, got.state),
      ...differences('database dump', want.dumps, got.dumps),
    ];
    if (got.head !== want.head) out.push(`memdir HEAD ${got.head}, captured ${want.head}`);
    // the databases against the snapshot's own bytes: an export, unpacked by GNU tar and zstd
    const bundle = join(scratch, 'export.tar.zst');
    await s.export(p.agentId, 'default', id, bundle, { redact: false });
    const unpacked = join(scratch, 'export');
    mkdirSync(unpacked);
    execFileSync('tar', ['--zstd', '-xf', bundle, '-C', unpacked]);
    const manifest = JSON.parse(readFileSync(join(unpacked, 'manifest.json'), 'utf8')) as {
      artifacts: { path_in_bundle: string; sha256: string }[];
    };
    for (const db of DB_NAMES) {
      const path = `sqlite/${db}.sqlite`;
      const sealed = manifest.artifacts.find((a) => a.path_in_bundle === path)?.sha256;
      const exported = existsSync(join(unpacked, path))
        ? sha256(readFileSync(join(unpacked, path)))
        : undefined;
      if (exported !== sealed) out.push(`${path} in the export: not the bytes its manifest seals`);
      if (dbBytes.get(db) !== exported) out.push(`database ${db}: restored bytes differ from the snapshot's`);
    }
    return out.map((d) => `snapshot ${id} restored: ${d}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
