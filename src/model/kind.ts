// Owns the kind of a snapshot (manual, scheduled, pre-dream, pre-restore, pre-mutating-tool, tool),
// derived from who made it. Pure, no imports: the fleet overview and the web console's bundle both use it.

export const SNAPSHOT_KINDS = [
  'manual',
  'scheduled',
  'pre-dream',
  'pre-restore',
  'pre-mutating-tool',
  'tool',
] as const;
export type SnapshotKind = (typeof SNAPSHOT_KINDS)[number];

/**
 * The kind of a snapshot, from who made it: the agent's own (`tool`, the MCP tool; retention keeps them
 * in a group of their own), an automatic one, else manual (cli, api, import, …).
 */
export function snapshotKind(createdBy: string | undefined): SnapshotKind {
  switch (createdBy) {
    case 'scheduled':
      return 'scheduled';
    case 'auto-pre-dream':
      return 'pre-dream';
    case 'auto-pre-restore':
      return 'pre-restore';
    case 'auto-pre-mutating-tool':
      return 'pre-mutating-tool';
    case 'tool':
      return 'tool';
    default:
      return 'manual';
  }
}
