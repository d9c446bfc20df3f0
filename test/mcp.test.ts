// The agent tool over MCP as an agent runtime uses it: the official SDK's Client over stdio, spawning
// the real `nexo-memory mcp` binary. Exactly seven tools (one writes), no restore; memory_snapshot writes a real
// bundle with the original's result fields; invalid arguments are tool errors that write nothing.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, type TestContext, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { generateSigningKey, parseSigningKey } from '../src/index.js';
import {
  AGENT_DIFF_DETAIL_MAX_BYTES,
  createAgentToolServer,
  MEMORY_LIST_DEFAULT_LIMIT,
  READS_AT_ONCE,
} from '../src/mcp/server.js';
import { LineGuard } from '../src/mcp/transport.js';
import { OperationTracker } from '../src/server/tracker.js';
import { BIN, ensureBuilt } from './helpers/built-cli.js';
import { type Agent, copySampleAgent, runCli, sampleAgent, startFixture } from './helpers/env.js';
import { multiplySnapshot } from './helpers/many-snapshots.js';
import { collect, startNats } from './helpers/nats.js';
import { until } from './helpers/wait.js';

const SMALL = { files: 4, commits: 2, memories: 40, embeddings: 20, concepts: 10, compactions: 5 };

before(() => ensureBuilt());

async function connect(t: TestContext, a: Agent, agent = 'ana', extra: string[] = []): Promise<Client> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'mcp', '--agent', agent, ...a.flags, ...extra],
    env: { ...(process.env as Record<string, string>) },
    stderr: 'pipe',
  });
  const client = new Client({ name: 'nexo-memory-test', version: '1.0.0' });
  await client.connect(transport);
  t.after(() => client.close());
  return client;
}

function storeEntries(a: Agent): string[] {
  const dir = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

type ToolResult = {
  isError?: boolean;
  content: Array<{ type: string; text?: string }>;
  structuredContent?: Record<string, unknown>;
};

async function callTool(client: Client, name: string, args: Record<string, unknown>): Promise<ToolResult> {
  return (await client.callTool({ name, arguments: args })) as ToolResult;
}

const textOf = (r: ToolResult) => r.content.map((c) => c.text ?? '').join('\n');

/**
 * One agent and one `nexo-memory mcp` process (the default config, agent ana) for the tests that only
 * call tools (stop 47): starting a server costs ~0.7 s of CPU (the library and the SDK loaded again),
 * and these tests are about what the tools answer, not about the process. Each asserts relative to
 * what the agent held when it began (no test needs an empty store), so they pass in any order and
 * alone. Tests of a config, another agent, the server's log, malformed input, its start, exit and
 * signals keep a server of their own.
 */
describe('mcp: one server of the default config', () => {
  let state: { a: Agent; client: Client } | undefined;
  const cleanups: Array<() => unknown> = [];
  // tempDir and connect register their cleanups with `after`: run when the group ends, last first
  const group = { after: (fn: () => unknown) => void cleanups.push(fn) } as unknown as TestContext;
  const shared = () => state!;
  before(async () => {
    const a = sampleAgent(group, 'ana', SMALL);
    state = { a, client: await connect(group, a) };
  });
  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });

  test('mcp: exactly memory_snapshot and the read-only list, verify, diff, ls, cat, find; the original parameters', async () => {
    const { client } = shared();
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((x) => x.name).sort(), [
      'memory_cat',
      'memory_diff',
      'memory_find',
      'memory_list',
      'memory_ls',
      'memory_snapshot',
      'memory_verify',
    ]);
    assert.ok(!tools.some((x) => /restore/.test(x.name)), 'restore is never a tool');
    const snap = tools.find((x) => x.name === 'memory_snapshot')!;
    const schema = snap.inputSchema as {
      properties: Record<string, { type: string; maxLength?: number }>;
      additionalProperties?: boolean;
      required?: string[];
    };
    assert.deepEqual(Object.keys(schema.properties).sort(), ['label', 'redact_secrets']);
    assert.equal(schema.properties.label!.type, 'string');
    assert.equal(schema.properties.label!.maxLength, 200);
    assert.equal(schema.properties.redact_secrets!.type, 'boolean');
    assert.equal(schema.additionalProperties, false);
    assert.equal(schema.required, undefined, 'every parameter is optional');
    for (const name of [
      'memory_list',
      'memory_verify',
      'memory_diff',
      'memory_ls',
      'memory_cat',
      'memory_find',
    ])
      assert.equal(tools.find((x) => x.name === name)!.annotations?.readOnlyHint, true, name);
  });

  test('mcp: memory_snapshot writes a real bundle that verifies; list, verify and diff read it', async () => {
    const { a, client } = shared();
    const earlier = (await a.snapshotter.list('ana')).map((m) => m.id);

    const r1 = await callTool(client, 'memory_snapshot', {
      label: 'before the dream',
      redact_secrets: false,
    });
    assert.ok(!r1.isError, textOf(r1));
    const res = r1.structuredContent!;
    assert.deepEqual(Object.keys(res).sort(), [
      'bundle_path',
      'bundle_sha256',
      'bundle_size_bytes',
      'created_at_ms',
      'encrypted',
      'redactions_applied',
      'snapshot_id',
    ]);
    assert.deepEqual(JSON.parse(textOf(r1)), res, 'the text content is the same JSON');
    assert.equal(res.redactions_applied, false, 'redact_secrets: false is an exact copy');
    const bundle = String(res.bundle_path);
    assert.ok(existsSync(bundle));
    const bytes = readFileSync(bundle);
    assert.equal(res.bundle_size_bytes, bytes.length);
    assert.equal(
      createHash('sha256').update(bytes).digest('hex'),
      readFileSync(`${bundle}.sha256`, 'utf8').trim(),
    );
    assert.equal((await a.snapshotter.verify(bundle, { deep: true })).status, 'verified');
    const [meta] = await a.snapshotter.list('ana');
    assert.equal(meta!.id, res.snapshot_id);
    assert.equal(meta!.bundle_sha256, res.bundle_sha256);
    assert.equal(meta!.label, 'before the dream');
    assert.equal(meta!.created_by, 'tool', 'agent tool snapshots are created_by "tool"');

    writeFileSync(join(a.memdir, 'dream-output.md'), 'consolidated\n');
    const r2 = await callTool(client, 'memory_snapshot', {});
    assert.ok(!r2.isError, textOf(r2));
    const id2 = String(r2.structuredContent!.snapshot_id);

    const list = await callTool(client, 'memory_list', {});
    assert.ok(!list.isError, textOf(list));
    const listed = list.structuredContent!.snapshots as Array<{ id: string }>;
    assert.deepEqual(
      listed.map((m) => m.id),
      [id2, res.snapshot_id, ...earlier],
    );
    const limited = await callTool(client, 'memory_list', { limit: 1 });
    assert.equal((limited.structuredContent!.snapshots as unknown[]).length, 1);
    assert.equal(limited.structuredContent!.total, earlier.length + 2);

    const v = await callTool(client, 'memory_verify', { snapshot_id: String(res.snapshot_id).slice(0, 13) });
    assert.ok(!v.isError, textOf(v));
    assert.equal(v.structuredContent!.status, 'verified');
    assert.equal(v.structuredContent!.per_artifact_ok, true);

    const d = await callTool(client, 'memory_diff', { a: String(res.snapshot_id), b: id2 });
    assert.ok(!d.isError, textOf(d));
    const files = d.structuredContent!.files as Array<{ path: string }>;
    assert.ok(
      files.some((f) => f.path.endsWith('dream-output.md')),
      JSON.stringify(files),
    );
    const live = await callTool(client, 'memory_diff', { a: id2, b: 'live' });
    assert.ok(!live.isError, textOf(live));
    assert.equal((live.structuredContent!.git_summary as { files_changed: number }).files_changed, 0);

    // redact_secrets: true runs the redaction policy, and the result says so (docs/daemon.md).
    const r3 = await callTool(client, 'memory_snapshot', { redact_secrets: true });
    assert.ok(!r3.isError, textOf(r3));
    assert.equal(r3.structuredContent!.redactions_applied, true);
    const [redacted] = await a.snapshotter.list('ana');
    assert.equal(redacted!.id, r3.structuredContent!.snapshot_id);
    assert.equal(redacted!.redactions_applied, true);
  });

  test('mcp: invalid arguments are tool errors and write nothing; no restore tool can be called', async () => {
    const { a, client } = shared();
    const stored = storeEntries(a);
    for (const args of [
      { label: 5 },
      { label: 'x'.repeat(201) },
      { redact_secrets: 'yes' },
      { agent_id: 'bob' },
      { label: 'ok', bundle: '/etc/passwd' },
    ]) {
      const r = await callTool(client, 'memory_snapshot', args);
      assert.equal(r.isError, true, JSON.stringify(args));
      // the form of every other tool error (stop 58: the SDK's own text, `MCP error -32602: …`)
      assert.match(
        textOf(r),
        /^memory_snapshot failed: Input validation error: .*\(INVALID_INPUT, error id [0-9a-f]{8}\)$/s,
        JSON.stringify(args),
      );
    }
    // bounded: 300,000 unknown keys were a 3.2 MB text naming each; a 5,000-character key is cut
    const many = await callTool(
      client,
      'memory_snapshot',
      Object.fromEntries(Array.from({ length: 300_000 }, (_, i) => [`k${i}`, 1])),
    );
    assert.match(
      textOf(many),
      /^memory_snapshot failed: .*more than the maximum of 64 elements \(INVALID_INPUT, error id [0-9a-f]{8}\)$/,
    );
    const long = textOf(await callTool(client, 'memory_snapshot', { ['k'.repeat(5000)]: 1 }));
    assert.ok(long.length < 1200, `${long.length} characters`);
    assert.match(
      long,
      /^memory_snapshot failed: .*… \(\d+ more characters\) \(INVALID_INPUT, error id [0-9a-f]{8}\)$/s,
    );
    // a tool the server does not have: the client's name is not taken as the failed tool's
    assert.match(
      textOf(await callTool(client, 'memory_restore', {})),
      /^tools\/call failed: Tool memory_restore not found \(INVALID_INPUT, error id [0-9a-f]{8}\)$/,
    );
    const ctl = await callTool(client, 'memory_snapshot', { label: 'bad\u0007bell' });
    assert.equal(ctl.isError, true, 'the library rejects control characters in labels');
    assert.match(textOf(ctl), /^memory_snapshot failed: .*\(INVALID_INPUT, error id [0-9a-f]{8}\)$/s);
    assert.deepEqual(storeEntries(a), stored, 'no snapshot was written');

    const v = await callTool(client, 'memory_verify', {});
    assert.equal(v.isError, true);
    const nf = await callTool(client, 'memory_verify', { snapshot_id: '01234567' });
    assert.equal(nf.isError, true);
    assert.match(textOf(nf), /NOT_FOUND/);
    const d = await callTool(client, 'memory_diff', { a: 'live' });
    assert.equal(d.isError, true);

    let refused: string;
    try {
      const r = await callTool(client, 'memory_restore', { snapshot_id: '01234567' });
      assert.equal(r.isError, true);
      refused = textOf(r);
    } catch (err) {
      refused = (err as Error).message;
    }
    assert.match(refused, /not found/i);
    assert.deepEqual(storeEntries(a), stored);
  });

  test('mcp: memory_ls pages a folder of 2,500 files (limit ≤ 1000, next_cursor): the pages are the whole folder; bad paging is a tool error', async () => {
    const { a, client } = shared();
    const many = join(a.memdir, 'many');
    mkdirSync(many);
    for (let i = 0; i < 2500; i++) writeFileSync(join(many, `f${String(i).padStart(4, '0')}.md`), `${i}\n`);
    const snap = await a.snapshotter.snapshot({ agentId: 'ana', label: 'many files' });
    const whole = await a.snapshotter.ls('ana', undefined, snap.id, 'memdir/many');
    for (const [limit, sizes] of [
      [undefined, [1000, 1000, 500]],
      [900, [900, 900, 700]],
    ] as const) {
      const got: unknown[] = [];
      const pages: number[] = [];
      let cursor: string | undefined;
      for (;;) {
        assert.ok(pages.length < 10, `limit ${limit}: the pages end (${pages.join(', ')}…)`);
        const r = await callTool(client, 'memory_ls', {
          snapshot_id: snap.id,
          path: 'memdir/many',
          ...(limit !== undefined ? { limit } : {}),
          ...(cursor !== undefined ? { cursor } : {}),
        });
        assert.ok(!r.isError, textOf(r));
        const page = r.structuredContent as { entries: unknown[]; total: number; next_cursor?: string };
        assert.equal(page.total, 2500);
        pages.push(page.entries.length);
        got.push(...page.entries);
        if (page.next_cursor === undefined) break;
        cursor = page.next_cursor;
      }
      assert.deepEqual(pages, sizes, `limit ${limit}`);
      assert.deepEqual(got, whole.entries, `limit ${limit}: the pages are the whole folder, in order`);
    }
    const first = (await callTool(client, 'memory_ls', { snapshot_id: snap.id, path: 'memdir/many' }))
      .structuredContent as { next_cursor: string };
    for (const [args, message] of [
      [{ limit: 0 }, /Invalid arguments|Input validation/],
      [{ limit: 1001 }, /Invalid arguments|Input validation/],
      [{ limit: 2.5 }, /Invalid arguments|Input validation/],
      [{ cursor: '' }, /Invalid arguments|Input validation/],
      [{ cursor: 'A'.repeat(40_000) }, /Invalid arguments|Input validation/],
      [{ cursor: 'not a cursor' }, /cursor is not one ls returned.*INVALID_INPUT/s],
      [{ path: 'memdir', cursor: first.next_cursor }, /cursor is of another path.*INVALID_INPUT/s],
    ] as const) {
      const r = await callTool(client, 'memory_ls', { snapshot_id: snap.id, path: 'memdir/many', ...args });
      assert.equal(r.isError, true, JSON.stringify(args).slice(0, 80));
      assert.match(textOf(r), message, JSON.stringify(args).slice(0, 80));
    }
  });
});

test('mcp: memory_verify applies the configured trust: under require_signature an unsigned snapshot is untrusted', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const key = generateSigningKey();
  const cfg = join(a.root, 'memory.yaml');
  writeFileSync(
    cfg,
    `memory:\n  snapshot:\n    signing:\n      trusted_keys: [${key.publicKey}]\n      require_signature: true\n`,
  );
  const unsigned = await a.snapshotter.snapshot({ agentId: 'ana' });
  const signed = await a.snapshotter.snapshot({ agentId: 'ana', sign: parseSigningKey(key.secretKey) });
  const client = await connect(t, a, 'ana', ['--config', cfg]);
  const v = await callTool(client, 'memory_verify', { snapshot_id: unsigned.id });
  assert.ok(!v.isError, textOf(v));
  assert.equal(v.structuredContent!.status, 'untrusted', 'the tool applies require_signature like the CLI');
  assert.deepEqual(
    (v.structuredContent!.problems as Array<{ code: string }>).map((p) => p.code),
    ['SIGNATURE_MISSING'],
  );
  const ok = await callTool(client, 'memory_verify', { snapshot_id: signed.id, deep: true });
  assert.equal(ok.structuredContent!.status, 'verified', textOf(ok));
  assert.equal((ok.structuredContent!.signature as { status: string }).status, 'trusted');
});

test('mcp: with `enabled: false` memory_snapshot is refused (FORBIDDEN) and writes nothing; reading still works', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const before = await a.snapshotter.snapshot({ agentId: 'ana' });
  const cfg = join(a.root, 'memory.yaml');
  writeFileSync(cfg, 'memory:\n  snapshot:\n    enabled: false\n');
  const client = await connect(t, a, 'ana', ['--config', cfg]);
  const r = await callTool(client, 'memory_snapshot', { label: 'while disabled' });
  assert.equal(r.isError, true, textOf(r));
  assert.match(
    textOf(r),
    /^memory_snapshot failed: memory\.snapshot\.enabled is false.*\(FORBIDDEN, error id [0-9a-f]{8}\)$/s,
  );
  assert.deepEqual(
    (await a.snapshotter.list('ana')).map((m) => m.id),
    [before.id],
    'no snapshot was written',
  );
  const list = await callTool(client, 'memory_list', {});
  assert.ok(!list.isError, textOf(list));
  assert.equal((list.structuredContent!.snapshots as unknown[]).length, 1);
});

test('mcp: a snapshot without the memdir is taken and its result warns the agent, naming the place by its role, not the host path', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  renameSync(join(a.memdirRoot, 'ana'), join(a.root, 'memdir-elsewhere'));
  const client = await connect(t, a);
  const r = await callTool(client, 'memory_snapshot', { label: 'no memdir' });
  assert.ok(!r.isError, textOf(r));
  const warnings = r.structuredContent!.warnings as string[];
  assert.equal(warnings.length, 1, textOf(r));
  assert.match(
    warnings[0]!,
    /^no memdir at <memdir root>\/ana: this snapshot holds no memory files, and restoring it would move the agent's memdir aside/,
  );
  assert.ok(!warnings[0]!.includes(a.root), warnings[0]);
  // an agent with every part gets no warnings key
  renameSync(join(a.root, 'memdir-elsewhere'), join(a.memdirRoot, 'ana'));
  const whole = await callTool(client, 'memory_snapshot', {});
  assert.ok(!whole.isError, textOf(whole));
  assert.equal(whole.structuredContent!.warnings, undefined);
});

test('mcp: an unknown agent makes memory_snapshot a tool error naming the agent, not host paths; the server keeps serving', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const client = await connect(t, a, 'bob');
  const r = await callTool(client, 'memory_snapshot', { label: 'x' });
  assert.equal(r.isError, true);
  assert.match(
    textOf(r),
    /^memory_snapshot failed: unknown agent bob \(tenant default\): no memdir, no SQLite database and no state found on this host \(UNKNOWN_AGENT, error id [0-9a-f]{8}\)$/,
  );
  const diff = await callTool(client, 'memory_diff', { a: 'live', b: 'live' });
  assert.equal(diff.isError, true);
  assert.match(textOf(diff), /^memory_diff failed: unknown agent bob \(tenant default\)/);
  for (const text of [textOf(r), textOf(diff)])
    assert.ok(!text.includes(a.root) && !text.includes('/'), `no host path: ${text}`);
  // The operator's CLI still says where it looked.
  const cli = await runCli(['snapshot', '--agent', 'bob', '--no-progress', ...a.flags]);
  assert.equal(cli.code, 5);
  assert.ok(cli.stderr.includes(`looked in ${join(a.memdirRoot, 'bob')}`), cli.stderr);
  const list = await callTool(client, 'memory_list', {});
  assert.ok(!list.isError);
  assert.deepEqual(list.structuredContent!.snapshots, []);
});

test('mcp: a failing call is a tool error with its code and an error id, no host path; the server log (stderr) has it whole under that id; the CLI keeps it whole', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'mcp', '--agent', 'ana', ...a.flags],
    env: { ...(process.env as Record<string, string>) },
    stderr: 'pipe',
  });
  let log = '';
  transport.stderr!.on('data', (c) => {
    log += c;
  });
  const client = new Client({ name: 'nexo-memory-test', version: '1.0.0' });
  await client.connect(transport);
  t.after(() => client.close());
  const noHostPath = (text: string) => {
    assert.ok(!text.includes(a.root) && !text.includes(tmpdir()), `no host path: ${text}`);
    assert.doesNotMatch(text, /(^|[\s'"(=,:])\/[^\s/]/, `no absolute path: ${text}`);
  };
  const logged = async (id: string) => {
    // the line is written before the answer is sent; stderr may come in a moment after stdout
    for (let i = 0; i < 100 && !log.includes(`error ${id} `); i++)
      await new Promise((r) => setTimeout(r, 50));
    const at = log.indexOf(`error ${id} `);
    assert.ok(at >= 0, `the log has error ${id}:\n${log}`);
    return log.slice(at, log.indexOf('\n', at));
  };

  // A SnapshotError naming a file of the host: STATE, the sqlite root by its role.
  const cursor = join(a.sqliteDir, 'extract_cursor.json');
  const good = readFileSync(cursor);
  writeFileSync(cursor, '{"cursor": ');
  const state = textOf(await callTool(client, 'memory_diff', { a: 'live', b: 'live' }));
  const stateId = /\(STATE, error id ([0-9a-f]{8})\)$/.exec(state)?.[1];
  assert.ok(stateId, state);
  assert.ok(
    state.startsWith('memory_diff failed: state provider: <sqlite root>/ana/extract_cursor.json '),
    state,
  );
  noHostPath(state);
  assert.ok((await logged(stateId)).includes(`memory_diff: STATE state provider: ${cursor} `), log);
  writeFileSync(cursor, good);

  // A damaged restore journal (JOURNAL_DAMAGED): its place by role, the log has the path. (An error that
  // is no SnapshotError, INTERNAL, is told without its message: server.test.ts, with an injected bug.)
  const journal = join(a.stateRoot, 'tenants', 'default', 'journals', 'ana.restore.json');
  mkdirSync(join(journal, '..'), { recursive: true });
  writeFileSync(journal, '{"journal_version": 99}');
  const r = await callTool(client, 'memory_snapshot', {});
  assert.equal(r.isError, true);
  const id = /error id ([0-9a-f]{8})\)$/.exec(textOf(r))?.[1];
  assert.match(
    textOf(r),
    /^memory_snapshot failed: restore journal <state root>\/tenants\/default\/journals\/ana\.restore\.json is damaged /,
  );
  assert.ok(textOf(r).endsWith(`(JOURNAL_DAMAGED, error id ${id})`), textOf(r));
  noHostPath(textOf(r));
  assert.ok(
    (await logged(id!)).includes(`memory_snapshot: JOURNAL_DAMAGED restore journal ${journal} is damaged`),
    log,
  );
  assert.deepEqual(storeEntries(a), []);

  // The operator at the CLI gets the whole message.
  const cli = await runCli(['snapshot', '--agent', 'ana', '--no-progress', ...a.flags]);
  assert.equal(cli.code, 1);
  assert.ok(cli.stderr.includes(`restore journal ${journal} is damaged`), cli.stderr);
});

test('mcp: exits 0 when stdin closes; a bad agent id fails at start with nothing on stdout', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const run = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [BIN, 'mcp', ...args, ...a.flags], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => {
        stdout += c;
      });
      child.stderr.on('data', (c) => {
        stderr += c;
      });
      child.stdin.end();
      child.on('exit', (code) => resolve({ code, stdout, stderr }));
    });
  const ok = await run(['--agent', 'ana']);
  assert.equal(ok.code, 0);
  assert.equal(ok.stdout, '', 'stdout carries only the protocol');
  const bad = await run(['--agent', 'Not An Agent']);
  assert.equal(bad.code, 1);
  assert.equal(bad.stdout, '');
  assert.match(bad.stderr, /agent_id/);
  // an identity that cannot be read fails the start, not the agent's first encrypted read (stop 57)
  const noIdentity = await run(['--agent', 'ana', '--decrypt-identity', join(a.root, 'no-such-identity')]);
  assert.equal(noIdentity.code, 7, noIdentity.stderr);
  assert.equal(noIdentity.stdout, '');
  assert.match(noIdentity.stderr, /cannot read identity file .*no-such-identity/);
});

test('mcp: the calls that close the write gate (snapshots, diffs of live memory) run one at a time, in order (stop 50)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const real = a.snapshotter;
  await real.snapshot({ agentId: 'ana' });
  let inFlight = 0;
  let most = 0;
  // the real snapshotter, its gate-closing calls counted while they run
  const counted = new Proxy(real, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      if (prop !== 'diff' && prop !== 'snapshot') return v.bind(target);
      return async (req: { a?: string; b?: string }) => {
        const gate = prop === 'snapshot' || req.a === 'live' || req.b === 'live';
        if (gate) most = Math.max(most, ++inFlight);
        try {
          return await v.call(target, req);
        } finally {
          if (gate) inFlight--;
        }
      };
    },
  });
  const server = createAgentToolServer({
    snapshotter: counted,
    agentId: 'ana',
    tenant: 'default',
    redactDefault: false,
    tracker: new OperationTracker(),
  });
  const [ct, st] = InMemoryTransport.createLinkedPair();
  await server.connect(st);
  const client = new Client({ name: 'gate-test', version: '1.0.0' });
  await client.connect(ct);
  t.after(() => client.close());
  const calls = [
    ...Array.from({ length: 5 }, () => callTool(client, 'memory_diff', { a: 'latest', b: 'live' })),
    callTool(client, 'memory_snapshot', { label: 'one' }),
    callTool(client, 'memory_diff', { a: 'LIVE', b: 'latest' }),
    callTool(client, 'memory_snapshot', { label: 'two' }),
  ];
  const results = await Promise.all(calls);
  for (const r of results) assert.ok(!r.isError, textOf(r));
  assert.equal(most, 1, 'never two gate-closing calls at once');
  assert.deepEqual(
    (await real.list('ana')).slice(0, 2).map((m) => m.label),
    ['two', 'one'],
    'in the order they came',
  );
});

test('LineGuard passes whole lines however they are cut, and drops a line longer than its limit, telling it once', async () => {
  const told: number[] = [];
  let n = 0;
  const guard = new LineGuard(() => told.push(n), 8);
  const out: string[] = [];
  guard.on('data', (c: Buffer) => out.push(c.toString()));
  const input = 'ab\ncdefgh\n0123456789abc\nxy\n12345678\n123456789\ntail';
  // cut into pieces of 1..4 bytes
  for (let i = 0; i < input.length; n++) {
    const len = 1 + (n % 4);
    guard.write(Buffer.from(input.slice(i, i + len)));
    i += len;
  }
  guard.end();
  await once(guard, 'end');
  assert.deepEqual(out.join('').split('\n'), ['ab', 'cdefgh', 'xy', '12345678', 'tail']);
  assert.ok(
    out.every((c) => c.endsWith('\n') || c === 'tail'),
    'only whole lines are passed on',
  );
  assert.equal(told.length, 2, 'told once for each line too long');
  // a CR before the newline is the newline's: a line of exactly the limit passes in CRLF too
  const crlf = new LineGuard(() => told.push(-1), 8);
  const passed: string[] = [];
  crlf.on('data', (c: Buffer) => passed.push(c.toString()));
  crlf.write(Buffer.from('12345678\r'));
  crlf.write(Buffer.from('\n123456789\r\nok\r\n'));
  crlf.end();
  await once(crlf, 'end');
  assert.deepEqual(passed.join('').split('\n'), ['12345678\r', 'ok\r', '']);
  assert.equal(told.at(-1), -1, 'the 9-byte line was too long');
});

test('mcp: a line that is not JSON gets -32700 Parse error, JSON that is not JSON-RPC -32600; the server keeps serving', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const child = spawn(process.execPath, [BIN, 'mcp', '--agent', 'ana', ...a.flags], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  let buffered = '';
  const lines: string[] = [];
  const waiting: Array<(line: string) => void> = [];
  child.stdout.on('data', (c) => {
    buffered += c;
    for (let i = buffered.indexOf('\n'); i >= 0; i = buffered.indexOf('\n')) {
      lines.push(buffered.slice(0, i));
      buffered = buffered.slice(i + 1);
    }
    while (lines.length && waiting.length) waiting.shift()!(lines.shift()!);
  });
  /** Writes the lines; resolves with the next reply (each bad line is followed by a good request, so a
   * server that ignores the bad line still replies, and the test fails instead of waiting). */
  const next = (...send: string[]) =>
    new Promise<Record<string, unknown>>((resolve) => {
      const take = (l: string) => resolve(JSON.parse(l));
      if (lines.length) take(lines.shift()!);
      else waiting.push(take);
      if (send.length) child.stdin.write(send.map((l) => `${l}\n`).join(''));
    });
  const ping = (id: number) => JSON.stringify({ jsonrpc: '2.0', id, method: 'ping' });

  const parse = await next('{"jsonrpc": "2.0", "id": 1, "method": "tools/list"', ping(2));
  assert.deepEqual(Object.keys(parse).sort(), ['error', 'id', 'jsonrpc'], JSON.stringify(parse));
  assert.equal(parse.jsonrpc, '2.0');
  assert.equal(parse.id, null);
  assert.equal((parse.error as { code: number }).code, -32700);
  assert.match((parse.error as { message: string }).message, /^Parse error/);
  assert.deepEqual(await next(), { jsonrpc: '2.0', id: 2, result: {} }, 'the request after it is answered');

  const invalid = await next('{"hello": "world"}', ping(3));
  assert.equal(invalid.id, null, JSON.stringify(invalid));
  assert.equal((invalid.error as { code: number }).code, -32600);
  assert.match((invalid.error as { message: string }).message, /^Invalid Request/);
  assert.deepEqual(await next(), { jsonrpc: '2.0', id: 3, result: {} });

  // a line longer than the SDK's reader takes (10 MiB) ended the server, status 0, unanswered (stop 50)
  const huge = JSON.stringify({
    jsonrpc: '2.0',
    id: 4,
    method: 'tools/call',
    params: { name: 'memory_find', arguments: { text: 'x'.repeat(11 * 1024 * 1024) } },
  });
  const tooLong = await next(huge, ping(5));
  assert.equal(tooLong.id, null, JSON.stringify(tooLong).slice(0, 300));
  assert.equal((tooLong.error as { code: number }).code, -32600);
  assert.match(
    (tooLong.error as { message: string }).message,
    /^Invalid Request: a line longer than 8388608 bytes/,
  );
  assert.deepEqual(await next(), { jsonrpc: '2.0', id: 5, result: {} }, 'the request after it is answered');

  // a tool call whose arguments (or params) are not an object: -32602, not -32603 with a schema dump
  for (const [id, params, problem] of [
    [8, { name: 'memory_list', arguments: null }, 'arguments'],
    [9, { name: 'memory_list', arguments: [] }, 'arguments'],
    [10, { name: 'memory_list', arguments: 'x' }, 'arguments'],
  ] as const) {
    const refused = await next(JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params }));
    assert.deepEqual(
      refused,
      {
        jsonrpc: '2.0',
        id,
        error: { code: -32602, message: `Invalid params: ${problem} must be an object` },
      },
      JSON.stringify(refused).slice(0, 300),
    );
  }

  const init = await next(
    JSON.stringify({
      jsonrpc: '2.0',
      id: 7,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
    }),
  );
  assert.equal(init.id, 7, 'the server keeps serving');
  assert.equal((init.result as { serverInfo: { name: string } }).serverInfo.name, 'nexo-memory');
  child.stdin.end();
  assert.equal(await exited, 0);
});

/** `nexo-memory mcp` as a raw child: its JSON-RPC lines one by one, how it ended, and what it printed. */
/** An in-process agent tool over `snapshotter` (the real one, or a Proxy of it), and its client. */
async function inProcess(
  t: TestContext,
  snapshotter: Agent['snapshotter'],
  tracker = new OperationTracker(),
) {
  const server = createAgentToolServer({
    snapshotter,
    agentId: 'ana',
    tenant: 'default',
    redactDefault: false,
    tracker,
  });
  const [ct, st] = InMemoryTransport.createLinkedPair();
  await server.connect(st);
  const client = new Client({ name: 'queue-test', version: '1.0.0' });
  await client.connect(ct);
  t.after(() => client.close());
  return client;
}

test('mcp: memory_list gives the MEMORY_LIST_DEFAULT_LIMIT newest unless limit says otherwise; total counts them all (stop 57)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'repository' });
  await a.snapshotter.snapshot({ agentId: 'ana' });
  await multiplySnapshot(join(a.stateRoot, 'repository'), MEMORY_LIST_DEFAULT_LIMIT + 30);
  const all = await a.snapshotter.list('ana');
  assert.equal(all.length, MEMORY_LIST_DEFAULT_LIMIT + 30);
  const client = await inProcess(t, a.snapshotter);
  const ids = async (args: Record<string, unknown>) => {
    const r = await callTool(client, 'memory_list', args);
    assert.ok(!r.isError, textOf(r));
    assert.equal(r.structuredContent!.total, all.length);
    return (r.structuredContent!.snapshots as Array<{ id: string }>).map((m) => m.id);
  };
  assert.deepEqual(
    await ids({}),
    all.slice(0, MEMORY_LIST_DEFAULT_LIMIT).map((m) => m.id),
  );
  assert.deepEqual(
    await ids({ limit: MEMORY_LIST_DEFAULT_LIMIT + 30 }),
    all.map((m) => m.id),
  );
});

test('mcp: read calls run at most READS_AT_ONCE at a time, the rest wait their turn and all answer (stop 57: 60 finds took 3.5 GB)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const real = a.snapshotter;
  const first = await real.snapshot({ agentId: 'ana' });
  let inFlight = 0;
  let most = 0;
  const reads = new Set(['find', 'verifySnapshot', 'ls', 'cat', 'diff']);
  const counted = new Proxy(real, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      if (!reads.has(String(prop))) return v.bind(target);
      return async (...args: unknown[]) => {
        most = Math.max(most, ++inFlight);
        try {
          return await v.apply(target, args);
        } finally {
          inFlight--;
        }
      };
    },
  });
  const client = await inProcess(t, counted);
  const results = await Promise.all([
    ...Array.from({ length: 6 }, () => callTool(client, 'memory_find', { text: 'memory' })),
    callTool(client, 'memory_verify', { snapshot_id: first.id }),
    callTool(client, 'memory_ls', { snapshot_id: 'latest' }),
    callTool(client, 'memory_cat', { snapshot_id: 'latest', path: 'memdir/MEMORY.md' }),
    callTool(client, 'memory_diff', { a: 'latest', b: 'latest' }),
  ]);
  for (const r of results) assert.ok(!r.isError, textOf(r));
  assert.equal(most, READS_AT_ONCE, 'as many at once as allowed, never more');
});

test('mcp: a queued memory_snapshot its client cancels before its turn takes nothing; the others run (stop 57)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const real = a.snapshotter;
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let taken = 0;
  const slow = new Proxy(real, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      if (prop !== 'snapshot') return v.bind(target);
      return async (...args: unknown[]) => {
        if (taken++ === 0) await held; // the first one holds its turn until the test lets it go
        return v.apply(target, args);
      };
    },
  });
  const client = await inProcess(t, slow);
  const firstCall = callTool(client, 'memory_snapshot', { label: 'first' });
  await until(() => taken === 1);
  const cancels = [new AbortController(), new AbortController()];
  const cancelled = cancels.map((c, i) =>
    client
      .callTool({ name: 'memory_snapshot', arguments: { label: `cancelled ${i}` } }, undefined, {
        signal: c.signal,
      })
      .then(
        () => 'answered',
        () => 'aborted',
      ),
  );
  const kept = callTool(client, 'memory_snapshot', { label: 'kept' });
  await new Promise((r) => setTimeout(r, 50)); // the calls reach the server and queue
  for (const c of cancels) c.abort();
  await new Promise((r) => setTimeout(r, 50)); // the cancellations reach it
  release();
  assert.ok(!(await firstCall).isError);
  assert.ok(!(await kept).isError, textOf(await kept));
  assert.deepEqual(await Promise.all(cancelled), ['aborted', 'aborted']);
  assert.equal(taken, 2, 'the snapshotter ran for the first and the kept call only');
  assert.deepEqual(
    (await real.list('ana')).map((m) => m.label),
    ['kept', 'first'],
  );
});

test('mcp: memory_snapshot tells the agent the memory files it did not take (memdir_skipped), as the CLI does (stop 57)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  symlinkSync('/etc/hostname', join(a.memdir, 'leak.md'));
  const client = await inProcess(t, a.snapshotter);
  const r = await callTool(client, 'memory_snapshot', {});
  assert.ok(!r.isError, textOf(r));
  assert.deepEqual(r.structuredContent!.memdir_skipped, [{ path: 'leak.md', reason: 'symlink' }]);
});

test("mcp: memory_diff's detail stays within AGENT_DIFF_DETAIL_MAX_BYTES in all, saying what it cut; the counts stay whole (stop 57)", async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const before = await a.snapshotter.snapshot({ agentId: 'ana' });
  // 12 new files of ~100 KB of text each: 1.2 MB of patches, each under the per-file bound
  for (let i = 0; i < 12; i++)
    writeFileSync(
      join(a.memdir, `big-${String(i).padStart(2, '0')}.md`),
      `${'a line of memory\n'.repeat(6000)}`,
    );
  const client = await inProcess(t, a.snapshotter);
  const r = await callTool(client, 'memory_diff', { a: before.id, b: 'live', detail: true });
  assert.ok(!r.isError, textOf(r));
  const diff = r.structuredContent as {
    detail_truncated?: boolean;
    git_summary: { files_changed: number; insertions: number };
    files: Array<{ path: string; patch?: string; patch_truncated?: boolean; patch_bytes?: number }>;
  };
  assert.equal(diff.detail_truncated, true);
  const big = diff.files.filter((f) => f.path.startsWith('big-'));
  assert.equal(big.length, 12);
  assert.equal(diff.git_summary.insertions, 12 * 6000, 'the counts are of the whole change');
  // as the reply writes them: JSON strings (each newline escaped)
  const patchBytes = diff.files.reduce((n, f) => n + Buffer.byteLength(JSON.stringify(f.patch ?? '')) - 2, 0);
  assert.ok(patchBytes <= AGENT_DIFF_DETAIL_MAX_BYTES, `${patchBytes} bytes of patches`);
  assert.ok(patchBytes > AGENT_DIFF_DETAIL_MAX_BYTES - 1024, 'the budget is used, not wasted');
  assert.ok(big[0]!.patch!.length > 90_000 && !big[0]!.patch_truncated, 'the first patches whole');
  const last = big[11]!;
  assert.equal(last.patch, '');
  assert.equal(last.patch_truncated, true);
  assert.ok(last.patch_bytes! > 100_000, 'the whole size of what was left out');
  assert.ok(Buffer.byteLength(textOf(r)) < 2 * AGENT_DIFF_DETAIL_MAX_BYTES, 'the reply stays small');
});

function rawServer(t: TestContext, a: Agent, extra: string[] = []) {
  const child = spawn(process.execPath, [BIN, 'mcp', '--agent', 'ana', ...a.flags, ...extra], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  let printed = '';
  let buffered = '';
  let stderr = '';
  const lines: string[] = [];
  const waiting: Array<(line: string) => void> = [];
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  child.stdout.on('data', (c) => {
    printed += c;
    buffered += c;
    for (let i = buffered.indexOf('\n'); i >= 0; i = buffered.indexOf('\n')) {
      lines.push(buffered.slice(0, i));
      buffered = buffered.slice(i + 1);
    }
    while (lines.length && waiting.length) waiting.shift()!(lines.shift()!);
  });
  child.stdin.on('error', () => {}); // a server that already ended
  const send = (message: Record<string, unknown>) => child.stdin.write(`${JSON.stringify(message)}\n`);
  const next = () =>
    new Promise<Record<string, unknown>>((resolve) => {
      const take = (l: string) => resolve(JSON.parse(l));
      if (lines.length) take(lines.shift()!);
      else waiting.push(take);
    });
  const initialize = {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
  };
  return { child, ended, send, next, initialize, stderr: () => stderr, printed: () => printed };
}

/** Files of the agent's store that only an operation in progress, or one cut short, leaves. */
const leftovers = (a: Agent) => storeEntries(a).filter((n) => n.startsWith('.') || n.endsWith('.partial'));

test('mcp: SIGTERM while the server starts (reading its config) ends it with status 0 before it serves', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  // The config file is a FIFO: the server's start stops in its read until the test writes, a known
  // instant after the program's modules have loaded and before it serves.
  const fifo = join(a.stateRoot, '..', 'memory.yaml');
  execFileSync('mkfifo', [fifo]);
  const s = rawServer(t, a, ['--config', fifo]);
  // returns once the server has opened the file to read it
  const opening = open(fifo, 'w');
  const early = await Promise.race([opening.then(() => undefined), s.ended]);
  if (early) {
    // the server ended before reading its config: release the pending open, then fail
    await (await open(fifo, constants.O_RDONLY | constants.O_NONBLOCK)).close();
    assert.fail(`the server ended before reading its config: ${JSON.stringify(early)} ${s.stderr()}`);
  }
  const writer = await opening;
  s.child.kill('SIGTERM');
  await writer.writeFile('{}\n').catch(() => {}); // (EPIPE when the signal ended the server)
  await writer.close().catch(() => {});
  s.send(s.initialize);
  assert.deepEqual(await s.ended, { code: 0, signal: null }, s.stderr());
  assert.equal(s.printed(), '', 'nothing served: no answer on stdout');
  assert.deepEqual(storeEntries(a), []);
});

test('mcp: SIGTERM after the first answer ends it with status 0', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const s = rawServer(t, a);
  s.send(s.initialize);
  assert.equal((await s.next()).id, 1);
  s.child.kill('SIGTERM');
  assert.deepEqual(await s.ended, { code: 0, signal: null }, s.stderr());
  assert.equal(s.stderr(), '');
  assert.deepEqual(leftovers(a), []);
});

test('mcp: a client that closes its end of stdout (EPIPE on the next answer) ends the server, status 0 (stop 57)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const s = rawServer(t, a);
  s.send(s.initialize);
  assert.equal((await s.next()).id, 1);
  s.child.stdout.destroy(); // the client reads no more answers; stdin stays open
  s.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  // the first snapshot runs (nothing tells the server yet); its answer cannot be written, and the
  // ones queued behind it take nothing (before, each was taken, and the server went on)
  for (const id of [2, 3, 4])
    s.send({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: { name: 'memory_snapshot', arguments: { label: `unread ${id}` } },
    });
  const waited = await Promise.race([
    s.ended,
    new Promise((r) => setTimeout(() => r('still running'), 30_000)),
  ]);
  assert.deepEqual(waited, { code: 0, signal: null }, s.stderr());
  assert.match(s.stderr(), /stdout closed/);
  assert.deepEqual(
    (await a.snapshotter.list('ana')).map((m) => m.label),
    ['unread 2'],
  );
});

test('mcp: a refused call keeps its bounded form and error id behind a flood of calls (stop 58 review)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const s = rawServer(t, a);
  s.send(s.initialize);
  assert.equal((await s.next()).id, 1);
  s.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  // A call the schema refuses with a long text, its line ended only together with 1,030 more calls in
  // one read (62 KB): they are all remembered before its answer goes out. Before, the oldest remembered
  // call was forgotten, and its answer went out in the SDK's own words (6 MB, no error id).
  const keys = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`${i}${'K'.repeat(20_000)}`, 1]));
  const call = {
    jsonrpc: '2.0',
    id: 2,
    method: 'tools/call',
    params: { name: 'memory_list', arguments: keys },
  };
  s.child.stdin.write(JSON.stringify(call));
  await new Promise((r) => setTimeout(r, 500));
  const flood = Array.from(
    { length: 1030 },
    (_, i) => `{"jsonrpc":"2.0","id":${10 + i},"method":"tools/call","params":{}}`,
  );
  s.child.stdin.write(`\n${flood.join('\n')}\n`);
  let refused: Record<string, unknown> | undefined;
  for (let n = 0; n < 1031; n++) {
    const m = await s.next();
    if (m.id === 2) refused = m;
  }
  const text = (refused!.result as { content: { text: string }[] }).content[0]!.text;
  assert.ok(text.length < 1200, `${text.length} characters`);
  assert.match(text, /failed: Input validation error: .*\(INVALID_INPUT, error id [0-9a-f]{8}\)$/s);
  // a tool name of 1 MB: answered cut, not repeated whole
  s.send({
    jsonrpc: '2.0',
    id: 3,
    method: 'tools/call',
    params: { name: 'n'.repeat(1_000_000), arguments: {} },
  });
  const long = ((await s.next()).result as { content: { text: string }[] }).content[0]!.text;
  assert.match(
    long,
    /^tools\/call failed: Tool n+… \(\d+ more characters\) \(INVALID_INPUT, error id [0-9a-f]{8}\)$/,
  );
  assert.ok(long.length < 1200, `${long.length} characters`);
  s.child.stdin.end();
  assert.deepEqual(await s.ended, { code: 0, signal: null }, s.stderr().slice(-2000));
});

test('mcp: stdout on a full disk (ENOSPC) ends the server after the call in progress, status 1, no stack (stop 58)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const full = await open('/dev/full', 'w');
  t.after(() => full.close());
  // every answer fails to be written; before stop 58 main.ts's listener threw the first failure (the
  // initialize answer) and the process died with a stack trace, in the middle of whatever call ran
  const child = spawn(process.execPath, [BIN, 'mcp', '--agent', 'ana', ...a.flags], {
    stdio: ['pipe', full.fd, 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const lines = [
    {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
    },
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    ...[2, 3].map((id) => ({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: { name: 'memory_snapshot', arguments: { label: `unwritten ${id}` } },
    })),
  ];
  child.stdin!.write(lines.map((l) => `${JSON.stringify(l)}\n`).join('')); // stdin stays open
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  assert.deepEqual({ code, signal }, { code: 1, signal: null }, stderr);
  assert.match(stderr, /nexo-memory mcp: stdout: ENOSPC: no space left on device.*stopping \(IO\)/);
  assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
  // at most the call that was running when the first answer failed was taken, and whole
  const labels = (await a.snapshotter.list('ana')).map((m) => m.label);
  assert.ok(labels.length <= 1 && labels.every((l) => l === 'unwritten 2'), JSON.stringify(labels));
  for (const m of await a.snapshotter.list('ana'))
    assert.equal((await a.snapshotter.verifySnapshot('ana', undefined, m.id)).status, 'verified');
});

/**
 * A server whose `memory_snapshot` call (id 2, labelled `label`) has started and waits at the write
 * gate, held by a memory writer in the middle of a batch (the `hold-gate` fixture): kill the writer to
 * let it go on.
 */
async function snapshotAtTheGate(t: TestContext, label: string) {
  const a = sampleAgent(t, 'ana', SMALL);
  const s = rawServer(t, a);
  s.send(s.initialize);
  assert.equal((await s.next()).id, 1);
  s.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  const writer = startFixture(t, 'hold-gate.ts', [a.stateRoot, 'ana']);
  await writer.ready;
  s.send({
    jsonrpc: '2.0',
    id: 2,
    method: 'tools/call',
    params: { name: 'memory_snapshot', arguments: { label } },
  });
  await until(() => storeEntries(a).some((n) => n.startsWith('.staging-'))); // the snapshot started
  return { a, s, writer };
}

test('mcp: SIGTERM during memory_snapshot lets the snapshot finish and answer, refuses the ones queued behind it, then exits 0 with nothing left behind', async (t) => {
  const { a, s, writer } = await snapshotAtTheGate(t, 'in flight');
  // two more wait their turn behind it: a shutdown runs neither (stop 57: it ran every queued one)
  for (const id of [3, 4])
    s.send({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: { name: 'memory_snapshot', arguments: { label: `queued ${id}` } },
    });
  await new Promise((r) => setTimeout(r, 200)); // read and queued by the server
  s.child.kill('SIGTERM');
  writer.child.kill('SIGKILL'); // the writer's batch ends: the gate opens
  const answers = [await s.next(), await s.next(), await s.next()] as Array<{
    id: number;
    result: ToolResult;
  }>;
  answers.sort((x, y) => x.id - y.id);
  const answer = answers[0]!;
  assert.equal(answer.id, 2);
  assert.ok(!answer.result.isError, textOf(answer.result));
  for (const queued of answers.slice(1)) {
    assert.equal(queued.result.isError, true, JSON.stringify(queued));
    assert.match(textOf(queued.result), /the agent tool is shutting down.*SHUTTING_DOWN/);
  }
  assert.deepEqual(
    (await a.snapshotter.list('ana')).map((m) => m.label),
    ['in flight'],
  );
  assert.deepEqual(await s.ended, { code: 0, signal: null }, s.stderr());
  assert.deepEqual(leftovers(a), [], storeEntries(a).join(', '));
  const bundle = String(answer.result.structuredContent!.bundle_path);
  assert.equal((await a.snapshotter.verify(bundle)).status, 'verified');
});

test('mcp: a second signal during memory_snapshot exits 1 at once; the next snapshot cleans what it left', async (t) => {
  const { a, s, writer } = await snapshotAtTheGate(t, 'cut short');
  s.child.kill('SIGTERM');
  s.child.kill('SIGINT');
  assert.deepEqual(await s.ended, { code: 1, signal: null }, s.stderr());
  assert.match(s.stderr(), /SIG(TERM|INT) again: exiting at once/);
  assert.equal(s.printed().split('\n').filter(Boolean).length, 1, 'no answer to the call cut short');
  writer.child.kill('SIGKILL');
  const client = await connect(t, a);
  const r = await callTool(client, 'memory_snapshot', { label: 'after' });
  assert.ok(!r.isError, textOf(r));
  assert.deepEqual(leftovers(a), [], storeEntries(a).join(', '));
});

test('mcp --nats: a tool snapshot publishes its created event (created_by tool)', async (t) => {
  const nats = await startNats(t);
  const events = await collect(t, nats.url, 'nexo.memory.snapshot.ana.>');
  const a = sampleAgent(t, 'ana', SMALL);
  const client = await connect(t, a, 'ana', ['--nats', nats.url]);
  const r = await callTool(client, 'memory_snapshot', { label: 'tool run' });
  assert.ok(!r.isError, textOf(r));
  const [created] = await events.waitFor(1);
  assert.equal(created!.subject, 'nexo.memory.snapshot.ana.created');
  assert.equal(created!.data.id, r.structuredContent!.snapshot_id);
  assert.equal(created!.data.created_by, 'tool');
  assert.equal(created!.data.label, 'tool run');
});

test('mcp: memory_list tells the agent no added_bytes: the repository deduplicates across tenants, and the figure would say what another tenant stored (stop 45)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  copySampleAgent(a.root, 'bob', SMALL);
  const env = { NEXO_MEMORY_STORE_FORMAT: 'repository' };
  // Another tenant's file, in the shared repository.
  const secret = randomBytes(6204).toString('base64');
  writeFileSync(join(a.memdirRoot, 'bob', 'secret.md'), secret);
  const stored = await runCli(
    ['snapshot', '--agent', 'bob', '--tenant', 'acme', '--no-progress', ...a.flags],
    {
      env,
    },
  );
  assert.equal(stored.code, 0, stored.stderr);
  // The agent writes a guessed copy into its own memory and snapshots it.
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'mcp', '--agent', 'ana', ...a.flags],
    env: { ...(process.env as Record<string, string>), ...env },
    stderr: 'pipe',
  });
  const client = new Client({ name: 'nexo-memory-test', version: '1.0.0' });
  await client.connect(transport);
  t.after(() => client.close());
  const first = await callTool(client, 'memory_snapshot', {});
  assert.ok(!first.isError, textOf(first));
  writeFileSync(join(a.memdir, 'guess.md'), secret);
  const guessed = await callTool(client, 'memory_snapshot', {});
  assert.ok(!guessed.isError, textOf(guessed));
  assert.ok(String(guessed.structuredContent!.bundle_path).includes('#'), 'a repository snapshot');
  assert.ok(!('added_bytes' in guessed.structuredContent!));
  // and a file no one has: the control
  writeFileSync(join(a.memdir, 'own.md'), randomBytes(6204).toString('base64'));
  const own = await callTool(client, 'memory_snapshot', {});
  assert.ok(!own.isError, textOf(own));
  const list = await callTool(client, 'memory_list', {});
  assert.ok(!list.isError, textOf(list));
  const snapshots = list.structuredContent!.snapshots as Array<Record<string, unknown>>;
  assert.equal(snapshots.length, 3);
  for (const m of snapshots) {
    assert.ok(!('added_bytes' in m), JSON.stringify(m));
    assert.equal(typeof m.bundle_size_bytes, 'number', 'its own sizes stay');
  }
  assert.ok(!textOf(list).includes('added_bytes'), textOf(list));
  // The operator's list (the CLI, the daemon: the whole store's) still has it: the guessed file added
  // nothing, its bytes were in the repository already; the file no one had did.
  const cli = await runCli(['list', '--agent', 'ana', '--json', '--state-root', a.stateRoot], { env });
  assert.equal(cli.code, 0, cli.stderr);
  const metas = JSON.parse(cli.stdout) as Array<{ id: string; added_bytes: number | null }>;
  assert.deepEqual(
    metas.map((m) => m.id),
    [
      own.structuredContent!.snapshot_id,
      guessed.structuredContent!.snapshot_id,
      first.structuredContent!.snapshot_id,
    ],
  );
  assert.equal(metas[1]!.added_bytes, 0, 'the guessed copy');
  assert.ok(metas[0]!.added_bytes! > 4000, `the file no one had: ${metas[0]!.added_bytes}`);
});

test("mcp: an answer over MAX_REPLY_BYTES is the call's INVALID_INPUT saying to ask for less, and the server goes on; a snapshot names the first 100 memory files it did not take and counts them all (stop 62 review)", async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'repository' });
  // 1 MiB of U+0001: each byte is six characters in JSON, twice (text and structured content), ~13 MiB
  writeFileSync(join(a.memdir, 'ctrl.md'), '\u0001'.repeat(1024 * 1024));
  for (let i = 0; i < 150; i++)
    symlinkSync('/etc/hostname', join(a.memdir, `link-${String(i).padStart(3, '0')}.md`));
  const client = await inProcess(t, a.snapshotter);
  const snap = await callTool(client, 'memory_snapshot', {});
  assert.ok(!snap.isError, textOf(snap));
  const sc = snap.structuredContent as {
    snapshot_id: string;
    memdir_skipped: unknown[];
    memdir_skipped_total?: number;
  };
  assert.equal(sc.memdir_skipped.length, 100);
  assert.equal(sc.memdir_skipped_total, 150);
  const big = await callTool(client, 'memory_cat', { snapshot_id: sc.snapshot_id, path: 'memdir/ctrl.md' });
  assert.equal(big.isError, true);
  assert.match(
    textOf(big),
    /the answer is \d+ bytes, more than the 4194304 a tool answers with: ask for less.*INVALID_INPUT/,
  );
  // a page of it is answered, and so is the next call
  const page = await callTool(client, 'memory_cat', {
    snapshot_id: sc.snapshot_id,
    path: 'memdir/ctrl.md',
    limit: 65536,
  });
  assert.ok(!page.isError, textOf(page));
  assert.ok(!(await callTool(client, 'memory_list', {})).isError);
});
