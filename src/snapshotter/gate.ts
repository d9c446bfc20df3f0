// Owns the restore capability gate of the original (§4.2): restore changes an agent's memory, so a
// surface (CLI, HTTP API) runs it only when `NEXO_MEMORY_RESTORE_ALLOW` is 1, true, yes or on. The
// library's restore() itself has no gate; the agent tool never exposes restore at all.

import { RestoreRefusedError } from '../model/errors.js';

const ALLOW = ['1', 'true', 'yes', 'on'];

export const RESTORE_GATE_ENV = 'NEXO_MEMORY_RESTORE_ALLOW';

export function restoreGateOpen(env: NodeJS.ProcessEnv = process.env): boolean {
  return ALLOW.includes((env[RESTORE_GATE_ENV] ?? '').trim().toLowerCase());
}

/** Throws RestoreRefusedError unless the gate is open. */
export function checkRestoreGate(env: NodeJS.ProcessEnv = process.env): void {
  if (!restoreGateOpen(env)) {
    throw new RestoreRefusedError(
      `restore is disabled: it replaces an agent's memory. Enable it with \`export ${RESTORE_GATE_ENV}=true\` (1, true, yes or on)`,
    );
  }
}
