// Small formatters: sizes, ages, dates, snapshot kinds (the same mapping as the library's fleet.ts).

export function bytes(n: number | undefined): string {
  if (n === undefined) return '—';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

export function age(ms: number | undefined, now = Date.now()): string {
  if (ms === undefined) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86_400) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86_400).toFixed(1)} d ago`;
}

export const when = (ms: number): string => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);

export const KINDS = ['manual', 'scheduled', 'pre-dream', 'pre-restore', 'pre-mutating-tool'] as const;
export type Kind = (typeof KINDS)[number];

export function kindOf(createdBy: string | undefined): Kind {
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

/**
 * A snapshot id short enough for a table, long enough to tell snapshots apart: ids are UUIDv7, whose
 * first 12 hex digits are the millisecond, so 8 characters are the same for every snapshot of a minute;
 * the first 18 (the millisecond and 12 random bits) differ, and are a prefix the CLI accepts.
 */
export const shortId = (id: string): string => id.slice(0, 18);
