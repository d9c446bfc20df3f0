// Owns the configuration's defaults and the shape of a broker URL: plain values, apart from the schema
// (config.ts), so the parts that only apply a loaded config (runtime.ts, the CLI) need not load the
// schema library.

/** `nats://host:port` (or tls://), several separated by commas. */
export const NATS_URL_RE = /^(nats|tls):\/\/[^\s,/@]+(,\s*(nats|tls):\/\/[^\s,/@]+)*$/;

/** The defaults of every key that has one (the original's, and the port's additions). */
export const CONFIG_DEFAULTS = {
  enabled: true,
  root: './state',
  auto_pre_dream: false,
  auto_pre_restore: true,
  auto_pre_mutating_tool: false,
  pre_mutating_tool: { min_interval_secs: 60 },
  lock_timeout_secs: 60,
  redact_secrets_default: true,
  zstd_level: 3,
  zstd_workers: 2,
  retention: {
    keep_count: 30,
    max_age_days: 90,
    anchor_keep_count: 5,
    anchor_max_age_days: 30,
    pre_mutating_tool_keep_count: 20,
    pre_mutating_tool_max_age_hours: 24,
    tool_keep_count: 30,
    tool_max_age_days: 90,
    gc_interval_secs: 3600,
    backup_max_age_days: 7,
    leftover_grace_secs: 600,
  },
  events: {
    lifecycle_subject_prefix: 'nexo.memory.snapshot',
    mutation_subject_prefix: 'nexo.memory.mutated',
    mutation_publish_enabled: true,
    max_attempts: 3,
    connect_timeout_ms: 2000,
    close_timeout_ms: 2000,
  },
  /** `enabled`: snapshots on request are exact unless asked. */
  redaction: { enabled: false },
  schedule_label: 'scheduled',
  server: { listen: '127.0.0.1:9464', allow_restore: false },
} as const;
