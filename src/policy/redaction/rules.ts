// Owns the redaction rule table: stable ids, the pattern of each secret shape, and a description.
// Rules run in table order, each on the output of the previous one. The original's seven ids
// (anthropic-api-key … jwt) keep their names and now cover the newer key shapes of their providers.
// Patterns are written for the secret shapes that providers document and that common open rule sets
// (gitleaks, secretlint, detect-secrets) cover; no regex is copied from them.

/**
 * One rule. `group` names the capture group to replace (default: the whole match); a list names the
 * groups of alternative shapes, and the first that took part in the match is replaced.
 */
export interface RedactionRule {
  id: string;
  description: string;
  pattern: RegExp;
  group?: number | readonly number[];
  /**
   * Continues the replaced text: run (sticky) where it ends, and what it matches is replaced too. For a
   * value the pattern bounds (so a failed attempt costs little), however long the value runs on.
   */
  extend?: RegExp;
  /** Minimum Shannon entropy (bits per character) of the replaced text; lower values are kept. */
  minEntropy?: number;
  /** Minimum number of character classes (lowercase, uppercase, digits) in the replaced text. */
  minClasses?: number;
  /** Keeps the replaced text when true (given its first 4,096 characters); must run in linear time. */
  keep?: (value: string) => boolean;
}

/** Bumped whenever a rule is added, removed or changes what it matches; recorded in the manifest. */
export const RULESET_VERSION = '2026.12-1';

/** The policy id in the manifest (the original's `memory-snapshot:default`). */
export const DEFAULT_POLICY_ID = 'memory-snapshot:default';

/** The original's seven rule ids, in its order. */
export const ORIGINAL_RULE_IDS = [
  'anthropic-api-key',
  'openai-api-key',
  'aws-access-key-id',
  'github-token',
  'slack-token',
  'bearer-token',
  'jwt',
] as const;

const KEY_WORDS =
  'api[_.-]?key|apikey|secret|token|passw(?:or)?d|passwd|pwd|passphrase|credentials?|private[_.-]?key|access[_.-]?key|auth[_.-]?key|client[_.-]?secret';

/** Characters of a generic secret value. */
const VALUE = '[A-Za-z0-9_+/=.~!$%^&*#@-]';
/**
 * One unit of an unquoted value: a value character, or a colon followed by a letter (a Telegram bot
 * token `123456789:AAH…`, `user:Secret`), never by a digit (a time, a port), `/` (a URL) or a space.
 */
const UNIT = `(?:${VALUE}|:(?=[A-Za-z]))`;
/**
 * One character of a quoted value: anything but a quote, a backslash or white space; a colon only
 * before a letter, as in an unquoted value (a quoted time or URL is no secret: a URL's password, if
 * any, is url-credentials').
 */
const QUOTED_CHAR = (q: string) => `(?:[^${q}\\\\\\s:]|:(?=[A-Za-z]))`;
/**
 * A quoted value, closed by its own quote (escaped in JSON or not): up to four words separated by
 * single spaces (a passphrase; a longer quoted sentence is prose), at least 8 characters.
 */
const QUOTED = (q: string) =>
  `\\\\?${q}(?=[^${q}\\\\\\r\\n]{8})(${QUOTED_CHAR(q)}+(?: ${QUOTED_CHAR(q)}+){0,3})\\\\?${q}`;

/** A handle or a channel (`@name`, `#name`): an identifier, not a secret. */
const HANDLE = /^[@#][A-Za-z0-9_.-]+$/;
/** An email address (`local@domain.tld`): contact data, not a secret. */
const EMAIL = /^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$/;
/** A word that is a secret's: it holds a digit or a symbol, trailing punctuation (`,` `.` `!` …) aside. */
const SECRET_WORD = /[^\p{L}]/u;
const TRAILING_PUNCTUATION = '.,;:!?';

function withoutTrailingPunctuation(word: string): string {
  let end = word.length;
  while (end > 0 && TRAILING_PUNCTUATION.includes(word.charAt(end - 1))) end--;
  return word.slice(0, end);
}

/**
 * generic-secret's value that is kept: a handle, a channel or an email address, or a multi-word (quoted)
 * value with a word of letters only (`"Alice and Bob"`, `"every 90 Days"`: a phrase; a passphrase of
 * words, `"Xk9#m Qp2$z"`, has a digit or a symbol in every word). Linear: it sees at most 4,096
 * characters (keep's sample); its patterns are anchored, and their repeats are separated by distinct
 * delimiters (`@`, `.`), so none backtracks quadratically.
 */
function ordinaryValue(value: string): boolean {
  // (an email address has at most 254 characters: a longer value, or a long value's sample, is none)
  if (value.length <= 254 && (HANDLE.test(value) || EMAIL.test(value))) return true;
  if (!value.includes(' ')) return false;
  return value.split(' ').some((word) => !SECRET_WORD.test(withoutTrailingPunctuation(word)));
}

export const RULES: readonly RedactionRule[] = [
  {
    id: 'private-key',
    description: 'PEM private key block (RSA, EC, DSA, OpenSSH, PGP, encrypted PKCS#8)',
    pattern:
      /-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----[\s\S]{16,65536}?-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----/g,
  },
  {
    id: 'anthropic-api-key',
    description: 'Anthropic API or admin key (sk-ant-api03-…, sk-ant-admin01-…)',
    pattern: /sk-ant-[A-Za-z0-9_-]{40,}/g,
  },
  {
    id: 'openai-api-key',
    description: 'OpenAI key: legacy sk-…, project sk-proj-…, service account sk-svcacct-…, admin sk-admin-…',
    pattern: /\bsk-(?:(?:proj|svcacct|admin|None)-)?[A-Za-z0-9_-]{20,}/g,
  },
  {
    id: 'aws-access-key-id',
    description: 'AWS access key id (AKIA long-term, ASIA temporary, ABIA, ACCA, A3T…)',
    pattern: /\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}\b/g,
  },
  {
    id: 'github-token',
    description:
      'GitHub token: personal (ghp_), OAuth (gho_), user-to-server (ghu_), server (ghs_), refresh (ghr_)',
    pattern: /\bgh[pousr]_[A-Za-z0-9]{30,}\b/g,
  },
  {
    id: 'slack-token',
    description: 'Slack token (xoxb-, xoxa-, xoxp-, xoxr-, xoxs-, xoxe-, xoxo-) or app-level token (xapp-)',
    pattern: /\b(?:xox[abeoprs]|xapp)-[A-Za-z0-9-]{10,}/g,
  },
  {
    id: 'bearer-token',
    description:
      'HTTP `Authorization: Bearer …` header (the whole header text is replaced), or `"Authorization": "Bearer …"` / `Authorization: "Bearer …"` (the token is replaced)',
    // the header (`Authorization: Bearer …`: the whole header text), or the header as a quoted key
    // and value, or an unquoted key with a quoted value (`"Authorization": "Bearer …"` in JSON, a dict,
    // `Authorization: "Bearer …"` in YAML: only the token, so the quotes and the structure stay)
    pattern:
      /(Authorization:\s*Bearer\s+[A-Za-z0-9._~+/=-]{20,})|Authorization(?:\\?["'])?[ \t]{0,5}[:=][ \t]{0,5}\\?["']Bearer[ \t]+([A-Za-z0-9._~+/=-]{20,})/gi,
    group: [1, 2],
  },
  {
    id: 'jwt',
    description: 'JSON Web Token (three base64url segments, header and payload starting with eyJ)',
    pattern: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b/g,
  },
  {
    id: 'github-fine-grained-pat',
    description: 'GitHub fine-grained personal access token (github_pat_…)',
    pattern: /\bgithub_pat_[A-Za-z0-9_]{50,}/g,
  },
  {
    id: 'gitlab-token',
    description:
      'GitLab token: personal/project/group (glpat-), deploy (gldt-), runner (glrt-), trigger (glptt-), CI job, OAuth, feed, agent',
    pattern: /\bgl(?:pat|dt|rt|ptt|cbt|oas|imt|ft|soat|agent|rtr|ffct)-[A-Za-z0-9_-]{20,}/g,
  },
  {
    id: 'slack-webhook-url',
    description: 'Slack incoming webhook or workflow trigger URL',
    pattern: /https:\/\/hooks\.slack\.com\/(?:services|workflows|triggers)\/[A-Za-z0-9_/-]{20,}/g,
  },
  {
    id: 'stripe-api-key',
    description: 'Stripe secret or restricted key (sk_live_, rk_live_, sk_test_, rk_test_)',
    pattern: /\b[rs]k_(?:live|test)_[A-Za-z0-9]{20,}\b/g,
  },
  {
    id: 'google-api-key',
    description: 'Google API key (AIza…)',
    pattern: /\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])/g,
  },
  {
    id: 'url-credentials',
    description: 'password in a URL (scheme://user:password@host); only the password is replaced',
    // anchored on `://` (a fast literal search); the scheme is not part of the match. The user may be
    // empty (`redis://:pw@host`); the password runs to the last `@` before the path, so it may hold `@`
    // and `#` (written unencoded in connection strings). Neither part can hold `/`, so an attempt reads
    // no further than the next `://`: unbounded, and still linear.
    pattern: /:\/\/[^\s:/?#@"'<>[\]]*:([^\s/?"'<>[\]]+)@/g,
    group: 1,
  },
  {
    id: 'generic-secret',
    description:
      'a high-entropy value assigned to a key, secret, token or password name (`api_key = …`, `"password": "…"`, a quoted value to its closing quote); only the value is replaced',
    pattern: new RegExp(
      // key word (anywhere in the name: client_secret, AWS_SECRET_ACCESS_KEY), rest of the name,
      // optional (JSON-escaped) quote, operator, the value; an unquoted value that is itself followed
      // by an operator is the next key (`note: api_key = …`), not a secret. Starting at the key word,
      // not the name, keeps the scan fast. Linear: a quoted value's attempt reads no further than the
      // next quote of its kind, an unquoted one at most 257 units (the rest is `extend`'s, once).
      `(?:${KEY_WORDS})[A-Za-z0-9_.-]{0,40}(?:\\\\?["'])?[ \\t]{0,5}(?:=>|:=|=|:)[ \\t]{0,5}` +
        // a quoted value (closed by its quote), else an unquoted one (after a quote that is not closed);
        // an unquoted value longer than 256 units is matched by its first 256 and continued by `extend`
        `(?:${QUOTED('"')}|${QUOTED("'")}|(?:\\\\?["'])?` +
        `((?=${UNIT}{257})${UNIT}{256}|${UNIT}{8,256}(?!${UNIT}|(?:\\\\?["'])?[ \\t]{0,5}(?:=|:(?!//)))))`,
      'gi',
    ),
    group: [1, 2, 3],
    // (runs of value characters at once: this is the one part of a match that can be megabytes long)
    extend: new RegExp(`(?:${VALUE}+|:(?=[A-Za-z]))*`, 'y'),
    minEntropy: 3,
    minClasses: 2,
    keep: ordinaryValue,
  },
];

export const RULE_IDS: readonly string[] = RULES.map((r) => r.id);

/**
 * The cheapest test, case-sensitive: every rule's match holds one of `- _ : =`, a JWT's `eyJ`, or an
 * AWS or Google key prefix. Prose made of words, spaces and full stops fails it at memchr speed.
 */
export const TRIGGER = /[-_:=]|eyJ|A(?:KIA|SIA|BIA|CCA|3T[A-Z0-9]|GPA|IDA|ROA|IPA|NPA|NVA|PKA|Iza)/;

/**
 * The second, case-insensitive test that every rule's match must pass (each rule's fixed part appears in
 * it). Text that fails it is skipped without running the rules, which keeps prose-heavy databases fast.
 */
export const PREFILTER =
  /sk-|a3t|akia|asia|abia|acca|agpa|aida|aroa|aipa|anpa|anva|apka|gh[pousr]_|github_pat_|gl[a-z]{1,5}-|xox|xapp-|hooks\.slack|[rs]k_(?:live|test)_|aiza|private key|bearer|eyj|:\/\/|key|secret|token|passw|pwd|passphrase|credential/i;
