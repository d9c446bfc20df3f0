// Owns the configuration file: YAML with a `memory.snapshot` section (or a top-level `snapshot`
// section, as in the original's config/memory.yaml), `${VAR}` expansion, unknown keys rejected, and
// errors that name the dotted key. A section only some programs read (the daemon's `server`) is
// resolved only by a program that asks for it. Path keys (marked `.path()` in the schema) resolve
// against the config file's directory, `~/` against the home directory. The file is read bounded (a
// regular UTF-8 file of at most 1 MiB) and its YAML problems are one line that never quotes the file.
// Every key takes effect (README "Configuration reference" lists what each does). The schema is
// described with ./schema.ts (not a general schema library: start-up cost, docs/decisions.md).

import { homedir } from 'node:os';
import { dirname, resolve } from 'node:path';
import type * as Yaml from 'yaml';
import { SUBJECT_PREFIX_RE } from '../events/subjects.js';
import { ConfigError } from '../model/errors.js';
import { labelProblem, validateAgentId, validateTenant } from '../model/ids.js';
import { RULE_IDS } from '../policy/redaction/rules.js';
import { MAX_CONFIG_FILE_BYTES, readSmallText, SmallFileProblem } from '../util/small-file.js';
import { vendored } from '../util/vendored.js';
import { CONFIG_DEFAULTS, NATS_URL_RE } from './defaults.js';
import {
  array,
  boolean,
  describeIssue,
  type Infer,
  integer,
  mapPaths,
  object,
  oneOf,
  type Path,
  problem,
  string,
  stringKeys,
} from './schema.js';

export { CONFIG_DEFAULTS, NATS_URL_RE };

const count = () => integer().min(0, 'must be ≥ 0');
const positive = () => integer().min(1, 'must be ≥ 1');
const agentId = () =>
  string().refine(
    (v) => isValid(() => validateAgentId(v)),
    'must be an agent id ([a-z0-9_-], 1..64 bytes, not starting or ending with _ or -)',
  );
const tenantId = () =>
  string().refine(
    (v) => isValid(() => validateTenant(v)),
    'must be a tenant ([a-z0-9_-], 1..64 bytes, not starting or ending with _ or -)',
  );

function isValid(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch {
    return false;
  }
}

const LISTEN_RE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/;

const retentionSection = object({
  keep_count: count().optional(),
  max_age_days: count().optional(),
  keep_daily: count().optional(),
  keep_weekly: count().optional(),
  keep_monthly: count().optional(),
  /** Automatic anchors (created_by auto-…): the N newest of each kind (default 5). */
  anchor_keep_count: count().optional(),
  /** … none older than this (default 30; 0 = no limit). */
  anchor_max_age_days: count().optional(),
  /** Anchors taken before memory-mutating tools (auto-pre-mutating-tool): the N newest (default 20). */
  pre_mutating_tool_keep_count: count().optional(),
  /** … none older than this many hours (default 24; 0 = no limit). */
  pre_mutating_tool_max_age_hours: count().optional(),
  /** The agent's own snapshots (created_by tool, MCP): the N newest (default 30). */
  tool_keep_count: count().optional(),
  /** … none older than this (default 90; 0 = no limit). */
  tool_max_age_days: count().optional(),
  backup_max_age_days: count().optional(),
  leftover_grace_secs: count().optional(),
  /** The daemon's retention sweep interval (the original's gc_interval_secs, default 3600). */
  gc_interval_secs: positive().optional(),
});

const preMutatingToolSection = object({
  /** At most one pre-mutating-tool snapshot per agent per this many seconds (default 60; 0 = every call). */
  min_interval_secs: count()
    .max(
      Math.floor(Number.MAX_SAFE_INTEGER / 1000),
      'must be ≤ 9007199254740 (its milliseconds an exact integer)',
    )
    .optional(),
});

const encryptionSection = object({
  /** Encrypt every snapshot to `recipients` (default: true when recipients are listed). */
  enabled: boolean().optional(),
  /** age X25519 recipients every snapshot is encrypted to (pre-restore anchors too). */
  recipients: array(
    string().regex(/^age1[02-9ac-hj-np-z]+$/, 'must be an age1… X25519 recipient'),
  ).optional(),
  /** Identity file used to open encrypted bundles when --decrypt-identity is not given. */
  identity_path: string().min(1, 'must not be empty').path().optional(),
});

const storeSection = object({
  /**
   * Where new snapshots go: `repository` (content-addressed, incremental), `bundles` (one .tar.zst per
   * snapshot, as 0.2), `auto` (default: the repository, unless the state root holds bundles and no
   * repository). Environment: NEXO_MEMORY_STORE_FORMAT.
   */
  format: oneOf(['auto', 'repository', 'bundles']).optional(),
  /**
   * Where the repository is: `local` (default: `<root>/repository`), `nats` or `s3` (a remote
   * repository; the store format is then `repository`). `--repo URL` and NEXO_MEMORY_REPO override the
   * location; the settings below still apply. docs/remote.md.
   */
  backend: oneOf(['local', 'nats', 's3']).optional(),
  /** NATS JetStream: `servers` and `bucket` name the repository (nats://host:port[,…]/bucket). */
  nats: object({
    servers: array(
      string().regex(
        /^nats:\/\/[^\s@/,]+$/,
        'must be nats://host:port (credentials go in user/password/token)',
      ),
    )
      .min(1, 'must list at least one server')
      .optional(),
    bucket: string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1..64 characters of [A-Za-z0-9_-]')
      .optional(),
    /** JetStream replicas of buckets this tool creates (default 1; 3 on a 3-node cluster). */
    replicas: integer().min(1, 'must be ≥ 1').max(5, 'must be ≤ 5').optional(),
    user: string().min(1, 'must not be empty').optional(),
    password: string().min(1, 'must not be empty').optional(),
    token: string().min(1, 'must not be empty').optional(),
    creds_file: string().min(1, 'must not be empty').path().optional(),
    /** How long one request (and one attempt of it) may take, ms (default 10000). */
    timeout_ms: integer().min(100, 'must be ≥ 100').max(600_000, 'must be ≤ 600000').optional(),
  }).optional(),
  /** S3-compatible storage: `bucket` and `prefix` name the repository (s3://bucket/prefix). */
  s3: object({
    bucket: string().min(1, 'must not be empty').optional(),
    prefix: string().optional(),
    region: string().min(1, 'must not be empty').optional(),
    endpoint: string()
      .regex(
        /^https?:\/\/[^\s@/?#]+\/?$/,
        'must be http(s)://host[:port] (credentials go in access_key_id/secret_access_key)',
      )
      .optional(),
    force_path_style: boolean().optional(),
    access_key_id: string().min(1, 'must not be empty').optional(),
    secret_access_key: string().min(1, 'must not be empty').optional(),
    session_token: string().min(1, 'must not be empty').optional(),
    /** The longest connection attempt or silence inside a request, ms (default 30000). */
    timeout_ms: integer().min(100, 'must be ≥ 100').max(600_000, 'must be ≤ 600000').optional(),
    /** Objects at least this big go up as multipart uploads (default 16 MiB; at least 5 MiB). */
    multipart_threshold: integer()
      .min(5 * 1024 * 1024, 'must be ≥ 5242880 (5 MiB)')
      .max(5 * 1024 * 1024 * 1024, 'must be ≤ 5 GiB')
      .optional(),
    /** Ranged GETs of one load in flight at once (default 4). */
    parallel_reads: integer().min(1, 'must be ≥ 1').max(32, 'must be ≤ 32').optional(),
  }).optional(),
  /** Retries of a remote store's transient failures (docs/remote.md). */
  retry: object({
    attempts: integer().min(1, 'must be ≥ 1').max(20, 'must be ≤ 20').optional(),
    base_delay_ms: count().max(60_000, 'must be ≤ 60000').optional(),
    max_delay_ms: count().max(600_000, 'must be ≤ 600000').optional(),
  }).optional(),
});

const eventsSection = object({
  /** Broker for lifecycle and mutation events; none = no events (`--nats URL` overrides). */
  nats_url: string()
    .regex(
      NATS_URL_RE,
      'must be nats://host:port (or tls://…), several separated by commas; credentials go in events.user/password, token or creds_file',
    )
    .optional(),
  /** The broker's credentials (never in the URL: it shows in process lists and logs); use ${VAR}. */
  user: string().min(1, 'must not be empty').optional(),
  password: string().min(1, 'must not be empty').optional(),
  token: string().min(1, 'must not be empty').optional(),
  /** A NATS `.creds` file (JWT and NKey seed). */
  creds_file: string().min(1, 'must not be empty').path().optional(),
  lifecycle_subject_prefix: string()
    .regex(SUBJECT_PREFIX_RE, 'must be dot-separated tokens of [A-Za-z0-9_-] (no wildcards)')
    .optional(),
  mutation_subject_prefix: string()
    .regex(SUBJECT_PREFIX_RE, 'must be dot-separated tokens of [A-Za-z0-9_-] (no wildcards)')
    .optional(),
  /** Gates MemoryMutationPublisher (default true). */
  mutation_publish_enabled: boolean().optional(),
  /** Delivery attempts per event while the broker is up (default 3). */
  max_attempts: integer().min(1, 'must be ≥ 1').max(10, 'must be ≤ 10').optional(),
  /** Per connection attempt, ms (default 2000). */
  connect_timeout_ms: integer().min(1, 'must be ≥ 1').max(60_000, 'must be ≤ 60000').optional(),
  /** How long a one-shot CLI run waits for queued events at exit, ms (default 2000). */
  close_timeout_ms: count().max(60_000, 'must be ≤ 60000').optional(),
});

const redactionSection = object({
  /**
   * Whether snapshots taken on request (CLI, API, agent tool) are redacted by default (default false:
   * what stays on the host restores exactly; `--redact`/`--no-redact`, `redact`, `redact_secrets` override).
   */
  enabled: boolean().optional(),
  /** Regular expressions; a match whose secret text matches one is kept. */
  allowlist: array(
    string().refine((s) => isValid(() => new RegExp(s)), 'must be a valid regular expression'),
  ).optional(),
  /** Rule ids that do not run (docs/redaction.md lists them). */
  exclude_rules: array(
    string().refine((s) => RULE_IDS.includes(s), 'must be a redaction rule id (docs/redaction.md)'),
  ).optional(),
});

/**
 * A trusted_keys entry that is a key, not a file: what loadTrustedKeys takes inline (a public key, and
 * the keys it refuses by name: a secret key, an age key, an SSH key), never resolved as a path (a
 * secret key pasted there must not become part of a file name in an error).
 */
const isInlineKey = (v: string): boolean =>
  /^(?:nexo-sign-pub1|nexo-sign-secret-key-1|age-secret-key-1)/i.test(v.trim()) ||
  /^(?:age1|ssh-)/.test(v.trim());

const signingSection = object({
  /** Secret key file every snapshot is signed with (pre-restore anchors too). ("≥ 1": the wording users had.) */
  key_path: string().min(1, 'must be ≥ 1').path().optional(),
  /** Public keys restore (and verify, when require_signature) trust: nexo-sign-pub1… strings or files. */
  trusted_keys: array(string().min(1, 'must be ≥ 1').path({ notAPath: isInlineKey })).optional(),
  /** Restore refuses bundles without a valid signature by a trusted key. */
  require_signature: boolean().optional(),
});

const metricsSection = object({
  /** node_exporter textfile the CLI rewrites after each run (`--metrics-file` overrides). */
  textfile: string().min(1, 'must not be empty').path().optional(),
});

const scheduleEntry = object({
  /** Agents snapshotted by the daemon every `interval_secs`. */
  agents: array(agentId()).min(1, 'must list at least one agent'),
  tenant: tenantId().optional(),
  interval_secs: integer().min(60, 'must be ≥ 60').max(31_536_000, 'must be ≤ 31536000'),
  /**
   * Label of the scheduled snapshots (default `scheduled`): checked here by the rule every snapshot's
   * label is checked by (model/ids.ts), not first by a scheduled run hours after the daemon started.
   */
  label: string()
    .min(1, 'must not be empty')
    .refine(
      (v) => labelProblem(v) === undefined,
      (v) => `is not a valid label: ${labelProblem(v)}`,
    )
    .optional(),
});

/**
 * Why a bearer token could never be presented, or undefined when it can: an `Authorization: Bearer`
 * header carries one word of printable ASCII (the daemon reads the token as the header's one word; a
 * browser refuses other characters in a header, and Node reads a header's bytes as Latin-1). Names a
 * position, never the token. Whitespace at either end is refused, not trimmed (docs/decisions.md).
 */
export function tokenProblem(token: string): string | undefined {
  const why = (() => {
    if (/^\s/.test(token)) return 'begins with whitespace';
    if (/\s$/.test(token)) return 'ends with whitespace';
    for (let i = 0; i < token.length; i++) {
      const c = token.charAt(i);
      if (/\s/.test(c)) return `has whitespace at character ${i + 1}`;
      if (c < '!' || c > '~') return `character ${i + 1} is not printable ASCII`;
    }
    return undefined;
  })();
  return (
    why &&
    `${why}: a bearer token is one word of printable ASCII, as an Authorization header carries it (refused, not trimmed)`
  );
}

const bearerTokenSchema = () =>
  string()
    .min(16, 'must be at least 16 characters')
    .refine(
      (v) => tokenProblem(v) === undefined,
      (v) => tokenProblem(v)!,
    );

const serverSection = object({
  /** `host:port` of the daemon's HTTP endpoint (default 127.0.0.1:9464). */
  listen: string()
    .regex(LISTEN_RE, 'must be host:port')
    .refine((v) => Number(LISTEN_RE.exec(v)?.[2]) <= 65_535, 'port must be ≤ 65535')
    .optional(),
  /** Bearer token required on every request but /metrics and /healthz; use ${VAR}. */
  token: bearerTokenSchema().optional(),
  /** A second bearer token that only reads (GET routes, the console without write controls); use ${VAR}. */
  read_token: bearerTokenSchema().optional(),
  /** Allow restore through the daemon (default false; restore is operator-only). */
  allow_restore: boolean().optional(),
});

const snapshotSection = object({
  /** false: the CLI refuses commands that write the store; the daemon schedules nothing. */
  enabled: boolean().optional(),
  /** The snapshot store root (the original's `root`). */
  root: string().min(1, 'must not be empty').path().optional(),
  memdir_root: string().min(1, 'must not be empty').path().optional(),
  sqlite_root: string().min(1, 'must not be empty').path().optional(),
  /** Hosts attach the pre-dream adapter only when true (preDreamHookFromConfig). */
  auto_pre_dream: boolean().optional(),
  /** Default of restore's automatic pre-restore snapshot (`--no-auto-pre-snapshot` overrides). */
  auto_pre_restore: boolean().optional(),
  /** Hosts attach the pre-mutating-tool hook only when true (preMutatingToolHookFromConfig). */
  auto_pre_mutating_tool: boolean().optional(),
  pre_mutating_tool: preMutatingToolSection.optional(),
  /** At most SQLite's busy timeout (2^31 − 1 ms): a longer one broke every write gate's closing. */
  lock_timeout_secs: positive()
    .max(2_147_483, 'must be ≤ 2147483 (24.8 days, the longest wait a SQLite lock holds)')
    .optional(),
  /**
   * Whether what leaves the host (export, HTTP download) is redacted by default (default true;
   * `--no-redact`, `?redact=false` override). The original's key made the agent tool redact; see
   * docs/decisions.md.
   */
  redact_secrets_default: boolean().optional(),
  zstd_level: integer().min(1, 'must be ≥ 1').max(19, 'must be ≤ 19').optional(),
  zstd_workers: integer().min(0, 'must be ≥ 0').max(16, 'must be ≤ 16').optional(),
  /**
   * Snapshot a memdir whose `.git` reaches a repository outside it (linked worktree, submodule, symlink,
   * alternates); default false: refused (docs/decisions.md, stop 46).
   */
  allow_external_git: boolean().optional(),
  retention: retentionSection.optional(),
  encryption: encryptionSection.optional(),
  store: storeSection.optional(),
  signing: signingSection.optional(),
  redaction: redactionSection.optional(),
  events: eventsSection.optional(),
  metrics: metricsSection.optional(),
  schedule: array(scheduleEntry).optional(),
  server: serverSection.optional(),
}).refine((c) =>
  c.encryption?.enabled === true && !c.encryption.recipients?.length
    ? problem(
        ['encryption', 'enabled'],
        '= true requires at least one recipient in memory.snapshot.encryption.recipients',
      )
    : undefined,
);

/**
 * Every key whose value is a string, dotted under the section (`[]`: every entry of a list), and whether
 * it is a path (resolved against the config file's directory, `~` expanded): the schema's `.path()`.
 */
export function configStringKeys(): Array<{ key: string; path: boolean }> {
  return stringKeys(snapshotSection).map(({ at, path }) => ({
    key: at
      .map((seg) => (seg === -1 ? '[]' : `.${seg}`))
      .join('')
      .slice(1),
    path,
  }));
}

export type SnapshotConfig = Infer<typeof snapshotSection>;
export type RetentionConfig = Infer<typeof retentionSection>;
export type PreMutatingToolConfig = Infer<typeof preMutatingToolSection>;
export type EncryptionConfig = Infer<typeof encryptionSection>;
export type SigningConfig = Infer<typeof signingSection>;
export type RedactionConfig = Infer<typeof redactionSection>;
export type EventsConfig = Infer<typeof eventsSection>;
export type MetricsConfig = Infer<typeof metricsSection>;
export type ScheduleEntry = Infer<typeof scheduleEntry>;
export type ServerConfig = Infer<typeof serverSection>;
export type StoreConfig = Infer<typeof storeSection>;

export interface LoadedConfig {
  path: string;
  snapshot: SnapshotConfig;
  /**
   * How the file spells the section (`memory.snapshot`, or a top-level `snapshot`): errors found after
   * loading name a key as the file writes it (`${keyPrefix}.schedule[1]`).
   */
  keyPrefix: 'memory.snapshot' | 'snapshot';
}

/**
 * Sections only some programs read (the daemon's `server`). Such a section is resolved — `${VAR}`
 * expanded, values validated — only by a program that asks for it; the others check its keys only and
 * leave it out, so one config file serves the CLI and the daemon although only the daemon has, say,
 * the variable that holds the API token.
 */
const ON_DEMAND = { server: serverSection } as const;
export type OnDemandSection = keyof typeof ON_DEMAND;

export interface LoadConfigOptions {
  /**
   * The on-demand sections this program reads (`serve`: `server`). Default: none — the library itself
   * reads no on-demand section, so a host embedding it is not stopped by the daemon's variables.
   */
  sections?: readonly OnDemandSection[];
}

/** Leaves out the on-demand sections not asked for, after checking they are mappings of known keys. */
function withoutUnread(section: unknown, prefix: string, read: readonly OnDemandSection[]): unknown {
  if (!section || typeof section !== 'object' || Array.isArray(section)) return section;
  const out = { ...(section as Record<string, unknown>) };
  for (const [name, schema] of Object.entries(ON_DEMAND) as Array<[OnDemandSection, typeof serverSection]>) {
    if (read.includes(name) || out[name] === undefined || out[name] === null) continue;
    const value = out[name];
    if (typeof value !== 'object' || Array.isArray(value))
      throw new ConfigError(`${prefix}.${name} must be a mapping`);
    const unknown = Object.keys(value as object).find((k) => !schema.has(k));
    if (unknown !== undefined) throw new ConfigError(`${prefix}.${name}.${unknown}: unknown key`);
    delete out[name];
  }
  return out;
}

function expandVars(value: unknown, key: string): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      const v = process.env[name];
      if (v === undefined) throw new ConfigError(`${key}: environment variable ${name} is not set`);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandVars(v, `${key}[${i}]`));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, expandVars(v, key ? `${key}.${k}` : k)]),
    );
  }
  return value;
}

/**
 * The path a path key's value names (stop 47): `~` and `~/…` are the home directory (os.homedir(): $HOME,
 * else the user's entry), as a shell would expand them; another relative path is resolved against the
 * config file's directory `base`. `~user` is refused (ConfigError naming the key): there is no portable
 * way to find another user's home, and taking it as a directory named `~user` would be silent.
 */
function configFilePath(p: string, base: string, prefix: string, at: Path): string {
  if (p === '~' || p.startsWith('~/')) return resolve(homedir(), `.${p.slice(1)}`);
  if (p.startsWith('~'))
    throw new ConfigError(
      `${describeIssue(prefix, { path: at, code: 'rule', message: '' }).trimEnd()}: ~user is not expanded (only ~ and ~/…, your home directory): write the full path, or ./~… for a directory of that name`,
    );
  return resolve(base, p);
}

/**
 * The YAML library's reason for a problem, without the file's text: its first line, up to the first
 * `: ` (what follows quotes the source: a token, a block scalar's header, a key), except that an
 * unresolved tag keeps the tag it names (markup, not a value).
 */
function yamlReason(err: unknown): string {
  const message = (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
  if (/^Unresolved tag: \S+$/.test(message) && message.length <= 120) return message;
  const cut = message.indexOf(': ');
  return cut === -1 ? message : message.slice(0, cut);
}

/**
 * The one YAML document of `text` as plain values ({} when empty), or a ConfigError naming the file,
 * the line and column and the YAML library's reason, one line and never the file's text (stop 47: the
 * library's code frame printed the lines around a duplicated `token:`, the secret with them, to stderr
 * and into --json). What the library only warns of is refused too (an unknown tag such as `!custom`
 * was taken as a plain string, with Node's own warning on stderr), and so is a second document.
 */
function parseYaml(text: string, file: string): unknown {
  const yaml = vendored<typeof Yaml>('yaml');
  const lines = new yaml.LineCounter();
  // (logLevel: nothing goes to process warnings; every problem is in errors or warnings)
  const doc = yaml.parseDocument(text, { prettyErrors: false, lineCounter: lines, logLevel: 'error' });
  const error = doc.errors[0];
  const warning = doc.warnings[0];
  const problem = error ?? warning;
  if (problem) {
    const { line, col } = lines.linePos(problem.pos[0]);
    if (problem.code === 'MULTIPLE_DOCS')
      throw new ConfigError(
        `config file ${file} has a second YAML document at line ${line}: a config file holds one YAML document`,
      );
    throw new ConfigError(
      error
        ? `config file ${file} is not valid YAML at line ${line}, column ${col}: ${yamlReason(problem)}`
        : `config file ${file} is refused at line ${line}, column ${col}: ${yamlReason(problem)} (a config file takes plain YAML: no tags, no directives but %YAML)`,
    );
  }
  try {
    return doc.toJS() ?? {};
  } catch (err) {
    // an alias without its anchor, or too many aliases (a "billion laughs")
    throw new ConfigError(`config file ${file} is not valid YAML: ${yamlReason(err)}`);
  }
}

/**
 * Reads and validates a config file. Throws ConfigError naming the offending dotted key. On-demand
 * sections (`server`) are resolved only when `opts.sections` asks for them; otherwise only their keys
 * are checked and they are left out.
 */
export function loadConfig(path: string, opts: LoadConfigOptions = {}): LoadedConfig {
  const abs = resolve(path);
  let text: string;
  try {
    text = readSmallText(abs, MAX_CONFIG_FILE_BYTES, 'a config file');
  } catch (err) {
    if (err instanceof SmallFileProblem) throw new ConfigError(err.describe('config file', abs));
    throw new ConfigError(`cannot read config file ${abs}: ${(err as Error).message}`, { cause: err });
  }
  const doc = parseYaml(text, abs);
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    throw new ConfigError(`config file ${abs} must be a mapping`);
  const top = doc as Record<string, unknown>;
  let section: unknown;
  let prefix: LoadedConfig['keyPrefix'];
  const topKeys = Object.keys(top);
  if ('memory' in top) {
    prefix = 'memory.snapshot';
    const extra = topKeys.filter((k) => k !== 'memory');
    if (extra.length) throw new ConfigError(`${extra[0]}: unknown top-level key in ${abs}`);
    const memory = top.memory as Record<string, unknown> | null;
    if (!memory || typeof memory !== 'object') throw new ConfigError('memory: must be a mapping');
    const extraMem = Object.keys(memory).filter((k) => k !== 'snapshot');
    if (extraMem.length) throw new ConfigError(`memory.${extraMem[0]}: unknown key`);
    section = memory.snapshot ?? {};
  } else {
    // its keys are named as the file writes them
    prefix = 'snapshot';
    const extra = topKeys.filter((k) => k !== 'snapshot');
    if (extra.length)
      throw new ConfigError(
        `${extra[0]}: unknown top-level key in ${abs} (expected memory.snapshot or snapshot)`,
      );
    section = top.snapshot ?? {};
  }
  const expanded = expandVars(withoutUnread(section, prefix, opts.sections ?? []), prefix);
  const parsed = snapshotSection.check(expanded);
  if (!parsed.ok) throw new ConfigError(describeIssue(prefix, parsed.issue));
  const base = dirname(abs);
  const cfg = mapPaths(snapshotSection, parsed.value, (p, at) => configFilePath(p, base, prefix, at));
  if (cfg.signing?.require_signature && !cfg.signing.trusted_keys?.length)
    throw new ConfigError(
      `${prefix}.signing.require_signature: needs at least one signing.trusted_keys entry`,
    );
  return { path: abs, snapshot: cfg, keyPrefix: prefix };
}
