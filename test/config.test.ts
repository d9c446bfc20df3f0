// Config: each invalid key is refused with an error naming its dotted key; every key of the original's
// memory.snapshot section takes effect (enabled, auto_pre_restore, encryption.enabled, retention,
// events); CLI flags override the file.

import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CONFIG_DEFAULTS,
  LocalSnapshotter,
  loadConfig,
  natsOptionsFromConfig,
  preDreamHookFromConfig,
  retentionWorkerOptionsFromConfig,
  snapshotterOptionsFromConfig,
} from '../src/index.js';
import { Daemon } from '../src/server/daemon.js';
import { runBuiltCli } from './helpers/built-cli.js';
import { runCli, sampleAgent, tempDir } from './helpers/env.js';
import { collect, deadBrokerUrl, startNats } from './helpers/nats.js';

const RECIPIENT = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';

function section(body: string): string {
  return `memory:\n  snapshot:\n${body
    .split('\n')
    .map((l) => (l ? `    ${l}` : l))
    .join('\n')}\n`;
}

test('each invalid key: a ConfigError naming the dotted key and the rule', (t) => {
  const f = join(tempDir(t), 'c.yaml');
  const cases: Array<[string, string]> = [
    ['enabled: "yes"', 'memory.snapshot.enabled must be a boolean'],
    ['root: ""', 'memory.snapshot.root must not be empty'],
    ['memdir_root: 5', 'memory.snapshot.memdir_root must be a string'],
    ['auto_pre_dream: 1', 'memory.snapshot.auto_pre_dream must be a boolean'],
    ['auto_pre_restore: null', 'memory.snapshot.auto_pre_restore must be a boolean'],
    ['allow_external_git: "yes"', 'memory.snapshot.allow_external_git must be a boolean'],
    ['auto_pre_mutating_tool: "yes"', 'memory.snapshot.auto_pre_mutating_tool must be a boolean'],
    [
      'pre_mutating_tool:\n  min_interval_secs: -1',
      'memory.snapshot.pre_mutating_tool.min_interval_secs must be ≥ 0',
    ],
    [
      'pre_mutating_tool:\n  min_interval_secs: 9007199254741',
      'memory.snapshot.pre_mutating_tool.min_interval_secs must be ≤ 9007199254740',
    ],
    ['pre_mutating_tool:\n  interval: 5', 'memory.snapshot.pre_mutating_tool.interval: unknown key'],
    [
      'retention:\n  pre_mutating_tool_max_age_hours: 1.5',
      'memory.snapshot.retention.pre_mutating_tool_max_age_hours must be an integer',
    ],
    ['lock_timeout_secs: 0', 'memory.snapshot.lock_timeout_secs must be ≥ 1'],
    [
      'lock_timeout_secs: 2147484',
      'memory.snapshot.lock_timeout_secs must be ≤ 2147483 (24.8 days, the longest wait a SQLite lock holds)',
    ],
    ['redact_secrets_default: "no"', 'memory.snapshot.redact_secrets_default must be a boolean'],
    ['zstd_level: 20', 'memory.snapshot.zstd_level must be ≤ 19'],
    ['zstd_level: 0', 'memory.snapshot.zstd_level must be ≥ 1'],
    ['zstd_workers: -1', 'memory.snapshot.zstd_workers must be ≥ 0'],
    ['retention:\n  keep_count: -1', 'memory.snapshot.retention.keep_count must be ≥ 0'],
    ['retention:\n  max_age_days: 1.5', 'memory.snapshot.retention.max_age_days must be an integer'],
    ['retention:\n  anchor_keep_count: -1', 'memory.snapshot.retention.anchor_keep_count must be ≥ 0'],
    ['retention:\n  gc_interval_secs: 0', 'memory.snapshot.retention.gc_interval_secs must be ≥ 1'],
    ['retention:\n  keep_hourly: 3', 'memory.snapshot.retention.keep_hourly: unknown key'],
    [
      'encryption:\n  enabled: true',
      'memory.snapshot.encryption.enabled = true requires at least one recipient',
    ],
    [
      'encryption:\n  recipients: [nope]',
      'memory.snapshot.encryption.recipients[0] must be an age1… X25519 recipient',
    ],
    ['events:\n  nats_url: http://broker:4222', 'memory.snapshot.events.nats_url must be nats://host:port'],
    [
      'events:\n  lifecycle_subject_prefix: "nexo.>"',
      'memory.snapshot.events.lifecycle_subject_prefix must be dot-separated',
    ],
    [
      'events:\n  mutation_subject_prefix: "a..b"',
      'memory.snapshot.events.mutation_subject_prefix must be dot-separated',
    ],
    [
      'events:\n  mutation_publish_enabled: 0',
      'memory.snapshot.events.mutation_publish_enabled must be a boolean',
    ],
    ['events:\n  max_attempts: 0', 'memory.snapshot.events.max_attempts must be ≥ 1'],
    ['events:\n  connect_timeout_ms: 100000', 'memory.snapshot.events.connect_timeout_ms must be ≤ 60000'],
    ['events:\n  close_timeout_ms: -5', 'memory.snapshot.events.close_timeout_ms must be ≥ 0'],
    ['events:\n  url: nats://x:1', 'memory.snapshot.events.url: unknown key'],
    ['metrics:\n  textfile: ""', 'memory.snapshot.metrics.textfile must not be empty'],
    ['metrics: yes', 'memory.snapshot.metrics must be a mapping'],
    ['schedule: {agents: [ana]}', 'memory.snapshot.schedule must be a list'],
    [
      'schedule:\n  - agents: []\n    interval_secs: 600',
      'memory.snapshot.schedule[0].agents must list at least one agent',
    ],
    [
      'schedule:\n  - agents: [ana, Bob]\n    interval_secs: 600',
      'memory.snapshot.schedule[0].agents[1] must be an agent id',
    ],
    [
      'schedule:\n  - agents: [ana]\n    interval_secs: 59',
      'memory.snapshot.schedule[0].interval_secs must be ≥ 60',
    ],
    ['schedule:\n  - agents: [ana]', 'memory.snapshot.schedule[0].interval_secs is required'],
    [
      'schedule:\n  - agents: [ana]\n    interval_secs: 600\n    tenant: "-x"',
      'memory.snapshot.schedule[0].tenant must be a tenant',
    ],
    ['server:\n  listen: localhost', 'memory.snapshot.server.listen must be host:port'],
    ['server:\n  listen: "127.0.0.1:70000"', 'memory.snapshot.server.listen port must be ≤ 65535'],
    ['server:\n  token: short', 'memory.snapshot.server.token must be at least 16 characters'],
    ['server:\n  allow_restore: "true"', 'memory.snapshot.server.allow_restore must be a boolean'],
    ['server:\n  port: 1', 'memory.snapshot.server.port: unknown key'],
    [
      'server:\n  token: ${NEXO_TEST_UNSET_TOKEN}',
      'memory.snapshot.server.token: environment variable NEXO_TEST_UNSET_TOKEN is not set',
    ],
  ];
  delete process.env.NEXO_TEST_UNSET_TOKEN;
  for (const [body, message] of cases) {
    writeFileSync(f, section(body));
    assert.throws(
      () => loadConfig(f, { sections: ['server'] }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'CONFIG', body);
        assert.ok(err.message.startsWith(message), `${body}\n  got:  ${err.message}\n  want: ${message}…`);
        return true;
      },
    );
  }
});

test('every kind of rule, in every section: the exact message, and which of several problems is named', (t) => {
  // The messages users get (main, with zod, 2026-12-02); the config's own validator must keep them.
  const f = join(tempDir(t), 'c.yaml');
  const M = 'memory.snapshot';
  const AGENT = 'must be an agent id ([a-z0-9_-], 1..64 bytes, not starting or ending with _ or -)';
  const ok = 'agents: [ana]\n    interval_secs: 600';
  const cases: Array<[string, string]> = [
    // The section itself.
    ['', ''],
    // Top-level keys: boolean, string min, integer bounds, type errors of each kind, unknown key.
    ['enabled: 1', `${M}.enabled must be a boolean`],
    ['root: 5', `${M}.root must be a string`],
    ['sqlite_root: ""', `${M}.sqlite_root must not be empty`],
    ['lock_timeout_secs: "3"', `${M}.lock_timeout_secs must be a number`],
    ['lock_timeout_secs: 2.5', `${M}.lock_timeout_secs must be an integer`],
    ['lock_timeout_secs: -1.5', `${M}.lock_timeout_secs must be an integer`],
    ['lock_timeout_secs: .nan', `${M}.lock_timeout_secs must be a number`],
    ['lock_timeout_secs: .inf', `${M}.lock_timeout_secs must be a number`],
    ['lock_timeout_secs: 1e300', `${M}.lock_timeout_secs must be ≤ 9007199254740991`],
    ['lock_timeout_secs: -1e300', `${M}.lock_timeout_secs must be ≥ -9007199254740991`],
    ['zstd_level: 20', `${M}.zstd_level must be ≤ 19`],
    ['zstd_workers: 17', `${M}.zstd_workers must be ≤ 16`],
    ['zstd_level: null', `${M}.zstd_level must be a number`],
    ['retention: 5', `${M}.retention must be a mapping`],
    ['retention: null', `${M}.retention must be a mapping`],
    ['retention: [1]', `${M}.retention must be a mapping`],
    ['schedule: 5', `${M}.schedule must be a list`],
    ['root: x\nbogus: 1', `${M}.bogus: unknown key`],
    // pre_mutating_tool, retention.
    [
      'pre_mutating_tool:\n  min_interval_secs: true',
      `${M}.pre_mutating_tool.min_interval_secs must be a number`,
    ],
    ['retention:\n  backup_max_age_days: -1', `${M}.retention.backup_max_age_days must be ≥ 0`],
    ['retention:\n  leftover_grace_secs: 0.5', `${M}.retention.leftover_grace_secs must be an integer`],
    ['retention:\n  gc_interval_secs: 0', `${M}.retention.gc_interval_secs must be ≥ 1`],
    // encryption: regex in an array entry, string min, the cross-field rule.
    ['encryption:\n  recipients: "age1x"', `${M}.encryption.recipients must be a list`],
    [
      `encryption:\n  recipients: [${RECIPIENT}, age1B]`,
      `${M}.encryption.recipients[1] must be an age1… X25519 recipient`,
    ],
    ['encryption:\n  identity_path: ""', `${M}.encryption.identity_path must not be empty`],
    [
      'encryption:\n  enabled: true\n  recipients: []',
      `${M}.encryption.enabled = true requires at least one recipient in ${M}.encryption.recipients`,
    ],
    ['encryption:\n  enabled: false\n  recipients: []', ''],
    // store: enums, nats, s3, retry.
    [
      'store:\n  format: zip',
      `${M}.store.format Invalid option: expected one of "auto"|"repository"|"bundles"`,
    ],
    [
      'store:\n  format: null',
      `${M}.store.format Invalid option: expected one of "auto"|"repository"|"bundles"`,
    ],
    ['store:\n  backend: 3', `${M}.store.backend Invalid option: expected one of "local"|"nats"|"s3"`],
    ['store:\n  nats:\n    servers: []', `${M}.store.nats.servers must list at least one server`],
    [
      'store:\n  nats:\n    servers: ["nats://a:4222", "nats://u:p@b:4222"]',
      `${M}.store.nats.servers[1] must be nats://host:port (credentials go in user/password/token)`,
    ],
    [
      'store:\n  nats:\n    bucket: "a b"',
      `${M}.store.nats.bucket must be 1..64 characters of [A-Za-z0-9_-]`,
    ],
    ['store:\n  nats:\n    replicas: 6', `${M}.store.nats.replicas must be ≤ 5`],
    ['store:\n  nats:\n    token: ""', `${M}.store.nats.token must not be empty`],
    ['store:\n  nats:\n    timeout_ms: 99', `${M}.store.nats.timeout_ms must be ≥ 100`],
    ['store:\n  nats:\n    url: x', `${M}.store.nats.url: unknown key`],
    ['store:\n  s3:\n    prefix: 5', `${M}.store.s3.prefix must be a string`],
    [
      'store:\n  s3:\n    endpoint: "https://k:s@host"',
      `${M}.store.s3.endpoint must be http(s)://host[:port] (credentials go in access_key_id/secret_access_key)`,
    ],
    ['store:\n  s3:\n    force_path_style: "yes"', `${M}.store.s3.force_path_style must be a boolean`],
    [
      'store:\n  s3:\n    multipart_threshold: 100',
      `${M}.store.s3.multipart_threshold must be ≥ 5242880 (5 MiB)`,
    ],
    [
      'store:\n  s3:\n    multipart_threshold: 6000000000',
      `${M}.store.s3.multipart_threshold must be ≤ 5 GiB`,
    ],
    ['store:\n  s3:\n    parallel_reads: 33', `${M}.store.s3.parallel_reads must be ≤ 32`],
    ['store:\n  retry:\n    attempts: 21', `${M}.store.retry.attempts must be ≤ 20`],
    ['store:\n  retry:\n    base_delay_ms: -1', `${M}.store.retry.base_delay_ms must be ≥ 0`],
    ['store:\n  retry:\n    max_delay_ms: 600001', `${M}.store.retry.max_delay_ms must be ≤ 600000`],
    // events.
    [
      'events:\n  nats_url: "nats://a:1,http://b:2"',
      `${M}.events.nats_url must be nats://host:port (or tls://…), several separated by commas; credentials go in events.user/password, token or creds_file`,
    ],
    [
      'events:\n  lifecycle_subject_prefix: "a.*"',
      `${M}.events.lifecycle_subject_prefix must be dot-separated tokens of [A-Za-z0-9_-] (no wildcards)`,
    ],
    ['events:\n  close_timeout_ms: 60001', `${M}.events.close_timeout_ms must be ≤ 60000`],
    // redaction: custom checks on array entries.
    ['redaction:\n  enabled: 0', `${M}.redaction.enabled must be a boolean`],
    [
      'redaction:\n  allowlist: ["ok", "("]',
      `${M}.redaction.allowlist[1] must be a valid regular expression`,
    ],
    [
      'redaction:\n  exclude_rules: [nope]',
      `${M}.redaction.exclude_rules[0] must be a redaction rule id (docs/redaction.md)`,
    ],
    ['redaction:\n  exclude_rules: [5]', `${M}.redaction.exclude_rules[0] must be a string`],
    // signing: string min without a message of its own, and the rule checked after validation.
    ['signing:\n  key_path: ""', `${M}.signing.key_path must be ≥ 1`],
    ['signing:\n  trusted_keys: [a, ""]', `${M}.signing.trusted_keys[1] must be ≥ 1`],
    ['signing:\n  require_signature: "yes"', `${M}.signing.require_signature must be a boolean`],
    [
      'signing:\n  require_signature: true',
      `${M}.signing.require_signature: needs at least one signing.trusted_keys entry`,
    ],
    // metrics.
    ['metrics:\n  textfile: 5', `${M}.metrics.textfile must be a string`],
    ['metrics:\n  path: x', `${M}.metrics.path: unknown key`],
    // schedule: entries of a list, lists in entries, required keys, string max.
    ['schedule:\n  - 5', `${M}.schedule[0] must be a mapping`],
    ['schedule:\n  - null', `${M}.schedule[0] must be a mapping`],
    ['schedule:\n  - interval_secs: 600', `${M}.schedule[0].agents is required`],
    [
      `schedule:\n  - ${ok}\n  - agents: [ana, Bob]\n    interval_secs: 600`,
      `${M}.schedule[1].agents[1] ${AGENT}`,
    ],
    [
      `schedule:\n  - ${ok}\n  - agents: [ana, 5]\n    interval_secs: 600`,
      `${M}.schedule[1].agents[1] must be a string`,
    ],
    [
      `schedule:\n  - ${ok}\n  - agents: ana\n    interval_secs: 600`,
      `${M}.schedule[1].agents must be a list`,
    ],
    [
      `schedule:\n  - ${ok}\n  - agents: [ana]\n    interval_secs: 31536001`,
      `${M}.schedule[1].interval_secs must be ≤ 31536000`,
    ],
    // the label rule of every snapshot (model/ids.ts labelProblem), checked when the config is loaded
    [
      `schedule:\n  - ${ok}\n    label: "${'x'.repeat(201)}"`,
      `${M}.schedule[0].label is not a valid label: at most 200 characters`,
    ],
    [`schedule:\n  - ${ok}\n    label: "${'🐋'.repeat(200)}"`, ''], // 200 characters, 400 UTF-16 units
    [
      `schedule:\n  - ${ok}\n  - ${ok}\n    label: "nightly\\x07"`,
      `${M}.schedule[1].label is not a valid label: must not contain control characters (U+0007; C0/C1 controls, bidirectional controls and line separators are refused)`,
    ],
    [
      `schedule:\n  - ${ok}\n    label: "a\\u2028b"`,
      `${M}.schedule[0].label is not a valid label: must not contain control characters (U+2028; C0/C1 controls, bidirectional controls and line separators are refused)`,
    ],
    [
      `schedule:\n  - ${ok}\n    label: "\\u202Eevil"`,
      `${M}.schedule[0].label is not a valid label: must not contain control characters (U+202E; C0/C1 controls, bidirectional controls and line separators are refused)`,
    ],
    [`schedule:\n  - ${ok}\n    label: ""`, `${M}.schedule[0].label must not be empty`],
    [`schedule:\n  - ${ok}\n    every: 5`, `${M}.schedule[0].every: unknown key`],
    [
      `schedule:\n  - ${ok}\n    tenant: "A"`,
      `${M}.schedule[0].tenant must be a tenant ([a-z0-9_-], 1..64 bytes, not starting or ending with _ or -)`,
    ],
    // server: regex, then a custom check of the same string.
    ['server:\n  listen: 9464', `${M}.server.listen must be a string`],
    ['server:\n  listen: "a:99999x"', `${M}.server.listen must be host:port`],
    ['server:\n  listen: "[::1]:65536"', `${M}.server.listen port must be ≤ 65535`],
    ['server:\n  read_token: short', `${M}.server.read_token must be at least 16 characters`],
    // Several problems: the known keys in the order of the schema (nested sections included) come before
    // unknown keys, the first unknown key in the file's order, and the cross-field rule comes last.
    ['bogus: 1\nzstd_level: 20', `${M}.zstd_level must be ≤ 19`],
    ['zstd_level: 20\nenabled: 3', `${M}.enabled must be a boolean`],
    ['zzz: 1\nbogus: 2', `${M}.zzz: unknown key`],
    ['bogus: 1\nretention:\n  keep_count: -1', `${M}.retention.keep_count must be ≥ 0`],
    ['retention:\n  bogus: 1\nzstd_level: 20', `${M}.zstd_level must be ≤ 19`],
    ['retention:\n  bogus: 1\n  keep_count: -1', `${M}.retention.keep_count must be ≥ 0`],
    ['encryption:\n  enabled: true\nzstd_level: 20', `${M}.zstd_level must be ≤ 19`],
    ['encryption:\n  enabled: true\nbogus: 1', `${M}.bogus: unknown key`],
    [
      'encryption:\n  enabled: true\n  recipients: [nope]',
      `${M}.encryption.recipients[0] must be an age1… X25519 recipient`,
    ],
    ['schedule:\n  - agents: [Bob]\n    interval_secs: 5', `${M}.schedule[0].agents[0] ${AGENT}`],
    ['schedule:\n  - agents: [Bob]\n  - agents: []', `${M}.schedule[0].agents[0] ${AGENT}`],
    ['server:\n  token: short\nbogus: 1', `${M}.server.token must be at least 16 characters`],
  ];
  for (const [body, message] of cases) {
    writeFileSync(f, section(body));
    if (message === '') {
      assert.doesNotThrow(() => loadConfig(f, { sections: ['server'] }), body);
      continue;
    }
    assert.throws(
      () => loadConfig(f, { sections: ['server'] }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'CONFIG', body);
        assert.equal(err.message, message, body);
        return true;
      },
    );
  }
  // The section under a top-level `snapshot` key (named as the file writes it), and the section itself
  // of the wrong type.
  for (const [text, message] of [
    ['snapshot:\n  zstd_level: 0\n', 'snapshot.zstd_level must be ≥ 1'],
    ['snapshot: 5\n', 'snapshot must be a mapping'],
    ['snapshot: [a]\n', 'snapshot must be a mapping'],
    ['memory:\n  snapshot: "x"\n', `${M} must be a mapping`],
  ] as const) {
    writeFileSync(f, text);
    assert.throws(() => loadConfig(f, { sections: ['server'] }), { code: 'CONFIG', message }, text);
  }
});

test('a complete config loads; the runtime options follow it, with the defaults of the original', (t) => {
  const dir = tempDir(t);
  const f = join(dir, 'c.yaml');
  process.env.NEXO_TEST_TOKEN = 'x'.repeat(32);
  writeFileSync(
    f,
    section(`enabled: true
root: state
memdir_root: /srv/agents
auto_pre_dream: true
auto_pre_restore: false
auto_pre_mutating_tool: true
pre_mutating_tool:
  min_interval_secs: 30
lock_timeout_secs: 7
redact_secrets_default: false
zstd_level: 9
zstd_workers: 0
allow_external_git: true
retention:
  keep_count: 5
  max_age_days: 10
  anchor_keep_count: 3
  anchor_max_age_days: 7
  pre_mutating_tool_keep_count: 12
  pre_mutating_tool_max_age_hours: 6
  tool_keep_count: 4
  tool_max_age_days: 0
  gc_interval_secs: 120
  backup_max_age_days: 2
encryption:
  enabled: false
  recipients: [${RECIPIENT}]
events:
  nats_url: nats://127.0.0.1:4222
  lifecycle_subject_prefix: acme.snap
  mutation_subject_prefix: acme.mut
  mutation_publish_enabled: false
  max_attempts: 2
metrics:
  textfile: out/nexo.prom
schedule:
  - agents: [ana, bob]
    interval_secs: 3600
    tenant: acme
server:
  listen: "127.0.0.1:9464"
  token: \${NEXO_TEST_TOKEN}
  allow_restore: true`),
  );
  const cfg = loadConfig(f, { sections: ['server'] }).snapshot;
  assert.equal(cfg.root, join(dir, 'state'));
  assert.equal(cfg.metrics?.textfile, join(dir, 'out', 'nexo.prom'));
  assert.equal(cfg.server?.token, 'x'.repeat(32));
  assert.deepEqual(cfg.schedule, [{ agents: ['ana', 'bob'], interval_secs: 3600, tenant: 'acme' }]);

  const o = snapshotterOptionsFromConfig(cfg);
  assert.equal(o.stateRoot, join(dir, 'state'));
  assert.equal(o.memdirRoot, '/srv/agents');
  assert.equal(o.sqliteRoot, join(dir, 'state'), 'sqlite_root defaults to root');
  assert.equal(o.lockTimeoutMs, 7000);
  assert.equal(o.zstdLevel, 9);
  assert.equal(o.zstdWorkers, 0);
  assert.equal(o.allowExternalGit, true);
  assert.equal(snapshotterOptionsFromConfig({}).allowExternalGit, undefined, 'refused by default');
  assert.equal(o.recipients, undefined, 'encryption.enabled: false keeps recipients from applying');
  const flags = snapshotterOptionsFromConfig(cfg, { stateRoot: '/x', zstdLevel: 1 });
  assert.equal(flags.stateRoot, '/x');
  assert.equal(flags.zstdLevel, 1);
  assert.equal(flags.memdirRoot, '/srv/agents');

  const w = retentionWorkerOptionsFromConfig(cfg);
  assert.equal(w.intervalMs, 120_000);
  assert.deepEqual(w.policy, {
    keepCount: 5,
    maxAgeDays: 10,
    anchorKeepCount: 3,
    anchorMaxAgeDays: 7,
    preToolKeepCount: 12,
    preToolMaxAgeHours: 6,
    toolKeepCount: 4,
    toolMaxAgeDays: 0,
  });
  assert.equal(w.backupMaxAgeDays, 2);
  assert.equal(
    retentionWorkerOptionsFromConfig({}).intervalMs,
    CONFIG_DEFAULTS.retention.gc_interval_secs * 1000,
  );

  const n = natsOptionsFromConfig(cfg)!;
  assert.equal(n.url, 'nats://127.0.0.1:4222');
  assert.deepEqual(n.prefixes, { lifecycle: 'acme.snap', mutation: 'acme.mut' });
  assert.equal(n.maxAttempts, 2);
  assert.equal(
    natsOptionsFromConfig(cfg, 'nats://10.0.0.1:4222')!.url,
    'nats://10.0.0.1:4222',
    'the flag wins',
  );
  assert.equal(natsOptionsFromConfig({}), undefined, 'no broker, no publisher');
  assert.throws(() => natsOptionsFromConfig({}, 'localhost:4222'), { code: 'INVALID_INPUT' });

  writeFileSync(f, section(`encryption:\n  recipients: [${RECIPIENT}]`));
  assert.deepEqual(snapshotterOptionsFromConfig(loadConfig(f).snapshot).recipients, [RECIPIENT]);
});

test('zstd level: 1..19 in the flag, the config and the library; 0 and 42 are INVALID_INPUT', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 3, memories: 10, embeddings: 5, concepts: 5, compactions: 2 });
  for (const level of ['0', '42', '-3']) {
    const r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--zstd-level', level, '--json']);
    assert.equal(r.code, 1, `--zstd-level ${level}: ${r.stderr}`);
    assert.equal(JSON.parse(r.stdout).error.code, 'INVALID_INPUT');
    assert.match(r.stderr, /--zstd-level must be 1\.\.19/);
  }
  assert.deepEqual(readdirSync(a.stateRoot), [], 'nothing was written');
  const r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--zstd-level', '19', '--json']);
  assert.equal(r.code, 0, r.stderr);
  for (const zstdLevel of [0, 20, 2.5])
    assert.throws(() => new LocalSnapshotter({ stateRoot: a.stateRoot, zstdLevel }), {
      code: 'INVALID_INPUT',
      message: /zstdLevel must be an integer 1\.\.19/,
    });
});

test('CLI: enabled: false refuses commands that write the store, read-only ones still work', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 10, embeddings: 5 });
  await a.snapshotter.snapshot({ agentId: 'ana' });
  const cfg = join(a.root, 'off.yaml');
  writeFileSync(cfg, section('enabled: false'));
  let r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--config', cfg, '--json']);
  assert.equal(r.code, 1);
  const err = JSON.parse(r.stdout).error;
  assert.equal(err.code, 'CONFIG');
  assert.match(err.message, /memory\.snapshot\.enabled is false/);
  r = await runCli(['gc', '--all', '--state-root', a.stateRoot, '--config', cfg]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /memory\.snapshot\.enabled is false/);
  r = await runCli(['list', '--agent', 'ana', '--state-root', a.stateRoot, '--config', cfg, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).length, 1);
  assert.equal((await a.snapshotter.list('ana')).length, 1, 'nothing was written');
});

test("a schedule entry's label no snapshot can carry stops serve at start-up (CONFIG naming the key), not its runs hours later; every command with the config says so", async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 10, embeddings: 5 });
  const cfg = join(a.root, 'daemon.yaml');
  const key = 'memory.snapshot.schedule[1].label';
  // YAML's "\x1b" is an ESC character: a label that would colour the operator's terminal in `list`.
  writeFileSync(
    cfg,
    section(`root: ${a.stateRoot}
memdir_root: ${a.memdirRoot}
sqlite_root: ${a.sqliteRoot}
schedule:
  - agents: [ana]
    interval_secs: 3600
  - agents: [ana]
    tenant: other
    interval_secs: 3600
    label: "nightly\\x1b[31m"`),
  );
  // The real daemon: it must exit before it listens (an unchecked label let it start and fail each run;
  // a daemon that listens is killed at the CLI timeout and fails here with what it printed).
  const served = await runBuiltCli(['serve', '--listen', '127.0.0.1:0', '--config', cfg, '--json'], {
    env: { NEXO_MEMORY_TOKEN: '' },
  });
  const { stdout: out, stderr: err } = served;
  assert.equal(served.code, 1, `serve refused to start: ${out} ${err}`);
  const e = JSON.parse(out).error as { code: string; message: string };
  assert.equal(e.code, 'CONFIG');
  const message = `${key} is not a valid label: must not contain control characters (U+001B; C0/C1 controls, bidirectional controls and line separators are refused)`;
  assert.equal(e.message, message);
  assert.equal(err, `error: ${message}\n`);
  // Any command given the config checks it (the CLI has no separate config check): the same error.
  const r = await runCli(['list', '--agent', 'ana', '--config', cfg, '--json']);
  assert.equal(r.code, 1, r.stdout);
  assert.deepEqual(
    [JSON.parse(r.stdout).error.code, JSON.parse(r.stdout).error.message],
    ['CONFIG', message],
  );
  // The daemon given such an entry by a program (no config file) refuses it too, at construction.
  assert.throws(
    () =>
      new Daemon({
        snapshotter: a.snapshotter,
        listen: '127.0.0.1:0',
        schedule: [{ agentId: 'ana', tenant: 'default', intervalMs: 3_600_000, label: 'x'.repeat(201) }],
      }),
    { code: 'INVALID_INPUT', message: 'invalid label: at most 200 characters' },
  );
});

test('the server section is resolved only where it is used: a ${VAR} only the daemon has does not stop the CLI', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 10, embeddings: 5 });
  const cfg = join(a.root, 'shared.yaml');
  writeFileSync(
    cfg,
    section(`root: ${a.stateRoot}
memdir_root: ${a.memdirRoot}
sqlite_root: ${a.sqliteRoot}
server:
  listen: 127.0.0.1:0
  token: \${NEXO_TEST_DAEMON_TOKEN}`),
  );
  delete process.env.NEXO_TEST_DAEMON_TOKEN;
  // Every CLI command but serve works while the daemon's variable is unset.
  let r = await runCli(['snapshot', '--agent', 'ana', '--config', cfg, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const id = JSON.parse(r.stdout).id as string;
  r = await runCli(['list', '--agent', 'ana', '--config', cfg, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout)[0].id, id);
  r = await runCli(['verify', '--agent', 'ana', '--id', id, '--config', cfg, '--json']);
  assert.equal(r.code, 0, r.stderr);
  // serve needs the section: the unset variable is a CONFIG error naming the key, before it listens.
  r = await runBuiltCli(['serve', '--config', cfg, '--json']);
  assert.equal(r.code, 1, r.stdout);
  assert.equal(JSON.parse(r.stdout).error.code, 'CONFIG');
  assert.match(
    r.stderr,
    /memory\.snapshot\.server\.token: environment variable NEXO_TEST_DAEMON_TOKEN is not set/,
  );
  assert.doesNotMatch(r.stdout, /listening/);

  // The library reads no on-demand section unless asked: it leaves `server` out; its keys are still checked.
  const lib = loadConfig(cfg);
  assert.equal(lib.snapshot.server, undefined);
  assert.equal(lib.snapshot.root, a.stateRoot);
  assert.throws(
    () => loadConfig(cfg, { sections: ['server'] }),
    /server\.token: environment variable NEXO_TEST_DAEMON_TOKEN/,
  );
  process.env.NEXO_TEST_DAEMON_TOKEN = 't'.repeat(20);
  assert.equal(loadConfig(cfg, { sections: ['server'] }).snapshot.server?.token, 't'.repeat(20));
  delete process.env.NEXO_TEST_DAEMON_TOKEN;
  const f = join(a.root, 'typo.yaml');
  for (const [body, message] of [
    ['server:\n  tokn: x', 'memory.snapshot.server.tokn: unknown key'],
    ['server: 5', 'memory.snapshot.server must be a mapping'],
  ] as const) {
    writeFileSync(f, section(body));
    assert.throws(() => loadConfig(f), { code: 'CONFIG', message });
    r = await runCli(['list', '--agent', 'ana', '--state-root', a.stateRoot, '--config', f]);
    assert.equal(r.code, 1, body);
    assert.match(r.stderr, new RegExp(message.replace(/\./g, '\\.')));
  }
});

test('CLI: auto_pre_restore decides the pre-restore snapshot unless the flag says otherwise', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 10, embeddings: 5 });
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const env = { NEXO_MEMORY_RESTORE_ALLOW: 'true' };
  const restore = (cfgBody: string, extra: string[] = []) => {
    const cfg = join(a.root, 'r.yaml');
    writeFileSync(cfg, section(cfgBody));
    return runCli(
      [
        'restore',
        '--agent',
        'ana',
        '--from',
        snap.bundle_path,
        ...a.flags,
        '--config',
        cfg,
        '--json',
        ...extra,
      ],
      { env },
    );
  };
  let r = await restore('auto_pre_restore: false');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).pre_snapshot, undefined);
  r = await restore('auto_pre_restore: true');
  assert.equal(r.code, 0, r.stderr);
  assert.ok(JSON.parse(r.stdout).pre_snapshot);
  r = await restore('auto_pre_restore: true', ['--no-auto-pre-snapshot']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).pre_snapshot, undefined, 'the flag overrides the file');
});

test('CLI: --nats overrides events.nats_url; a malformed --nats is a usage error', async (t) => {
  const nats = await startNats(t);
  const dead = deadBrokerUrl();
  const sub = await collect(t, nats.url, 'nexo.memory.snapshot.>');
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 10, embeddings: 5 });
  const cfg = join(a.root, 'n.yaml');
  writeFileSync(cfg, section(`events:\n  nats_url: ${dead}`));
  let r = await runCli([
    'snapshot',
    '--agent',
    'ana',
    ...a.flags,
    '--config',
    cfg,
    '--nats',
    nats.url,
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const [m] = await sub.waitFor(1);
  assert.equal(m!.data.id, JSON.parse(r.stdout).id);
  r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--nats', 'localhost:4222', '--json']);
  assert.equal(r.code, 1);
  assert.equal(JSON.parse(r.stdout).error.code, 'INVALID_INPUT');
  assert.match(r.stderr, /--nats must be nats:\/\/host:port/);
});

test('auto_pre_dream gates the pre-dream hook', (t) => {
  const a = sampleAgent(t, 'ana', { files: 1, commits: 1, memories: 1, embeddings: 1 });
  assert.equal(preDreamHookFromConfig(a.snapshotter, {}), undefined, 'off by default, as the original');
  assert.ok(preDreamHookFromConfig(a.snapshotter, { auto_pre_dream: true }));
  assert.equal(preDreamHookFromConfig(a.snapshotter, { auto_pre_dream: true, enabled: false }), undefined);
});

test('a config error found after loading names the key as the file spells its section: memory.snapshot.… or snapshot.…', async (t) => {
  const dir = tempDir(t);
  const schedule = `schedule:
  - agents: [ana]
    interval_secs: 3600
  - agents: [bob, ana]
    interval_secs: 600`;
  const topLevel = (body: string) =>
    `snapshot:\n${body
      .split('\n')
      .map((l) => `  ${l}`)
      .join('\n')}\n`;
  for (const [prefix, spell] of [
    ['memory.snapshot', section],
    ['snapshot', topLevel],
  ] as const) {
    const cfg = (name: string, body: string) => {
      const path = join(dir, `${prefix}-${name}.yaml`);
      writeFileSync(path, spell(`root: ${join(dir, 'state')}\n${body}`));
      return path;
    };
    // serve: an agent listed twice in the schedule, before it listens
    const served = await runBuiltCli(
      ['serve', '--listen', '127.0.0.1:0', '--config', cfg('schedule', schedule), '--json'],
      { env: { NEXO_MEMORY_TOKEN: '' } },
    );
    assert.equal(served.code, 1, `${prefix}: ${served.stdout} ${served.stderr}`);
    const e = JSON.parse(served.stdout).error as { code: string; message: string };
    assert.deepEqual(
      [e.code, e.message],
      ['CONFIG', `${prefix}.schedule[1]: agent ana (tenant default) is listed twice`],
    );
    // a writing command under enabled: false
    let r = await runCli([
      'snapshot',
      '--agent',
      'ana',
      '--config',
      cfg('disabled', 'enabled: false'),
      '--json',
    ]);
    assert.equal(r.code, 1, r.stdout);
    assert.ok(
      JSON.parse(r.stdout).error.message.startsWith(`${prefix}.enabled is false in `),
      JSON.parse(r.stdout).error.message,
    );
    // the store section: an s3 backend without a bucket
    r = await runCli([
      'list',
      '--agent',
      'ana',
      '--config',
      cfg('s3', 'store:\n  backend: s3\n  s3: {}'),
      '--json',
    ]);
    assert.equal(r.code, 1, r.stdout);
    assert.equal(
      JSON.parse(r.stdout).error.message,
      `${prefix}.store.backend is s3: ${prefix}.store.s3.bucket is required`,
    );
  }
});
