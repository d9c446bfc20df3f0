// Owns how an interrupted restore that recovery finished or rolled back is said: the warning recovery
// gives (and gc tells apart from leftovers), and the plain line of gc's output and the daemon's log.

/** What recovery says of an interrupted restore it finished or rolled back (a warning; gc reports it apart). */
export function interruptedRestoreNote(
  restoreId: string,
  agentId: string,
  outcome: 'rolled_back' | 'completed',
): string {
  return `interrupted restore ${restoreId} of agent ${agentId}: ${outcome.replace('_', ' ')}`;
}

/** An interrupted restore a sweep finished or rolled back, said plainly (gc's output, the daemon's log). */
export function recoveredRestoreLine(
  agentId: string,
  r: { restore_id: string; outcome: 'rolled_back' | 'completed' },
): string {
  return `restore ${r.restore_id} of agent ${agentId} (interrupted) ${r.outcome === 'completed' ? 'finished' : 'rolled back'}`;
}
