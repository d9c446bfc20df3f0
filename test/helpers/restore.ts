// Test helper for restore (restore.test.ts, restore-recovery.test.ts): a small sample agent, what an
// observer of the live agent sees (database bytes, working tree files, HEAD, state values), what it
// must see after restoring a bundle (from the bundle's manifest), and a change to every component.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { gitEnv } from '../../scripts/sample-agent.js';
import { walkMemdir } from '../../src/capture/memdir.js';
import { canonicalJson, type Manifest } from '../../src/index.js';
import { readEntries } from './bundles.js';
import { type Agent, gitAsync, sampleAgent } from './env.js';

export const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
export const DBS = ['long_term', 'vector', 'concepts', 'compactions'];

/** What an observer of the live agent sees: DB bytes, working tree files, HEAD, state files. */
export async function fingerprint(a: Agent): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const db of DBS) {
    const p = join(a.sqliteDir, `${db}.sqlite`);
    out[`db:${db}`] = existsSync(p) ? sha(readFileSync(p)) : 'absent';
  }
  // State travels as values through the StateProvider: compared as values, not bytes.
  for (const key of ['extract_cursor', 'dream_run']) {
    const p = join(a.sqliteDir, `${key}.json`);
    out[`state:${key}`] = existsSync(p) ? canonicalJson(JSON.parse(readFileSync(p, 'utf8'))) : 'absent';
  }
  if (existsSync(a.memdir)) {
    for (const rel of (await walkMemdir(a.memdir)).files)
      out[`file:${rel}`] = sha(readFileSync(join(a.memdir, rel)));
    out.head = existsSync(join(a.memdir, '.git'))
      ? (await gitAsync(a.memdir, ['rev-parse', '-q', '--verify', 'HEAD'])).trim() || 'none'
      : 'no-repo';
  } else {
    out.memdir = 'absent';
  }
  return out;
}

export const withoutDbBytes = (f: Record<string, string>) =>
  Object.fromEntries(Object.entries(f).filter(([k]) => !k.startsWith('db:')));

/** The fingerprint the live agent must have after restoring `bundle`. */
export async function expected(bundle: string): Promise<Record<string, string>> {
  const entries = await readEntries(bundle);
  const m = JSON.parse(entries[0]!.data.toString()) as Manifest;
  const out: Record<string, string> = {};
  const art = (p: string) => m.artifacts.find((x) => x.path_in_bundle === p);
  for (const db of DBS) out[`db:${db}`] = art(`sqlite/${db}.sqlite`)?.sha256 ?? 'absent';
  for (const key of ['extract_cursor', 'dream_run']) {
    const e = entries.find((x) => x.path === `state/${key}.json`);
    out[`state:${key}`] = e ? canonicalJson(JSON.parse(e.data.toString())) : 'absent';
  }
  if (m.memdir) {
    for (const x of m.artifacts.filter((y) => y.kind === 'memory_file'))
      out[`file:${x.path_in_bundle.slice(13)}`] = x.sha256;
    out.head =
      m.git.repository === 'present' ? m.git.head_oid : m.git.repository === 'empty' ? 'none' : 'no-repo';
  } else {
    out.memdir = 'absent';
  }
  return out;
}

/** Changes every component of the agent: rows, a commit, an uncommitted edit, a new and a deleted file, state. */
export function mutate(a: Agent, tag = 'changed'): void {
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  db.prepare('INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)').run(
    1,
    'fact',
    tag,
    1,
  );
  db.prepare('DELETE FROM memories WHERE id <= 3').run();
  db.close();
  writeFileSync(join(a.memdir, 'MEMORY.md'), `# replaced (${tag})\n`);
  execFileSync('git', ['commit', '-qam', `mutate ${tag}`], { cwd: a.memdir, env: gitEnv });
  writeFileSync(join(a.memdir, 'topics', 'people', 'topic-0000.md'), `uncommitted ${tag}\n`);
  writeFileSync(join(a.memdir, `new-${tag}.md`), 'new file\n');
  rmSync(join(a.memdir, 'topics', 'projects', 'topic-0001.md'));
  writeFileSync(join(a.sqliteDir, 'extract_cursor.json'), JSON.stringify({ last_message_id: 9999, tag }));
}

export function agent(t: Parameters<typeof sampleAgent>[0], id = 'ana', warnings?: string[]): Agent {
  return sampleAgent(
    t,
    id,
    { files: 6, commits: 3, memories: 50, embeddings: 20, concepts: 10, compactions: 5 },
    {
      ...(warnings ? { onWarning: (w: string) => warnings.push(w) } : {}),
    },
  );
}
