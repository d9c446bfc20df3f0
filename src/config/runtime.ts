// Owns turning a validated config section (plus explicit overrides, e.g. CLI flags, which win) into the
// options of the runtime pieces: the snapshotter, the retention sweep, the NATS publisher. The CLI and
// the daemon share it, so a key means the same thing in both.

import type { BackendSettings } from '../backend/open.js';
import type { NatsPublisherOptions } from '../events/nats.js';
import type { SnapshotMetrics } from '../metrics/metrics.js';
import { ConfigError, InvalidInputError } from '../model/errors.js';
import type { RetentionPolicy } from '../policy/retention.js';
import type { GcOptions } from '../snapshotter/gc.js';
import type { LocalSnapshotterOptions } from '../snapshotter/local.js';
import { type StoreFormat, storeFormatFromEnv } from '../snapshotter/repository.js';
import type { SnapshotConfig } from './config.js';
import { CONFIG_DEFAULTS, NATS_URL_RE } from './defaults.js';

export interface StoreOverrides {
  stateRoot?: string | undefined;
  /** `--repo`: the repository's location (a path, nats://…, s3://…). */
  repo?: string | undefined;
  memdirRoot?: string | undefined;
  sqliteRoot?: string | undefined;
  zstdLevel?: number | undefined;
}

/** age recipients snapshots are encrypted to by default: `encryption.recipients` unless `enabled: false`. */
export function defaultRecipients(cfg: SnapshotConfig): string[] {
  const e = cfg.encryption;
  if (!e?.recipients?.length || e.enabled === false) return [];
  return [...e.recipients];
}

/**
 * LocalSnapshotter options from the config; overrides win, then the file, then the defaults. Errors name
 * keys under `keyPrefix`, the section as the file spells it (LoadedConfig.keyPrefix).
 */
export function snapshotterOptionsFromConfig(
  cfg: SnapshotConfig,
  o: StoreOverrides = {},
  keyPrefix = 'memory.snapshot',
): LocalSnapshotterOptions {
  const stateRoot = o.stateRoot ?? cfg.root ?? CONFIG_DEFAULTS.root;
  const recipients = defaultRecipients(cfg);
  const store = storeFormat(cfg);
  const repo = repoFromConfig(cfg, o.repo, keyPrefix);
  const repoSettings = backendSettingsFromConfig(cfg, keyPrefix);
  return {
    stateRoot,
    ...(store ? { store } : {}),
    ...(repo !== undefined ? { repo } : {}),
    ...(Object.keys(repoSettings).length > 0 ? { repoSettings } : {}),
    ...(cfg.encryption?.identity_path ? { identityPath: cfg.encryption.identity_path } : {}),
    memdirRoot: o.memdirRoot ?? cfg.memdir_root ?? stateRoot,
    sqliteRoot: o.sqliteRoot ?? cfg.sqlite_root ?? stateRoot,
    lockTimeoutMs: (cfg.lock_timeout_secs ?? CONFIG_DEFAULTS.lock_timeout_secs) * 1000,
    zstdLevel: o.zstdLevel ?? cfg.zstd_level ?? CONFIG_DEFAULTS.zstd_level,
    zstdWorkers: cfg.zstd_workers ?? CONFIG_DEFAULTS.zstd_workers,
    ...(cfg.allow_external_git ? { allowExternalGit: true } : {}),
    ...(recipients.length ? { recipients } : {}),
    ...(cfg.signing?.key_path ? { signingKey: cfg.signing.key_path } : {}),
    ...(cfg.signing?.trusted_keys ? { trustedKeys: cfg.signing.trusted_keys } : {}),
    ...(cfg.signing?.require_signature ? { requireSignature: true } : {}),
    // what leaves the host (export, download) is redacted unless this says otherwise
    redactExports: cfg.redact_secrets_default ?? CONFIG_DEFAULTS.redact_secrets_default,
    ...(cfg.redaction
      ? {
          redaction: {
            ...(cfg.redaction.allowlist ? { allowlist: cfg.redaction.allowlist } : {}),
            ...(cfg.redaction.exclude_rules ? { excludeRules: cfg.redaction.exclude_rules } : {}),
          },
        }
      : {}),
  };
}

/**
 * Where the repository is, as text for parseRepoLocation: `--repo` (`flag`), else NEXO_MEMORY_REPO, else
 * the config's `store.backend` with its `nats`/`s3` keys; undefined: the state root's own repository.
 */
export function repoFromConfig(
  cfg: SnapshotConfig,
  flag?: string,
  keyPrefix = 'memory.snapshot',
): string | undefined {
  if (flag !== undefined && flag !== '') return flag;
  const env = process.env.NEXO_MEMORY_REPO;
  if (env !== undefined && env !== '') return env;
  const st = cfg.store ?? {};
  const key = `${keyPrefix}.store`;
  if (st.backend === 'nats') {
    const n = st.nats ?? {};
    if (!n.servers?.length || !n.bucket)
      throw new ConfigError(
        `${key}.backend is nats: ${key}.nats.servers and ${key}.nats.bucket are required`,
      );
    return `nats://${n.servers.map((s) => s.slice('nats://'.length)).join(',')}/${n.bucket}`;
  }
  if (st.backend === 's3') {
    const b = st.s3 ?? {};
    if (!b.bucket) throw new ConfigError(`${key}.backend is s3: ${key}.s3.bucket is required`);
    const prefix = (b.prefix ?? '').replace(/^\/+/, '');
    return `s3://${b.bucket}${prefix ? `/${prefix}` : ''}`;
  }
  return undefined;
}

/**
 * A remote backend's settings from `store.nats`, `store.s3` and `store.retry`. Only keys the file sets
 * are passed: without them the S3 client uses the SDK's own chain (AWS_REGION, AWS_ENDPOINT_URL(_S3),
 * profiles, instance credentials). The values may be secrets: never printed.
 */
export function backendSettingsFromConfig(
  cfg: SnapshotConfig,
  keyPrefix = 'memory.snapshot',
): BackendSettings {
  const st = cfg.store ?? {};
  const out: { -readonly [K in keyof BackendSettings]: BackendSettings[K] } = {};
  const n = st.nats;
  if (n && (n.replicas ?? n.user ?? n.password ?? n.token ?? n.creds_file ?? n.timeout_ms) !== undefined)
    out.nats = {
      ...(n.timeout_ms !== undefined ? { timeoutMs: n.timeout_ms } : {}),
      ...(n.replicas !== undefined ? { replicas: n.replicas } : {}),
      ...(n.user !== undefined ? { user: n.user } : {}),
      ...(n.password !== undefined ? { password: n.password } : {}),
      ...(n.token !== undefined ? { token: n.token } : {}),
      ...(n.creds_file !== undefined ? { credsFile: n.creds_file } : {}),
    };
  const s = st.s3;
  if (s) {
    if ((s.access_key_id === undefined) !== (s.secret_access_key === undefined))
      throw new ConfigError(
        `${keyPrefix}.store.s3: access_key_id and secret_access_key go together (or neither: the SDK chain)`,
      );
    const s3 = {
      ...(s.region !== undefined ? { region: s.region } : {}),
      ...(s.endpoint !== undefined ? { endpoint: s.endpoint } : {}),
      ...(s.force_path_style !== undefined ? { forcePathStyle: s.force_path_style } : {}),
      ...(s.timeout_ms !== undefined ? { timeoutMs: s.timeout_ms } : {}),
      ...(s.multipart_threshold !== undefined ? { multipartThreshold: s.multipart_threshold } : {}),
      ...(s.parallel_reads !== undefined ? { parallelReads: s.parallel_reads } : {}),
      ...(s.access_key_id !== undefined && s.secret_access_key !== undefined
        ? {
            credentials: {
              accessKeyId: s.access_key_id,
              secretAccessKey: s.secret_access_key,
              ...(s.session_token !== undefined ? { sessionToken: s.session_token } : {}),
            },
          }
        : {}),
    };
    if (Object.keys(s3).length > 0) out.s3 = s3;
  }
  const r = st.retry;
  if (r)
    out.retry = {
      ...(r.attempts !== undefined ? { attempts: r.attempts } : {}),
      ...(r.base_delay_ms !== undefined ? { baseDelayMs: r.base_delay_ms } : {}),
      ...(r.max_delay_ms !== undefined ? { maxDelayMs: r.max_delay_ms } : {}),
    };
  return out;
}

/** The store format: NEXO_MEMORY_STORE_FORMAT, else `store.format`, else undefined (auto). */
export function storeFormat(cfg: SnapshotConfig): StoreFormat | undefined {
  return storeFormatFromEnv() ?? cfg.store?.format;
}

/** The retention policy of `retention.*` (keys absent from the file keep the policy defaults). */
export function retentionPolicyFromConfig(cfg: SnapshotConfig): Partial<RetentionPolicy> {
  const r = cfg.retention ?? {};
  const p: Partial<RetentionPolicy> = {};
  if (r.keep_count !== undefined) p.keepCount = r.keep_count;
  if (r.max_age_days !== undefined) p.maxAgeDays = r.max_age_days;
  if (r.keep_daily !== undefined) p.keepDaily = r.keep_daily;
  if (r.keep_weekly !== undefined) p.keepWeekly = r.keep_weekly;
  if (r.keep_monthly !== undefined) p.keepMonthly = r.keep_monthly;
  if (r.anchor_keep_count !== undefined) p.anchorKeepCount = r.anchor_keep_count;
  if (r.anchor_max_age_days !== undefined) p.anchorMaxAgeDays = r.anchor_max_age_days;
  if (r.pre_mutating_tool_keep_count !== undefined) p.preToolKeepCount = r.pre_mutating_tool_keep_count;
  if (r.pre_mutating_tool_max_age_hours !== undefined)
    p.preToolMaxAgeHours = r.pre_mutating_tool_max_age_hours;
  if (r.tool_keep_count !== undefined) p.toolKeepCount = r.tool_keep_count;
  if (r.tool_max_age_days !== undefined) p.toolMaxAgeDays = r.tool_max_age_days;
  return p;
}

/** gc options of `retention.*` for the daemon's RetentionWorker (interval: `gc_interval_secs`). */
export function retentionWorkerOptionsFromConfig(cfg: SnapshotConfig): GcOptions & { intervalMs: number } {
  const r = cfg.retention ?? {};
  return {
    policy: retentionPolicyFromConfig(cfg),
    ...(r.backup_max_age_days !== undefined ? { backupMaxAgeDays: r.backup_max_age_days } : {}),
    ...(r.leftover_grace_secs !== undefined ? { leftoverGraceMs: r.leftover_grace_secs * 1000 } : {}),
    intervalMs: (r.gc_interval_secs ?? CONFIG_DEFAULTS.retention.gc_interval_secs) * 1000,
  };
}

/** Validates a broker URL given outside the config (`--nats`). */
export function checkNatsUrl(url: string, what = '--nats'): string {
  if (!NATS_URL_RE.test(url))
    throw new InvalidInputError(
      `${what} must be nats://host:port (or tls://…), several separated by commas; credentials go in the config (events.user/password, token or creds_file), never in the URL`,
    );
  return url;
}

/**
 * Publisher options when a broker is configured (`natsUrl` override, else `events.nats_url`);
 * undefined when there is none.
 */
export function natsOptionsFromConfig(
  cfg: SnapshotConfig,
  natsUrl?: string,
  metrics?: SnapshotMetrics,
  onWarning?: (message: string) => void,
): NatsPublisherOptions | undefined {
  const url = natsUrl !== undefined ? checkNatsUrl(natsUrl) : cfg.events?.nats_url;
  if (!url) return undefined;
  const e = cfg.events ?? {};
  return {
    url,
    prefixes: {
      lifecycle: e.lifecycle_subject_prefix ?? CONFIG_DEFAULTS.events.lifecycle_subject_prefix,
      mutation: e.mutation_subject_prefix ?? CONFIG_DEFAULTS.events.mutation_subject_prefix,
    },
    maxAttempts: e.max_attempts ?? CONFIG_DEFAULTS.events.max_attempts,
    ...(e.user !== undefined || e.token !== undefined || e.creds_file !== undefined
      ? {
          auth: {
            ...(e.user !== undefined ? { user: e.user, password: e.password ?? '' } : {}),
            ...(e.token !== undefined ? { token: e.token } : {}),
            ...(e.creds_file !== undefined ? { credsFile: e.creds_file } : {}),
          },
        }
      : {}),
    connectTimeoutMs: e.connect_timeout_ms ?? CONFIG_DEFAULTS.events.connect_timeout_ms,
    ...(metrics ? { metrics } : {}),
    ...(onWarning ? { onWarning } : {}),
  };
}

/**
 * Whether a snapshot taken on request (CLI, HTTP API, agent tool) is redacted when the request does not
 * say: `redaction.enabled`, default false — what stays on the host for rollback is exact. Scheduled
 * snapshots and anchors are never redacted. (`redact_secrets_default` governs what leaves the host.)
 */
export function snapshotRedactDefault(cfg: SnapshotConfig): boolean {
  return cfg.redaction?.enabled ?? CONFIG_DEFAULTS.redaction.enabled;
}

/** The daemon's scheduled snapshots: one entry per (tenant, agent list, interval, label). */
export function scheduleFromConfig(
  cfg: SnapshotConfig,
): Array<{ agents: string[]; tenant: string; intervalMs: number; label: string }> {
  if (cfg.enabled === false) return [];
  return (cfg.schedule ?? []).map((e) => ({
    agents: [...e.agents],
    tenant: e.tenant ?? 'default',
    intervalMs: e.interval_secs * 1000,
    label: e.label ?? CONFIG_DEFAULTS.schedule_label,
  }));
}
