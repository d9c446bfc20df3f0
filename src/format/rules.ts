// Owns the rules a parsed manifest must satisfy beyond its schema and versions, in one place for verify
// (which reports every problem) and restore (which refuses before it takes the lock): the artifact list
// against the layout (layout.ts), the identity (agent id, tenant, snapshot id), and for v2/v3 the git
// block (repository state, HEAD's id, `head_ref` a safe branch name, the git bundle present exactly when
// the repository has history) and the memdir block. Pure.

import { isCanonicalSnapshotId, validateAgentId, validateTenant } from '../model/ids.js';
import { GIT_BUNDLE_PATH, ZERO_OID } from './constants.js';
import { headRefProblem } from './git-bundle.js';
import { type ListProblem, listProblems } from './layout.js';
import type { ParsedManifest } from './manifest.js';

/** A broken rule; `layout` marks the artifact list's rules (paths, duplicates, collisions, order). */
export type ManifestProblem =
  | (ListProblem & { layout: true })
  | { code: 'BUNDLE_DAMAGED'; path?: string; message: string; layout: false };

const OID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Every rule the manifest breaks; empty when restore may act on it. */
export function manifestProblems(parsed: ParsedManifest): ManifestProblem[] {
  const { manifest: m, layout } = parsed;
  const out: ManifestProblem[] = listProblems(m.artifacts, layout).map((p) => ({ ...p, layout: true }));
  const damaged = (message: string): void => {
    out.push({ code: 'BUNDLE_DAMAGED', message: `manifest: ${message}`, layout: false });
  };
  for (const check of [() => validateAgentId(m.agent_id), () => validateTenant(m.tenant)]) {
    try {
      check();
    } catch (err) {
      damaged((err as Error).message);
    }
  }
  if (!isCanonicalSnapshotId(m.snapshot_id))
    damaged(`snapshot_id ${JSON.stringify(m.snapshot_id)} is not a lowercase hyphenated UUID`);
  if (layout === 1) return out;

  const g = m.git;
  const hasBundle = m.artifacts.some((a) => a.path_in_bundle === GIT_BUNDLE_PATH);
  const hasMemdirArtifacts = m.artifacts.some((a) => a.kind === 'memory_file' || a.kind === 'git_bundle');
  if (g.repository === undefined) damaged('git.repository is missing');
  if (g.detached === undefined) damaged('git.detached is missing');
  if (g.head_ref !== undefined) {
    const bad = headRefProblem(g.head_ref);
    if (bad) damaged(`git.head_ref ${JSON.stringify(g.head_ref)} ${bad}`);
  }
  if (g.repository === 'absent' || g.repository === 'empty') {
    if (g.head_oid !== ZERO_OID)
      damaged(`git.head_oid must be forty zeros for a repository that is ${g.repository}`);
    if (g.detached) damaged(`git.detached is true for a repository that is ${g.repository}`);
  }
  if (g.repository === 'absent') {
    if (g.head_ref !== undefined) damaged('git.head_ref is set for an absent repository');
    if (hasBundle) damaged(`${GIT_BUNDLE_PATH} is present for an absent repository`);
  }
  if (g.repository === 'present') {
    if (!OID.test(g.head_oid) || g.head_oid === ZERO_OID)
      damaged(`git.head_oid ${JSON.stringify(g.head_oid)} is not a commit id`);
    if (g.detached && g.head_ref !== undefined) damaged('git.head_ref is set although HEAD is detached');
    if (g.detached === false && g.head_ref === undefined)
      damaged('git.head_ref is missing although HEAD is on a branch');
    if (!hasBundle) damaged(`${GIT_BUNDLE_PATH} is missing although the repository has history`);
  }
  if (m.memdir === undefined && (hasMemdirArtifacts || (g.repository ?? 'absent') !== 'absent'))
    damaged('the memdir block is missing although the bundle carries a memdir');
  return out;
}
