// Owns the "flat in agent size" half of the RSS budget (design.md §5): generates (or reuses) an agent
// of about 2 GB — the ref-170 shape with twelve times the rows — and runs one snapshot, one verify and
// one restore of it, each in its own child process, reporting their peak RSS beside ref-170's.

import { rmSync } from 'node:fs';
import type { SampleAgentOptions } from '../scripts/sample-agent.js';
import { clearRefSnapshots, ensureSampleAgent, REF_AGENT, type RefAgent } from './fixtures.js';
import { type ChildResult, runChild } from './lib.js';

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
  snapshot: ChildResult & { processMs: number };
  verify: ChildResult & { processMs: number };
  restore: ChildResult & { processMs: number };
}

export function measureBigAgent(): BigAgentResult {
  const agent = ensureSampleAgent('big-2g', BIG_2G);
  clearRefSnapshots(agent);
  const args = {
    stateRoot: agent.paths.stateRoot,
    memdirRoot: agent.paths.memdirRoot,
    sqliteRoot: agent.paths.sqliteRoot,
    agentId: REF_AGENT,
  };
  const snapshot = runChild('snapshot-child.ts', args);
  const bundle = String(snapshot.bundlePath);
  try {
    const verify = runChild('verify-child.ts', { bundle });
    if (verify.status !== 'verified')
      throw new Error(`verify of the 2 GB agent said ${String(verify.status)}`);
    const restore = runChild('restore-child.ts', { ...args, bundle });
    return { agent, snapshot, verify, restore };
  } finally {
    for (const suffix of ['', '.sha256', '.meta.json']) rmSync(`${bundle}${suffix}`, { force: true });
  }
}
