// Owns the repository's version and its gate: a config a newer version wrote is SCHEMA_TOO_NEW
// (docs/repository.md §2), for Repository.open and for every path that reads or writes the repository
// without opening it (the listing, pins, retention's forgetting). Imports only the storage seam and the
// errors: `list` of a repository passes this gate and must not load the repository's machinery (keys,
// packs, threads; test/startup.test.ts).

import { type Backend, readAll } from '../backend/backend.js';
import { ObjectNotFoundError, SchemaTooNewError } from '../model/errors.js';

export const REPOSITORY_VERSION = 1;

/** The repository version gate: SchemaTooNewError for a config a newer version wrote. */
export function versionGate(c: { repository_version?: unknown }): void {
  if (typeof c.repository_version === 'number' && c.repository_version > REPOSITORY_VERSION)
    throw new SchemaTooNewError(c.repository_version, REPOSITORY_VERSION, 'repository_version', 'repository');
}

/**
 * The version gate of a path that reads or writes the repository without opening it (the listing,
 * pins, retention's forgetting: no identity needed), as Repository.open applies it (stop 47: `list`,
 * `pin` and `unpin` read and changed a repository of a newer version). Nothing to check when there is no
 * config (no repository yet: its callers say so); a config that is not JSON is left to Repository.open
 * (damage). Whether there is a config.
 */
export async function checkRepositoryVersion(backend: Backend): Promise<boolean> {
  let bytes: Buffer;
  try {
    bytes = await readAll(backend, { type: 'config', name: 'config' }, { maxBytes: 1024 * 1024 });
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return false;
    throw err;
  }
  let c: unknown;
  try {
    c = JSON.parse(bytes.toString('utf8'));
  } catch {
    return true;
  }
  if (typeof c === 'object' && c !== null) versionGate(c);
  return true;
}
