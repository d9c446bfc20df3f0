// Owns the draft of a minimal repository manifest for tests that seal one themselves
// (sealRepoManifest): an agent with no history, every schema at version 1; a test gives what it varies.

import { newSnapshotId } from '../../src/model/ids.js';
import type { RepoArtifact, RepoManifestDraft } from '../../src/repository/manifest.js';

export function repoManifestDraft(p: {
  repositoryId: string;
  artifacts: RepoArtifact[];
  id?: string;
  agentId?: string;
  createdAtMs?: number;
}): RepoManifestDraft {
  return {
    snapshot_id: p.id ?? newSnapshotId(),
    agent_id: p.agentId ?? 'ana',
    tenant: 'default',
    created_at_ms: p.createdAtMs ?? 1,
    created_by: 'test',
    schema_versions: { long_term: 1, vector: 1, concepts: 1, compactions: 1, manifest: 4 },
    git: {
      head_oid: '0'.repeat(40),
      head_subject: '',
      head_author: '',
      head_ts_ms: 0,
      repository: 'absent',
      detached: false,
    },
    artifacts: p.artifacts,
    tool_versions: {},
    repository_id: p.repositoryId,
  };
}
