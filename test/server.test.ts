// The daemon (`nexo-memory serve`) as operators run it: the real binary on port 0, real HTTP calls.
// Auth, JSON errors, every API operation against the store, /metrics, restore gating, scheduled
// snapshots, and SIGTERM in the middle of a snapshot.

import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { get as httpGet, request as httpRequest } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, type TestContext, test } from 'node:test';
import { generateSigningKey, LocalSnapshotter, parseSigningKey } from '../src/index.js';
import { ConfigError, ERROR_TABLE, InvalidInputError, IoError } from '../src/model/errors.js';
import { ActivityBoard } from '../src/server/activity.js';
import { bearerToken, tokenMatches } from '../src/server/auth.js';
import { ClientErrors } from '../src/server/client-errors.js';
import { Daemon, isLoopback, parseListen } from '../src/server/daemon.js';
import { createApiServer } from '../src/server/http.js';
import { apiRoutes } from '../src/server/routes.js';
import { httpStatusOf } from '../src/server/status.js';
import { OperationTracker } from '../src/server/tracker.js';
import { BIN, ensureBuilt } from './helpers/built-cli.js';
import {
  type Agent,
  agentConfig,
  copySampleAgent,
  REPO,
  runCli,
  sampleAgent,
  startFixture,
} from './helpers/env.js';
import { collect, startNats } from './helpers/nats.js';
import { until } from './helpers/wait.js';

const TOKEN = 'test-token-0123456789abcdef';
const SMALL = { files: 4, commits: 2, memories: 40, embeddings: 20, concepts: 10, compactions: 5 };

before(() => ensureBuilt());

interface Running {
  url: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  stderr: () => string;
}

/** Starts `nexo-memory serve --listen 127.0.0.1:0` and resolves with the address it printed. */
function serve(
  t: { after(fn: () => void): void },
  args: string[],
  env: NodeJS.ProcessEnv = {},
  opts: { ownGroup?: boolean } = {},
) {
  const child = spawn(process.execPath, [BIN, 'serve', '--listen', '127.0.0.1:0', ...args], {
    cwd: REPO,
    env: { ...process.env, NEXO_MEMORY_TOKEN: '', NEXO_MEMORY_RESTORE_ALLOW: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // a process group of its own, as a terminal or a service manager starts it (signalled as a group)
    detached: opts.ownGroup === true,
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (c) => {
    err += c;
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return new Promise<Running>((resolve, reject) => {
    child.stdout!.on('data', (c) => {
      out += c;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)\n/.exec(out);
      if (m) resolve({ url: m[1]!, child, exited, stderr: () => err });
      const line = /^(\{.*\})\n/.exec(out);
      if (line) {
        const j = JSON.parse(line[1]!);
        assert.equal(j.pid, child.pid);
        assert.equal(j.listening, `http://127.0.0.1:${j.port}`);
        resolve({ url: j.listening, child, exited, stderr: () => err });
      }
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code} before listening: ${err}`)));
  });
}

const storeFlags = (a: Agent) => a.flags;

/** The processes whose parent is `pid` (from /proc): pid and command line. */
function childrenOf(pid: number): Array<{ pid: number; cmd: string }> {
  const out: Array<{ pid: number; cmd: string }> = [];
  for (const n of readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== pid) continue;
      out.push({ pid: Number(n), cmd: readFileSync(`/proc/${n}/cmdline`, 'utf8').replaceAll('\0', ' ') });
    } catch {
      // ended meanwhile
    }
  }
  return out;
}

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`);

const auth = (token = TOKEN) => ({ authorization: `Bearer ${token}` });
const jsonHeaders = (token = TOKEN) => ({ ...auth(token), 'content-type': 'application/json' });

async function call(url: string, init: RequestInit = {}) {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  // biome-ignore lint/suspicious/noExplicitAny: the API's JSON bodies, asserted field by field
  return { status: res.status, headers: res.headers, body: body as any, text };
}

/** One agent's row of /v1/schedule. */
interface Schedule {
  running: boolean;
  waiting_for_prune: boolean;
  skipped_busy: number;
  runs: number;
  failures: number;
  interval_secs: number;
}

function storeEntries(a: Agent, agent = 'ana'): string[] {
  const dir = join(a.stateRoot, 'tenants', 'default', 'snapshots', agent);
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

/**
 * One agent and one daemon (its store flags and the token) for the tests of what requests are answered
 * (stop 47): a daemon's start costs ~0.5 s of CPU (the library loaded again in a process of its own),
 * and these tests are about the answers, not the process. Each asserts relative to what the agent held
 * when it began, so they pass in any order and alone; the last ends the daemon and asserts its exit.
 * Tests of metrics' counts, a config, the log of a damaged store, signals and start-up keep their own.
 */
describe('serve: one daemon of the store flags and the token', () => {
  let state: { a: Agent; d: Running } | undefined;
  const cleanups: Array<() => unknown> = [];
  // tempDir and serve register their cleanups with `after`: run when the group ends, last first
  const group = { after: (fn: () => unknown) => void cleanups.push(fn) } as unknown as TestContext;
  const shared = () => state!;
  before(async () => {
    const a = sampleAgent(group, 'ana', SMALL);
    state = { a, d: await serve(group, storeFlags(a), { NEXO_MEMORY_TOKEN: TOKEN }) };
  });
  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });

  test('serve: address printed, /healthz, JSON 4xx for unknown routes, bad methods and bad bodies; a wrong token does nothing', async () => {
    const { a, d } = shared();
    const stored = storeEntries(a);

    const h = await call(`${d.url}/healthz`);
    assert.equal(h.status, 200);
    assert.equal(h.body.status, 'ok');

    const snapUrl = `${d.url}/v1/agents/ana/snapshots`;
    for (const headers of [{}, auth('wrong-token-0123456789abcdef'), { authorization: TOKEN }]) {
      const r = await call(snapUrl, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: '{}',
      });
      assert.equal(r.status, 401, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'UNAUTHORIZED');
      assert.equal(r.headers.get('www-authenticate'), 'Bearer');
    }
    // With a token configured, reads need it too.
    assert.equal((await call(snapUrl)).status, 401);
    assert.deepEqual(storeEntries(a), stored, 'nothing was written by refused calls');

    const notFound = await call(`${d.url}/v1/nothing/here`, { headers: auth() });
    assert.equal(notFound.status, 404);
    assert.equal(notFound.body.error.code, 'ROUTE_NOT_FOUND');
    assert.match(notFound.headers.get('content-type') ?? '', /application\/json/);

    const method = await call(snapUrl, { method: 'PUT', headers: auth() });
    assert.equal(method.status, 405);
    assert.equal(method.body.error.code, 'METHOD_NOT_ALLOWED');
    assert.equal(method.headers.get('allow'), 'GET, POST, HEAD');

    const badJson = await call(snapUrl, { method: 'POST', headers: jsonHeaders(), body: '{"label": ' });
    assert.equal(badJson.status, 400);
    assert.equal(badJson.body.error.code, 'INVALID_INPUT');
    assert.match(badJson.body.error.message, /not valid JSON/);

    const unknownKey = await call(snapUrl, { method: 'POST', headers: jsonHeaders(), body: '{"lable":"x"}' });
    assert.equal(unknownKey.status, 400);
    assert.match(unknownKey.body.error.message, /body\.lable: unknown key/);

    const wrongType = await call(snapUrl, { method: 'POST', headers: jsonHeaders(), body: '{"label":5}' });
    assert.equal(wrongType.status, 400);

    // a right-to-left override would show the label reversed in list and the console: refused
    const rlo = await call(snapUrl, {
      method: 'POST',
      headers: jsonHeaders(),
      body: JSON.stringify({ label: 'invoice-\u202efdp.exe' }),
    });
    assert.equal(rlo.status, 400);
    assert.equal(rlo.body.error.code, 'INVALID_INPUT');
    assert.match(rlo.body.error.message, /^invalid label: must not contain control characters \(U\+202E;/);

    const notJson = await call(snapUrl, {
      method: 'POST',
      headers: { ...auth(), 'content-type': 'text/plain' },
      body: 'label=x',
    });
    assert.equal(notJson.status, 400);

    const big = await call(snapUrl, {
      method: 'POST',
      headers: jsonHeaders(),
      body: JSON.stringify({ label: 'x'.repeat(70 * 1024) }),
    });
    assert.equal(big.status, 413);
    assert.equal(big.body.error.code, 'PAYLOAD_TOO_LARGE');

    const badAgent = await call(`${d.url}/v1/agents/Not%20An%20Agent/snapshots`, { headers: auth() });
    assert.equal(badAgent.status, 400);
    const badTenant = await call(`${snapUrl}?tenant=a&x=1`, { headers: auth() });
    assert.equal(badTenant.status, 400);

    const unknownAgent = await call(`${d.url}/v1/agents/bob/snapshots`, {
      method: 'POST',
      headers: jsonHeaders(),
      body: '{}',
    });
    assert.equal(unknownAgent.status, 404);
    assert.equal(unknownAgent.body.error.code, 'UNKNOWN_AGENT');
    assert.match(unknownAgent.body.error.message, /^unknown agent bob \(tenant default\)/);
    assert.deepEqual(unknownAgent.body.error.details, { agent_id: 'bob', tenant: 'default' });
    assert.ok(!JSON.stringify(unknownAgent.body).includes(a.root), 'no host path in the answer');

    assert.deepEqual(storeEntries(a), stored, 'no bad request wrote anything');
  });

  test('serve: a query parameter given twice is refused (400 INVALID_INPUT naming it), never read as its first value', async () => {
    const { a, d } = shared();
    const earlier = (await a.snapshotter.list('ana')).length;
    const first = await a.snapshotter.snapshot({ agentId: 'ana' });
    const base = `${d.url}/v1/agents/ana`;
    // once: read as given
    const once = await call(`${base}/snapshots?tenant=default`, { headers: auth() });
    assert.equal(once.status, 200, JSON.stringify(once.body));
    assert.equal(once.body.length, earlier + 1);
    // A proxy that reads the last value (or checks one tenant's rights) and a daemon that read the first
    // would act on different tenants; with the same value twice there is nothing to disagree on, but the
    // rule stays one: each parameter once.
    for (const [method, target, name, times] of [
      ['GET', `${base}/snapshots?tenant=default&tenant=other`, 'tenant', 2],
      ['GET', `${base}/snapshots?tenant=default&tenant=default`, 'tenant', 2],
      ['GET', `${base}/diff?a=${first.id}&b=live&a=${first.id}&a=live`, 'a', 3],
      ['GET', `${base}/snapshots/${first.id}/ls?path=memdir&path=sqlite`, 'path', 2],
      ['GET', `${base}/snapshots/${first.id}/verify?deep=false&deep=true`, 'deep', 2],
      ['POST', `${base}/snapshots?tenant=default&tenant=other`, 'tenant', 2],
      ['GET', `${d.url}/v1/fleet?tenant=default&tenant=other`, 'tenant', 2],
    ] as const) {
      const r = await call(target, {
        method,
        headers: jsonHeaders(),
        ...(method === 'POST' ? { body: '{}' } : {}),
      });
      assert.equal(r.status, 400, `${method} ${target}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'INVALID_INPUT');
      assert.equal(r.body.error.message, `query parameter ${name} given ${times} times: give it once`);
    }
    assert.equal((await a.snapshotter.list('ana')).length, earlier + 1, 'the refused POST took no snapshot');
  });

  test('serve: ls pages a folder of 2,500 files (limit ≤ 1000, a cursor by name bytes): the pages are the whole folder; a cursor past the end is an empty page; bad paging is 400', async () => {
    const { a, d } = shared();
    const many = join(a.memdir, 'many');
    mkdirSync(many);
    for (let i = 0; i < 2498; i++) writeFileSync(join(many, `f${String(i).padStart(4, '0')}.md`), `${i}\n`);
    // JavaScript's string order puts the emoji (a surrogate pair, 0xD83D…) before U+FF5E; UTF-8's bytes
    // (F0… against EF…) put it after: the API's order is the bytes'
    const odd = ['\u{1F600}.md', '\uFF5E.md'];
    for (const name of odd) writeFileSync(join(many, name), 'odd\n');
    const snap = await a.snapshotter.snapshot({ agentId: 'ana', label: 'many files' });
    const ls = (query: string) =>
      call(`${d.url}/v1/agents/ana/snapshots/${snap.id}/ls?${query}`, { headers: auth() });
    const whole = await a.snapshotter.ls('ana', undefined, snap.id, 'memdir/many');
    assert.equal(whole.entries.length, 2500);
    assert.equal(whole.total, 2500);
    assert.deepEqual(
      whole.entries.slice(-2).map((e) => e.name),
      ['\uFF5E.md', '\u{1F600}.md'],
    );
    for (let i = 1; i < whole.entries.length; i++)
      assert.ok(
        Buffer.compare(Buffer.from(whole.entries[i - 1]!.name), Buffer.from(whole.entries[i]!.name)) < 0,
        `${whole.entries[i - 1]!.name} before ${whole.entries[i]!.name}`,
      );

    // the default page: 1000 entries of 2500, then the rest by the cursor
    for (const [limit, sizes] of [
      [undefined, [1000, 1000, 500]],
      [700, [700, 700, 700, 400]],
      [1000, [1000, 1000, 500]],
    ] as const) {
      const got: unknown[] = [];
      const pages: number[] = [];
      let cursor: string | undefined;
      for (;;) {
        assert.ok(pages.length < 10, `limit ${limit}: the pages end (${pages.join(', ')}…)`);
        const r = await ls(
          `path=memdir/many${limit !== undefined ? `&limit=${limit}` : ''}${cursor !== undefined ? `&cursor=${cursor}` : ''}`,
        );
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.total, 2500);
        assert.equal(r.body.path, 'memdir/many');
        pages.push(r.body.entries.length);
        got.push(...r.body.entries);
        assert.equal(r.body.truncated, r.body.next_cursor !== undefined);
        if (!r.body.truncated) break;
        assert.match(r.body.next_cursor, /^[A-Za-z0-9_-]+$/, 'a cursor needs no escaping in a URL');
        cursor = r.body.next_cursor;
      }
      assert.deepEqual(pages, sizes, `limit ${limit}`);
      assert.deepEqual(got, whole.entries, `limit ${limit}: the pages are the whole folder, in order`);
    }
    // a small folder is one page, as the library's whole answer
    assert.deepEqual(
      (await ls('path=memdir')).body,
      await a.snapshotter.ls('ana', undefined, snap.id, 'memdir'),
    );

    // a cursor names a position (after a name), not an offset: the cursor after f1999 of this snapshot,
    // given to a later snapshot that has only f0000..f1999, is past its end: an empty last page
    const second = (await ls('path=memdir/many')).body.next_cursor;
    const afterF1999 = (await ls(`path=memdir/many&cursor=${second}`)).body;
    assert.equal(afterF1999.entries.at(-1).name, 'f1999.md');
    for (let i = 2000; i < 2498; i++) rmSync(join(many, `f${String(i).padStart(4, '0')}.md`));
    for (const name of odd) rmSync(join(many, name));
    const fewer = await a.snapshotter.snapshot({ agentId: 'ana', label: 'fewer files' });
    const past = await call(
      `${d.url}/v1/agents/ana/snapshots/${fewer.id}/ls?path=memdir/many&cursor=${afterF1999.next_cursor}`,
      { headers: auth() },
    );
    assert.equal(past.status, 200, JSON.stringify(past.body));
    assert.deepEqual(past.body.entries, []);
    assert.equal(past.body.total, 2000);
    assert.equal(past.body.truncated, false);
    assert.equal(past.body.next_cursor, undefined);

    const forged = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    for (const [query, message] of [
      ['path=memdir/many&limit=0', /^limit must be an integer 1\.\.1000, got 0$/],
      ['path=memdir/many&limit=1001', /^limit must be an integer 1\.\.1000, got 1001$/],
      ['path=memdir/many&limit=-1', /^query parameter limit must be a non-negative integer$/],
      ['path=memdir/many&limit=1.5', /^query parameter limit must be a non-negative integer$/],
      ['path=memdir/many&limit=ten', /^query parameter limit must be a non-negative integer$/],
      ['path=memdir/many&limit=', /^query parameter limit must be a non-negative integer$/],
      ['path=memdir/many&cursor=', /^cursor is not one ls returned/],
      ['path=memdir/many&cursor=a%2Fb', /^cursor is not one ls returned/],
      ['path=memdir/many&cursor=bm90IGpzb24', /^cursor is not one ls returned/], // "not json"
      [`path=memdir/many&cursor=${forged(['memdir/many', 'f0001.md'])}`, /^cursor is not one ls returned/],
      [`path=memdir/many&cursor=${forged(['memdir/many', 7, 'file'])}`, /^cursor is not one ls returned/],
      [`path=memdir/many&cursor=${forged(['memdir/many', 'f', 'socket'])}`, /^cursor is not one ls returned/],
      [`path=memdir&cursor=${second}`, /^cursor is of another path \("memdir\/many"\)/],
      [`path=memdir/many&cursor=${'A'.repeat(12_000)}`, /^cursor is not one ls returned/],
      ['path=memdir/many&limit=5&limit=6', /^query parameter limit given 2 times: give it once$/],
      [`path=memdir/many&cursor=${second}&cursor=${second}`, /^query parameter cursor given 2 times/],
      ['path=memdir/many&offset=1000', /^unknown query parameter offset$/],
    ] as const) {
      const r = await ls(query);
      assert.equal(r.status, 400, `${query}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'INVALID_INPUT', query);
      assert.match(r.body.error.message, message, query);
    }
  });

  test('serve: a live diff in a tenant that does not know the agent is 404 UNKNOWN_AGENT and makes no directory of that tenant (stop 51)', async () => {
    const { a, d } = shared();
    const diff = (tenant: string) =>
      call(`${d.url}/v1/agents/ana/diff?a=live&b=live&detail=true&tenant=${tenant}`, { headers: auth() });
    const junk = join(a.stateRoot, 'tenants', 'junk1');
    const r = await diff('junk1');
    assert.equal(r.status, 404, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'UNKNOWN_AGENT');
    assert.match(
      r.body.error.message,
      /^unknown agent ana \(tenant junk1\): the tenant has no snapshot of it/,
    );
    assert.ok(!existsSync(junk), 'no directory of tenant junk1 (its gate file was made before)');
    // the same live agent in its own tenant, and in a tenant that has a snapshot of it, is diffed
    assert.equal((await diff('default')).status, 200);
    const taken = await call(`${d.url}/v1/agents/ana/snapshots?tenant=known2`, {
      method: 'POST',
      headers: jsonHeaders(),
      body: '{}',
    });
    assert.equal(taken.status, 201, JSON.stringify(taken.body));
    assert.equal((await diff('known2')).status, 200);
    assert.ok(!existsSync(junk));
  });

  test('serve: the daemon these requests were sent to ends with status 0 on SIGTERM', async () => {
    const { d } = shared();
    d.child.kill('SIGTERM');
    assert.equal(await d.exited, 0);
  });
});

test('serve: snapshot, list, get, verify, diff, export download, delete over HTTP; /metrics counts them', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const d = await serve(t, storeFlags(a), { NEXO_MEMORY_TOKEN: TOKEN });
  const base = `${d.url}/v1/agents/ana`;

  const s1 = await call(`${base}/snapshots`, {
    method: 'POST',
    headers: jsonHeaders(),
    body: JSON.stringify({ label: 'first' }),
  });
  assert.equal(s1.status, 201, JSON.stringify(s1.body));
  assert.doesNotMatch(d.stderr(), /no token/, 'a daemon with a token does not warn of one');
  assert.equal(s1.body.label, 'first');
  assert.equal(s1.body.created_by, 'api');
  assert.equal(s1.body.redactions_applied, false, 'an API snapshot stays on the host: exact unless asked');
  assert.ok(existsSync(s1.body.bundle_path));
  assert.equal(s1.headers.get('location'), `/v1/agents/ana/snapshots/${s1.body.id}?tenant=default`);

  writeFileSync(join(a.memdir, 'new-topic.md'), 'learned something new\n');
  const s2 = await call(`${base}/snapshots`, { method: 'POST', headers: auth() }); // no body at all
  assert.equal(s2.status, 201, JSON.stringify(s2.body));

  const list = await call(`${base}/snapshots`, { headers: auth() });
  assert.equal(list.status, 200);
  assert.deepEqual(
    list.body.map((m: { id: string }) => m.id),
    [s2.body.id, s1.body.id],
    'newest first',
  );
  // added_bytes on a bundle store too (the bundle's file), so a client need not ask which store it is
  for (const [m, made] of [
    [list.body[0], s2.body],
    [list.body[1], s1.body],
  ]) {
    assert.equal(m.added_bytes, statSync(m.bundle_path).size, m.id);
    assert.equal(made.added_bytes, m.added_bytes, 'the snapshot answer says what the list says');
  }
  // and so does the activity board's summary of each snapshot
  const activity = await call(`${d.url}/v1/activity`, { headers: auth() });
  assert.deepEqual(
    activity.body.recent
      .filter((e: { op: string }) => e.op === 'snapshot')
      .map((e: { result: { snapshot_id: string; added_bytes?: number } }) => [
        e.result.snapshot_id,
        e.result.added_bytes,
      ])
      .sort(),
    [
      [s1.body.id, s1.body.bundle_size_bytes],
      [s2.body.id, s2.body.bundle_size_bytes],
    ].sort(),
  );
  const viaHeader = await call(`${base}/snapshots`, { headers: { ...auth(), 'x-nexo-tenant': 'other' } });
  assert.deepEqual(viaHeader.body, [], 'tenant from the header');

  const one = await call(`${base}/snapshots/${s1.body.id.slice(0, 13)}`, { headers: auth() });
  assert.equal(one.status, 200);
  assert.equal(one.body.id, s1.body.id, 'a unique prefix finds the snapshot');
  assert.equal(one.body.added_bytes, s1.body.bundle_size_bytes);

  const v = await call(`${base}/snapshots/${s1.body.id}/verify?deep=true`, { headers: auth() });
  assert.equal(v.status, 200);
  assert.equal(v.body.status, 'verified');
  assert.equal(v.body.per_artifact_ok, true);
  assert.ok(v.body.deep, 'deep checks ran');

  const diff = await call(`${base}/diff?a=${s1.body.id}&b=${s2.body.id}`, { headers: auth() });
  assert.equal(diff.status, 200, JSON.stringify(diff.body));
  assert.equal(diff.body.a, s1.body.id);
  assert.ok(
    diff.body.files.some((f: { path: string }) => f.path.endsWith('new-topic.md')),
    JSON.stringify(diff.body.files),
  );
  const noB = await call(`${base}/diff?a=${s1.body.id}`, { headers: auth() });
  assert.equal(noB.status, 400);

  // the bundle as it is (by default a download is redacted: test/redaction.test.ts)
  const dl = await fetch(`${base}/snapshots/${s1.body.id}/export?redact=false`, { headers: auth() });
  assert.equal(dl.status, 200);
  const bytes = Buffer.from(await dl.arrayBuffer());
  const sha = createHash('sha256').update(bytes).digest('hex');
  const sibling = readFileSync(`${s1.body.bundle_path}.sha256`, 'utf8').trim();
  assert.equal(sha, sibling, 'the download is the bundle the sibling describes');
  assert.equal(dl.headers.get('x-nexo-file-sha256'), sibling);
  assert.equal(Number(dl.headers.get('content-length')), bytes.length);
  assert.match(dl.headers.get('content-disposition') ?? '', new RegExp(`${s1.body.id}\\.tar\\.zst`));
  assert.equal((await call(`${base}/snapshots/${s1.body.id}/export`)).status, 401);

  const missing = await call(`${base}/snapshots/0000000000/verify`, { headers: auth() });
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error.code, 'NOT_FOUND');

  // a body with a key DELETE does not know is refused, not ignored (and nothing is deleted)
  const delBody = await call(`${base}/snapshots/${s1.body.id}`, {
    method: 'DELETE',
    headers: jsonHeaders(),
    body: '{"x":1}',
  });
  assert.equal(delBody.status, 400, JSON.stringify(delBody.body));
  assert.match(delBody.body.error.message, /body\.x: unknown key/);
  assert.ok(existsSync(s1.body.bundle_path));
  // the fleet's tenant is checked as every route's
  for (const [q, h] of [
    ['?tenant=../..', {}],
    ['?tenant=default', { 'x-nexo-tenant': 'other' }],
  ] as const) {
    const fleet = await call(`${d.url}/v1/fleet${q}`, { headers: { ...auth(), ...h } });
    assert.equal(fleet.status, 400, `${q}: ${JSON.stringify(fleet.body)}`);
  }
  assert.equal((await call(`${d.url}/v1/fleet?tenant=default`, { headers: auth() })).status, 200);
  const del = await call(`${base}/snapshots/${s1.body.id}`, { method: 'DELETE', headers: auth() });
  assert.equal(del.status, 200, JSON.stringify(del.body));
  assert.equal(del.body.id, s1.body.id);
  assert.ok(!existsSync(s1.body.bundle_path));
  const last = await call(`${base}/snapshots/${s2.body.id}`, { method: 'DELETE', headers: auth() });
  assert.equal(last.status, 409);
  assert.equal(last.body.error.code, 'RETENTION');
  assert.ok(existsSync(s2.body.bundle_path), 'the last snapshot is kept');

  const restore = await call(`${base}/snapshots/${s2.body.id}/restore`, {
    method: 'POST',
    headers: jsonHeaders(),
    body: '{}',
  });
  assert.equal(restore.status, 403, 'restore is off unless the config allows it');
  assert.equal(restore.body.error.code, 'RESTORE_REFUSED');
  const preview = await call(`${base}/snapshots/${s2.body.id}/restore`, {
    method: 'POST',
    headers: jsonHeaders(),
    body: '{"dry_run": true}',
  });
  assert.equal(preview.status, 200, 'a dry run changes nothing: the write token may preview');
  assert.equal(preview.body.dry_run, true);

  const m = await call(`${d.url}/metrics`);
  assert.equal(m.status, 200);
  assert.match(m.headers.get('content-type') ?? '', /text\/plain/);
  for (const family of [
    'nexo_memory_snapshot_total',
    'nexo_memory_snapshot_restore_total',
    'nexo_memory_snapshot_gc_total',
    'nexo_memory_snapshot_bytes_total',
    'nexo_memory_snapshot_duration_ms',
  ]) {
    assert.match(m.text, new RegExp(`^# TYPE ${family} (counter|histogram)$`, 'm'), family);
  }
  assert.match(m.text, /^nexo_memory_snapshot_total\{agent="ana",tenant="default",outcome="ok"\} 2$/m);
  assert.match(m.text, /^nexo_memory_snapshot_duration_ms_count\{agent="ana",tenant="default"\} 2$/m);
  const bytesTotal = s1.body.bundle_size_bytes + s2.body.bundle_size_bytes;
  assert.match(
    m.text,
    new RegExp(`^nexo_memory_snapshot_bytes_total\\{agent="ana",tenant="default"\\} ${bytesTotal}$`, 'm'),
  );

  d.child.kill('SIGTERM');
  assert.equal(await d.exited, 0);
});

test('serve: verify applies the configured trust: under require_signature an unsigned snapshot is untrusted, as in the CLI', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const key = generateSigningKey();
  const cfg = agentConfig(a, [
    '    signing:',
    `      trusted_keys: [${key.publicKey}]`,
    '      require_signature: true',
  ]);
  const unsigned = await a.snapshotter.snapshot({ agentId: 'ana', label: 'unsigned' });
  const signed = await a.snapshotter.snapshot({ agentId: 'ana', sign: parseSigningKey(key.secretKey) });

  // The CLI, by path and by id: untrusted, exit 2.
  for (const args of [[unsigned.bundle_path], ['--agent', 'ana', '--id', unsigned.id.slice(0, 13)]]) {
    const r = await runCli(['verify', ...args, '--config', cfg, '--json']);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(JSON.parse(r.stdout).status, 'untrusted', args.join(' '));
  }

  const d = await serve(t, ['--config', cfg], { NEXO_MEMORY_TOKEN: TOKEN });
  const base = `${d.url}/v1/agents/ana/snapshots`;
  const v = await call(`${base}/${unsigned.id}/verify`, { headers: auth() });
  assert.equal(v.status, 200, JSON.stringify(v.body));
  assert.equal(v.body.status, 'untrusted', 'the daemon applies require_signature like the CLI');
  assert.equal(v.body.signature.status, 'unsigned');
  assert.deepEqual(
    v.body.problems.map((p: { code: string }) => p.code),
    ['SIGNATURE_MISSING'],
  );
  const ok = await call(`${base}/${signed.id}/verify?deep=true`, { headers: auth() });
  assert.equal(ok.body.status, 'verified', JSON.stringify(ok.body));
  assert.equal(ok.body.signature.status, 'trusted');
  d.child.kill('SIGTERM');
  assert.equal(await d.exited, 0);
});

test('serve: without a token mutating routes are refused and reads are open; no wide listen without one', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const d = await serve(t, [...storeFlags(a), '--json']); // the address as one JSON line
  const r = await call(`${d.url}/v1/agents/ana/snapshots`, { method: 'POST' });
  assert.equal(r.status, 403);
  assert.equal(r.body.error.code, 'FORBIDDEN');
  assert.deepEqual(storeEntries(a), []);
  const list = await call(`${d.url}/v1/agents/ana/snapshots`);
  assert.equal(list.status, 200);
  assert.deepEqual(list.body, []);
  // it says so at every start (stop 58: the README read as if memory always needed a token)
  const warned =
    /no token \(server\.token or NEXO_MEMORY_TOKEN, server\.read_token or NEXO_MEMORY_READ_TOKEN\): the API writes nothing, and every route that reads/;
  for (let i = 0; i < 100 && !warned.test(d.stderr()); i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(d.stderr(), warned);
  // with only the read token, reads need it: no such line, but that the API writes nothing
  const r2 = await serve(t, storeFlags(a), { NEXO_MEMORY_READ_TOKEN: 'read-token-0123456789' });
  const readOnly =
    /no write token \(server\.token or NEXO_MEMORY_TOKEN\): the API writes nothing; reads need the read token/;
  for (let i = 0; i < 100 && !readOnly.test(r2.stderr()); i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(r2.stderr(), readOnly);
  assert.doesNotMatch(r2.stderr(), warned);
  assert.equal((await call(`${r2.url}/v1/agents/ana/snapshots`)).status, 401);
  // on loopback it answers only requests addressed to a loopback name: a page whose name an attacker
  // re-points at 127.0.0.1 (DNS rebinding) reads nothing, not the API, the console or /metrics
  const port = new URL(d.url).port;
  const asHost = (host: string, path: string) =>
    new Promise<{ status: number; body: string; csp: unknown }>((resolveGet, rejectGet) => {
      httpGet({ hostname: '127.0.0.1', port, path, headers: { host } }, (res) => {
        let body = '';
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () =>
          resolveGet({ status: res.statusCode!, body, csp: res.headers['content-security-policy'] }),
        );
      }).on('error', rejectGet);
    });
  for (const path of ['/v1/agents/ana/snapshots', '/', '/metrics']) {
    const r = await asHost(`attacker.example:${port}`, path);
    assert.equal(r.status, 403, path);
    assert.match(JSON.parse(r.body).error.message, /DNS rebinding/);
    assert.ok(r.csp, 'with the security headers');
  }
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'localhost'])
    assert.equal((await asHost(host, '/v1/agents/ana/snapshots')).status, 200, host);

  const taken = spawn(process.execPath, [BIN, 'serve', '--listen', d.url.slice('http://'.length), '--json'], {
    env: { ...process.env, NEXO_MEMORY_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let takenOut = '';
  taken.stdout.on('data', (c) => {
    takenOut += c;
  });
  assert.equal(await new Promise<number | null>((res) => taken.on('exit', res)), 1, 'the port is taken');
  assert.equal(JSON.parse(takenOut).error.code, 'IO');
  assert.match(JSON.parse(takenOut).error.message, /EADDRINUSE|address already in use/);
  d.child.kill('SIGINT');
  assert.equal(await d.exited, 0);

  const wide = spawn(process.execPath, [BIN, 'serve', '--listen', '0.0.0.0:0', ...storeFlags(a)], {
    env: { ...process.env, NEXO_MEMORY_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  wide.stderr.on('data', (c) => {
    err += c;
  });
  const code = await new Promise<number | null>((res) => wide.on('exit', res));
  assert.equal(code, 1);
  assert.match(err, /without an API token/);
});

test('serve: /v1 requests a browser sends from another site or origin are refused (403 CROSS_SITE) whatever the token; the own origin and non-browser clients are served', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const port = (u: string) => new URL(u).port;
  /** A request with exactly these headers (node:http: fetch would add or refuse some of them). */
  const raw = (base: string, method: string, path: string, headers: Record<string, string>) =>
    new Promise<{ status: number; body: string }>((resolveReq, rejectReq) => {
      const req = httpRequest({ hostname: '127.0.0.1', port: port(base), path, method, headers }, (res) => {
        let body = '';
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolveReq({ status: res.statusCode!, body }));
      });
      req.on('error', rejectReq);
      req.end(method === 'POST' ? '{}' : undefined);
    });
  const hostiles = (base: string): Array<[string, Record<string, string>]> => [
    ['a script of another site', { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' }],
    [
      'a page of another port of the same host',
      { 'sec-fetch-site': 'same-site', origin: `http://127.0.0.1:1` },
    ],
    ['a no-cors GET of another site (no Origin)', { 'sec-fetch-site': 'cross-site' }],
    ['an Origin that is not its own, no Sec-Fetch-Site', { origin: 'http://localhost:1' }],
    ['an opaque Origin (a sandboxed frame)', { origin: 'null' }],
    [
      'an Origin of another port, no Sec-Fetch-Site',
      { origin: `http://127.0.0.1:${Number(port(base)) + 1}` },
    ],
  ];

  // without a token: reads are open, and still no other site's page reaches them
  const open = await serve(t, [...storeFlags(a)]);
  for (const [what, headers] of hostiles(open.url)) {
    for (const path of [
      '/v1/agents/ana/snapshots',
      '/v1/agents/ana/diff?a=latest&b=live&detail=true',
      '/v1/rights',
    ]) {
      const r = await raw(open.url, 'GET', path, headers);
      assert.equal(r.status, 403, `${what}: ${path}`);
      const e = JSON.parse(r.body).error;
      assert.equal(e.code, 'CROSS_SITE', what);
      assert.match(e.message, /another site/);
    }
  }
  // the console of its own origin, a navigation typed into the address bar, and curl are served
  const own = { 'sec-fetch-site': 'same-origin', origin: open.url };
  const served: Record<string, string>[] = [own, { 'sec-fetch-site': 'none' }, { origin: open.url }, {}];
  for (const headers of served)
    assert.equal(
      (await raw(open.url, 'GET', '/v1/agents/ana/snapshots', headers)).status,
      200,
      JSON.stringify(headers),
    );
  // the console's files and /healthz stay reachable from a link of another site (they hold no data)
  for (const path of ['/', '/healthz'])
    assert.equal((await raw(open.url, 'GET', path, { 'sec-fetch-site': 'cross-site' })).status, 200, path);

  // with the write token: a cross-site request that carries it is refused all the same, and does nothing
  const d = await serve(t, [...storeFlags(a)], { NEXO_MEMORY_TOKEN: TOKEN });
  for (const [what, headers] of hostiles(d.url)) {
    const r = await raw(d.url, 'POST', '/v1/agents/ana/snapshots', {
      ...headers,
      ...jsonHeaders(),
    });
    assert.equal(r.status, 403, what);
    assert.equal(JSON.parse(r.body).error.code, 'CROSS_SITE', what);
  }
  assert.deepEqual(storeEntries(a), [], 'nothing was written');
  const ok = await raw(d.url, 'POST', '/v1/agents/ana/snapshots', {
    ...jsonHeaders(),
    'sec-fetch-site': 'same-origin',
    origin: d.url,
  });
  assert.equal(ok.status, 201, ok.body);
});

test('serve: a token no Authorization header can carry (whitespace, beyond printable ASCII) is refused at start, named, never printed', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  /** Starts serve --json; resolves with its exit status and output, or with `listening` when it started. */
  const start = (env: NodeJS.ProcessEnv, args: string[] = []) =>
    new Promise<{ code: number | null; out: string; err: string } | 'listening'>((resolve) => {
      const child = spawn(
        process.execPath,
        [BIN, 'serve', '--json', '--listen', '127.0.0.1:0', ...a.flags, ...args],
        {
          cwd: REPO,
          env: { ...process.env, NEXO_MEMORY_TOKEN: '', NEXO_MEMORY_READ_TOKEN: '', ...env },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      let err = '';
      child.stderr.on('data', (c) => {
        err += c;
      });
      child.stdout.on('data', (c) => {
        out += c;
        if (out.includes('"listening"')) {
          child.kill('SIGKILL');
          resolve('listening');
        }
      });
      child.on('exit', (code) => resolve({ code, out, err }));
    });
  const refused = async (
    env: NodeJS.ProcessEnv,
    secret: string,
    name: RegExp,
    why: RegExp,
    args?: string[],
  ) => {
    const r = await start(env, args);
    assert.notEqual(r, 'listening', `refused: ${JSON.stringify(secret)}`);
    if (r === 'listening') return;
    assert.equal(r.code, 1, r.out + r.err);
    const { error } = JSON.parse(r.out);
    assert.equal(error.code, 'CONFIG');
    assert.match(error.message, name);
    assert.match(error.message, why);
    assert.match(error.message, /one word of printable ASCII/);
    assert.ok(!(r.out + r.err).includes(secret.trim()), `the token is not printed: ${r.out}${r.err}`);
  };
  await refused(
    { NEXO_MEMORY_TOKEN: 'wwwwwwwwwwwwwwwwwwww ' },
    'wwwwwwwwwwwwwwwwwwww',
    /NEXO_MEMORY_TOKEN/,
    /ends with whitespace/,
  );
  await refused(
    { NEXO_MEMORY_TOKEN: ' wwwwwwwwwwwwwwwwwwww' },
    'wwwwwwwwwwwwwwwwwwww',
    /NEXO_MEMORY_TOKEN/,
    /begins with whitespace/,
  );
  await refused(
    { NEXO_MEMORY_TOKEN: TOKEN, NEXO_MEMORY_READ_TOKEN: 'read token 0123456789' },
    'read token 0123456789',
    /NEXO_MEMORY_READ_TOKEN/,
    /whitespace at character 5/,
  );
  await refused(
    { NEXO_MEMORY_TOKEN: 'tökentokentokentoken' },
    'tökentokentokentoken',
    /NEXO_MEMORY_TOKEN/,
    /character 2 is not printable ASCII/,
  );
  const config = join(a.root, 'memory.yaml');
  writeFileSync(config, 'memory:\n  snapshot:\n    server:\n      token: "config-token\\t0123456789"\n');
  await refused({}, 'config-token', /memory\.snapshot\.server\.token/, /whitespace at character 13/, [
    '--config',
    config,
  ]);
  writeFileSync(config, 'memory:\n  snapshot:\n    server:\n      read_token: "${READ_FROM_ENV}"\n');
  await refused(
    { READ_FROM_ENV: 'read-token-0123456789\n' },
    'read-token-0123456789',
    /memory\.snapshot\.server\.read_token/,
    /ends with whitespace/,
    ['--config', config],
  );

  // A token of printable ASCII still serves: its header is accepted.
  const d = await serve(t, storeFlags(a), { NEXO_MEMORY_TOKEN: '~!#$%&*+-./0123456789:;<=>?@^_`|' });
  const gc = await call(`${d.url}/v1/gc`, {
    method: 'POST',
    headers: { ...jsonHeaders('~!#$%&*+-./0123456789:;<=>?@^_`|') },
    body: '{}',
  });
  assert.equal(gc.status, 200, JSON.stringify(gc.body));
  d.child.kill('SIGTERM');
  assert.equal(await d.exited, 0);
});

test('serve: SIGTERM while it starts (reading its config) ends it with status 0 before it listens', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  // The config file is a FIFO: the daemon's start stops in its read until the test writes, a known
  // instant after the program's modules have loaded and before it listens.
  const fifo = join(a.root, 'memory.yaml');
  execFileSync('mkfifo', [fifo]);
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--listen', '127.0.0.1:0', '--config', fifo, ...a.flags],
    {
      cwd: REPO,
      env: { ...process.env, NEXO_MEMORY_TOKEN: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c) => {
    out += c;
  });
  child.stderr!.on('data', (c) => {
    err += c;
  });
  const ended = new Promise<{ code: number | null; signal: string | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  const writer = await open(fifo, 'w'); // returns once the daemon has opened the file to read it
  child.kill('SIGTERM');
  await writer.writeFile('{}\n').catch(() => {});
  await writer.close().catch(() => {});
  assert.deepEqual(await ended, { code: 0, signal: null }, err);
  assert.equal(out, '', 'it never listened');
  assert.match(err, /SIGTERM while starting: stopped before serving/);
});

test('serve: SIGTERM during a snapshot lets it finish, refuses new work, leaves no leftovers, exits 0', {
  timeout: 120_000, // bounds the waits below: a daemon that never logs its shutdown fails here, by name
}, async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const d = await serve(t, storeFlags(a), { NEXO_MEMORY_TOKEN: TOKEN });
  // The daemon runs git from its program host (src/util/program-host.ts), which ends with it.
  const host = await until(
    () => childrenOf(d.child.pid!).find((c) => c.cmd.includes('program-host-main')),
    (c) => c !== undefined,
  );
  // A memory writer in the middle of a batch: the snapshot waits in its capture step.
  const writer = startFixture(t, 'hold-gate.ts', [a.stateRoot, 'ana']);
  await writer.ready;
  const pending = call(`${d.url}/v1/agents/ana/snapshots`, {
    method: 'POST',
    headers: jsonHeaders(),
    body: '{"label":"in flight"}',
  });
  await until(() => storeEntries(a).some((n) => n.startsWith('.staging-'))); // the snapshot started
  d.child.kill('SIGTERM');
  // The daemon logs its shutdown and closes its listener in the same turn of its event loop: once the
  // line is there (or the daemon is gone, which the next check reports), nothing new is accepted.
  await until(() => d.stderr().includes('SIGTERM: shutting down') || d.child.exitCode !== null);
  assert.equal(d.child.exitCode, null, 'still finishing the snapshot in progress');
  await assert.rejects(
    fetch(`${d.url}/healthz`, { signal: AbortSignal.timeout(2000) }),
    'no new connection is accepted',
  );
  writer.child.kill('SIGKILL'); // the writer's batch ends: the gate opens
  const r = await pending;
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(await d.exited, 0);
  assert.match(d.stderr(), /SIGTERM: shutting down, waiting for 1 operation/);
  await until(
    () => alive(host!.pid),
    (up) => !up,
  ); // the host ended with the daemon
  const entries = storeEntries(a);
  assert.deepEqual(
    entries.filter((n) => n.startsWith('.') || n.endsWith('.partial')),
    [],
    `no leftovers: ${entries.join(', ')}`,
  );
  assert.ok(entries.includes(`${r.body.id}.tar.zst`));
  assert.equal((await a.snapshotter.verify(r.body.bundle_path)).status, 'verified');
});

/**
 * A `git` for PATH that runs the real one, except that a run with the argument `<word>` in a directory
 * under one named `<agent>` (`NEXO_TEST_GIT_HOLD`: `agent:word …`) first writes `held-<agent>-<word>`
 * (its pid and its parent's) in `dir` and waits until `dir/release` exists (or `dir` is gone: a failed
 * test leaves no git waiting): the daemon's git held
 * inside a step of an operation.
 */
function holdingGit(dir: string, hold: string): NodeJS.ProcessEnv {
  const real = execFileSync('sh', ['-c', 'command -v git'], { encoding: 'utf8' }).trim();
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(
    join(bin, 'git'),
    `#!/bin/sh
for rule in $NEXO_TEST_GIT_HOLD; do
  agent=\${rule%%:*} word=\${rule#*:}
  case "$(pwd -P)/" in */"$agent"/*) ;; *) continue ;; esac
  for a in "$@"; do
    [ "$a" = "$word" ] || continue
    echo "$$ $PPID" > "${dir}/held.tmp" && mv "${dir}/held.tmp" "${dir}/held-$agent-$word"
    while [ ! -e "${dir}/release" ] && [ -d "${dir}" ]; do sleep 0.02; done
  done
done
exec ${JSON.stringify(real)} "$@"
`,
    { mode: 0o755 },
  );
  return { PATH: `${bin}:${process.env.PATH}`, NEXO_TEST_GIT_HOLD: hold };
}

test('serve: SIGTERM or SIGHUP to its whole process group (Ctrl-C, a service manager) while git runs, on the program host or spawned directly: the snapshot finishes, 201, exit 0 (stop 47)', {
  timeout: 120_000,
}, async (t) => {
  // In a repository store, git for-each-ref is a buffered run (on the program host); a redacted
  // snapshot's git fast-export (its history scanned as git writes it) the daemon spawns itself (since
  // stop 65 a repository snapshot's pack-objects runs on the host). One snapshot each, as the tester's.
  // SIGHUP as SIGTERM: a daemon has no terminal to lose
  for (const [word, parent, signal, body] of [
    ['for-each-ref', 'host', 'SIGTERM', '{}'],
    ['fast-export', 'daemon', 'SIGHUP', '{"redact":true}'],
  ] as const) {
    const a = sampleAgent(t, 'ana', SMALL);
    const dir = mkdtempSync(join(tmpdir(), 'nexo-hold-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const env = holdingGit(dir, `ana:${word}`);
    const d = await serve(
      t,
      storeFlags(a),
      { NEXO_MEMORY_TOKEN: TOKEN, NEXO_MEMORY_STORE_FORMAT: 'repository', ...env },
      { ownGroup: true },
    );
    t.after(() => {
      try {
        process.kill(-d.child.pid!, 'SIGKILL');
      } catch {
        // the group has ended
      }
    });
    const host = await until(
      () => childrenOf(d.child.pid!).find((c) => c.cmd.includes('program-host-main')),
      (c) => c !== undefined,
    );
    const pending = call(`${d.url}/v1/agents/ana/snapshots`, {
      method: 'POST',
      headers: jsonHeaders(),
      body,
    });
    const held = join(dir, `held-ana-${word}`);
    const [git, gitParent] = (
      await until(
        () => (existsSync(held) ? readFileSync(held, 'utf8') : ''),
        (s) => s !== '',
      )
    )
      .trim()
      .split(' ')
      .map(Number) as [number, number];
    // (a buffered run goes to the host once it is up: one that starts before is spawned by the daemon)
    if (parent === 'daemon') assert.equal(gitParent, d.child.pid, `git ${word} is the daemon's own child`);
    else assert.ok([host!.pid, d.child.pid].includes(gitParent), `git ${word}'s parent: ${gitParent}`);
    const pgid = (pid: number) => {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
    };
    assert.notEqual(pgid(git), d.child.pid, `git ${word} is not in the daemon's process group`);

    process.kill(-d.child.pid!, signal); // every process of the daemon's group
    await until(() => d.stderr().includes(`${signal}: shutting down, waiting for 1 operation`));
    assert.ok(alive(host!.pid), `${word}: the program host is not in the group signalled`);
    assert.ok(alive(git), `${word}: git is not in the group signalled`);
    writeFileSync(join(dir, 'release'), '');
    const r = await pending;
    assert.equal(r.status, 201, `${word}: ${r.text}`);
    assert.equal(await d.exited, 0, d.stderr());
    await until(
      () => alive(host!.pid),
      (up) => !up,
    ); // the host ended with the daemon
    assert.equal((await a.snapshotter.verify(r.body.bundle_path)).status, 'verified');
  }
});

test('serve: SIGTERM while a request body trickles in: 503 SHUTTING_DOWN, its connection closed, exit 0 without waiting for the client', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const d = await serve(t, storeFlags(a), { NEXO_MEMORY_TOKEN: TOKEN });
  const { hostname, port } = new URL(d.url);
  // A write request whose chunked body has begun and whose next byte is not due for a long while
  // (as a client on a stalled link, or one holding the daemon up on purpose).
  const socket = connect(Number(port), hostname);
  let got = '';
  socket.on('data', (c) => {
    got += c;
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((r) => socket.on('close', () => r()));
  socket.write(
    `POST /v1/gc HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${TOKEN}\r\n` +
      'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n',
  );
  // the daemon has the request (in flight, the /healthz asking excluded)
  await until(
    async () => (await call(`${d.url}/healthz`)).body.in_flight,
    (n) => n >= 1,
  );
  let nextByte: NodeJS.Timeout | undefined;
  const due = new Promise<'the client'>((r) => {
    nextByte = setTimeout(() => {
      if (!socket.destroyed) socket.write('1\r\n}\r\n0\r\n\r\n'); // the body's last byte and end
      r('the client');
    }, 20_000);
  });
  t.after(() => {
    clearTimeout(nextByte);
    socket.destroy();
  });
  d.child.kill('SIGTERM');
  const first = await Promise.race([d.exited.then((code) => ({ code })), due]);
  assert.deepEqual(
    first,
    { code: 0 },
    `the daemon exited (0) before the client's next byte was due:\n${d.stderr()}`,
  );
  await closed;
  assert.match(got, /^HTTP\/1\.1 503 /, got);
  assert.match(got, /"code":"SHUTTING_DOWN"/, got);
  assert.match(got, /\r\nconnection: close\r\n/i, got);
  assert.match(d.stderr(), /POST \/v1\/gc 503 \d+ms/);
});

test('daemon: scheduled snapshots appear every interval, never overlap, and show in /v1/schedule', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const daemon = new Daemon({
    snapshotter: a.snapshotter,
    listen: '127.0.0.1:0',
    schedule: [{ agentId: 'ana', tenant: 'default', intervalMs: 700 }],
  });
  // Hold the write gate over several intervals: the run in progress blocks, later ticks are skipped.
  const writer = startFixture(t, 'hold-gate.ts', [a.stateRoot, 'ana']);
  await writer.ready;
  const { url } = await daemon.start();
  t.after(() => daemon.stop());
  // A tick that finds the first run still blocked is skipped, however long the ticks take to come.
  const busy = await until<Schedule>(
    async () => (await call(`${url}/v1/schedule`)).body[0],
    (b) => b.skipped_busy >= 1,
    100,
  );
  assert.equal(busy.running, true);
  assert.equal(busy.runs, 0);
  assert.equal((await a.snapshotter.list('ana')).length, 0);
  writer.child.kill('SIGKILL');
  // Wait on the schedule's own count: a bundle is listed a moment before its run is counted as done.
  const status = await until<Schedule>(
    async () => (await call(`${url}/v1/schedule`)).body[0],
    (st) => st.runs >= 2, // two scheduled snapshots were taken
    100,
  );
  const metas = await a.snapshotter.list('ana');
  assert.ok(metas.length >= 2);
  assert.ok(metas.every((m) => m.label === 'scheduled' && m.created_by === 'scheduled'));
  assert.equal(status.failures, 0, JSON.stringify(status));
  assert.equal(status.interval_secs, 0.7);
  assert.equal(status.waiting_for_prune, false, 'no prune runs in this daemon');
  await daemon.stop();
  const after = (await a.snapshotter.list('ana')).length;
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal((await a.snapshotter.list('ana')).length, after, 'nothing runs after stop');
});

test('serve: restore over HTTP needs server.allow_restore in the config and NEXO_MEMORY_RESTORE_ALLOW', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const cfg = agentConfig(a, [
    '    lock_timeout_secs: 10',
    '    server:',
    '      listen: 127.0.0.1:9',
    '      token: ${NEXO_TEST_API_TOKEN}',
    '      allow_restore: true',
  ]);
  const env = { NEXO_TEST_API_TOKEN: TOKEN };

  const closed = await serve(t, ['--config', cfg], env);
  const s1 = await call(`${closed.url}/v1/agents/ana/snapshots`, { method: 'POST', headers: auth() });
  assert.equal(s1.status, 201, 'the token of the config file is the one required');
  const refused = await call(`${closed.url}/v1/agents/ana/snapshots/${s1.body.id}/restore`, {
    method: 'POST',
    headers: jsonHeaders(),
    body: '{"dry_run": false}',
  });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error.code, 'RESTORE_REFUSED');
  assert.match(refused.body.error.message, /NEXO_MEMORY_RESTORE_ALLOW/);
  closed.child.kill('SIGTERM');
  assert.equal(await closed.exited, 0);

  const file = join(a.memdir, 'MEMORY.md');
  const before = readFileSync(file, 'utf8');
  writeFileSync(file, 'a bad dream rewrote this\n');
  const open = await serve(t, ['--config', cfg], { ...env, NEXO_MEMORY_RESTORE_ALLOW: 'true' });
  const restoreUrl = `${open.url}/v1/agents/ana/snapshots/${s1.body.id}/restore`;
  assert.equal((await call(restoreUrl, { method: 'POST', headers: auth('x'.repeat(20)) })).status, 401);
  const dry = await call(restoreUrl, { method: 'POST', headers: jsonHeaders(), body: '{"dry_run": true}' });
  assert.equal(dry.status, 200, JSON.stringify(dry.body));
  assert.equal(dry.body.dry_run, true);
  assert.equal(readFileSync(file, 'utf8'), 'a bad dream rewrote this\n', 'a dry run changes nothing');
  const done = await call(restoreUrl, { method: 'POST', headers: auth() });
  assert.equal(done.status, 200, JSON.stringify(done.body));
  assert.equal(done.body.from, s1.body.id);
  assert.ok(done.body.pre_snapshot, 'an automatic pre-restore snapshot was taken');
  assert.equal(readFileSync(file, 'utf8'), before, 'the memory is back');
  const m = await call(`${open.url}/metrics`);
  assert.match(
    m.text,
    /^nexo_memory_snapshot_restore_total\{agent="ana",tenant="default",outcome="ok"\} 1$/m,
  );
  open.child.kill('SIGTERM');
  assert.equal(await open.exited, 0);
});

test('http: a download the client got in full is logged with its status, one it left is "client went away", never 500', async (t) => {
  const SIZE = 256 * 1024;
  const lines: string[] = [];
  let logged: (line: string) => void = () => {};
  const tracker = new OperationTracker();
  // The body is all there, but its end never comes: as a file stream whose client has every byte and
  // closes before the stream's end is seen (the race that made delivered exports log 500).
  const server = createApiServer({
    routes: [
      {
        method: 'GET',
        path: '/body/:declared',
        auth: 'open',
        handle: async (req) => {
          const stream = new Readable({ read() {} });
          stream.push(Buffer.alloc(SIZE, 7));
          return { stream, headers: { 'content-length': req.params.declared! } };
        },
      },
    ],
    tracker,
    log: (line) => {
      lines.push(line);
      logged(line);
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;

  /** GETs `path`, reads `want` bytes of body, closes the connection; resolves with the log line. */
  const download = (path: string, want: number) =>
    new Promise<string>((resolve, reject) => {
      logged = resolve;
      const socket = connect(port, '127.0.0.1');
      socket.on('error', reject);
      let got = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        got = Buffer.concat([got, chunk]);
        const head = got.indexOf('\r\n\r\n');
        if (head >= 0 && got.length - head - 4 >= want) socket.destroy();
      });
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    });

  const full = await download(`/body/${SIZE}`, SIZE);
  assert.match(full, new RegExp(`^GET /body/${SIZE} 200 \\d+ms$`), full);
  const left = await download(`/body/${2 * SIZE}`, SIZE);
  assert.match(
    left,
    new RegExp(`^GET /body/${2 * SIZE} 200, client went away after ${SIZE} of ${2 * SIZE} bytes \\d+ms$`),
    left,
  );
  assert.ok(!lines.some((l) => / 500 /.test(l)), lines.join('\n'));
  await tracker.close(); // every request was finished (the tracker waits for them)
});

test('http: a client that leaves while a download is being prepared: the stream is released and the request ends, logged as such (stop 61 review)', async (t) => {
  const lines: string[] = [];
  const tracker = new OperationTracker();
  let left!: () => void;
  const clientLeft = new Promise<void>((r) => {
    left = r;
  });
  let released = 0;
  const server = createApiServer({
    routes: [
      {
        method: 'GET',
        path: '/export',
        auth: 'open',
        handle: async () => {
          await clientLeft; // as an export's redacted copy, still being made when the client goes
          await new Promise((r) => setTimeout(r, 50));
          const stream = new Readable({
            read() {},
            destroy(err, cb) {
              released++;
              cb(err);
            },
          });
          stream.push(Buffer.alloc(1024 * 1024, 7)); // more than one write takes: a wait for 'drain'
          return { stream, headers: { 'content-length': String(2 * 1024 * 1024) } };
        },
      },
    ],
    tracker,
    sendStallMs: 200,
    log: (line) => lines.push(line),
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write('GET /export HTTP/1.1\r\nHost: x\r\n\r\n');
  await new Promise((r) => setTimeout(r, 50));
  socket.destroy();
  left();
  // bounded waits: before the fix neither came, ever
  for (const deadline = Date.now() + 10_000; released === 0 || lines.length === 0; ) {
    assert.ok(Date.now() < deadline, `released ${released}, logged ${JSON.stringify(lines)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(released, 1);
  assert.match(lines[0]!, /^GET \/export 200, client went away before the response \d+ms$/, lines[0]);
  await tracker.close(); // the request is over (before the review's fix it never was)
});

test('http: at most maxConnections connections at once; one more is closed as it arrives and logged, and served again once one closes (stop 62)', async (t) => {
  const lines: string[] = [];
  const tracker = new OperationTracker();
  const server = createApiServer({
    routes: [
      {
        method: 'GET',
        path: '/ping',
        auth: 'open',
        handle: async () => ({ json: { ok: true } }),
      },
    ],
    tracker,
    maxConnections: 3,
    log: (line) => lines.push(line),
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;
  const open = async () => {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise<void>((r) => socket.once('connect', () => r()));
    return socket;
  };
  /** One request on a connection of its own: its status line, or how the connection ended. */
  const ask = async (): Promise<string> => {
    const socket = await open();
    socket.write('GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    let got = '';
    socket.on('data', (c: Buffer) => (got += c.toString('latin1')));
    await new Promise<void>((r) => socket.once('close', () => r()));
    return got.split('\r\n')[0] || 'closed without an answer';
  };
  const idle = [await open(), await open(), await open()];
  t.after(() => {
    for (const s of idle) s.destroy();
  });
  // the server counts a connection once it has accepted it
  for (const deadline = Date.now() + 10_000; ; ) {
    const n = await new Promise<number>((r) => server.getConnections((_e, c) => r(c)));
    if (n === 3) break;
    assert.ok(Date.now() < deadline, `${n} connections`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(await ask(), 'closed without an answer');
  assert.equal(await ask(), 'closed without an answer');
  assert.deepEqual(lines, [
    '(connection closed) 1 connection over the limit of 3 at once (NEXO_MEMORY_SERVE_MAX_CONNECTIONS)',
  ]);
  idle[0]!.destroy();
  for (const deadline = Date.now() + 10_000; ; ) {
    const n = await new Promise<number>((r) => server.getConnections((_e, c) => r(c)));
    if (n === 2) break;
    assert.ok(Date.now() < deadline, `${n} connections`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(await ask(), 'HTTP/1.1 200 OK');
  for (const s of idle) s.destroy();
  await tracker.close();
});

test('http: HEAD is GET without a body; the log shows no query value; a refusal while shutting down has the security headers', async (t) => {
  const lines: string[] = [];
  const tracker = new OperationTracker();
  let streams = 0;
  let destroyed = 0;
  const server = createApiServer({
    routes: [
      { method: 'GET', path: '/json', auth: 'open', handle: async () => ({ json: { a: 1 } }) },
      { method: 'POST', path: '/json', auth: 'open', handle: async () => ({ json: {} }) },
      {
        method: 'GET',
        path: '/stream',
        auth: 'open',
        handle: async () => {
          streams++;
          const stream = new Readable({
            read() {},
            destroy(err, cb) {
              destroyed++;
              cb(err);
            },
          });
          stream.push(Buffer.alloc(1000, 1));
          return { stream, headers: { 'content-length': '1000' } };
        },
      },
      { method: 'POST', path: '/only-post', auth: 'open', handle: async () => ({ json: {} }) },
    ],
    tracker,
    log: (line) => lines.push(line),
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;

  const get = await fetch(`${url}/json`);
  const head = await fetch(`${url}/json`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), '');
  assert.equal(head.headers.get('content-length'), get.headers.get('content-length'));
  assert.equal(head.headers.get('x-content-type-options'), 'nosniff');
  const headStream = await fetch(`${url}/stream`, { method: 'HEAD' });
  assert.equal(headStream.status, 200);
  assert.equal(headStream.headers.get('content-length'), '1000');
  assert.equal(await headStream.text(), '');
  assert.deepEqual([streams, destroyed], [1, 1], "a HEAD's stream is released, not read");
  const onlyPost = await fetch(`${url}/only-post`, { method: 'HEAD' });
  assert.equal(onlyPost.status, 405);
  assert.equal((await fetch(`${url}/only-post`)).headers.get('allow'), 'POST');
  assert.equal((await fetch(`${url}/json`, { method: 'DELETE' })).headers.get('allow'), 'GET, POST, HEAD');

  await fetch(`${url}/json?text=sk-proj-SECRETSECRETSECRET&text=again&since=2026-01-01`);
  const logged = lines.find((l) => l.startsWith('GET /json?'));
  assert.equal(logged?.replace(/ \d+ms$/, ''), 'GET /json?text=…&since=… 200');
  assert.ok(!lines.some((l) => l.includes('SECRET') || l.includes('2026-01-01')), lines.join('\n'));

  await tracker.close();
  const refused = await fetch(`${url}/json`);
  assert.equal(refused.status, 503);
  assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'SHUTTING_DOWN');
  for (const h of ['content-security-policy', 'x-content-type-options', 'x-frame-options', 'referrer-policy'])
    assert.ok(refused.headers.get(h), `${h} on the 503`);
});

test('http: shutting down, an operation in progress finishes and answers, even when its client left; a download its client stops reading gets the grace, then is cut', async (t) => {
  const lines: string[] = [];
  const events: string[] = [];
  const tracker = new OperationTracker();
  const gates = new Map<string, () => void>();
  const server = createApiServer({
    routes: [
      {
        method: 'POST',
        path: '/op/:who',
        auth: 'open',
        handle: async (req) => {
          // an operation that runs until the test lets it end
          await new Promise<void>((r) => gates.set(req.params.who!, r));
          events.push(`the operation of ${req.params.who} ended`);
          return { json: { done: true } };
        },
      },
      {
        method: 'GET',
        path: '/download',
        auth: 'open',
        handle: async () => {
          // more than the socket's buffers hold, so a client that reads nothing stalls the download
          const stream = new Readable({
            read() {
              this.push(Buffer.alloc(1 << 20, 1));
            },
          });
          return { stream, headers: { 'content-length': String(1 << 30) } };
        },
      },
    ],
    tracker,
    shutdownGraceMs: 200,
    log: (line) => lines.push(line),
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;

  const answered = call(`${url}/op/waiter`, { method: 'POST' }); // its client waits for the answer
  // a client that leaves while its operation runs
  const leaver = connect(port, '127.0.0.1');
  leaver.on('error', () => {});
  leaver.write('POST /op/leaver HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n');
  // a client that asks for a download and never reads it
  const stalled = connect(port, '127.0.0.1');
  stalled.on('error', () => {});
  stalled.write('GET /download HTTP/1.1\r\nHost: x\r\n\r\n');
  stalled.pause();
  await until(() => gates.size === 2 && tracker.inFlight === 3);
  const connections = () => new Promise<number>((r, j) => server.getConnections((e, n) => (e ? j(e) : r(n))));
  await until(connections, (n) => n === 3);
  leaver.destroy();
  await until(connections, (n) => n === 2); // the server saw it leave

  const stopped = tracker.close().then(() => events.push('shutdown done'));
  // the grace ran out: the download's connection was closed (its client, reading nothing, sees it later)
  await until(() => lines.some((l) => l.startsWith('GET /download ')));
  assert.match(
    lines.find((l) => l.startsWith('GET /download '))!,
    /^GET \/download 200, cut short by the shutdown after \d+ of 1073741824 bytes \d+ms$/,
  );
  assert.deepEqual(events, [], 'the operations still run');
  gates.get('waiter')!();
  const r = await answered;
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { done: true });
  assert.equal(r.headers.get('connection'), 'close');
  await until(connections, (n) => n === 0); // that response is over; only the leaver's operation runs
  await new Promise((r) => setImmediate(r));
  gates.get('leaver')!();
  await stopped;
  assert.deepEqual(events, [
    'the operation of waiter ended',
    'the operation of leaver ended',
    'shutdown done',
  ]);
  stalled.destroy();
});

test('http: a request the server timed out (its body too slow) is logged as a 408 of the server, not as a client that went away', async (t) => {
  const lines: string[] = [];
  const tracker = new OperationTracker();
  let handled = 0;
  const server = createApiServer({
    routes: [
      {
        method: 'POST',
        path: '/op',
        auth: 'open',
        handle: async () => {
          handled++;
          return { json: {} };
        },
      },
    ],
    tracker,
    requestTimeoutMs: 300,
    log: (line) => lines.push(line),
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;
  // a chunked body whose next byte never comes, from a client that stays
  const socket = connect(port, '127.0.0.1');
  let got = '';
  socket.on('data', (c) => {
    got += c;
  });
  const closed = new Promise<void>((r) => socket.on('close', () => r()));
  socket.write(
    'POST /op HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n',
  );
  await closed; // by the server
  assert.match(got, /^HTTP\/1\.1 408 /, got);
  assert.match(got, /\r\ncontent-security-policy: default-src 'self'/, got);
  assert.match(
    got,
    /\r\n\r\n\{"error":\{"code":"INVALID_INPUT","message":"the request was not received in full within 300 ms"/,
    got,
  );
  await until(() => lines.length > 0);
  assert.match(
    lines[0]!,
    /^POST \/op 408, timed out by the server \(the request was not received in full within 300 ms\) \d+ms$/,
  );
  assert.equal(handled, 0);
  assert.ok(!lines.some((l) => l.includes('went away')), lines.join('\n'));
  await tracker.close();
});

test('http: what Node refuses before any route (headers over 16 KiB, a malformed request) is a JSON error with the security headers, and logged; /healthz ignores a parameter but refuses a tenant', async (t) => {
  const lines: string[] = [];
  const tracker = new OperationTracker();
  const server = createApiServer({
    routes: apiRoutes({ tracker, startedAt: 0 } as never).filter((r) => r.path === '/healthz'),
    tracker,
    log: (line) => lines.push(line),
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;
  const exchange = (raw: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let got = '';
      socket.on('data', (c) => {
        got += c;
      });
      socket.on('error', reject);
      socket.on('close', () => resolve(got));
      socket.end(raw);
    });
  const big = await exchange(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(17 * 1024)}\r\n\r\n`);
  assert.match(big, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/, big);
  const bad = await exchange('GET /healthz HTTP/1.1\r\nHost x\r\n\r\n');
  assert.match(bad, /^HTTP\/1\.1 400 Bad Request\r\n/, bad);
  for (const got of [big, bad]) {
    assert.match(got, /\r\ncontent-security-policy: default-src 'self'/, got);
    assert.match(got, /\r\nx-content-type-options: nosniff\r\n/, got);
    assert.match(got, /\r\ncache-control: no-store\r\n/, got);
    const body = JSON.parse(got.slice(got.indexOf('\r\n\r\n') + 4)) as { error: { code: string } };
    assert.equal(body.error.code, 'INVALID_INPUT');
  }
  await until(() => lines.length >= 2);
  assert.match(lines[0]!, /^\(unparsed request\) 431, the request's headers are over the 16 KiB/);
  assert.match(lines[1]!, /^\(unparsed request\) 400, the request is not HTTP the daemon can read \(HPE_/);
  // a route that reads no parameter ignores one (a monitor's cache-buster), but never takes a tenant
  for (const q of ['foo=1', 'foo=1&foo=2'])
    assert.equal((await fetch(`http://127.0.0.1:${port}/healthz?${q}`)).status, 200, q);
  const tenant = await fetch(`http://127.0.0.1:${port}/healthz?tenant=x`);
  assert.equal(tenant.status, 400);
  assert.equal(((await tenant.json()) as { error: { code: string } }).error.code, 'INVALID_INPUT');
  await tracker.close();
});

test('http: a response whose client takes no bytes is cut after the stall bound, releasing its stream (a bundle readers lock)', async (t) => {
  const lines: string[] = [];
  const tracker = new OperationTracker();
  let released = false;
  const server = createApiServer({
    routes: [
      {
        method: 'GET',
        path: '/big',
        auth: 'open',
        handle: async () => {
          const chunk = Buffer.alloc(1 << 20, 'x');
          let sent = 0;
          const stream = new Readable({
            read() {
              this.push(sent++ < 256 ? chunk : null); // 256 MiB: more than any socket buffers
            },
            destroy(err, cb) {
              released = true;
              cb(err);
            },
          });
          return { stream, headers: { 'content-length': String(256 << 20) } };
        },
      },
    ],
    tracker,
    sendStallMs: 300,
    log: (line) => lines.push(line),
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;
  // a client that reads the first bytes, then nothing, and stays
  const socket = connect(port, '127.0.0.1');
  t.after(() => socket.destroy());
  socket.once('data', () => socket.pause());
  socket.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
  await until(() => lines.length > 0); // the response ended: cut by the server (the client never closes)
  assert.ok(released, 'the stream was destroyed');
  assert.match(
    lines[0]!,
    /^GET \/big 200, cut by the server \(the client took no bytes for 300 ms\) after \d+ of 268435456 bytes \d+ms$/,
  );
  await tracker.close();
});

/** A text a remote client gets: none of the host's places (the test's root, the temporary directory, any absolute path). */
function assertNoHostPath(a: Agent, text: string): void {
  assert.ok(!text.includes(a.root), `no state root: ${text}`);
  assert.ok(!text.includes(tmpdir()), `no temporary directory: ${text}`);
  assert.doesNotMatch(text, /(^|[\s'"(=,:])\/[^\s/]/, `no absolute path: ${text}`);
}

/** The daemon's log line of an error id (`error <id> <where>: <CODE> <whole message>`, a stack may follow). */
function logLineOf(log: string, id: string): string {
  const at = log.indexOf(`error ${id} `);
  assert.ok(at >= 0, `the log has error ${id}:\n${log}`);
  return log.slice(at, log.indexOf('\n', at));
}

test('serve: a failure tells the client its code, a message without host paths and an error id; the log has the whole message under that id', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const d = await serve(t, storeFlags(a), { NEXO_MEMORY_TOKEN: TOKEN });
  const post = () =>
    call(`${d.url}/v1/agents/ana/snapshots`, { method: 'POST', headers: jsonHeaders(), body: '{}' });

  // An I/O error: the agent's snapshot directory is a file.
  const agentDir = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  mkdirSync(join(agentDir, '..'), { recursive: true });
  writeFileSync(agentDir, 'not a directory');
  const io = await post();
  assert.equal(io.status, 500);
  assert.equal(io.body.error.code, 'IO');
  assert.equal(io.body.error.exit_code, 1);
  assert.match(io.body.error.error_id, /^[0-9a-f]{8}$/);
  assert.ok(
    io.body.error.message.includes('<state root>/tenants/default/snapshots/ana'),
    io.body.error.message,
  );
  assertNoHostPath(a, io.text);
  const ioLine = logLineOf(d.stderr(), io.body.error.error_id);
  assert.ok(ioLine.includes(`IO creating snapshot directory ${agentDir}`), ioLine);
  rmSync(agentDir);

  // A damaged restore journal (JOURNAL_DAMAGED, a 500): its place by role; the log has it whole. (An error
  // that is no SnapshotError, INTERNAL, is told without its message: below, with an injected bug.)
  const journal = join(a.stateRoot, 'tenants', 'default', 'journals', 'ana.restore.json');
  mkdirSync(join(journal, '..'), { recursive: true });
  writeFileSync(journal, '{"journal_version": 99}');
  const internal = await post();
  assert.equal(internal.status, 500);
  const id = internal.body.error.error_id;
  assert.equal(internal.body.error.code, 'JOURNAL_DAMAGED');
  assert.match(
    internal.body.error.message,
    /^restore journal <state root>\/tenants\/default\/journals\/ana\.restore\.json is damaged /,
  );
  assertNoHostPath(a, internal.text);
  const internalLine = logLineOf(d.stderr(), id);
  assert.ok(internalLine.includes(`JOURNAL_DAMAGED restore journal ${journal} is damaged`), internalLine);

  // The activity feed tells the same, under the same ids; each error was logged once.
  const recent = (
    (await call(`${d.url}/v1/activity`, { headers: auth() })).body.recent as Array<{
      source: string;
      error?: { code: string; message: string; error_id: string };
    }>
  ).filter((e) => e.source !== 'retention'); // (the retention worker's sweeps are on the feed too)
  assert.deepEqual(
    recent.slice(0, 2).map((e) => [e.error?.code, e.error?.error_id]),
    [
      ['JOURNAL_DAMAGED', id],
      ['IO', io.body.error.error_id],
    ],
  );
  assertNoHostPath(a, JSON.stringify(recent));
  for (const e of [io.body.error.error_id, id])
    assert.equal(d.stderr().split(`error ${e} `).length, 2, `error ${e} is logged once`);

  // A gc sweep's report carries the agent's error as text: the same client form, the log has it whole.
  const gc = await call(`${d.url}/v1/gc`, { method: 'POST', headers: jsonHeaders(), body: '{}' });
  assert.equal(gc.status, 200);
  const swept = gc.body.agents[0];
  assert.equal(swept.error_code, 'JOURNAL_DAMAGED');
  assert.ok(
    swept.error.startsWith(
      'restore journal <state root>/tenants/default/journals/ana.restore.json is damaged ',
    ),
    swept.error,
  );
  assertNoHostPath(a, gc.text);
  assert.ok(logLineOf(d.stderr(), swept.error_id).includes(`restore journal ${journal} is damaged `));

  // A refusal made of the request alone is told whole (its path is the client's) and only counted in the log.
  const route = await call(`${d.url}/v1/no/such/route`, { headers: auth() });
  assert.equal(route.body.error.message, 'no route GET /v1/no/such/route');
  assert.equal(logLineOf(d.stderr(), route.body.error.error_id).endsWith(': ROUTE_NOT_FOUND'), true);
});

test('daemon: a scheduled run that fails shows in /v1/schedule and the fleet with an error id and no host path; the log has it whole', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const cursor = join(a.sqliteDir, 'extract_cursor.json');
  writeFileSync(cursor, '{"cursor": ');
  const lines: string[] = [];
  const daemon = new Daemon({
    snapshotter: a.snapshotter,
    listen: '127.0.0.1:0',
    schedule: [{ agentId: 'ana', tenant: 'default', intervalMs: 300 }],
    log: (l) => lines.push(l),
  });
  const { url } = await daemon.start();
  t.after(() => daemon.stop());
  const status = await until<Schedule & { last_error?: { code: string; message: string; error_id: string } }>(
    async () => (await call(`${url}/v1/schedule`)).body[0],
    (st) => st.failures >= 1,
    100,
  );
  const last = status.last_error!;
  assert.equal(last.code, 'STATE');
  assert.match(last.error_id, /^[0-9a-f]{8}$/);
  assert.ok(last.message.includes('<sqlite root>/ana/extract_cursor.json'), last.message);
  assertNoHostPath(a, JSON.stringify(status));
  // The runs go on failing every 300 ms, each under an id of its own: the fleet, asked a moment later
  // (longer on a loaded machine), can name a later run's. It names the one its own schedule row holds.
  const row = (await call(`${url}/v1/fleet`)).body.agents[0] as {
    alerts: Array<{ code: string; message: string }>;
    schedule: { last_error: { error_id: string } };
  };
  const alert = row.alerts.find((x) => x.code === 'schedule_failed')!;
  const alertId = row.schedule.last_error.error_id;
  assert.ok(alert.message.endsWith(`(STATE, error id ${alertId})`), alert.message);
  assertNoHostPath(a, alert.message);
  await daemon.stop();
  const log = lines.join('\n');
  for (const id of [last.error_id, alertId]) {
    assert.ok(
      logLineOf(log, id).includes(`snapshot of default/ana (scheduled): STATE state provider: ${cursor}`),
      log,
    );
    assert.ok(lines.includes(`schedule default/ana: failed (error ${id})`), log);
  }
});

test('daemon: a scheduled run that finds the repository locked by another process is skipped as busy, not failed', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'repository', lockTimeoutMs: 200 });
  await a.snapshotter.snapshot({ agentId: 'ana' });
  // Another process holds the repository exclusively (a prune, as far as a snapshot can tell).
  const holder = startFixture(t, 'hold-repo-lock.ts', [join(a.stateRoot, 'repository'), 'exclusive']);
  await holder.ready;
  const lines: string[] = [];
  const daemon = new Daemon({
    snapshotter: a.snapshotter,
    listen: '127.0.0.1:0',
    schedule: [{ agentId: 'ana', tenant: 'default', intervalMs: 300 }],
    log: (l) => lines.push(l),
  });
  const { url } = await daemon.start();
  t.after(() => daemon.stop());
  const status = await until<Schedule & { last_error?: unknown }>(
    async () => (await call(`${url}/v1/schedule`)).body[0],
    (st) => st.skipped_busy + st.failures >= 2 && !st.running,
    100,
  );
  assert.equal(status.failures, 0, JSON.stringify(status));
  assert.equal(status.last_error, undefined);
  assert.equal(status.runs, 0);
  const alerts = (await call(`${url}/v1/fleet`)).body.agents[0].alerts as Array<{ code: string }>;
  assert.ok(!alerts.some((x) => x.code === 'schedule_failed'), JSON.stringify(alerts));
  const log = lines.join('\n');
  assert.ok(!/schedule default\/ana: failed/.test(log), log);
  assert.match(
    log,
    /schedule default\/ana: skipped: the repository is locked: exclusive lock of test-holder/,
  );
  // The holder gone, the next run snapshots.
  await holder.killGroup('SIGKILL');
  const after = await until<Schedule>(
    async () => (await call(`${url}/v1/schedule`)).body[0],
    (st) => st.runs >= 1,
    100,
  );
  assert.equal(after.failures, 0);
});

test('client errors: host places by role (the longest first), other absolute paths dropped, a request error as it is, one id per error', () => {
  const lines: string[] = [];
  const root = join(tmpdir(), 'nexo-ce', 'state');
  const errors = new ClientErrors({
    hostPaths: [
      { role: 'state root', path: root },
      { role: 'memdir root', path: join(tmpdir(), 'nexo-ce', 'memdir') },
    ],
    log: (l) => lines.push(l),
  });
  assert.equal(
    errors.scrub(
      `open '${root}/tenants/x' and ${root}2/y, ${tmpdir()}/z: file://${root}/a (/usr/lib/git-core/git) in /srv/data.`,
    ),
    `open '<state root>/tenants/x' and <tmp>/nexo-ce/state2/y, <tmp>/z: <state root>/a (<path>) in <path>.`,
  );
  for (const kept of [
    'memdir/notes.md, 1/2, a /',
    'nats://nats-1:4222/memory and s3://bucket/prefix: no answer',
  ])
    assert.equal(errors.scrub(kept), kept);
  const io = new IoError(`writing ${root}/x`, Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }));
  const told = errors.report(io, 'POST /v1/x');
  assert.equal(told.message, 'writing <state root>/x: no space left on device');
  assert.deepEqual(errors.report(io, 'again'), told, 'the same error keeps its id');
  assert.deepEqual(lines, [
    `error ${told.error_id} POST /v1/x: IO writing ${root}/x: no space left on device`,
  ]);
  const bad = errors.report(new InvalidInputError('the regex /etc/(x does not compile'), 'GET /v1/find');
  assert.equal(bad.message, 'the regex /etc/(x does not compile');
  assert.equal(
    lines[1],
    `error ${bad.error_id} GET /v1/find: INVALID_INPUT`,
    'a request error is not repeated',
  );
  const bug = errors.report(new TypeError(`cannot read ${root}`), 'memory_list');
  assert.equal(bug.code, 'INTERNAL');
  assert.equal(
    bug.message,
    `internal error (TypeError); the server's log has it under error id ${bug.error_id}`,
  );
  assert.ok(
    lines[2]!.startsWith(
      `error ${bug.error_id} memory_list: INTERNAL TypeError: cannot read ${root}\n    at `,
    ),
  );
  assert.notEqual(bug.error_id, told.error_id);
});

test('server units: bearer parsing, constant-time token check, listen addresses, a status for every error code', () => {
  assert.equal(bearerToken('Bearer abc'), 'abc');
  assert.equal(bearerToken('bearer   abc  '), 'abc');
  assert.equal(bearerToken('Basic abc'), undefined);
  assert.equal(bearerToken(undefined), undefined);
  assert.equal(tokenMatches(TOKEN, TOKEN), true);
  assert.equal(tokenMatches(TOKEN, `${TOKEN}x`), false);
  assert.equal(tokenMatches(TOKEN, TOKEN.slice(0, -1)), false);
  assert.equal(tokenMatches(TOKEN, undefined), false);
  assert.equal(tokenMatches('', ''), false, 'an empty token never matches');

  assert.deepEqual(parseListen('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  assert.deepEqual(parseListen('[::1]:9464'), { host: '::1', port: 9464 });
  assert.deepEqual(parseListen('localhost:80'), { host: 'localhost', port: 80 });
  for (const bad of ['127.0.0.1', ':80', '127.0.0.1:99999', 'a b:1', '::1:80'])
    assert.throws(() => parseListen(bad), ConfigError, bad);
  assert.ok(isLoopback('127.0.0.1') && isLoopback('::1') && isLoopback('localhost'));
  assert.ok(!isLoopback('0.0.0.0') && !isLoopback('10.0.0.1') && !isLoopback('::'));

  const failures = new Set(['IO', 'GIT', 'SQLITE', 'STATE', 'REDACTION', 'NATIVE_MODULE', 'JOURNAL_DAMAGED']);
  for (const e of ERROR_TABLE) {
    const status = httpStatusOf(e.code);
    if (failures.has(e.code)) assert.equal(status, 500, e.code);
    else
      assert.ok(
        status >= 400 && status < 500
          ? true
          : (e.code === 'SHUTTING_DOWN' && status === 503) ||
              (e.code.startsWith('STORE_') && (status === 502 || status === 503)),
        e.code,
      );
  }
  assert.equal(httpStatusOf('UNAUTHORIZED'), 401);
  assert.equal(httpStatusOf('CONCURRENT'), 409);
  assert.equal(httpStatusOf('CHECKSUM_MISMATCH'), 422);
  assert.equal(httpStatusOf('SIGNATURE_UNTRUSTED'), 422);
  assert.equal(httpStatusOf('SOMETHING_NEW'), 500);
});

test('serve: a busy agent is 409 CONCURRENT and counted; gc over HTTP; enabled: false makes the API read-only', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const write = (extra: string[]) => agentConfig(a, ['    lock_timeout_secs: 1', ...extra]);
  const cfg = write([]);
  const d = await serve(t, ['--config', cfg], { NEXO_MEMORY_TOKEN: TOKEN });
  const base = `${d.url}/v1/agents/ana`;
  assert.equal((await call(`${base}/snapshots`, { method: 'POST', headers: auth() })).status, 201);
  const holder = startFixture(t, 'hold-lock.ts', [a.stateRoot, 'ana']);
  await holder.ready;
  const busy = await call(`${base}/snapshots`, { method: 'POST', headers: auth() });
  assert.equal(busy.status, 409);
  assert.equal(busy.body.error.code, 'CONCURRENT');
  assert.match(busy.body.error.message, /test-holder/);
  const gcBusy = await call(`${d.url}/v1/gc`, {
    method: 'POST',
    headers: jsonHeaders(),
    body: '{"dry_run":true}',
  });
  assert.equal(gcBusy.status, 200);
  assert.equal(gcBusy.body.agents_busy, 1, 'gc never waits for a busy agent');
  holder.child.kill('SIGKILL');
  await holder.exited;
  const m = await call(`${d.url}/metrics`);
  assert.match(
    m.text,
    /^nexo_memory_snapshot_total\{agent="ana",tenant="default",outcome="concurrent"\} 1$/m,
  );
  assert.equal((await call(`${d.url}/v1/gc`, { method: 'POST' })).status, 401);
  const gc = await call(`${d.url}/v1/gc`, {
    method: 'POST',
    headers: jsonHeaders(),
    body: '{"dry_run":true}',
  });
  assert.equal(gc.status, 200, JSON.stringify(gc.body));
  assert.equal(gc.body.dry_run, true);
  assert.equal(gc.body.agents_visited, 1);
  assert.equal(gc.body.bundles_kept, 1);
  d.child.kill('SIGTERM');
  assert.equal(await d.exited, 0);

  write(['    enabled: false']);
  const ro = await serve(t, ['--config', cfg], { NEXO_MEMORY_TOKEN: TOKEN });
  const refused = await call(`${ro.url}/v1/agents/ana/snapshots`, { method: 'POST', headers: auth() });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error.code, 'FORBIDDEN');
  const list = await call(`${ro.url}/v1/agents/ana/snapshots`, { headers: auth() });
  assert.equal(list.status, 200);
  assert.equal(list.body.length, 1, 'reads still work, and nothing was added');
  ro.child.kill('SIGTERM');
  assert.equal(await ro.exited, 0);
});

test('serve: the retention worker removes leftovers of dead operations at start and keeps bundles', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const kept = await a.snapshotter.snapshot({ agentId: 'ana' });
  const dir = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  const dead = '01a20000-0000-7000-8000-000000000001';
  mkdirSync(join(dir, `.staging-${dead}`));
  writeFileSync(join(dir, `.staging-${dead}`, 'long_term.sqlite'), 'half a copy');
  writeFileSync(join(dir, `${dead}.tar.zst.partial`), 'half a bundle');
  writeFileSync(join(dir, `${dead}.tar.zst.sha256`), 'f'.repeat(64));
  const cfg = agentConfig(a, ['    retention:', '      leftover_grace_secs: 0']);
  const d = await serve(t, ['--config', cfg]);
  await until(() => !storeEntries(a).some((n) => n.includes(dead)), Boolean, 100); // leftovers removed
  assert.deepEqual(storeEntries(a), [
    `${kept.id}.tar.zst`,
    `${kept.id}.tar.zst.meta.json`,
    `${kept.id}.tar.zst.sha256`,
  ]);
  // the sweep is on the activity feed, as the docs say of every operation the daemon runs (stop 63)
  const sweeps = await until(
    async () =>
      (
        (await call(`${d.url}/v1/activity`, { headers: auth() })).body.recent as Array<
          Record<string, unknown>
        >
      ).filter((x) => x.op === 'gc' && x.source === 'retention'),
    (found) => found.length > 0,
    100,
  );
  assert.equal(sweeps[0]!.outcome, 'ok');
  d.child.kill('SIGTERM');
  assert.equal(await d.exited, 0);
});

test('serve --nats: API operations and the retention sweep publish lifecycle events', async (t) => {
  const nats = await startNats(t);
  const events = await collect(t, nats.url, 'nexo.memory.snapshot.>');
  const a = sampleAgent(t, 'ana', SMALL);
  // A leftover of an operation that died an hour ago: the start-up sweep removes it, a change it announces.
  const leftover = join(
    a.stateRoot,
    'tenants',
    'default',
    'snapshots',
    'ana',
    '.staging-01a20000-0000-7000-8000-000000000002',
  );
  mkdirSync(leftover, { recursive: true });
  const anHourAgo = new Date(Date.now() - 3_600_000);
  utimesSync(leftover, anHourAgo, anHourAgo);
  const d = await serve(t, [...storeFlags(a), '--nats', nats.url], { NEXO_MEMORY_TOKEN: TOKEN });
  // The start-up sweep's event first: an API call made before the sweep ran would remove the leftover
  // itself (every operation on an agent clears its dead operations' leftovers under its lock), and the
  // sweep, finding nothing to do, would announce nothing.
  const [sweep] = await events.waitFor(1);
  assert.equal(sweep?.subject, 'nexo.memory.snapshot._all.gc', 'the start-up sweep');
  assert.equal(sweep?.data.kind, 'gc', 'the start-up sweep');
  const base = `${d.url}/v1/agents/ana/snapshots`;
  const s1 = await call(base, { method: 'POST', headers: jsonHeaders(), body: '{"label":"one"}' });
  const s2 = await call(base, { method: 'POST', headers: auth() });
  assert.equal((await call(`${base}/${s1.body.id}`, { method: 'DELETE', headers: auth() })).status, 200);
  const all = await events.waitFor(4);
  assert.equal(
    (sweep!.data.report as { orphan_staging_dirs_removed: number }).orphan_staging_dirs_removed,
    1,
  );
  assert.ok(!existsSync(leftover));
  const got = all.filter((m) => m.subject.startsWith('nexo.memory.snapshot.ana.'));
  assert.deepEqual(
    got.map((m) => [m.subject, m.data.kind, m.data.id ?? m.data.snapshot_id]),
    [
      ['nexo.memory.snapshot.ana.created', 'created', s1.body.id],
      ['nexo.memory.snapshot.ana.created', 'created', s2.body.id],
      ['nexo.memory.snapshot.ana.deleted', 'deleted', s1.body.id],
    ],
  );
  assert.equal(got[0]!.data.created_by, 'api');
  d.child.kill('SIGTERM');
  assert.equal(await d.exited, 0);
});

/** Reads a text/event-stream in the background: its text so far, and a stop (aborts the request). */
async function readFeed(url: string, headers: Record<string, string>) {
  const abort = new AbortController();
  const res = await fetch(url, { headers, signal: abort.signal });
  assert.equal(res.status, 200);
  let text = '';
  const reading = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>)
        text += decoder.decode(chunk, { stream: true });
    } catch {
      // aborted
    }
  })();
  return {
    text: () => text,
    /** The events so far (not the initial `snapshot`): each one's type and activity. */
    events: () =>
      [...text.matchAll(/^event: (\w+)\ndata: (.*)$/gm)]
        .filter((m) => m[1] !== 'snapshot')
        .map((m) => ({ type: m[1]!, activity: JSON.parse(m[2]!) as Record<string, unknown> })),
    stop: async () => {
      abort.abort();
      await reading;
    },
  };
}

test('daemon: a tenant scopes gc and filters schedule, activity and events; a route that cannot honour one refuses it (stop 45)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  copySampleAgent(a.root, 'bob', SMALL);
  const cfg = agentConfig(a, [
    '    schedule:',
    '      - agents: [ana]',
    '        interval_secs: 3600',
    '      - agents: [bob]',
    '        interval_secs: 3600',
    '        tenant: acme',
    '    retention:',
    '      keep_count: 1',
    '      max_age_days: 0',
    '      gc_interval_secs: 86400',
  ]);
  // An empty store: the start-up sweep has nothing to do.
  const d = await serve(t, ['--config', cfg], { NEXO_MEMORY_TOKEN: TOKEN });
  const acmeFeed = await readFeed(`${d.url}/v1/events?tenant=acme`, auth());
  const defaultFeed = await readFeed(`${d.url}/v1/events`, { ...auth(), 'x-nexo-tenant': 'default' });
  t.after(() => Promise.all([acmeFeed.stop(), defaultFeed.stop()]));
  const snap = async (agent: string, tenant: string) => {
    const r = await call(`${d.url}/v1/agents/${agent}/snapshots?tenant=${tenant}`, {
      method: 'POST',
      headers: jsonHeaders(),
      body: '{}',
    });
    assert.equal(r.status, 201, r.text);
    return r.body.id as string;
  };
  const ids = async (agent: string, tenant: string) =>
    (
      (await call(`${d.url}/v1/agents/${agent}/snapshots?tenant=${tenant}`, { headers: auth() }))
        .body as Array<{
        id: string;
      }>
    ).map((m) => m.id);
  const ana = [await snap('ana', 'default'), await snap('ana', 'default')];
  const bob = [await snap('bob', 'acme'), await snap('bob', 'acme')];

  // schedule: the tenant's entries only, by the query or the header
  const schedule = async (q: string, h: Record<string, string> = {}) => {
    const r = await call(`${d.url}/v1/schedule${q}`, { headers: { ...auth(), ...h } });
    assert.equal(r.status, 200, r.text);
    return (r.body as Array<{ tenant: string; agent_id: string }>).map((e) => `${e.tenant}/${e.agent_id}`);
  };
  assert.deepEqual(await schedule('?tenant=default'), ['default/ana']);
  assert.deepEqual(await schedule('', { 'x-nexo-tenant': 'acme' }), ['acme/bob']);
  assert.deepEqual((await schedule('')).sort(), ['acme/bob', 'default/ana']);
  assert.deepEqual(await schedule('?tenant=nobody'), []);

  // activity: the tenant's operations only
  const activity = async (q: string) => {
    const r = await call(`${d.url}/v1/activity${q}`, { headers: auth() });
    assert.equal(r.status, 200, r.text);
    return (r.body.recent as Array<{ op: string; tenant?: string; agent_id?: string }>).map(
      (e) => `${e.op} ${e.tenant ?? '*'}/${e.agent_id ?? '*'}`,
    );
  };
  assert.deepEqual(await activity('?tenant=acme'), ['snapshot acme/bob', 'snapshot acme/bob']);
  assert.deepEqual(await activity('?tenant=default'), ['snapshot default/ana', 'snapshot default/ana']);
  // without a tenant: the four snapshots, and the retention worker's sweeps of every tenant
  const everyTenant = await activity('');
  assert.equal(everyTenant.filter((e) => e.startsWith('snapshot ')).length, 4, JSON.stringify(everyTenant));
  assert.ok(
    everyTenant.every((e) => e.startsWith('snapshot ') || e === 'gc */*'),
    JSON.stringify(everyTenant),
  );

  // gc: a dry run of acme looks at acme's agents only; the sweep of acme deletes only acme's
  const gc = (q: string, body: string) =>
    call(`${d.url}/v1/gc${q}`, { method: 'POST', headers: jsonHeaders(), body });
  const dry = await gc('?tenant=acme', '{"dry_run":true}');
  assert.equal(dry.status, 200, dry.text);
  assert.deepEqual(
    (dry.body.agents as Array<{ tenant: string; agent_id: string }>).map((x) => `${x.tenant}/${x.agent_id}`),
    ['acme/bob'],
  );
  assert.equal(dry.body.bundles_deleted, 1);
  assert.deepEqual(await ids('bob', 'acme'), [bob[1], bob[0]], 'a dry run deletes nothing');
  const swept = await gc('?tenant=acme', '{}');
  assert.equal(swept.status, 200, swept.text);
  assert.deepEqual(
    (swept.body.agents as Array<{ tenant: string; agent_id: string }>).map(
      (x) => `${x.tenant}/${x.agent_id}`,
    ),
    ['acme/bob'],
  );
  assert.deepEqual(await ids('bob', 'acme'), [bob[1]], "acme's older snapshot is gone");
  assert.deepEqual(await ids('ana', 'default'), [ana[1], ana[0]], "the default tenant's are untouched");
  // the header scopes it as the query does
  const viaHeader = await call(`${d.url}/v1/gc`, {
    method: 'POST',
    headers: { ...jsonHeaders(), 'x-nexo-tenant': 'acme' },
    body: '{"dry_run":true}',
  });
  assert.deepEqual(
    (viaHeader.body.agents as Array<{ agent_id: string }>).map((x) => x.agent_id),
    ['bob'],
  );
  assert.deepEqual(await ids('ana', 'default'), [ana[1], ana[0]]);
  assert.deepEqual(await activity('?tenant=acme'), [
    'gc acme/*',
    'gc acme/*',
    'gc acme/*',
    'snapshot acme/bob',
    'snapshot acme/bob',
  ]);
  assert.deepEqual(await activity('?tenant=default'), ['snapshot default/ana', 'snapshot default/ana']);
  // without a tenant: every tenant (and that sweep is no one tenant's activity)
  const all = await gc('', '{}');
  assert.deepEqual(
    (all.body.agents as Array<{ tenant: string; agent_id: string }>).map((x) => `${x.tenant}/${x.agent_id}`),
    ['acme/bob', 'default/ana'],
  );
  assert.deepEqual(await ids('ana', 'default'), [ana[1]]);
  assert.deepEqual(await activity('?tenant=default'), ['snapshot default/ana', 'snapshot default/ana']);
  assert.equal((await activity(''))[0], 'gc */*');

  // events: each feed saw its tenant's operations, started and ended, and nothing else
  await until(
    async () => acmeFeed.events().filter((e) => e.type === 'ended').length,
    (n) => n >= 5,
    50,
  );
  await until(
    async () => defaultFeed.events().filter((e) => e.type === 'ended').length,
    (n) => n >= 2,
    50,
  );
  const seen = (feed: typeof acmeFeed) =>
    feed
      .events()
      .filter((e) => e.type === 'ended')
      .map((e) => `${e.activity.op} ${e.activity.tenant ?? '*'}/${e.activity.agent_id ?? '*'}`);
  assert.deepEqual(seen(acmeFeed), [
    'snapshot acme/bob',
    'snapshot acme/bob',
    'gc acme/*',
    'gc acme/*',
    'gc acme/*',
  ]);
  assert.deepEqual(seen(defaultFeed), ['snapshot default/ana', 'snapshot default/ana']);
  assert.ok(
    acmeFeed.events().every((e) => e.activity.tenant === 'acme'),
    'no other tenant on the feed',
  );
  assert.ok(!acmeFeed.text().includes('"ana"'), acmeFeed.text());
  // a feed opened now starts with the tenant's operations only
  const late = await readFeed(`${d.url}/v1/events?tenant=default`, auth());
  await until(
    async () => late.text(),
    (s) => s.includes('event: snapshot'),
    50,
  );
  await late.stop();
  const first = JSON.parse(/^event: snapshot\ndata: (.*)$/m.exec(late.text())![1]!) as {
    recent: Array<{ tenant?: string }>;
  };
  assert.deepEqual(
    first.recent.map((e) => e.tenant),
    ['default', 'default'],
  );

  // a route that cannot honour a tenant refuses it, by the query or the header, naming it
  for (const [path, headers] of [
    ['/v1/rights?tenant=acme', auth()],
    ['/v1/rights', { ...auth(), 'x-nexo-tenant': 'acme' }],
    ['/healthz?tenant=acme', {}],
    ['/metrics', { 'x-nexo-tenant': 'acme' }],
    ['/?tenant=acme', {}],
  ] as Array<[string, Record<string, string>]>) {
    const r = await call(`${d.url}${path}`, { headers });
    assert.equal(r.status, 400, `${path}: ${r.text}`);
    assert.equal(r.body.error.code, 'INVALID_INPUT');
    assert.match(r.body.error.message, /tenant/i, path);
  }
  assert.equal((await call(`${d.url}/v1/rights`, { headers: auth() })).status, 200);
  assert.equal((await call(`${d.url}/healthz`)).status, 200);
  d.child.kill('SIGTERM');
  assert.equal(await d.exited, 0);
});

test('daemon: a request path with a dot segment, encoded or not, is refused before routing; the log keeps the raw path (stop 45)', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  copySampleAgent(a.root, 'bob', SMALL);
  const d = await serve(t, storeFlags(a), { NEXO_MEMORY_TOKEN: TOKEN });
  assert.equal(
    (await runCli(['snapshot', '--agent', 'bob', '--tenant', 'acme', '--no-progress', ...a.flags])).code,
    0,
  );
  const port = Number(new URL(d.url).port);
  /** GET of a raw request target (fetch and URL would resolve its dot segments before sending). */
  const raw = (target: string) =>
    new Promise<{ status: number; body: { error?: { code: string; message: string } } | unknown[] }>(
      (resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path: target, headers: auth() }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c) => {
            text += c;
          });
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
        });
        req.on('error', reject);
        req.end();
      },
    );
  // the control: bob's snapshots, asked for plainly, are there
  const plain = await raw('/v1/agents/bob/snapshots?tenant=acme');
  assert.equal(plain.status, 200);
  assert.equal((plain.body as unknown[]).length, 1);
  for (const target of [
    '/v1/agents/ana/%2e%2e/bob/snapshots?tenant=acme',
    '/v1/agents/ana/%2E%2e/bob/snapshots?tenant=acme',
    '/v1/agents/ana/.%2E/bob/snapshots?tenant=acme',
    '/v1/agents/ana/../bob/snapshots?tenant=acme',
    '/v1/agents/ana/%2e/../bob/snapshots?tenant=acme',
    '/v1/./agents/bob/snapshots?tenant=acme',
    '/v1/agents/bob/snapshots/..?tenant=acme',
    '/v1/agents/ana\\..\\bob/snapshots?tenant=acme',
  ]) {
    const r = await raw(target);
    assert.equal(r.status, 400, target);
    const e = (r.body as { error: { code: string; message: string } }).error;
    assert.equal(e.code, 'INVALID_INPUT', target);
    assert.match(e.message, /dot segment/, target);
  }
  // a dot inside a segment is no dot segment
  const dotted = await raw('/v1/agents/a.b/snapshots');
  assert.doesNotMatch(JSON.stringify(dotted.body), /dot segment/);
  assert.match(d.stderr(), /GET \/v1\/agents\/ana\/%2e%2e\/bob\/snapshots\?tenant=… 400 \d+ms/);
  d.child.kill('SIGTERM');
  assert.equal(await d.exited, 0);
});

/** An in-process daemon (the real routes and HTTP server) over an empty store, with its activity board. */
async function inProcessApi(t: { after(fn: () => void): void }) {
  const root = mkdtempSync(join(tmpdir(), 'nexo-api-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const snapshotter = new LocalSnapshotter({ stateRoot: root, memdirRoot: root, sqliteRoot: root });
  const tracker = new OperationTracker();
  const activity = new ActivityBoard();
  const lines: string[] = [];
  const server = createApiServer({
    routes: apiRoutes({ snapshotter, tracker, allowRestore: false, startedAt: Date.now(), activity }),
    token: TOKEN,
    tracker,
    loopbackHostsOnly: true,
    log: (l) => lines.push(l),
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    activity.close();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  /** GET of a raw request target over a socket (fetch, curl without --path-as-is and URL rewrite it). */
  const raw = (target: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (c: string) => {
        text += c;
      });
      socket.on('error', reject);
      socket.on('end', () => {
        const [head = '', body = ''] = text.split('\r\n\r\n');
        resolve({ status: Number(head.split(' ')[1]), body });
      });
      socket.write(
        `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${TOKEN}\r\nConnection: close\r\n\r\n`,
      );
    });
  return { url: `http://127.0.0.1:${port}`, activity, raw, lines };
}

test('http: a request target that is not a plain path (//host/…, /\\host/…, an absolute URL, a "\\") is refused before any route, never read as a host (stop 46)', async (t) => {
  const d = await inProcessApi(t);
  // the controls: the same paths, sent plainly, are served
  for (const target of ['/healthz', '/v1/agents/ana/snapshots', '/v1/activity']) {
    const r = await d.raw(target);
    assert.equal(r.status, 200, `${target}: ${r.body}`);
  }
  for (const target of [
    '//evil.example/v1/agents/ana/snapshots',
    '//evil.example/healthz',
    '//evil.example/v1/activity?tenant=acme',
    '///v1/agents/ana/snapshots',
    '/\\evil.example/v1/agents/ana/snapshots',
    '/v1\\agents/ana/snapshots',
    'http://evil.example/v1/agents/ana/snapshots',
    'http://127.0.0.1/healthz',
  ]) {
    const r = await d.raw(target);
    assert.equal(r.status, 400, `${target}: ${r.body}`);
    const e = (JSON.parse(r.body) as { error: { code: string; message: string } }).error;
    assert.equal(e.code, 'INVALID_INPUT', target);
    assert.match(e.message, /not a plain path/, target);
  }
  // a slash inside the path is no host: a route that does not exist, as before
  assert.equal((await d.raw('/v1//agents/ana/snapshots')).status, 404);
  assert.ok(
    d.lines.some((l) => l.startsWith('GET //evil.example/v1/agents/ana/snapshots 400 ')),
    d.lines.join('\n'),
  );
});

test('activity: a tenant sees its last 20 operations however many other tenants ran since; the events feed starts with the same (stop 46)', async (t) => {
  const d = await inProcessApi(t);
  const run = (tenant: string | undefined, n: number) =>
    d.activity.track(
      { op: 'snapshot', source: 'api', ...(tenant ? { tenant, agent_id: `a${n}` } : {}) },
      async () => n,
      (r) => ({ n: r }),
    );
  for (let i = 0; i < 25; i++) await run('acme', i); // acme's, oldest first
  for (let i = 0; i < 30; i++) await run('default', 100 + i); // then more of another tenant
  await run(undefined, 999); // and a gc of every tenant
  type Listed = { recent: Array<{ tenant?: string; result?: { n: number } }> };
  const get = async (q: string) =>
    (await (await fetch(`${d.url}/v1/activity${q}`, { headers: auth() })).json()) as Listed;
  const acme = await get('?tenant=acme');
  assert.deepEqual(
    acme.recent.map((e) => e.result?.n),
    Array.from({ length: 20 }, (_, i) => 24 - i),
    "acme's last 20, newest first, though 31 newer operations of others ended since",
  );
  const def = await get('?tenant=default');
  assert.equal(def.recent.length, 20);
  assert.ok(def.recent.every((e) => e.tenant === 'default'));
  const all = await get('');
  assert.equal(all.recent.length, 20, 'without a tenant: the last 20 of all');
  assert.equal(all.recent[0]!.result?.n, 999);
  // the feed's first event (the console's list) is the same list
  const feed = await fetch(`${d.url}/v1/events?tenant=acme`, { headers: auth() });
  const reader = feed.body!.getReader();
  let text = '';
  while (!/event: snapshot\ndata: .*\n/.test(text))
    text += new TextDecoder().decode((await reader.read()).value);
  await reader.cancel();
  const first = JSON.parse(/event: snapshot\ndata: (.*)\n/.exec(text)![1]!) as Listed;
  assert.deepEqual(
    first.recent.map((e) => e.result?.n),
    acme.recent.map((e) => e.result?.n),
  );
});
