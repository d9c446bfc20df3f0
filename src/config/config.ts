// Owns the configuration file: YAML with a `memory.snapshot` section (or a top-level `snapshot`
// section, as in the original's config/memory.yaml), `${VAR}` expansion, unknown keys rejected, and
// errors that name the dotted key. Relative paths resolve against the config file's directory.
// The keys here are the ones that take effect today; docs/configuration.md lists them.

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../model/errors.js';
import { RULE_IDS } from '../policy/redaction/rules.js';

const retentionSection = z.strictObject({
  keep_count: z.number().int().min(0).optional(),
  max_age_days: z.number().int().min(0).optional(),
  keep_daily: z.number().int().min(0).optional(),
  keep_weekly: z.number().int().min(0).optional(),
  keep_monthly: z.number().int().min(0).optional(),
  backup_max_age_days: z.number().int().min(0).optional(),
  leftover_grace_secs: z.number().int().min(0).optional(),
});

const encryptionSection = z.strictObject({
  /** age X25519 recipients every snapshot is encrypted to (pre-restore anchors too). */
  recipients: z
    .array(z.string().regex(/^age1[02-9ac-hj-np-z]+$/, 'must be an age1… X25519 recipient'))
    .optional(),
  /** Identity file used to open encrypted bundles when --decrypt-identity is not given. */
  identity_path: z.string().min(1).optional(),
});

const redactionSection = z.strictObject({
  /** Whether CLI snapshots redact by default (default true; `--redact`/`--no-redact` override). */
  enabled: z.boolean().optional(),
  /** Regular expressions; a match whose secret text matches one is kept. */
  allowlist: z
    .array(
      z.string().refine((s) => {
        try {
          new RegExp(s);
          return true;
        } catch {
          return false;
        }
      }, 'not a valid regular expression'),
    )
    .optional(),
  /** Rule ids that do not run (docs/redaction.md lists them). */
  exclude_rules: z
    .array(z.string().refine((s) => RULE_IDS.includes(s), 'unknown redaction rule id'))
    .optional(),
});

const snapshotSection = z.strictObject({
  /** The snapshot store root (the original's `root`). */
  root: z.string().min(1).optional(),
  memdir_root: z.string().min(1).optional(),
  sqlite_root: z.string().min(1).optional(),
  lock_timeout_secs: z.number().int().min(1).optional(),
  zstd_level: z.number().int().min(1).max(19).optional(),
  zstd_workers: z.number().int().min(0).max(16).optional(),
  retention: retentionSection.optional(),
  encryption: encryptionSection.optional(),
  redaction: redactionSection.optional(),
});

export type SnapshotConfig = z.infer<typeof snapshotSection>;

export interface LoadedConfig {
  path: string;
  snapshot: SnapshotConfig;
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

/** Reads and validates a config file. Throws ConfigError naming the offending dotted key. */
export function loadConfig(path: string): LoadedConfig {
  const abs = resolve(path);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${abs}: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (err) {
    throw new ConfigError(`config file ${abs} is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    throw new ConfigError(`config file ${abs} must be a mapping`);
  const top = doc as Record<string, unknown>;
  let section: unknown;
  let prefix: string;
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
    prefix = 'memory.snapshot';
    const extra = topKeys.filter((k) => k !== 'snapshot');
    if (extra.length)
      throw new ConfigError(
        `${extra[0]}: unknown top-level key in ${abs} (expected memory.snapshot or snapshot)`,
      );
    section = top.snapshot ?? {};
  }
  const expanded = expandVars(section, prefix);
  const parsed = snapshotSection.safeParse(expanded);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const keys = issue.code === 'unrecognized_keys' ? (issue as { keys: string[] }).keys : [];
    const where = [prefix, ...issue.path.map(String), ...(keys.length ? [keys[0]!] : [])].join('.');
    const what = issue.code === 'unrecognized_keys' ? 'unknown key' : issue.message;
    throw new ConfigError(`${where}: ${what}`);
  }
  const base = dirname(abs);
  const cfg = { ...parsed.data };
  for (const k of ['root', 'memdir_root', 'sqlite_root'] as const) {
    if (cfg[k] !== undefined) cfg[k] = resolve(base, cfg[k]);
  }
  if (cfg.encryption?.identity_path)
    cfg.encryption = { ...cfg.encryption, identity_path: resolve(base, cfg.encryption.identity_path) };
  return { path: abs, snapshot: cfg };
}
