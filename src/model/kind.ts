// Owns the kind of a snapshot (manual, scheduled, pre-dream, pre-restore, pre-mutating-tool), derived
// from who made it. Pure, no imports: the fleet overview and the web console's bundle both use it.

export const SNAPSHOT_KINDS = [
  'manual',
  'scheduled',
  'pre-dream',
  'pre-restore',
  'pre-mutating-tool',
] as const;
export type SnapshotKind = (typeof SNAPSHOT_KINDS)[number];

/** The kind of a snapshot, from who made it (anything not automatic is manual: cli, api, tool, …). */
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
    default:
      return 'manual';
  }
}
