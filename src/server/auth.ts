// Owns the HTTP API's bearer-token check: the `Authorization: Bearer <token>` header compared with the
// configured token in constant time (both sides hashed first, so neither length nor content leaks
// through timing).

import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** The token of an `Authorization: Bearer …` header, or undefined when there is none. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
  return m?.[1];
}

/** True when `presented` equals `expected`; the comparison takes the same time for any input. */
export function tokenMatches(expected: string, presented: string | undefined): boolean {
  const ok = timingSafeEqual(digest(expected), digest(presented ?? ''));
  return ok && presented !== undefined && expected.length > 0;
}
