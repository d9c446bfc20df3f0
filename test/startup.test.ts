// What the quick commands load (issue 13, start-up): `--version` and `list` run as the installed CLI in a
// process of its own, with a resolve hook recording every module it loads (test/fixtures/record-modules.mjs).
// They must not load the heavy dependencies the work of other commands needs: zod (the manifest
// schemas, ~100 modules), SQLite, zstd, the NATS and S3 clients, the MCP SDK, prom-client, the YAML parser;
// with a config file, only the YAML parser joins them, as its one-file bundle (dist/vendor/yaml.cjs, built
// by scripts/build-vendor.ts), never the package's 72 files (the config is checked by src/config/schema.ts).
// The command-line parser, which every run but `--version` alone loads, comes from its bundle too
// (dist/vendor/commander.cjs), and a command that talks to NATS loads its client from one bundle too
// (dist/vendor/nats.cjs).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { buildProgram } from '../src/cli/program.js';
import { VENDORED_EXPORTS } from '../src/util/vendored.js';
import { BIN, ensureBuilt, runBuiltCli } from './helpers/built-cli.js';
import { REPO, sampleAgent, tempDir } from './helpers/env.js';

const HEAVY = [
  'zod',
  'better-sqlite3',
  'zstd-napi',
  '@nats-io',
  '@aws-sdk',
  '@modelcontextprotocol',
  'prom-client',
  'yaml',
];
/** The one-file bundle (dist/vendor/<name>.cjs) of a heavy dependency, where its name is not the package's. */
const BUNDLE_OF: Record<string, string> = { '@nats-io': 'nats' };

async function loadedBy(
  t: import('node:test').TestContext,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  allowed: readonly string[] = [],
  /** Heavy dependencies whose one-file bundle (dist/vendor) may load, though not their packages' files. */
  bundles: readonly string[] = [],
) {
  const record = join(tempDir(t, 'nexo-modules-'), 'loaded.txt');
  const hook = pathToFileURL(join(REPO, 'test', 'fixtures', 'record-modules.mjs')).href;
  const r = await runBuiltCli(args, {
    env: { ...env, NODE_OPTIONS: `--import ${hook}`, NEXO_RECORD_MODULES: record },
  });
  assert.equal(r.code, 0, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
  const urls = readFileSync(record, 'utf8').split('\n').filter(Boolean);
  assert.ok(
    urls.some((u) => u.includes('/dist/src/cli/')),
    'the hook saw the CLI load',
  );
  const banned = HEAVY.filter((h) => !allowed.includes(h));
  // the package's files, or its one-file bundle (dist/vendor/<name>.cjs: yaml, zod) unless allowed
  const heavy = urls.filter((u) =>
    banned.some(
      (h) =>
        u.includes(`/node_modules/${h}`) ||
        (!bundles.includes(h) && u.endsWith(`/dist/vendor/${BUNDLE_OF[h] ?? h}.cjs`)),
    ),
  );
  assert.deepEqual(heavy, [], `${args.join(' ')} loads none of ${banned.join(', ')}`);
  return { ...r, urls };
}

/** The command-line parser comes from its one-file bundle (src/cli/commander.ts), never the packages' files. */
function parserFromBundle(urls: string[], what: string): void {
  assert.ok(
    urls.some((u) => u.endsWith('/dist/vendor/commander.cjs')),
    `${what}: the parser's bundle was loaded`,
  );
  assert.deepEqual(
    urls.filter((u) => /\/node_modules\/(commander|@commander-js)\//.test(u)),
    [],
    `${what}: no file of the parser's packages`,
  );
}

test('--version and list of a repository and of bundles load none of the heavy dependencies', async (t) => {
  // `--version` alone is answered before the program loads (cli/main.ts): commander's line, no parser
  for (const args of [['--version'], ['-V'], ['--version', '-V']]) {
    const r = await loadedBy(t, args);
    assert.equal(r.stdout, `${(await buildProgram(['node', 'nexo-memory', ...args])).version()}\n`);
    assert.deepEqual(
      r.urls.filter(
        (u) => u.endsWith('/dist/vendor/commander.cjs') || u.endsWith('/dist/src/cli/program.js'),
      ),
      [],
      `${args.join(' ')} loads neither the parser nor the program`,
    );
  }
  for (const store of ['repository', 'bundles'] as const) {
    const a = sampleAgent(t, 'ana', { memories: 5, embeddings: 2, files: 1, commits: 1 }, { store });
    await a.snapshotter.snapshot({ agentId: 'ana' });
    await a.snapshotter.snapshot({ agentId: 'ana' });
    const r = await loadedBy(t, ['list', '--agent', 'ana', '--json', '--state-root', a.stateRoot], {
      NEXO_MEMORY_STORE_FORMAT: store,
    });
    const listed = JSON.parse(r.stdout);
    assert.equal((Array.isArray(listed) ? listed : listed.snapshots).length, 2, store);
    parserFromBundle(r.urls, `list of ${store}`);
  }
});

/**
 * What `list` without a config does not need (paths under dist/src/, or built-ins): the telemetry
 * observers and the event publisher with its subjects and client (no metrics, no broker configured);
 * the key and redaction policies (age, ed25519 keys, signatures, the redaction rules:
 * LocalSnapshotter.policies()) and node:crypto; retention and the snapshot steps' store files; and, for
 * a store without a repository, any backend; worker threads and the program host.
 */
const NOT_FOR_LIST = [
  'events/observer.js',
  'events/payloads.js',
  'events/nats.js',
  'events/subjects.js',
  'events/from-config.js',
  'util/nats-client.js',
  'metrics/',
  'crypto/',
  'format/signature.js',
  'format/seal.js',
  'policy/redaction/',
  'policy/retention.js',
  'store/last-taken.js',
  'store/leftovers.js',
  'node:crypto',
  // the small-heap settings: a local listing is small (util/heap-settings.ts, DEFERRED_COMMANDS)
  'node:v8',
  'node:vm',
  // threads and the program host: a listing starts neither (store/atomic.ts loads the host to sync)
  'util/module-worker.js',
  'util/program-host.js',
  'node:worker_threads',
];
const NOT_WITHOUT_REPOSITORY = ['backend/local.js', 'backend/backend.js'];

test('list without a config loads no telemetry observer or event publisher, no key or redaction policy, no node:crypto, and a backend only for a repository', async (t) => {
  for (const store of ['repository', 'bundles', 'empty'] as const) {
    const a = sampleAgent(
      t,
      'ana',
      { memories: 5, embeddings: 2, files: 1, commits: 1 },
      {
        store: store === 'empty' ? 'repository' : store,
      },
    );
    if (store !== 'empty') await a.snapshotter.snapshot({ agentId: 'ana' });
    const r = await loadedBy(t, ['list', '--agent', 'ana', '--json', '--state-root', a.stateRoot], {
      NEXO_MEMORY_STORE_FORMAT: store === 'empty' ? 'repository' : store,
    });
    assert.equal(JSON.parse(r.stdout).length, store === 'empty' ? 0 : 1, store);
    const ours = r.urls
      .filter((u) => u.includes('/dist/src/') || u.startsWith('node:'))
      .map((u) => u.replace(/^.*\/dist\/src\//, ''));
    const banned = [...NOT_FOR_LIST, ...(store === 'repository' ? [] : NOT_WITHOUT_REPOSITORY)];
    assert.deepEqual(
      ours.filter((m) => banned.some((b) => m.startsWith(b))),
      [],
      `list of ${store} loads none of ${banned.join(', ')}`,
    );
  }
});

test('--version loads no GC settings; list of a remote repository sets them before it lists (a listing there can be large), with the NATS client from its bundle', async (t) => {
  const version = await loadedBy(t, ['--version']);
  assert.deepEqual(
    version.urls.filter((u) => u === 'node:v8' || u === 'node:vm'),
    [],
  );
  // an address where nothing listens: the settings come before the store is asked, which then fails
  // (after one attempt of 100 ms: the defaults wait out 5 attempts of 10 s, as for a leader election)
  const dir = tempDir(t, 'nexo-modules-');
  const record = join(dir, 'loaded.txt');
  const cfg = join(dir, 'memory.yaml');
  writeFileSync(cfg, 'memory:\n  snapshot:\n    store: {nats: {timeout_ms: 100}, retry: {attempts: 1}}\n');
  const hook = pathToFileURL(join(REPO, 'test', 'fixtures', 'record-modules.mjs')).href;
  const r = await runBuiltCli(
    ['list', '--agent', 'ana', '--json', '--state-root', tempDir(t), '--repo', 'nats://127.0.0.1:9/none'],
    { env: { NODE_OPTIONS: `--import ${hook}`, NEXO_RECORD_MODULES: record, NEXO_MEMORY_CONFIG: cfg } },
  );
  assert.equal(r.code, 8, r.stderr);
  const urls = readFileSync(record, 'utf8').split('\n');
  assert.ok(urls.includes('node:v8'), 'the settings were applied');
  // the NATS client from its one-file bundle (src/util/nats-client.ts), never its packages' ~90 files
  assert.ok(
    urls.some((u) => u.endsWith('/dist/vendor/nats.cjs')),
    "the NATS client's bundle was loaded",
  );
  assert.deepEqual(
    urls.filter((u) => u.includes('/node_modules/@nats-io/')),
    [],
    'no file of the NATS packages',
  );
});

test('list with a config file (--config or NEXO_MEMORY_CONFIG) loads the bundled YAML parser and none of the others', async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 5, embeddings: 2, files: 1, commits: 1 });
  await a.snapshotter.snapshot({ agentId: 'ana' });
  // Every section, the daemon's too (its keys are checked, its token variable is not set here).
  const cfg = join(tempDir(t, 'nexo-config-'), 'memory.yaml');
  writeFileSync(
    cfg,
    `memory:
  snapshot:
    root: ${a.stateRoot}
    zstd_level: 3
    retention: {keep_count: 10, anchor_keep_count: 5}
    pre_mutating_tool: {min_interval_secs: 30}
    encryption: {enabled: false}
    store: {format: auto, retry: {attempts: 3}}
    signing: {require_signature: false}
    redaction: {exclude_rules: []}
    events: {max_attempts: 2}
    metrics: {}
    schedule:
      - {agents: [ana], interval_secs: 3600}
    server: {listen: "127.0.0.1:9464", token: "\${NEXO_TEST_UNSET_DAEMON_TOKEN}"}
`,
  );
  const cases: Array<[string[], NodeJS.ProcessEnv]> = [
    [['--config', cfg], {}],
    [[], { NEXO_MEMORY_CONFIG: cfg }],
  ];
  for (const [flags, env] of cases) {
    const r = await loadedBy(t, ['list', '--agent', 'ana', '--json', ...flags], env, [], ['yaml']);
    const listed = JSON.parse(r.stdout);
    assert.equal((Array.isArray(listed) ? listed : listed.snapshots).length, 1, 'the config named the root');
    assert.ok(
      r.urls.some((u) => u.endsWith('/dist/vendor/yaml.cjs')),
      'the hook saw the config file being parsed by the bundled parser',
    );
  }
});

test("a bundle snapshot loads no zod; verify reads the manifest with zod from its bundle, which has only the builders used and the package's verdicts and messages", async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 5, embeddings: 2, files: 1, commits: 1 }, { store: 'bundles' });
  // the built CLI's snapshot writes a manifest and parses none: the schemas are built on first use
  const s = await loadedBy(
    t,
    ['snapshot', '--agent', 'ana', '--json', '--no-progress', ...a.flags],
    { NEXO_MEMORY_STORE_FORMAT: 'bundles' },
    HEAVY.filter((h) => h !== 'zod'),
  );
  const meta = JSON.parse(s.stdout);
  // the built CLI's verify: the bundle, not one file of the package (~100 modules, ~85 ms to load)
  const r = await loadedBy(t, ['verify', meta.bundle_path, '--json'], {}, HEAVY);
  assert.equal(JSON.parse(r.stdout).status, 'verified');
  assert.ok(
    r.urls.some((u) => u.endsWith('/dist/vendor/zod.cjs')),
    'the bundle was loaded',
  );
  assert.deepEqual(
    r.urls.filter((u) => u.includes('/node_modules/zod/')),
    [],
    'no file of the package',
  );
  // the bundle against the package: the same exports (those util/zod.ts names), issues and messages
  const require = createRequire(import.meta.url);
  const bundled = require(join(REPO, 'dist', 'vendor', 'zod.cjs'));
  const pkg = require('zod');
  assert.deepEqual(Object.keys(bundled).sort(), [...(VENDORED_EXPORTS.zod ?? [])].sort());
  // biome-ignore lint/suspicious/noExplicitAny: both copies are driven through the same calls
  const cases: Array<[(z: any) => any, unknown]> = [
    [(z) => z.string(), 5],
    [(z) => z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters'), 'XYZ'],
    [(z) => z.string().min(1), ''],
    [(z) => z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER), -1.5],
    [(z) => z.number().int(), 2 ** 60],
    [(z) => z.boolean(), 'yes'],
    [(z) => z.enum(['absent', 'empty', 'present']), 'full'],
    [(z) => z.literal(2), 3],
    [(z) => z.array(z.string()), ['a', 1, null]],
    [(z) => z.record(z.string(), z.number()), { a: 1, b: 'x' }],
    [(z) => z.strictObject({ a: z.string(), b: z.number().optional() }), { a: 1, c: true }],
    [(z) => z.object({ a: z.string() }), { b: 1 }],
    [(z) => z.looseObject({ a: z.unknown() }), null],
    [(z) => z.strictObject({ x: z.array(z.strictObject({ y: z.enum(['a']) })) }), { x: [{ y: 'b', z: 1 }] }],
  ];
  for (const [make, value] of cases) {
    const [b, p] = [make(bundled).safeParse(value), make(pkg).safeParse(value)];
    assert.equal(b.success, false, JSON.stringify(value));
    assert.deepEqual(b.error.issues, p.error.issues, JSON.stringify(value));
  }
  const ok = (z: typeof pkg) => z.strictObject({ a: z.array(z.number().int()), b: z.string().optional() });
  assert.deepEqual(ok(bundled).parse({ a: [1, 2] }), ok(pkg).parse({ a: [1, 2] }));
});

test('a reader that closes the pipe early (`| head`) ends nothing badly: the exit status is unchanged, no stack trace', async () => {
  ensureBuilt();
  for (const args of [['--help'], ['--version']]) {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy(); // the read end closes before the CLI writes: its write fails with EPIPE
    let err = '';
    child.stderr.on('data', (c) => {
      err += c;
    });
    const [code] = (await once(child, 'close')) as [number | null];
    assert.equal(code, 0, `${args.join(' ')}: ${err}`);
    assert.doesNotMatch(err, /EPIPE|Error/, args.join(' '));
  }
});

test('verify, restore and import of a large file start its decompression thread before the program loads; an id or a small file does not', async (t) => {
  const dir = tempDir(t, 'nexo-early-');
  const big = join(dir, 'big.tar.zst');
  writeFileSync(big, Buffer.alloc(5 * 1024 * 1024)); // read on the thread (≥ 4 MiB); not a bundle
  const small = join(dir, 'small.tar.zst');
  writeFileSync(small, Buffer.alloc(1024));
  const order = async (args: string[]) => {
    const record = join(tempDir(t, 'nexo-modules-'), 'loaded.txt');
    const hook = pathToFileURL(join(REPO, 'test', 'fixtures', 'record-modules.mjs')).href;
    await runBuiltCli([...args, '--state-root', join(dir, 'state')], {
      env: { NODE_OPTIONS: `--import ${hook}`, NEXO_RECORD_MODULES: record, NEXO_MEMORY_CONFIG: '' },
    });
    const urls = readFileSync(record, 'utf8').split('\n');
    const at = (suffix: string) => urls.findIndex((u) => u.endsWith(suffix));
    return { worker: at('/dist/src/format/zstd-worker.js'), program: at('/dist/src/cli/program.js') };
  };
  for (const args of [
    ['verify', big],
    ['restore', '--agent', 'ana', '--from', big, '--dry-run'],
    ['import', '--agent', 'bob', `--from=${big}`],
  ]) {
    const o = await order(args);
    assert.ok(o.program > 0, `${args[0]}: the program loaded`);
    assert.ok(
      o.worker >= 0 && o.worker < o.program,
      `${args[0]}: the decompression thread's module before the program (${JSON.stringify(o)})`,
    );
  }
  for (const args of [
    ['verify', small],
    ['restore', '--agent', 'ana', '--from', '0190a5c3'],
  ]) {
    const o = await order(args);
    assert.ok(o.program > 0, `${args.join(' ')}: the program loaded`);
    assert.ok(o.worker < 0 || o.worker > o.program, `${args.join(' ')}: nothing started early`);
  }
});
