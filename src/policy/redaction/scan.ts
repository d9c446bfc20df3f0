// Owns scanning text for secrets: the compiled policy (rules minus exclusions, plus the allowlist),
// replacing each match with `[REDACTED:<rule id>]`, counting per rule, and deciding whether bytes are
// text at all (valid UTF-8 without NUL bytes) or binary data that is reported as not scanned. Pure.

import { InvalidInputError } from '../../model/errors.js';
import {
  DEFAULT_POLICY_ID,
  PREFILTER,
  type RedactionRule,
  RULE_IDS,
  RULES,
  RULESET_VERSION,
  TRIGGER,
} from './rules.js';

/** What the caller may configure (config `redaction.allowlist` / `redaction.exclude_rules`). */
export interface RedactionOptions {
  /** Regular expressions (JavaScript syntax); a match whose secret text matches one is kept. */
  allowlist?: readonly string[];
  /** Rule ids that do not run. */
  excludeRules?: readonly string[];
}

export interface RedactionPolicy {
  id: string;
  rulesetVersion: string;
  rules: readonly RedactionRule[];
  allowlist: readonly RegExp[];
  /** The configuration as given, so a worker thread can compile the same policy. */
  options: RedactionOptions;
}

export interface TextResult {
  text: string;
  /** Replacements per rule id (only rules that fired). */
  counts: Record<string, number>;
  matches: number;
}

export const REDACTED_MARK = '[REDACTED:';

/** Compiles a policy; InvalidInputError (naming the entry) for an unknown rule id or a bad regex. */
export function compilePolicy(options: RedactionOptions = {}): RedactionPolicy {
  const excluded = new Set(options.excludeRules ?? []);
  for (const id of excluded)
    if (!RULE_IDS.includes(id))
      throw new InvalidInputError(`redaction exclude_rules: unknown rule id ${JSON.stringify(id)}`);
  const allowlist = (options.allowlist ?? []).map((source, i) => {
    try {
      return new RegExp(source);
    } catch (err) {
      throw new InvalidInputError(`redaction allowlist[${i}]: ${(err as Error).message}`);
    }
  });
  return {
    id: DEFAULT_POLICY_ID,
    rulesetVersion: RULESET_VERSION,
    rules: RULES.filter((r) => !excluded.has(r.id)),
    allowlist,
    options: { allowlist: [...(options.allowlist ?? [])], excludeRules: [...excluded] },
  };
}

/** Shannon entropy in bits per character. */
export function shannonEntropy(s: string): number {
  const freq = new Map<string, number>();
  for (const ch of s) freq.set(ch, (freq.get(ch) ?? 0) + 1);
  let h = 0;
  const n = [...s].length;
  for (const c of freq.values()) {
    const p = c / n;
    h -= p * Math.log2(p);
  }
  return h;
}

/** How many of lowercase, uppercase and digits occur (punctuation does not count: prose has it). */
function charClasses(s: string): number {
  return Number(/[a-z]/.test(s)) + Number(/[A-Z]/.test(s)) + Number(/[0-9]/.test(s));
}

/** How much of a (long) secret the entropy and class tests look at: a value can be megabytes long. */
const SAMPLE_CHARS = 4096;

function keep(policy: RedactionPolicy, rule: RedactionRule, secret: string): boolean {
  if (secret.includes(REDACTED_MARK)) return true;
  const sample = secret.length > SAMPLE_CHARS ? secret.slice(0, SAMPLE_CHARS) : secret;
  if (rule.minEntropy !== undefined && shannonEntropy(sample) < rule.minEntropy) return true;
  if (rule.minClasses !== undefined && charClasses(sample) < rule.minClasses) return true;
  if (rule.keep?.(sample)) return true;
  return policy.allowlist.some((re) => re.test(secret));
}

/** The capture group to replace: the rule's, or the first of its list that took part; undefined: all. */
function groupOf(rule: RedactionRule, m: RegExpExecArray): number | undefined {
  if (rule.group === undefined || typeof rule.group === 'number') return rule.group;
  return rule.group.find((g) => m[g] !== undefined) ?? rule.group[0];
}

/** Applies one rule to `text`; returns the new text and how many replacements it made. */
function applyRule(policy: RedactionPolicy, rule: RedactionRule, text: string): { text: string; n: number } {
  const re = rule.pattern;
  re.lastIndex = 0;
  let out = '';
  let last = 0;
  let n = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    const group = groupOf(rule, m);
    let secret = group === undefined ? m[0] : m[group];
    if (secret === undefined || secret.length === 0) continue;
    const start = group === undefined ? m.index : m.index + m[0].lastIndexOf(secret);
    if (rule.extend) {
      // the value runs on past what the pattern bounds: the rest is part of it, and is not scanned again
      rule.extend.lastIndex = start + secret.length;
      const more = rule.extend.exec(text)?.[0] ?? '';
      if (more.length > 0) {
        secret += more;
        re.lastIndex = Math.max(re.lastIndex, start + secret.length);
      }
    }
    if (keep(policy, rule, secret)) continue;
    out += `${text.slice(last, start)}[REDACTED:${rule.id}]`;
    last = start + secret.length;
    n++;
  }
  re.lastIndex = 0;
  return n === 0 ? { text, n } : { text: out + text.slice(last), n };
}

/** Runs every rule of the policy, in order, each on the output of the previous one. */
export function redactText(policy: RedactionPolicy, text: string): TextResult {
  if (!TRIGGER.test(text) || !PREFILTER.test(text)) return { text, counts: {}, matches: 0 };
  const counts: Record<string, number> = {};
  let matches = 0;
  let cur = text;
  for (const rule of policy.rules) {
    const r = applyRule(policy, rule, cur);
    if (r.n > 0) {
      counts[rule.id] = r.n;
      matches += r.n;
      cur = r.text;
    }
  }
  return { text: cur, counts, matches };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The text of `bytes`, or undefined when they are binary (a NUL byte, or not valid UTF-8). */
export function asText(bytes: Uint8Array): string | undefined {
  if (bytes.indexOf(0) !== -1) return undefined;
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

export type BytesResult = { binary: true } | ({ binary: false; bytes: Buffer } & Omit<TextResult, 'text'>);

/** Redacts bytes that are text; binary bytes are returned as `{binary: true}` and left alone. */
export function redactBytes(policy: RedactionPolicy, bytes: Buffer): BytesResult {
  const text = asText(bytes);
  if (text === undefined) return { binary: true };
  const r = redactText(policy, text);
  return {
    binary: false,
    bytes: r.matches === 0 ? bytes : Buffer.from(r.text, 'utf8'),
    counts: r.counts,
    matches: r.matches,
  };
}

/** Adds `b`'s per-rule counts into `a`. */
export function addCounts(a: Record<string, number>, b: Readonly<Record<string, number>>): void {
  for (const [k, v] of Object.entries(b)) a[k] = (a[k] ?? 0) + v;
}
