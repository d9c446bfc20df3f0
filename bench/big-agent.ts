// Owns the "flat in agent size" half of the RSS budget (design.md §5): generates (or reuses) an agent
// of about 2 GB — the ref-170 shape with twelve times the rows — and runs one snapshot, one verify and
// one restore of it with the CLI, each a whole process, reporting their time and peak RSS beside
// ref-170's.

import type { SampleAgentOptions } from '../scripts/sample-agent.js';
import { jsonOf, type ProcessRun, runCli } from './cli.js';
import { cleanRestore, cliEnv, rootsOf } from './cli-rows.js';
import { clearRefSnapshots, ensureSampleAgent, REF_AGENT, type RefAgent } from './fixtures.js';

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
