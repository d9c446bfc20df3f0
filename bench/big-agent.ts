// Owns the "flat in agent size" half of the RSS budget (design.md §5): generates (or reuses) an agent
// of about 2 GB — the ref-170 shape with twelve times the rows — and runs one snapshot, one verify and
// one restore of it with the CLI, each a whole process, reporting their time and peak RSS beside
// ref-170's — in the bundle store, and in a repository (snapshot, check --read-data, restore).

import { join } from 'node:path';
import type { SampleAgentOptions } from '../scripts/sample-agent.js';
import { jsonOf, type ProcessRun, runCli } from './cli.js';
import { cleanRestore, cliEnv, rootsOf } from './cli-rows.js';
import { clearRefSnapshots, ensureSampleAgent, REF_AGENT, type RefAgent } from './fixtures.js';
import { discard, emptyTrash } from './lib.js';

export const BIG_2G: SampleAgentOptions = {
  seed: 2048,
  memories: 1_200_000,
  memoryBytes: 520,
  embeddings: 600_000,
  embeddingDim: 384,
  concepts: 360_000,
  compactions: 72_000,
  files: 2_000,
  commits: 500,
};

export interface BigAgentResult {
  agent: RefAgent;
  snapshot: ProcessRun;
  bundleBytes: number;
  verify: ProcessRun;
  restore: ProcessRun;
}

export function measureBigAgent(): BigAgentResult {
  const agent = ensureSampleAgent('big-2g', BIG_2G);
  clearRefSnapshots(agent);
  const env = cliEnv('bundles');
  const roots = rootsOf(agent.paths);
  const snapshot = runCli(
    ['snapshot', '--agent', REF_AGENT, ...roots, '--no-redact', '--no-progress', '--json'],
    env,
  );
  const meta = jsonOf<{ bundle_path: string; bundle_size_bytes: number }>(snapshot);
  try {
    const verify = runCli(['verify', meta.bundle_path, '--no-progress', '--json'], env);
    const status = jsonOf<{ status: string }>(verify).status;
    if (status !== 'verified') throw new Error(`verify of the 2 GB agent said ${status}`);
    const restore = runCli(
      [
        'restore',
        '--agent',
        REF_AGENT,
        '--from',
        meta.bundle_path,
        '--no-auto-pre-snapshot',
        ...roots,
        '--no-progress',
        '--json',
      ],
      env,
    );
    cleanRestore(agent.paths, jsonOf(restore));
    return { agent, snapshot, bundleBytes: meta.bundle_size_bytes, verify, restore };
  } finally {
    clearRefSnapshots(agent);
  }
}

export interface BigRepositoryResult {
  snapshot: ProcessRun;
  addedBytes: number;
  check: ProcessRun;
  restore: ProcessRun;
}

/**
 * The same agent into a repository of its own (a state root beside the agent's): one snapshot, one
 * `check --read-data` and one restore from it; the repository is removed afterwards.
 */
export function measureBigAgentRepository(): BigRepositoryResult {
  const agent = ensureSampleAgent('big-2g', BIG_2G);
  const stateRoot = join(agent.paths.stateRoot, '..', 'state-repository');
  discard(stateRoot);
  const env = cliEnv('repository');
  const roots = [
    '--state-root',
    stateRoot,
    '--memdir-root',
    agent.paths.memdirRoot,
    '--sqlite-root',
    agent.paths.sqliteRoot,
  ];
  try {
    const snapshot = runCli(
      ['snapshot', '--agent', REF_AGENT, ...roots, '--no-redact', '--no-progress', '--json'],
      env,
    );
    const meta = jsonOf<{ id: string; added_bytes: number }>(snapshot);
    const check = runCli(['check', '--state-root', stateRoot, '--read-data', '--json'], env);
    if (!jsonOf<{ ok: boolean }>(check).ok)
      throw new Error(`check --read-data of the 2 GB agent:\n${check.stdout}`);
    const restore = runCli(
      [
        'restore',
        '--agent',
        REF_AGENT,
        '--from',
        meta.id,
        '--no-auto-pre-snapshot',
        ...roots,
        '--no-progress',
        '--json',
      ],
      env,
    );
    cleanRestore(agent.paths, jsonOf(restore));
    return { snapshot, addedBytes: meta.added_bytes, check, restore };
  } finally {
    discard(stateRoot);
  }
}

// `node --import tsx bench/big-agent.ts repository`: only the repository measurement, printed as JSON.
if (process.argv[1]?.endsWith('big-agent.ts') && process.argv[2] === 'repository') {
  const r = measureBigAgentRepository();
  emptyTrash();
  const row = (x: ProcessRun) => ({
    ms: Math.round(x.ms),
    peak_rss_mb: Math.round((x.peakRssKiB ?? 0) / 1024),
  });
  console.log(
    JSON.stringify({
      snapshot: row(r.snapshot),
      added_bytes: r.addedBytes,
      check: row(r.check),
      restore: row(r.restore),
    }),
  );
}
