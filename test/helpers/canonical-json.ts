// Canonical JSON as docs/format.md §5 defines it, written from the page (not from src/format): strings
// escaped by hand, not by JSON.stringify, member names sorted by their UTF-16 code units. Shared by the
// two independent readers (format-reader.test.ts for bundles, repository-reader.test.ts for the
// repository), which import nothing from src/ to read.

export function canonicalString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    const short: Record<number, string> = { 8: '\\b', 9: '\\t', 10: '\\n', 12: '\\f', 13: '\\r' };
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (short[c]) out += short[c];
    else if (c < 0x20) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/** Names compared as UTF-16BE bytes (= UTF-16 code units). */
export const utf16 = (s: string): Buffer => Buffer.from(s, 'utf16le').swap16();

export function canonical(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return canonicalString(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const o = v as Record<string, unknown>;
  const names = Object.keys(o).sort((a, b) => Buffer.compare(utf16(a), utf16(b)));
  return `{${names.map((k) => `${canonicalString(k)}:${canonical(o[k])}`).join(',')}}`;
}
