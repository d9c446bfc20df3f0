// Owns the redaction rule table: stable ids, the pattern of each secret shape, and a description.
// Rules run in table order, each on the output of the previous one. The original's seven ids
// (anthropic-api-key … jwt) keep their names and now cover the newer key shapes of their providers.
// Patterns are written for the secret shapes that providers document and that common open rule sets
// (gitleaks, secretlint, detect-secrets) cover; no regex is copied from them.

/** One rule. `group` names the capture group to replace (default: the whole match). */
export interface RedactionRule {
  id: string;
  description: string;
  pattern: RegExp;
  group?: number;
  /** Minimum Shannon entropy (bits per character) of the replaced text; lower values are kept. */
  minEntropy?: number;
  /** Minimum number of character classes (lowercase, uppercase, digits) in the replaced text. */
  minClasses?: number;
}

/** Bumped whenever a rule is added, removed or changes what it matches; recorded in the manifest. */
export const RULESET_VERSION = '2026.11-1';

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
const VALUE = '[A-Za-z0-9_+/=.~!$%^&*-]';

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
    description: 'HTTP `Authorization: Bearer …` header (the whole header text is replaced)',
    pattern: /Authorization:\s*Bearer\s+[A-Za-z0-9._~+/=-]{20,}/gi,
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
    // anchored on `://` (a fast literal search); the scheme is not part of the match
    pattern: /:\/\/[^\s:/?#@"'<>[\]]{1,256}:([^\s/?#@"'<>[\]]{1,256})@/g,
    group: 1,
  },
  {
    id: 'generic-secret',
    description:
      'a high-entropy value assigned to a key, secret, token or password name (`api_key = …`, `"password": "…"`); only the value is replaced',
    pattern: new RegExp(
      // key word (anywhere in the name: client_secret, AWS_SECRET_ACCESS_KEY), rest of the name,
      // optional (JSON-escaped) quote, operator, optional quote, the value; a value that is itself
      // followed by an operator is the next key (`note: api_key = …`), not a secret. Starting at the
      // key word, not the name, keeps the scan fast.
      `(?:${KEY_WORDS})[A-Za-z0-9_.-]{0,40}(?:\\\\?["'])?[ \\t]{0,5}(?:=>|:=|=|:)[ \\t]{0,5}(?:\\\\?["'])?` +
        `(${VALUE}{8,256})(?!${VALUE}|(?:\\\\?["'])?[ \\t]{0,5}(?:=|:(?!//)))`,
      'gi',
    ),
    group: 1,
    minEntropy: 3,
    minClasses: 2,
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
