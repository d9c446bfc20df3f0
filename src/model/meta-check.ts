// Owns the check of a snapshot's metadata as a store's plaintext catalogue holds it: a bundle's sidecar
// (store/catalog.ts) and a repository's listing entry (repository/snapshots.ts). Either is written by
// whoever can write the store, so each field readers use (list's table, retention, the fleet view, the
// console) must be there with its type before the entry is used at all: a label that was a number
// crashed `list`, a `created_by` that was an object failed an agent's whole retention run, and an
// entry for agent `Bad Id` failed the fleet view for everyone (stop 62 review).

import { isValidId } from './ids.js';

export const HEX64 = /^[0-9a-f]{64}$/;
export const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
/**
 * A time in ms since the epoch that a Date can show (±8.64e15; JSON's `1e400` is Infinity: it crashed
 * `list`, and as the "newest" snapshot it made retention delete the real newest one).
 */
export const isTime = (v: unknown): v is number => isCount(v) && v <= 8.64e15;
const optional = (v: unknown, ok: (v: unknown) => boolean): boolean => v === undefined || ok(v);
const isString = (v: unknown): v is string => typeof v === 'string';

/** The schema versions a snapshot's metadata records, each a count. */
export const SCHEMA_VERSION_KEYS = ['long_term', 'vector', 'concepts', 'compactions', 'manifest'] as const;

/** The fields every catalogue entry must have (a listing entry may lack the others: §8). */
const ALWAYS = new Set(['agent_id', 'tenant', 'created_at_ms']);

/**
 * The first field of `m` that a reader would use and that is of the wrong type (agent and tenant must be
 * valid ids, the format one `formats` matches) or missing, or undefined when every one is sound.
 * `required`: whether every field a sidecar holds must be there (a listing entry needs only its agent,
 * tenant and time: docs/repository.md §8). The fields only one catalogue has (a sidecar's size and
 * encryption, a listing entry's added bytes) are its own to check.
 */
export function wrongMetaField(
  m: Record<string, unknown>,
  formats: RegExp,
  required = true,
): string | undefined {
  const sv = m.schema_versions as Record<string, unknown> | null | undefined;
  const fields: Array<[string, (v: unknown) => boolean]> = [
    ['agent_id', (v) => isString(v) && isValidId(v)],
    ['tenant', (v) => isString(v) && isValidId(v)],
    ['label', (v) => optional(v, isString)],
    ['created_at_ms', isTime],
    ['bundle_sha256', (v) => isString(v) && HEX64.test(v)],
    ['git_oid', (v) => optional(v, (o) => isString(o) && /^([0-9a-f]{40}|[0-9a-f]{64})$/.test(o))],
    [
      'schema_versions',
      () =>
        !!sv &&
        typeof sv === 'object' &&
        !Array.isArray(sv) &&
        SCHEMA_VERSION_KEYS.every((k) => isCount(sv[k])),
    ],
    ['redactions_applied', (v) => typeof v === 'boolean'],
    ['file_sha256', (v) => optional(v, (o) => isString(o) && HEX64.test(o))],
    ['created_by', (v) => optional(v, isString)],
    ['bundle_format', (v) => optional(v, (o) => isString(o) && formats.test(o))],
    ['signed_by', (v) => optional(v, (o) => isString(o) && /^[0-9a-f]{16}$/.test(o))],
  ];
  return fields.find(([k, ok]) => (required || ALWAYS.has(k) || m[k] !== undefined) && !ok(m[k]))?.[0];
}
