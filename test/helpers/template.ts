// Test helper: an agent as a test file's setup leaves it (a sample agent, and the snapshots or other
// state a function made of it) built once per test process and copied for every test that asks for it,
// so the tests of a file that all start from "an agent with a snapshot" do not each take that snapshot
// again. Each test still owns a real, writable agent of its own: its own directories, copied with their
// modification times (git's index refreshed, so git sees the same clean work tree), and what the setup
// returned with the template's directory replaced by the copy's (a bundle path names the copy's file).

import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { gitEnv, type SampleAgentOptions } from '../../scripts/sample-agent.js';
import { LocalSnapshotter, type LocalSnapshotterOptions } from '../../src/index.js';
import { type Agent, copySampleAgent, tempDir } from './env.js';

export interface TemplateOptions {
  agentId?: string;
  /** The sample agent's options (copySampleAgent). */
  agent?: SampleAgentOptions;
  /** Options of the agent's snapshotter, in the setup and in every copy. */
  snap?: Partial<LocalSnapshotterOptions>;
}

/** An agent at `root` (a sample agent's layout) with a snapshotter over its roots. */
export function agentAt(root: string, agentId: string, snap: Partial<LocalSnapshotterOptions> = {}): Agent {
  const stateRoot = join(root, 'state');
  const memdirRoot = join(root, 'memdir');
  const sqliteRoot = join(root, 'sqlite');
  return {
    root,
    agentId,
    memdirRoot,
    sqliteRoot,
    stateRoot,
    memdir: join(memdirRoot, agentId),
    sqliteDir: join(sqliteRoot, agentId),
    snapshotter: new LocalSnapshotter({ stateRoot, memdirRoot, sqliteRoot, lockTimeoutMs: 5_000, ...snap }),
    flags: ['--state-root', stateRoot, '--memdir-root', memdirRoot, '--sqlite-root', sqliteRoot],
  };
}

const templates = new Map<string, Promise<{ root: string; made: string }>>();

/**
 * The agent `name` names, as `setup` leaves it: built (a sample agent with `opts`, then `setup`) by the
 * first test of this process that asks for it, copied for this one. `setup` returns what the tests need
 * to know of it (JSON: ids, snapshot metadata); paths in it name the copy.
 */
export async function fromTemplate<T>(
  t: TestContext,
  name: string,
  opts: TemplateOptions,
  setup: (a: Agent) => Promise<T>,
): Promise<{ a: Agent; made: T }> {
  const agentId = opts.agentId ?? 'ana';
  let template = templates.get(name);
  if (!template) {
    template = (async () => {
      const root = mkdtempSync(join(tmpdir(), 'nexo-template-'));
      process.once('exit', () => rmSync(root, { recursive: true, force: true }));
      copySampleAgent(root, agentId, opts.agent ?? {});
      const made = await setup(agentAt(root, agentId, opts.snap));
      return { root, made: JSON.stringify(made ?? null) };
    })();
    templates.set(name, template);
  }
  const { root: from, made } = await template;
  const root = tempDir(t);
  cpSync(from, root, { recursive: true, preserveTimestamps: true });
  const memdirRoot = join(root, 'memdir');
  for (const agent of existsSync(memdirRoot) ? readdirSync(memdirRoot) : [])
    if (existsSync(join(memdirRoot, agent, '.git')))
      execFileSync('git', ['update-index', '-q', '--refresh'], {
        cwd: join(memdirRoot, agent),
        env: gitEnv,
        stdio: 'ignore',
      });
  return { a: agentAt(root, agentId, opts.snap), made: JSON.parse(made.replaceAll(from, root)) as T };
}
