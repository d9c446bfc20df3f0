// Builds sample agents for the demo, the tests and the benchmark: a git memdir (MEMORY.md plus topic
// files, history written with `git fast-import`), the four SQLite databases in WAL mode with plausible
// tables, and the two state files. Seeded and deterministic: the same options give the same agent.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export interface SampleAgentOptions {
  seed?: number;
  memories?: number;
  embeddings?: number;
  embeddingDim?: number;
  concepts?: number;
  compactions?: number;
  /** Topic files in the memdir besides MEMORY.md. */
  files?: number;
  commits?: number;
  /** Average bytes of one memory's text. */
  memoryBytes?: number;
}

export interface SampleAgentPaths {
  root: string;
  agentId: string;
  memdir: string;
  sqliteDir: string;
  stateRoot: string;
  memdirRoot: string;
  sqliteRoot: string;
}

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = (
  'agent memory user prefers concise answers project deadline meeting notes python rust typescript ' +
  'database schema migration deploy staging production incident review customer feedback feature ' +
  'request latency budget cache index vector embedding recall summary dream consolidation topic ' +
  'calendar travel berlin lisbon coffee tea morning evening weekly report quarterly plan risk owner'
).split(' ');

export function sentence(r: () => number, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(WORDS[Math.floor(r() * WORDS.length)]!);
  const s = out.join(' ');
  return `${s[0]!.toUpperCase()}${s.slice(1)}.`;
}

function text(r: () => number, bytes: number): string {
  const parts: string[] = [];
  let len = 0;
  while (len < bytes) {
    const s = sentence(r, 6 + Math.floor(r() * 10));
    parts.push(s);
    len += s.length + 1;
  }
  return parts.join(' ');
}

export const gitEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Sample Agent',
  GIT_AUTHOR_EMAIL: 'agent@example.com',
  GIT_COMMITTER_NAME: 'Sample Agent',
  GIT_COMMITTER_EMAIL: 'agent@example.com',
  GIT_CONFIG_NOSYSTEM: '1',
  HOME: '/nonexistent',
};

export function git(cwd: string, args: string[], input?: string | Buffer): string {
  return execFileSync('git', args, { cwd, env: gitEnv, input, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
}

function topicName(i: number): string {
  return `topics/${['people', 'projects', 'places', 'habits'][i % 4]}/topic-${String(i).padStart(4, '0')}.md`;
}

/** Writes the memdir history with fast-import, then checks out the working tree. */
function buildMemdir(memdir: string, r: () => number, files: number, commits: number): void {
  mkdirSync(memdir, { recursive: true });
  git(memdir, ['init', '-q', '-b', 'main']);
  const chunks: Buffer[] = [];
  const push = (s: string | Buffer) => chunks.push(typeof s === 'string' ? Buffer.from(s) : s);
  const blob = (content: string) => {
    const b = Buffer.from(content);
    push(`data ${b.length}\n`);
    push(b);
    push('\n');
  };
  const base = 1_760_000_000;
  for (let c = 0; c < commits; c++) {
    const ts = base + c * 3600;
    const msg = c === 0 ? 'memory: initial import' : `memory: update ${c}`;
    push(`commit refs/heads/main\nmark :${c + 1}\n`);
    push(
      `author Sample Agent <agent@example.com> ${ts} +0000\ncommitter Sample Agent <agent@example.com> ${ts} +0000\n`,
    );
    blob(msg);
    const touched =
      c === 0
        ? Array.from({ length: files }, (_, i) => i)
        : Array.from({ length: Math.min(4, files) }, () => Math.floor(r() * files));
    if (c === 0 || c % 10 === 0) {
      push('M 100644 inline MEMORY.md\n');
      blob(
        `# Memory index\n\n${Array.from({ length: Math.min(files, 50) }, (_, i) => `- [${topicName(i)}](${topicName(i)})`).join('\n')}\n\nRevision ${c}.\n`,
      );
    }
    for (const i of touched) {
      push(`M 100644 inline ${topicName(i)}\n`);
      blob(`# Topic ${i}\n\n${text(r, 1200 + Math.floor(r() * 2400))}\n\nLast touched in commit ${c}.\n`);
    }
    push('\n');
  }
  execFileSync('git', ['fast-import', '--quiet'], { cwd: memdir, env: gitEnv, input: Buffer.concat(chunks) });
  git(memdir, ['reset', '-q', '--hard', 'main']);
}

function openDb(path: string): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  return db;
}

function buildDatabases(sqliteDir: string, r: () => number, o: Required<SampleAgentOptions>): void {
  mkdirSync(sqliteDir, { recursive: true });
  const lt = openDb(join(sqliteDir, 'long_term.sqlite'));
  lt.exec(
    'CREATE TABLE memories (id INTEGER PRIMARY KEY, created_at INTEGER NOT NULL, kind TEXT NOT NULL, content TEXT NOT NULL, importance REAL NOT NULL)',
  );
  const insM = lt.prepare('INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)');
  lt.transaction(() => {
    for (let i = 0; i < o.memories; i++) {
      insM.run(
        1_760_000_000_000 + i * 1000,
        ['fact', 'preference', 'episode'][i % 3],
        text(r, o.memoryBytes),
        Math.round(r() * 100) / 100,
      );
    }
  })();
  lt.close();

  const vec = openDb(join(sqliteDir, 'vector.sqlite'));
  vec.exec(
    'CREATE TABLE embeddings (id INTEGER PRIMARY KEY, memory_id INTEGER NOT NULL, model TEXT NOT NULL, dim INTEGER NOT NULL, vec BLOB NOT NULL)',
  );
  const insV = vec.prepare('INSERT INTO embeddings (memory_id, model, dim, vec) VALUES (?, ?, ?, ?)');
  vec.transaction(() => {
    const f = new Float32Array(o.embeddingDim);
    for (let i = 0; i < o.embeddings; i++) {
      for (let d = 0; d < f.length; d++) f[d] = r() * 2 - 1;
      insV.run(i + 1, 'all-MiniLM-L6-v2', o.embeddingDim, Buffer.from(f.buffer));
    }
  })();
  vec.close();

  const con = openDb(join(sqliteDir, 'concepts.sqlite'));
  con.exec(
    'CREATE TABLE concepts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, summary TEXT NOT NULL)',
  );
  const insC = con.prepare('INSERT INTO concepts (name, summary) VALUES (?, ?)');
  con.transaction(() => {
    for (let i = 0; i < o.concepts; i++) insC.run(`concept-${i}`, text(r, 400));
  })();
  con.close();

  const cmp = openDb(join(sqliteDir, 'compactions.sqlite'));
  cmp.exec(
    'CREATE TABLE compactions (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, created_at INTEGER NOT NULL, summary TEXT NOT NULL)',
  );
  const insK = cmp.prepare('INSERT INTO compactions (session_id, created_at, summary) VALUES (?, ?, ?)');
  cmp.transaction(() => {
    for (let i = 0; i < o.compactions; i++)
      insK.run(`session-${i}`, 1_760_000_000_000 + i * 60_000, text(r, 1800));
  })();
  cmp.close();
}

/**
 * Builds agent `agentId` under `root` with the layout the CLI's defaults expect when run with
 * `--state-root <root>/state --memdir-root <root>/memdir --sqlite-root <root>/sqlite`.
 */
export function buildSampleAgent(
  root: string,
  agentId: string,
  opts: SampleAgentOptions = {},
): SampleAgentPaths {
  const o: Required<SampleAgentOptions> = {
    seed: 42,
    memories: 200,
    embeddings: 200,
    embeddingDim: 384,
    concepts: 50,
    compactions: 20,
    files: 12,
    commits: 5,
    memoryBytes: 300,
    ...opts,
  };
  const r = rng(o.seed);
  const paths: SampleAgentPaths = {
    root,
    agentId,
    memdirRoot: join(root, 'memdir'),
    sqliteRoot: join(root, 'sqlite'),
    stateRoot: join(root, 'state'),
    memdir: join(root, 'memdir', agentId),
    sqliteDir: join(root, 'sqlite', agentId),
  };
  buildMemdir(paths.memdir, r, o.files, o.commits);
  buildDatabases(paths.sqliteDir, r, o);
  writeFileSync(
    join(paths.sqliteDir, 'extract_cursor.json'),
    `${JSON.stringify({ last_message_id: 1234, updated_at_ms: 1_760_000_000_000 })}\n`,
  );
  writeFileSync(
    join(paths.sqliteDir, 'dream_run.json'),
    `${JSON.stringify({ run_id: 'dream-7', finished_at_ms: 1_760_000_100_000, status: 'ok' })}\n`,
  );
  mkdirSync(paths.stateRoot, { recursive: true });
  return paths;
}

/** The reference agent of design.md §5, about 170 MB. */
export const REF_170: SampleAgentOptions = {
  seed: 170,
  memories: 100_000,
  memoryBytes: 520,
  embeddings: 50_000,
  embeddingDim: 384,
  concepts: 30_000,
  compactions: 6_000,
  files: 2_000,
  commits: 500,
};
