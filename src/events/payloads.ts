// Owns the JSON payloads of the original's events (§11): lifecycle events internally tagged by `kind`
// with their payload flattened beside it, and mutation events. Field names are the wire contract;
// optional fields are omitted, never null. Pure: no I/O.

import type { DeleteResult, RestoreReport, SnapshotMeta } from '../model/types.js';
import type { RetentionTickReport } from '../snapshotter/gc.js';

/** `created`: every SnapshotMeta field. */
export type CreatedEvent = { kind: 'created' } & SnapshotMeta;

/**
 * `restored`: every RestoreReport field except `components` (per-component file lists can be large;
 * the library and CLI report keeps them).
 */
export type RestoredEvent = { kind: 'restored' } & Omit<RestoreReport, 'components'>;

export interface DeletedEvent {
  kind: 'deleted';
  agent_id: string;
  tenant: string;
  snapshot_id: string;
  ts_ms: number;
  /** Added: `operator` (delete) or `retention` (gc). */
  reason?: 'operator' | 'retention';
}

/** The sweep report without the per-agent detail (`agents`), which can be large. */
export type GcEventReport = Omit<RetentionTickReport, 'agents'>;

export interface GcEvent {
  kind: 'gc';
  ts_ms: number;
  report: GcEventReport;
}

export type LifecycleEvent = CreatedEvent | RestoredEvent | DeletedEvent | GcEvent;
export type LifecycleKind = LifecycleEvent['kind'];

export const MUTATION_SCOPES = [
  'sqlite_long_term',
  'sqlite_vector',
  'sqlite_concepts',
  'sqlite_compactions',
  'git',
  'memory_file',
] as const;
export type MutationScope = (typeof MUTATION_SCOPES)[number];

export const MUTATION_OPS = ['insert', 'update', 'delete'] as const;
export type MutationOp = (typeof MUTATION_OPS)[number];

export interface MutationEvent {
  agent_id: string;
  tenant: string;
  scope: MutationScope;
  op: MutationOp;
  key: string;
  old_hash?: string;
  new_hash?: string;
  ts_ms: number;
}

export function createdEvent(meta: SnapshotMeta): CreatedEvent {
  return { kind: 'created', ...meta };
}

export function restoredEvent(report: RestoreReport): RestoredEvent {
  const { components: _omitted, ...rest } = report;
  return { kind: 'restored', ...rest };
}

export function deletedEvent(
  r: Pick<DeleteResult, 'agent_id' | 'tenant' | 'id'>,
  reason: 'operator' | 'retention',
  tsMs = Date.now(),
): DeletedEvent {
  return { kind: 'deleted', agent_id: r.agent_id, tenant: r.tenant, snapshot_id: r.id, ts_ms: tsMs, reason };
}

export function gcEvent(report: RetentionTickReport, tsMs = Date.now()): GcEvent {
  const { agents: _omitted, ...rest } = report;
  return { kind: 'gc', ts_ms: tsMs, report: rest };
}

export function mutationEvent(p: {
  agentId: string;
  tenant: string;
  scope: MutationScope;
  op: MutationOp;
  key: string;
  oldHash?: string | undefined;
  newHash?: string | undefined;
  tsMs?: number;
}): MutationEvent {
  return {
    agent_id: p.agentId,
    tenant: p.tenant,
    scope: p.scope,
    op: p.op,
    key: p.key,
    ...(p.oldHash !== undefined ? { old_hash: p.oldHash } : {}),
    ...(p.newHash !== undefined ? { new_hash: p.newHash } : {}),
    ts_ms: p.tsMs ?? Date.now(),
  };
}
