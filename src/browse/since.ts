// Owns reading a `since` bound as callers give it (CLI `--since`, HTTP `?since=`): milliseconds since
// the epoch, or an ISO 8601 date or date-time, read strictly and in UTC whatever the host's zone (as the
// console and retention read days). Pure.

import { InvalidInputError } from '../model/errors.js';

/** The last time a date can show (ms since the epoch, ±8.64e15): format.md's range of a time. */
export const MAX_TIME_MS = 8.64e15;

// YYYY-MM-DD, then optionally [T ]HH:MM[:SS[.fraction]] and an offset (Z, ±HH:MM, ±HHMM).
const DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|([+-])(\d{2}):?(\d{2}))?)?$/;

const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];

const leap = (y: number) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;

/** Days of month `m` (1..12) of year `y`, leap years counted. */
export function daysInMonth(y: number, m: number): number {
  return m === 2 ? (leap(y) ? 29 : 28) : [4, 6, 9, 11].includes(m) ? 30 : 31;
}

/**
 * The time `v` names, in ms since the epoch: a non-negative integer of ms (at most 8.64e15), or an ISO
 * 8601 date (its midnight, UTC) or date-time (without an offset: UTC). A day the month does not have,
 * an hour past 23, a minute or second past 59 are refused (Date.parse rolled 2026-02-31 into March and
 * read a date-time without an offset in the host's zone; stop 46). INVALID_INPUT.
 */
export function parseSince(v: string): number {
  const s = v.trim();
  const refuse = (why: string): never => {
    throw new InvalidInputError(`since ${why}, got ${JSON.stringify(v)}`);
  };
  if (/^\d+$/.test(s)) {
    const ms = Number(s);
    if (ms > MAX_TIME_MS) refuse('in ms since the epoch must be at most 8640000000000000 (the last date)');
    return ms;
  }
  const m = DATE_TIME.exec(s);
  if (!m) refuse('must be milliseconds since the epoch or an ISO 8601 date (YYYY-MM-DD) or date-time');
  const [, y, mo, d, h, mi, sec, frac, zone, sign, oh, om] = m!;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  if (month < 1 || month > 12) refuse(`has no month ${mo}`);
  const days = daysInMonth(year, month);
  if (day < 1 || day > days) refuse(`is not a date: ${MONTHS[month - 1]} ${y} has ${days} days`);
  const hour = Number(h ?? 0);
  const minute = Number(mi ?? 0);
  const second = Number(sec ?? 0);
  if (hour > 23 || minute > 59 || second > 59) refuse('is not a time of day (00:00:00 to 23:59:59)');
  const offsetMin = zone && zone !== 'Z' ? (sign === '-' ? -1 : 1) * (Number(oh) * 60 + Number(om)) : 0;
  if (zone && zone !== 'Z' && (Number(oh) > 23 || Number(om) > 59)) refuse('has no offset ' + zone);
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // not Date.UTC: it reads years 0..99 as 1900..1999
  date.setUTCHours(hour, minute, second, Number((frac ?? '').padEnd(3, '0').slice(0, 3)));
  return date.getTime() - offsetMin * 60_000;
}
