// Owns the fleet overview: every agent of the store (its bundles and its repository snapshots) with
// its snapshot count, last snapshot, bytes stored and added, pins, and the kinds of its snapshots
// (model/kind.ts). Reads only listings: no bundle is opened, nothing is locked. Also the operations
// other processes run now (a CLI snapshot, say): the agent locks held by another process, with what
// the holder recorded (operation, pid, host, since).

import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { type SnapshotKind, snapshotKind } from '../model/kind.js';
import type { SnapshotMeta } from '../model/types.js';
import { storeAgents } from '../store/catalog.js';
import { readOwner, tryAcquire } from '../store/lock.js';
import type { LocalSnapshotter } from './local.js';

export interface AgentOverview {
  agent_id: string;
  tenant: string;
  snapshots: number;
  last_snapshot_id?: string;
  last_snapshot_at_ms?: number;
  /**
   * The sizes of the agent's bundles, plus, for its repository snapshots, what each added to the
   * repository when it was taken (its new packs). Not what the agent's snapshots reference: data
   * shared with other snapshots or agents counts once, in the snapshot that first stored it (an agent
   * whose data another stored first shows little), and a deleted snapshot's share leaves the sum while
   * later snapshots may still use that data. What they reference would need every manifest read.
   * A repository snapshot whose added bytes are not known (`added_bytes` null: a listing entry
   * rebuilt after a kill) is not counted: see `added_unknown`.
   */
  bytes_stored: number;
  /** How many snapshots `bytes_stored` leaves out, their added bytes not known (0 normally). */
  added_unknown: number;
  /** Bytes the newest snapshot added (its bundle's size in a bundle store); null when not known. */
  bytes_added_last?: number | null;
  pins: number;
  kinds: Partial<Record<SnapshotKind, number>>;
}

/** Every (tenant, agent) with snapshots, bundles or a journal, sorted by tenant then agent. */
export async function storeAgentPairs(
  s: LocalSnapshotter,
  tenant?: string,
): Promise<Array<[string, string]>> {
  const pairs = new Map<string, [string, string]>();
  for (const [t, a] of await storeAgents(s.layout, tenant)) pairs.set(`${t}/${a}`, [t, a]);
  if (s.usesRepository())
    for (const m of await s.repository.listAll(tenant))
      pairs.set(`${m.tenant}/${m.agent_id}`, [m.tenant, m.agent_id]);
  return [...pairs.values()].sort(([t1, a1], [t2, a2]) =>
    t1 === t2 ? (a1 < a2 ? -1 : 1) : t1 < t2 ? -1 : 1,
  );
}

/** The overview of one agent from its listing (newest first, as `list` returns it). */
export function overviewOf(agentId: string, tenant: string, metas: readonly SnapshotMeta[]): AgentOverview {
  const kinds: Partial<Record<SnapshotKind, number>> = {};
  for (const m of metas) {
    const k = snapshotKind(m.created_by);
    kinds[k] = (kinds[k] ?? 0) + 1;
  }
  const last = metas[0];
  // what a snapshot cost its store; null when not known (never its size instead: that overstated it)
  const added = (m: SnapshotMeta): number | null =>
    m.added_bytes === undefined ? m.bundle_size_bytes : m.added_bytes;
  const lastAdded = last ? added(last) : undefined;
  return {
    agent_id: agentId,
    tenant,
    snapshots: metas.length,
    ...(last ? { last_snapshot_id: last.id, last_snapshot_at_ms: last.created_at_ms } : {}),
    bytes_stored: metas.reduce((n, m) => n + (added(m) ?? 0), 0),
    added_unknown: metas.filter((m) => added(m) === null).length,
    ...(lastAdded !== undefined ? { bytes_added_last: lastAdded } : {}),
    pins: metas.filter((m) => m.pinned).length,
    kinds,
  };
}

/** The overview of every agent of the store (of `tenant`, or of every tenant). */
export async function fleetOverview(s: LocalSnapshotter, tenant?: string): Promise<AgentOverview[]> {
  const out: AgentOverview[] = [];
  for (const [t, a] of await storeAgentPairs(s, tenant)) out.push(overviewOf(a, t, await s.list(a, t)));
  return out;
}

/** An agent lock another process holds now. */
export interface HeldOperation {
  agent_id: string;
  tenant: string;
  /** What the holder recorded: `snapshot`, `restore`, `gc`, `delete`, …. */
  operation: string;
  pid: number;
  host: string;
  since_ms: number;
}

/**
 * The agent locks held now by other processes. A lock is probed with a shared try (never waited
 * for; released at once), so a holder is only ever reported while it holds the lock; this process's
 * own operations are left out.
 */
export function operationsOfOthers(
  s: LocalSnapshotter,
  pairs: ReadonlyArray<[string, string]>,
): HeldOperation[] {
  const out: HeldOperation[] = [];
  const me = hostname();
  for (const [t, a] of pairs) {
    const path = s.layout.agentLockPath(t, a);
    if (!existsSync(path)) continue;
    const owner = readOwner(path);
    if (!owner || (owner.pid === process.pid && owner.host === me)) continue;
    const probe = tryAcquire(path, 'shared');
    if (probe) {
      probe.release();
      continue;
    }
    out.push({ agent_id: a, tenant: t, ...owner });
  }
  return out;
}
