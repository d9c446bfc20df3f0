// Owns reading a `since` bound as callers give it (CLI `--since`, HTTP `?since=`): milliseconds since
// the epoch, or an ISO 8601 date or date-time. Pure.

import { InvalidInputError } from '../model/errors.js';

export function parseSince(v: string): number {
  const s = v.trim();
  if (/^\d{1,16}$/.test(s)) return Number(s);
  if (/^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(s)) {
    const ms = Date.parse(s);
    if (Number.isFinite(ms)) return ms;
  }
  throw new InvalidInputError(
    `since must be milliseconds since the epoch or an ISO 8601 date/time, got ${JSON.stringify(v)}`,
  );
}
