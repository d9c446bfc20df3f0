// The web console in a real browser: the Debian chromium package driven headless by playwright-core
// against the real daemon (`nexo-memory serve`, built binary) on a sample agent with hostile memory (a
// label and a memory file that are HTML). One daemon and one browser for the whole file.

import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import type { Browser, Page } from 'playwright-core';
import { bytes } from '../console/src/format.js';
import { buildSampleAgent, gitEnv } from '../scripts/sample-agent.js';
import { LocalSnapshotter } from '../src/index.js';
import type { SnapshotMeta } from '../src/model/types.js';
import { type ConsolePage, launchBrowser, login as logIn, newPage, waitShowing } from './helpers/browser.js';
import { BIN, ensureBuilt, ensureConsoleBuilt } from './helpers/built-cli.js';
import { REPO, startFixture } from './helpers/env.js';
import { until } from './helpers/wait.js';

const WRITE_TOKEN = 'console-write-token-0123456789';
const READ_TOKEN = 'console-read-token-0123456789';
const HOSTILE_LABEL = '<img src=x onerror=alert(1)>';
const SCRIPT_FILE = 'topics/hostile.md';
const SCRIPT_V1 = '# Notes\n\nversion one <script>alert(2)</script>\n\n<img src=y onerror=alert(3)>\n';
const SCRIPT_V2 = '# Notes\n\nversion two, rewritten later\n';
const HOSTILE_NAME = 'topics/<img src=x onerror=alert(4)>.md';
const HOSTILE_ROW = '<script>alert(5)</script><img src=z onerror=alert(6)>';

let root: string;
let daemon: ChildProcess;
let url: string;
let browser: Browser;
let snapshotter: LocalSnapshotter;
let metas: SnapshotMeta[];
const dialogs: string[] = [];
let daemonLog = '';
let storeFlags: string[];
let memdir: string;
let sqliteDir: string;
let storeRoot: string;

const open = (): Promise<ConsolePage> => newPage(browser, dialogs);
const login = (page: Page, token: string): Promise<void> => logIn(page, url, token);

before(async () => {
  ensureBuilt();
  ensureConsoleBuilt();
  root = mkdtempSync(join(tmpdir(), 'nexo-console-'));
  const a = buildSampleAgent(root, 'ana', {
    files: 4,
    commits: 2,
    memories: 40,
    embeddings: 10,
    concepts: 5,
    compactions: 3,
  });
  // the default store, the repository (test/helpers/env.ts makes other tests use bundles)
  snapshotter = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    store: 'repository',
  });
  mkdirSync(join(a.memdir, 'topics'), { recursive: true });
  writeFileSync(join(a.memdir, SCRIPT_FILE), SCRIPT_V1);
  writeFileSync(join(a.memdir, HOSTILE_NAME), 'a file whose name is HTML\n');
  execFileSync('git', ['add', '-A'], { cwd: a.memdir, env: gitEnv });
  execFileSync('git', ['commit', '-qm', 'hostile notes'], { cwd: a.memdir, env: gitEnv });
  await snapshotter.snapshot({ agentId: 'ana', label: 'first', createdBy: 'cli' });
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  const insert = db.prepare(
    'INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)',
  );
  for (let i = 0; i < 7; i++) insert.run(Date.now(), 'fact', `learned fact ${i}`, 1);
  insert.run(Date.now(), 'fact', HOSTILE_ROW, 1);
  db.prepare('DELETE FROM memories WHERE rowid IN (SELECT rowid FROM memories ORDER BY rowid LIMIT 2)').run();
  db.close();
  writeFileSync(join(a.memdir, SCRIPT_FILE), SCRIPT_V2);
  execFileSync('git', ['commit', '-qam', 'rewrite notes'], { cwd: a.memdir, env: gitEnv });
  await snapshotter.snapshot({ agentId: 'ana', label: HOSTILE_LABEL, createdBy: 'cli' });
  await snapshotter.snapshot({ agentId: 'ana', label: 'third', createdBy: 'scheduled' });
  metas = await snapshotter.list('ana'); // newest first
  memdir = a.memdir;
  sqliteDir = a.sqliteDir;
  storeRoot = a.stateRoot;
  storeFlags = ['--state-root', a.stateRoot, '--memdir-root', a.memdirRoot, '--sqlite-root', a.sqliteRoot];

  daemon = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--listen',
      '127.0.0.1:0',
      ...['--state-root', a.stateRoot, '--memdir-root', a.memdirRoot, '--sqlite-root', a.sqliteRoot],
    ],
    {
      cwd: REPO,
      env: {
        ...process.env,
        NEXO_MEMORY_TOKEN: WRITE_TOKEN,
        NEXO_MEMORY_READ_TOKEN: READ_TOKEN,
        NEXO_MEMORY_RESTORE_ALLOW: '',
        NEXO_MEMORY_STORE_FORMAT: 'repository',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  daemon.stderr!.on('data', (c) => {
    daemonLog += c;
  });
  url = await new Promise<string>((resolve, reject) => {
    let out = '';
    daemon.stdout!.on('data', (c) => {
      out += c;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)\n/.exec(out);
      if (m) resolve(m[1]!);
    });
    daemon.once('exit', (code) => reject(new Error(`serve exited ${code} before listening`)));
  });
  browser = await launchBrowser();
});

after(async () => {
  if (process.env.NEXO_TEST_VERBOSE) process.stderr.write(daemonLog);
  await browser?.close();
  if (daemon && daemon.exitCode === null) {
    const exited = new Promise((r) => daemon.once('exit', r));
    daemon.kill('SIGTERM');
    await exited;
  }
  if (root) rmSync(root, { recursive: true, force: true, maxRetries: 5 });
});

test('the console and the API are served with a strict CSP, nosniff and their content types', async () => {
  const index = await fetch(`${url}/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-type') ?? '', /^text\/html/);
  const csp = index.headers.get('content-security-policy') ?? '';
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self';/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(index.headers.get('x-content-type-options'), 'nosniff');
  const js = await fetch(`${url}/assets/console.js`);
  assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/);
  const html = await index.text();
  assert.doesNotMatch(html, /<script>|<script [^>]*>[^<]/, 'no inline script');
  // only the built files: no path on disk behind /assets
  assert.equal((await fetch(`${url}/assets/..%2Fpackage.json`)).status, 404);
  assert.equal((await fetch(`${url}/assets/package.json`)).status, 404);
  // the snapshot page's metadata, for repository snapshots too
  assert.ok(snapshotter.usesRepository(), 'the store is the repository (the default)');
  for (const m of metas) {
    const r = await fetch(`${url}/v1/agents/ana/snapshots/${m.id}`, {
      headers: { authorization: `Bearer ${READ_TOKEN}` },
    });
    assert.equal(r.status, 200, `GET …/snapshots/${m.id}`);
    assert.equal(((await r.json()) as SnapshotMeta).label, m.label);
  }
  const api = await fetch(`${url}/v1/fleet`);
  assert.equal(api.status, 401, 'the console adds no unguarded data route');
  // every route the console reads needs the token, as the API's own do
  for (const path of [
    '/v1/rights',
    '/v1/activity',
    '/v1/events',
    '/v1/schedule',
    '/v1/agents/ana/retention',
    '/v1/agents/ana/snapshots',
    `/v1/agents/ana/snapshots/${metas[0]!.id}/ls`,
  ])
    assert.equal((await fetch(`${url}${path}`)).status, 401, path);
  assert.equal(index.headers.get('set-cookie'), null, 'no cookie');
  assert.match(api.headers.get('content-security-policy') ?? '', /default-src 'self'/);
});

test('serve refuses a read token equal to the write token', async () => {
  const r = spawn(process.execPath, [BIN, 'serve', '--listen', '127.0.0.1:0', ...storeFlags], {
    cwd: REPO,
    env: { ...process.env, NEXO_MEMORY_TOKEN: WRITE_TOKEN, NEXO_MEMORY_READ_TOKEN: WRITE_TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // a daemon that starts anyway is stopped at once (and the exit code below fails the test)
  r.stdout!.on('data', () => r.kill('SIGKILL'));
  let err = '';
  r.stderr!.on('data', (c) => {
    err += c;
  });
  const code = await new Promise<number | null>((res) => r.once('exit', res));
  assert.equal(code, 1);
  assert.match(err, /read_token must differ from server\.token/);
});

test("a login answered before the page's own first check: that check's late 401 does not log the tab out", async () => {
  const { context, page } = await open();
  try {
    // the page's check of a stored token (it has none) is held until the operator has logged in
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    await page.route('**/v1/rights', async (route) => {
      if (!route.request().headers().authorization) await held;
      await route.continue();
    });
    const late = page.waitForResponse((r) => r.url().endsWith('/v1/rights') && r.status() === 401);
    await page.goto(`${url}/`);
    await page.fill('#token', WRITE_TOKEN);
    await page.click('#login button[type=submit]');
    await waitShowing(page, '#rights');
    release();
    await late;
    // let the page handle that answer (two turns of its event loop), then look
    await page.evaluate('new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)))');
    assert.equal(await page.evaluate("sessionStorage.getItem('nexo-memory-token')"), WRITE_TOKEN);
    assert.equal(await page.locator('#login').count(), 0, 'still logged in');
    await page.goto(`${url}/#/agent/default/ana`);
    await waitShowing(page, '#timeline tbody tr');
  } finally {
    await context.close();
  }
});

test('log in; the fleet and the timeline show the agent and its snapshots; hostile labels are text', async () => {
  const { context, page, requests, cookiesSet } = await open();
  try {
    await page.goto(`${url}/`);
    await page.fill('#token', 'not-the-token-at-all-000');
    await page.click('#login button[type=submit]');
    await waitShowing(page, '#login .error');
    await login(page, WRITE_TOKEN);
    assert.equal(await page.textContent('#rights'), 'read and write');
    await waitShowing(page, '#fleet tr[data-agent="ana"]');
    const cells = (await page.locator('#fleet tr[data-agent="ana"] td').allTextContents()).map((c) =>
      c.trim(),
    );
    const fleet = (await (
      await fetch(`${url}/v1/fleet`, { headers: { authorization: `Bearer ${READ_TOKEN}` } })
    ).json()) as {
      agents: Array<{ snapshots: number; bytes_stored: number; bytes_added_last: number; pins: number }>;
    };
    const o = fleet.agents[0]!;
    assert.deepEqual(
      [cells[0], cells[1], cells[2], cells[6], cells[7], cells[8]],
      ['ana', 'default', '3', '0', 'not this session', 'none'],
    );
    assert.equal(o.snapshots, 3);
    assert.match(cells[3]!, /^\d+ (s|min) ago$/, "the last snapshot's age");
    assert.ok(o.bytes_stored > 0);
    assert.deepEqual([cells[4], cells[5]], [bytes(o.bytes_stored), bytes(o.bytes_added_last)]);
    await page.click('#fleet a');
    await waitShowing(page, '#timeline tbody tr');
    assert.equal(await page.locator('#timeline tbody tr').count(), metas.length);
    assert.equal(await page.locator('#timeline-chart .mark').count(), metas.length);
    assert.equal((await page.textContent('#snapshot-count'))?.trim(), `${metas.length} snapshots`);
    const hostile = metas.find((m) => m.label === HOSTILE_LABEL)!;
    const cell = page.locator(`#timeline tr[data-id="${hostile.id}"] td.label`);
    assert.equal(await cell.textContent(), HOSTILE_LABEL, 'the label is shown as its text');
    assert.equal(await cell.locator('img').count(), 0, 'no element is made from it');
    assert.equal(await page.locator('img').count(), 0);
    assert.match((await page.textContent('#timeline')) ?? '', /scheduled/);
    // the snapshot page shows it as text too
    await page.click(`#timeline tr[data-id="${hostile.id}"] td a`);
    await waitShowing(page, '#snapshot-label');
    assert.equal(await page.textContent('#snapshot-label'), HOSTILE_LABEL);
    assert.equal(await page.locator('img').count(), 0);
    assert.deepEqual(dialogs, [], 'no dialog fired');
    // the token: in this tab's sessionStorage and the Authorization header only, never in a URL or a cookie
    assert.ok(requests.length > 5);
    assert.deepEqual(
      requests.filter((u) => u.includes(WRITE_TOKEN)),
      [],
      'no request URL holds the token',
    );
    assert.ok(!page.url().includes(WRITE_TOKEN));
    // everything the console loads comes from the daemon: no CDN, no other host
    assert.deepEqual(
      requests.filter((u) => !u.startsWith(`${url}/`)),
      [],
    );
    assert.deepEqual(cookiesSet, [], 'no response sets a cookie');
    assert.deepEqual(await context.cookies(), []);
    assert.equal(await page.evaluate('document.cookie'), '');
    assert.equal(await page.evaluate("sessionStorage.getItem('nexo-memory-token')"), WRITE_TOKEN);
    await page.click('#logout');
    await waitShowing(page, '#login');
    assert.equal(await page.evaluate("sessionStorage.getItem('nexo-memory-token')"), null);
  } finally {
    await context.close();
  }
});

test('the diff page shows the row counts the library diff reports', async () => {
  const [third, , first] = metas;
  const lib = await snapshotter.diff({ agentId: 'ana', a: first!.id, b: third!.id, detail: true });
  const memories = lib.databases
    .find((d) => d.db === 'long_term')!
    .tables.find((t) => t.table === 'memories')!;
  assert.ok(memories.added > 0 && memories.removed > 0, 'the fixture changed rows');
  const { context, page } = await open();
  try {
    await login(page, WRITE_TOKEN);
    // a prefix of A's id in the URL (the API takes one): picker A shows that snapshot, not "live"
    await page.goto(`${url}/#/diff/default/ana/${first!.id.slice(0, 13)}/${third!.id}`);
    const pickerA = page.locator('select').first();
    await pickerA.waitFor();
    // (the list it picks from comes from the API: on a loaded machine well after the select is drawn)
    await until(
      () => pickerA.inputValue(),
      (v) => v === first!.id,
    );
    // the normal way there: the timeline, A and B picked, one click on its link starts the diff
    await page.goto(`${url}/#/agent/default/ana`);
    await page.check(`#timeline tr[data-id="${first!.id}"] input[name="pick-a"]`);
    await page.check(`#timeline tr[data-id="${third!.id}"] input[name="pick-b"]`);
    await page.click('#diff-link');
    const row = page.locator('#diff-tables tr[data-table="long_term.memories"]');
    await row.waitFor({ timeout: 90_000 }).catch(async (err: unknown) => {
      // say what the page shows instead (an API error, still loading) rather than only the timeout
      throw new Error(
        `${String(err)}\nthe page shows: ${(await page.textContent('main, body'))?.slice(0, 2000)}`,
      );
    });
    assert.equal(await row.locator('td.added').textContent(), String(memories.added));
    assert.equal(await row.locator('td.removed').textContent(), String(memories.removed));
    assert.equal(await row.locator('td.changed').textContent(), String(memories.changed));
    const cells = await row.locator('td.num').allTextContents();
    assert.deepEqual(cells.slice(0, 2), [String(memories.rows_a), String(memories.rows_b)]);
    assert.match(
      (await page.textContent('#diff-git')) ?? '',
      new RegExp(`^${lib.git_summary.commits_between} commits`),
    );
    // the file's unified diff, line by line, its HTML as text
    const patch = (await page.locator('#diff pre.patch').first().textContent()) ?? '';
    assert.match(patch, /\n-version one <script>alert\(2\)<\/script>\n/);
    assert.match(patch, /\n\+version two, rewritten later\n/);
    assert.equal(await page.locator('#diff script, #diff img').count(), 0);
    assert.deepEqual(dialogs, []);
  } finally {
    await context.close();
  }
});

test('the memdir browser shows a file as of an older snapshot, its HTML as text', async () => {
  const first = metas[metas.length - 1]!;
  const { context, page } = await open();
  try {
    await login(page, WRITE_TOKEN);
    await page.goto(`${url}/#/snapshot/default/ana/${first.id}`);
    await page.click('#browser-tree button[data-path="memdir"]');
    await page.click('#browser-tree button[data-path="memdir/topics"]');
    await page.click(`#browser-tree button[data-path="memdir/${SCRIPT_FILE}"]`);
    const content = page.locator('#browser-content .markdown');
    await content.waitFor();
    const text = (await content.textContent()) ?? '';
    assert.match(text, /version one <script>alert\(2\)<\/script>/, 'the older content, as text');
    assert.doesNotMatch(text, /version two/);
    assert.equal(await page.locator('#browser-content script, #browser-content img').count(), 0);
    assert.equal(await page.locator('script:not([src])').count(), 0, 'no script element was created');
    assert.deepEqual(dialogs, []);
  } finally {
    await context.close();
  }
});

test('a read token sees no write control, and the API refuses its writes', async () => {
  const { context, page } = await open();
  try {
    await login(page, READ_TOKEN);
    assert.equal(await page.textContent('#rights'), 'read only');
    await page.goto(`${url}/#/agent/default/ana`);
    await waitShowing(page, '#timeline tbody tr');
    assert.equal(await page.locator('button.delete').count(), 0, 'no delete control');
    assert.equal(await page.locator('#snapshot-now').count(), 0, 'no snapshot control');
    await page.goto(`${url}/#/snapshot/default/ana/${metas[0]!.id}`);
    await waitShowing(page, '#verify');
    for (const sel of ['#restore', '#restore-form', '#restore-preview', '#download'])
      assert.equal(await page.locator(sel).count(), 0, `no ${sel}`);
    // reading works with it
    await page.click('#verify');
    await waitShowing(page, '#verify-report');
    assert.match((await page.textContent('#verify-report')) ?? '', /verified/);
    // the API refuses a write with it anyway
    const headers = { authorization: `Bearer ${READ_TOKEN}`, 'content-type': 'application/json' };
    const del = await fetch(`${url}/v1/agents/ana/snapshots/${metas[0]!.id}`, { method: 'DELETE', headers });
    assert.equal(del.status, 403);
    const restore = await fetch(`${url}/v1/agents/ana/snapshots/${metas[0]!.id}/restore`, {
      method: 'POST',
      headers,
      body: '{"dry_run":true}',
    });
    assert.equal(restore.status, 403);
    const snap = await fetch(`${url}/v1/agents/ana/snapshots`, { method: 'POST', headers, body: '{}' });
    assert.equal(snap.status, 403);
    assert.equal((await snapshotter.list('ana')).length, metas.length, 'nothing was written');
  } finally {
    await context.close();
  }
});

test('the write token previews a restore, but the restore button needs the server to allow restore', async () => {
  const { context, page } = await open();
  try {
    await login(page, WRITE_TOKEN);
    await page.goto(`${url}/#/snapshot/default/ana/${metas[metas.length - 1]!.id}`);
    await page.click('#restore-preview');
    await waitShowing(page, '#restore-report');
    assert.match((await page.textContent('#restore-report')) ?? '', /would change/);
    assert.equal(await page.locator('#restore').count(), 0, 'allow_restore is off: no restore button');
    assert.match(
      (await page.textContent('main')) ?? '',
      /Restore is off on this server: server\.allow_restore is false in the config\./,
    );
    // the API refuses the restore itself to the write token too, and nothing changes
    const r = await fetch(`${url}/v1/agents/ana/snapshots/${metas[metas.length - 1]!.id}/restore`, {
      method: 'POST',
      headers: { authorization: `Bearer ${WRITE_TOKEN}`, 'content-type': 'application/json' },
      body: '{"dry_run":false}',
    });
    assert.equal(r.status, 403);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'RESTORE_REFUSED');
    assert.equal(readFileSync(join(memdir, SCRIPT_FILE), 'utf8'), SCRIPT_V2, 'the live memory is unchanged');
    // the download goes through fetch with the token in its header, then to the browser as a file
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    assert.match(download.suggestedFilename(), /\.tar\.zst$/);
    const saved = join(root, 'downloaded.tar.zst');
    await download.saveAs(saved);
    assert.equal(readFileSync(saved).readUInt32LE(0), 0xfd2fb528, 'a zstd stream (the bundle)');
    // the page says what the copy is, as the server's X-Nexo-Copy does (redaction asked for explicitly)
    await waitShowing(page, '#downloaded');
    assert.match(
      (await page.textContent('#downloaded')) ?? '',
      /Downloaded: a copy with its secrets replaced/,
    );
    // the token stops being accepted while the page is open (rotated, revoked): back to the login
    await page.evaluate("sessionStorage.setItem('nexo-memory-token', 'a-token-the-daemon-does-not-know')");
    await page.evaluate("location.hash = '#/agent/default/ana'");
    await waitShowing(page, '#login');
    assert.match((await page.textContent('main')) ?? '', /no longer accepts this token/);
  } finally {
    await context.close();
  }
});

test('the snapshot page: components, HEAD and state; deep verify; table rows and file names from memory as text', async () => {
  const [newest] = metas;
  const lsOf = (path: string) => snapshotter.ls('ana', 'default', newest!.id, path);
  const tables = (await lsOf('sqlite/long_term')).entries;
  const memories = tables.find((e) => e.name === 'memories')!;
  const state = (await lsOf('state')).entries.map((e) => e.name);
  const { context, page } = await open();
  try {
    await login(page, READ_TOKEN);
    await page.goto(`${url}/#/snapshot/default/ana/${newest!.id}`);
    await waitShowing(page, '#components table tbody tr');
    assert.equal(await page.textContent('#components p code'), newest!.git_oid);
    for (const e of tables) {
      const row = page.locator('#components tbody tr', { hasText: e.name }).filter({ hasText: 'long_term' });
      assert.equal(await row.locator('td.num').first().textContent(), String(e.rows), e.name);
    }
    const compText = (await page.textContent('#components')) ?? '';
    assert.ok(state.length > 0);
    for (const name of state) assert.ok(compText.includes(name), `state ${name}`);
    // deep verify, with its report
    await page.click('#verify-deep');
    await page.locator('#verify-report strong', { hasText: 'verified' }).waitFor();
    assert.equal(await page.locator('#verify-report details summary').textContent(), 'deep checks');
    // a table's rows, a hostile value among them as text
    await page.click('#browser-tree button[data-path="sqlite"]');
    await page.click('#browser-tree button[data-path="sqlite/long_term"]');
    await page.click('#browser-tree button[data-path="sqlite/long_term/memories"]');
    await waitShowing(page, '#table-rows tbody tr');
    assert.equal(await page.locator('#table-rows tbody tr').count(), Math.min(50, memories.rows!));
    assert.match((await page.textContent('#browser-content')) ?? '', new RegExp(`of ${memories.rows}`));
    // the hostile row may be past the first page: go to the last one
    while (!(await page.isDisabled('#browser-content button:text("next")')))
      await page.click('#browser-content button:text("next")');
    const cell = page.locator('#table-rows td', { hasText: HOSTILE_ROW });
    await cell.waitFor();
    assert.equal(await cell.textContent(), HOSTILE_ROW);
    // a file whose name is HTML, and a markdown file rendered as elements
    await page.click('#browser .crumbs button:text("/")');
    await page.click('#browser-tree button[data-path="memdir"]');
    await page.click('#browser-tree button[data-path="memdir/topics"]');
    const named = page.locator(`#browser-tree button[data-path="memdir/${HOSTILE_NAME}"]`);
    assert.equal(await named.textContent(), HOSTILE_NAME.split('/')[1]);
    await named.click();
    await page.locator('#browser-content', { hasText: 'a file whose name is HTML' }).waitFor();
    assert.equal(await page.textContent('#browser-content h3 code'), `memdir/${HOSTILE_NAME}`);
    await page.click(`#browser-tree button[data-path="memdir/${SCRIPT_FILE}"]`);
    // `# Notes` is a heading element (h3: the page's own h1 and h2 stay above it), not text
    await page.locator('#browser-content .markdown h3', { hasText: 'Notes' }).waitFor();
    assert.equal(await page.locator('main img, main script').count(), 0);
    assert.deepEqual(dialogs, []);
  } finally {
    await context.close();
  }
});

test("the diff page against live: the library diff's rows, samples of hostile rows as text, and state", async () => {
  const first = metas[metas.length - 1]!;
  const lib = await snapshotter.diff({ agentId: 'ana', a: first.id, b: 'live', detail: true });
  const memories = lib.databases
    .find((d) => d.db === 'long_term')!
    .tables.find((t) => t.table === 'memories')!;
  assert.ok(memories.added > 0);
  const { context, page } = await open();
  try {
    await login(page, READ_TOKEN);
    await page.goto(`${url}/#/snapshot/default/ana/${first.id}`);
    await page.click('a.button:text("Diff with live")');
    const row = page.locator('#diff-tables tr[data-table="long_term.memories"]');
    await waitShowing(page, '#diff-tables tr[data-table="long_term.memories"]');
    assert.ok(page.url().endsWith(`/${first.id}/live`));
    assert.equal(await row.locator('td.added').textContent(), String(memories.added));
    assert.equal(await row.locator('td.removed').textContent(), String(memories.removed));
    assert.equal(await row.locator('td.changed').textContent(), String(memories.changed));
    // the samples of added rows: the hostile value as text
    const samples = page.locator('#diff details.samples', { hasText: 'long_term.memories' });
    await samples.locator('summary').click();
    assert.ok(((await samples.textContent()) ?? '').includes(HOSTILE_ROW));
    assert.match(
      (await page.textContent('#diff')) ?? '',
      /extract cursor (changed|unchanged) · last dream run (changed|unchanged)/,
    );
    assert.equal(await page.locator('main img, main script').count(), 0);
    assert.deepEqual(dialogs, []);
  } finally {
    await context.close();
  }
});

test('a diff page opened by its address alone (another site can send the tab there) asks nothing of the API until its button is clicked; a click in the console starts it at once (stop 51)', async () => {
  const first = metas[metas.length - 1]!;
  const diffs = () => daemonLog.split('GET /v1/agents/ana/diff?').length - 1;
  const { context, page, requests } = await open();
  const diffRequests = () => requests.filter((u) => u.startsWith(`${url}/v1/agents/ana/diff?`));
  try {
    await login(page, READ_TOKEN);
    const before = diffs();
    // a new document at that address, as another site's link or script would open it: the token is
    // still in the tab's sessionStorage
    await page.goto('about:blank');
    await page.goto(`${url}/#/diff/default/ana/${first.id}/live`);
    await waitShowing(page, '#diff-run');
    // the pickers show the snapshot list, asked for with the diff's own request in the old page: had
    // the page asked for the diff, that request would be sent by now
    const pickerA = page.locator('select').first();
    await until(async () => (await pickerA.inputValue()) === first.id);
    // and the address changed inside the page (the hash set by a script or a link): no diff either;
    // the page's list, asked for again for the new route, says its requests for it were sent
    for (const [a, b] of [
      ['live', 'live'],
      [first.id, 'live'],
    ]) {
      const lists = requests.filter((u) => u.startsWith(`${url}/v1/agents/ana/snapshots?`)).length;
      await page.goto(`${url}/#/diff/default/ana/${a}/${b}`);
      await until(
        () => requests.filter((u) => u.startsWith(`${url}/v1/agents/ana/snapshots?`)).length > lists,
      );
      await waitShowing(page, '#diff-run');
      assert.match((await page.textContent('#diff-start')) ?? '', /live memory under its write gate/);
    }
    assert.deepEqual(diffRequests(), [], 'the page asked for no diff');
    assert.equal(await page.locator('#diff-tables').count(), 0);
    assert.equal(diffs(), before, 'the daemon served no diff');
    // the operator's click starts it
    await page.click('#diff-run');
    await waitShowing(page, '#diff-tables tr[data-table="long_term.memories"]');
    assert.equal(diffRequests().length, 1);
    await until(() => diffs() === before + 1);
    // a pick in the page is a click of its own: the new pair is diffed at once
    await page.locator('select').nth(1).selectOption(metas[0]!.id);
    await until(() => diffRequests().length === 2);
    await waitShowing(page, '#diff-tables');
    assert.equal(await page.locator('#diff-run').count(), 0);
    // a Ctrl-click opens the diff in another tab and leaves this one where it was: the mark it made is
    // never taken by a later change of this tab's address to that diff (a review, stop 51)
    await page.goto(`${url}/#/agent/default/ana`);
    await page.check(`#timeline tr[data-id="${first.id}"] input[name="pick-a"]`);
    await page.check(`#timeline tr[data-id="${metas[0]!.id}"] input[name="pick-b"]`);
    const href = (await page.getAttribute('#diff-link', 'href'))!;
    const opened = context.waitForEvent('page');
    await page.click('#diff-link', { modifiers: ['Control'] });
    await (await opened).close();
    await page.goto(`${url}/#/`);
    await page.goto(`${url}/${href.replace(/^.*#/, '#')}`);
    await waitShowing(page, '#diff-run');
    assert.equal(diffRequests().length, 2, 'no diff from the mark the Ctrl-click left');
    // nor when the tab leaves and comes to that diff in one go: both changes of address are made before
    // the page handles the first (stop 63: it judged each by where the tab was by then)
    await page.goto(`${url}/#/agent/default/ana`);
    await page.check(`#timeline tr[data-id="${first.id}"] input[name="pick-a"]`);
    await page.check(`#timeline tr[data-id="${metas[0]!.id}"] input[name="pick-b"]`);
    const again = context.waitForEvent('page');
    await page.click('#diff-link', { modifiers: ['Control'] });
    await (await again).close();
    await page.evaluate(
      `location.hash = '#/'; location.hash = ${JSON.stringify(href.replace(/^.*#/, '#'))};`,
    );
    await waitShowing(page, '#diff-run');
    assert.equal(diffRequests().length, 2, 'no diff from the mark, two changes at once');
  } finally {
    await context.close();
  }
});

test('a huge patch: the API cuts it at 1 MiB and says so; the diff page draws a bounded number of its lines and counts the rest', async () => {
  const first = metas[metas.length - 1]!;
  const big = join(memdir, 'huge.md');
  // 60,000 added lines, 1.6 MB of patch
  writeFileSync(
    big,
    Array.from({ length: 60_000 }, (_, i) => `added line ${i} ${'y'.repeat(12)}\n`).join(''),
  );
  const { context, page } = await open();
  try {
    const r = await fetch(`${url}/v1/agents/ana/diff?a=${first.id}&b=live&detail=true`, {
      headers: { authorization: `Bearer ${READ_TOKEN}` },
    });
    assert.equal(r.status, 200);
    const d = (await r.json()) as {
      files: Array<{ path: string; patch?: string; patch_truncated?: boolean; patch_bytes?: number }>;
    };
    const huge = d.files.find((f) => f.path === 'huge.md')!;
    assert.equal(huge.patch_truncated, true);
    assert.ok(Buffer.byteLength(huge.patch!) <= 1024 * 1024);
    assert.ok(huge.patch_bytes! > 1_500_000, String(huge.patch_bytes));
    const shownLines = huge.patch!.split('\n').length - 1;
    await login(page, READ_TOKEN);
    await page.goto(`${url}/#/diff/default/ana/${first.id}/live`);
    await page.click('#diff-run'); // opened by its address: the diff waits for the button
    await waitShowing(page, '#diff details.file');
    const file = page.locator('#diff details.file', { hasText: 'huge.md' });
    assert.equal(await file.locator('pre.patch span').count(), 2000);
    assert.equal(
      (await file.locator('.patch-more').textContent())?.trim(),
      `… ${shownLines - 2000} more lines not shown`,
    );
    assert.match(
      (await file.locator('.patch-cut').textContent()) ?? '',
      /the patch is cut: the API sends the first 1024(\.0)? KiB of 1\.\d MiB \(60000 lines added, 0 removed in all\)/,
    );
  } finally {
    await context.close();
    rmSync(big);
  }
});

test('the memory browser opens tables named `x/secret`, `..`, `.` and the empty name: no rows hidden from it', async () => {
  const names = ['x/secret', '..', '.', ''];
  const db = new Database(join(sqliteDir, 'long_term.sqlite'));
  for (const [i, name] of names.entries()) {
    db.exec(`CREATE TABLE "${name}" (v TEXT)`);
    db.prepare(`INSERT INTO "${name}" VALUES (?)`).run(`kept from view ${i}`);
  }
  db.close();
  const snap = await snapshotter.snapshot({ agentId: 'ana', label: 'odd table names', createdBy: 'cli' });
  const { context, page } = await open();
  try {
    await login(page, READ_TOKEN);
    await page.goto(`${url}/#/snapshot/default/ana/${snap.id}`);
    await page.click('#browser-tree button[data-path="sqlite"]');
    await page.click('#browser-tree button[data-path="sqlite/long_term"]');
    await page.locator('#browser-tree button[data-path="sqlite/long_term/memories"]').waitFor();
    const listed = await page
      .locator('#browser-tree button')
      .evaluateAll((bs) => bs.map((b) => b.getAttribute('data-path')));
    for (const [i, seg] of ['x%2Fsecret', '%2E%2E', '%2E', '%'].entries()) {
      const path = `sqlite/long_term/${seg}`;
      assert.ok(listed.includes(path), `${path} in ${listed.join(' ')}`);
      await page.click(`#browser-tree button[data-path="${path}"]`);
      await page.locator('#table-rows td', { hasText: `kept from view ${i}` }).waitFor();
      assert.equal(await page.textContent('#browser-content h3 code'), path);
    }
    assert.equal(
      await page.locator('#browser-tree button[data-path="sqlite/long_term/%"]').textContent(),
      '⟨empty name⟩',
    );
  } finally {
    await context.close();
    const live = new Database(join(sqliteDir, 'long_term.sqlite'));
    for (const name of names) live.exec(`DROP TABLE "${name}"`);
    live.close();
  }
});

test('bidi and invisible characters from memory are marks in every view: components, restore preview, file path, crumbs and contents, table, columns, rows, diff (stop 51)', async () => {
  const R = '\u202E';
  const I = '\u2066';
  const odd = `${R}x${I}`; // in every name and value below
  const shown = '⟨U+202E⟩x⟨U+2066⟩';
  const dir = `d${odd}`;
  const file = `f${odd}.md`;
  const table = `t${odd}`;
  const column = `c${odd}`;
  const dreamRun = join(sqliteDir, 'dream_run.json');
  const dreamBefore = readFileSync(dreamRun, 'utf8');
  const before = (await snapshotter.list('ana'))[0]!;
  mkdirSync(join(memdir, dir));
  writeFileSync(join(memdir, dir, file), `# Head ${odd}\n\nline ${odd}\n\tindented ${odd}\n`);
  const db = new Database(join(sqliteDir, 'long_term.sqlite'));
  db.exec(`CREATE TABLE "${table}" ("${column}" TEXT)`);
  db.prepare(`INSERT INTO "${table}" VALUES (?)`).run(`v${odd}`);
  db.close();
  writeFileSync(dreamRun, `${JSON.stringify({ run_id: `dream-${odd}`, finished_at_ms: 1, status: 'ok' })}\n`);
  const snap = await snapshotter.snapshot({ agentId: 'ana', label: 'bidi', createdBy: 'cli' });
  /** The text of `selector`: it holds the marks and neither raw character. */
  const marked = async (page: Page, selector: string, ...want: string[]) => {
    const text = (await page.textContent(selector)) ?? '';
    for (const w of want) assert.ok(text.includes(w), `${selector} shows ${w}: ${text.slice(0, 500)}`);
    assert.ok(!text.includes(R) && !text.includes(I), `${selector} holds a raw U+202E or U+2066: ${text}`);
  };
  const { context, page } = await open();
  try {
    await login(page, WRITE_TOKEN);
    await page.goto(`${url}/#/snapshot/default/ana/${snap.id}`);
    // the components table, the restore preview's rows per table
    await page.locator('#components tbody tr', { hasText: `t${shown}` }).waitFor();
    await marked(page, '#components', `t${shown}`);
    await page.click('#restore-preview');
    await waitShowing(page, '#restore-report');
    await marked(page, '#restore-report', `t${shown}: 1 → 1 rows`);
    // a folder, its crumb, a file: path, markdown and plain text (line ends and tabs kept)
    await page.click('#browser-tree button[data-path="memdir"]');
    await page.click(`#browser-tree button[data-path="memdir/${dir}"]`);
    await page.click(`#browser-tree button[data-path="memdir/${dir}/${file}"]`);
    await page.locator('#browser-content .markdown h3').waitFor();
    await marked(page, '#browser .crumbs', `d${shown}`);
    await marked(page, '#browser-content h3 code', `memdir/d${shown}/f${shown}.md`);
    await marked(page, '#browser-content .markdown', `Head ${shown}`, `line ${shown}`);
    await page.check('#browser-content input[type=checkbox]');
    assert.equal(
      await page.textContent('#browser-content pre.file-text'),
      `# Head ${shown}\n\nline ${shown}\n\tindented ${shown}\n`,
    );
    // a table: its path, column and row value
    await page.click('#browser .crumbs button:text("/")');
    await page.click('#browser-tree button[data-path="sqlite"]');
    await page.click('#browser-tree button[data-path="sqlite/long_term"]');
    await page.click(`#browser-tree button[data-path="sqlite/long_term/${table}"]`);
    await waitShowing(page, '#table-rows tbody tr');
    await marked(page, '#browser-content h3 code', `sqlite/long_term/t${shown}`);
    await marked(page, '#table-rows thead', `c${shown}`);
    await marked(page, '#table-rows tbody', `v${shown}`);
    // the diff from the snapshot before: the table, the file's patch and the state
    await page.goto(`${url}/#/diff/default/ana/${before.id}/${snap.id}`);
    await page.click('#diff-run');
    await page.locator('#diff-tables tr', { hasText: `t${shown}` }).waitFor();
    await marked(page, '#diff', `t${shown}`, `+line ${shown}`, `"run_id": "dream-${shown}"`, `f${shown}.md`);
    assert.deepEqual(dialogs, []);
  } finally {
    await context.close();
    rmSync(join(memdir, dir), { recursive: true });
    const live = new Database(join(sqliteDir, 'long_term.sqlite'));
    live.exec(`DROP TABLE "${table}"`);
    live.close();
    writeFileSync(dreamRun, dreamBefore);
  }
});

test('a folder of 2,500 files: the memory browser asks the API a page of 1,000 entries at a time, says how many more, and fetches the next page on request', async () => {
  const many = join(memdir, 'many');
  mkdirSync(many);
  for (let i = 0; i < 2500; i++) writeFileSync(join(many, `f${String(i).padStart(4, '0')}.md`), `${i}\n`);
  const { context, page } = await open();
  // every answer of `ls` of the folder: what the page asked (limit, cursor) and what came
  const pages: { limit: string | null; cursor: string | null; entries: number; next?: string }[] = [];
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (!u.pathname.endsWith('/ls') || u.searchParams.get('path') !== 'memdir/many') return;
    void r.json().then((b: { entries: unknown[]; next_cursor?: string }) =>
      pages.push({
        limit: u.searchParams.get('limit'),
        cursor: u.searchParams.get('cursor'),
        entries: b.entries.length,
        ...(b.next_cursor !== undefined ? { next: b.next_cursor } : {}),
      }),
    );
  });
  try {
    const snap = await snapshotter.snapshot({ agentId: 'ana', label: 'many files', createdBy: 'cli' });
    await login(page, READ_TOKEN);
    await page.goto(`${url}/#/snapshot/default/ana/${snap.id}`);
    await page.click('#browser-tree button[data-path="memdir"]');
    await page.click('#browser-tree button[data-path="memdir/many"]');
    const more = page.locator('#browser-tree .tree-more');
    await more.waitFor();
    assert.equal(await page.locator('#browser-tree li.entry').count(), 1000);
    assert.match((await more.textContent()) ?? '', /… 1500 more entries not shown\s*show 1000 more/);
    await until(() => pages.length === 1);
    assert.equal(pages[0]!.limit, '1000');
    assert.equal(pages[0]!.cursor, null);
    assert.equal(pages[0]!.entries, 1000, 'the API sent one page, not the folder');
    await more.locator('button').click();
    await page.locator('#browser-tree .tree-more', { hasText: '… 500 more entries' }).waitFor();
    assert.equal(await page.locator('#browser-tree li.entry').count(), 2000);
    await page.locator('#browser-tree button[data-path="memdir/many/f1999.md"]').waitFor();
    await until(() => pages.length === 2);
    assert.deepEqual(
      [pages[1]!.limit, pages[1]!.cursor, pages[1]!.entries],
      ['1000', pages[0]!.next!, 1000],
      '"show more" asked the API for the page after the first',
    );
    await page.click('#browser-tree .tree-more button:text("show 500 more")');
    await page.locator('#browser-tree button[data-path="memdir/many/f2499.md"]').waitFor();
    assert.equal(await page.locator('#browser-tree li.entry').count(), 2500);
    assert.equal(await more.count(), 0);
    await until(() => pages.length === 3);
    assert.deepEqual(
      [pages[2]!.cursor, pages[2]!.entries, pages[2]!.next],
      [pages[1]!.next!, 500, undefined],
    );
    // the entries drawn are the folder's, each once, in the API's order
    const drawn = await page
      .locator('#browser-tree li.entry button')
      .evaluateAll((bs) => bs.map((b) => b.getAttribute('data-path')));
    assert.deepEqual(
      drawn,
      Array.from({ length: 2500 }, (_, i) => `memdir/many/f${String(i).padStart(4, '0')}.md`),
    );
  } finally {
    await context.close();
    rmSync(many, { recursive: true });
  }
});

test("a pin's note is shown in the timeline, its chart and the snapshot page: cut, escaped (controls, bidi), whole in the tooltip", async () => {
  const id = metas[2]!.id; // the oldest
  await snapshotter.pin('ana', undefined, id, 'a note');
  await snapshotter.pin('ana', undefined, metas[1]!.id);
  // a note stored before notes were checked (or by another program): controls and a right-to-left
  // override, longer than what is drawn
  const note = `kept for \u202Eexe.txt\u0007 the audit\nof march ${'and more words '.repeat(4)}`;
  const pinFile = join(storeRoot, 'repository', 'pins', id);
  readFileSync(pinFile); // the pin is there
  writeFileSync(pinFile, `${JSON.stringify({ pinned_at_ms: Date.now(), note })}\n`);
  const escaped = note.replace('\u202E', '⟨U+202E⟩').replace('\u0007', '⟨U+0007⟩').replace('\n', '⟨U+000A⟩');
  // 39 characters of the note, then …; its three controls each drawn as a mark
  const cut = `${'kept for ⟨U+202E⟩exe.txt⟨U+0007⟩ the audit⟨U+000A⟩of march a'}…`;
  const { context, page } = await open();
  try {
    await login(page, READ_TOKEN);
    await page.goto(`${url}/#/agent/default/ana`);
    const inTable = page.locator(`#timeline tr[data-id="${id}"] .pin-note`);
    await inTable.waitFor();
    assert.equal(await inTable.textContent(), cut);
    assert.equal(await inTable.getAttribute('title'), `pin note: ${escaped}`);
    assert.equal(
      await page
        .locator(`#timeline-chart a[data-id="${id}"] title`)
        .textContent()
        .then((t) => t?.endsWith(`pinned: ${cut}`)),
      true,
    );
    // a snapshot pinned without a note shows its flag and no note
    await page.locator(`#timeline tr[data-id="${metas[1]!.id}"] .flag`, { hasText: 'pinned' }).waitFor();
    assert.equal(await page.locator(`#timeline tr[data-id="${metas[1]!.id}"] .pin-note`).count(), 0);
    assert.equal(await page.locator('#timeline .pin-note').count(), 1);
    await page.goto(`${url}/#/snapshot/default/ana/${id}`);
    const onPage = page.locator('dl.meta .pin-note');
    await onPage.waitFor();
    assert.equal(await onPage.textContent(), cut);
    assert.equal(await onPage.getAttribute('title'), `pin note: ${escaped}`);
    const text = (await page.textContent('body')) ?? '';
    assert.ok(!/[\u202e\u0007]/.test(text), 'no control or bidi character reaches the page as it is');
  } finally {
    await context.close();
    await snapshotter.unpin('ana', undefined, id);
    await snapshotter.unpin('ana', undefined, metas[1]!.id);
  }
});

test('CSRF: a page of another origin cannot make the daemon write, or work, with the console logged in beside it (403 CROSS_SITE)', async () => {
  const target = `${url}/v1/agents/ana/snapshots`;
  const evil = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(
      req.url === '/form'
        ? // a form post carries no custom header: a text/plain body shaped like JSON
          `<form method="POST" action="${target}" enctype="text/plain"><input name='{"label":"csrf","x":"' value='"}'></form><script>document.forms[0].submit()</script>`
        : '<p>another site</p>',
    );
  });
  await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
  const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
  const count = (await snapshotter.list('ana')).length;
  const refused = (what: string) => daemonLog.split(`${what} 403`).length;
  const refusedBefore = refused('POST /v1/agents/ana/snapshots');
  const diffBefore = refused('GET /v1/agents/ana/diff?a=…&b=…&detail=…');
  const verifyBefore = refused(`GET /v1/agents/ana/snapshots/${metas[0]!.id}/verify?deep=…`);
  const { context, page } = await open();
  try {
    await login(page, WRITE_TOKEN); // the console is logged in, in the same browser context
    const other = await context.newPage();
    await other.goto(`${evilUrl}/form`);
    await other.waitForURL(target);
    assert.match((await other.textContent('body')) ?? '', /CROSS_SITE/);
    // a script of that site: a JSON post needs a preflight the daemon never allows; a simple one
    // reaches it and is refused as cross-site, its answer not even readable (Cross-Origin-Resource-Policy)
    await other.goto(`${evilUrl}/page`);
    const outcomes = await other.evaluate(async (to) => {
      const out: string[] = [];
      const tries: RequestInit[] = [
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"label":"csrf"}' },
        { method: 'POST', mode: 'no-cors', body: '{"label":"csrf"}' },
      ];
      for (const init of tries) {
        try {
          out.push(String((await fetch(to, { ...init, credentials: 'include' })).status));
        } catch {
          out.push('blocked');
        }
      }
      return out;
    }, target);
    assert.deepEqual(outcomes, ['blocked', 'blocked']);
    assert.equal((await snapshotter.list('ana')).length, count, 'nothing was written');
    // the form and the simple post reached the daemon and were refused as cross-site (its log says so)
    await until(() => refused('POST /v1/agents/ana/snapshots') - refusedBefore >= 2);
    // work without writing: a diff against live memory (which closes the agent's write gate) and a
    // deep verify, as simple GETs: refused before any of it runs, whatever the token setting
    await other.evaluate(
      async (paths) => {
        for (const p of paths) await fetch(p, { mode: 'no-cors' }).catch(() => undefined);
      },
      [
        `${url}/v1/agents/ana/diff?a=latest&b=live&detail=true`,
        `${url}/v1/agents/ana/snapshots/${metas[0]!.id}/verify?deep=true`,
      ],
    );
    await until(() => refused('GET /v1/agents/ana/diff?a=…&b=…&detail=…') - diffBefore >= 1);
    await until(
      () => refused(`GET /v1/agents/ana/snapshots/${metas[0]!.id}/verify?deep=…`) - verifyBefore >= 1,
    );
  } finally {
    await context.close();
    await new Promise((r) => evil.close(r));
  }
});

test('live progress: a snapshot started elsewhere appears in the activity panel with its result', async () => {
  const { context, page } = await open();
  try {
    await login(page, WRITE_TOKEN);
    await waitShowing(page, '#activity .ok');
    const res = await fetch(`${url}/v1/agents/ana/snapshots`, {
      method: 'POST',
      headers: { authorization: `Bearer ${WRITE_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ label: 'from-the-api' }),
    });
    assert.equal(res.status, 201);
    const meta = (await res.json()) as SnapshotMeta;
    // earlier tests' snapshots may already be listed as ended: wait for this one by its id
    const done = page.locator('#activity-recent li.ended.ok[data-op="snapshot"]', {
      hasText: `snapshot_id=${meta.id}`,
    });
    await done.waitFor();
    assert.match((await done.textContent()) ?? '', /label=from-the-api/);
  } finally {
    await context.close();
  }
});

test('live progress: a snapshot the CLI takes shows while it runs, and its result when it ends', async (t) => {
  const { context, page } = await open();
  try {
    await login(page, READ_TOKEN);
    await waitShowing(page, '#activity .ok');
    // a memory writer mid-batch: the CLI snapshot holds the agent lock and waits in its capture step
    const writer = startFixture(t, 'hold-gate.ts', [join(root, 'state'), 'ana']);
    await writer.ready;
    const cli = spawn(
      process.execPath,
      [BIN, 'snapshot', '--agent', 'ana', '--label', 'from-the-cli', '--json', ...storeFlags],
      {
        cwd: REPO,
        env: { ...process.env, NEXO_MEMORY_STORE_FORMAT: 'repository' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    cli.stdout!.on('data', (c) => {
      out += c;
    });
    const cliExit = new Promise<number | null>((r) => cli.once('exit', r));
    const running = page.locator('#activity-running li.running[data-op="snapshot"]');
    await running.waitFor();
    assert.match(
      (await running.textContent()) ?? '',
      new RegExp(`snapshot ana .*other process.*pid ${cli.pid}`),
    );
    await writer.killGroup(); // the batch ends: the snapshot goes on
    assert.equal(await cliExit, 0);
    const id = (JSON.parse(out) as { id?: string; snapshot_id?: string }).id;
    assert.ok(id, out);
    const done = page.locator(`#activity-recent li.ended.ok[data-op="snapshot"]`, {
      hasText: `snapshot_id=${id}`,
    });
    await done.waitFor();
    assert.match((await done.textContent()) ?? '', /other process/);
    assert.equal(await running.count(), 0, 'no longer running');
  } finally {
    await context.close();
  }
});

test('a snapshot page opened as latest acts on the snapshot it shows, not on what latest means when a button is clicked', async () => {
  const { context, page, requests } = await open();
  try {
    await login(page, WRITE_TOKEN);
    const shown = (await snapshotter.list('ana'))[0]!; // newest first
    await page.goto(`${url}/#/snapshot/default/ana/latest`);
    await waitShowing(page, '#components table');
    assert.equal(await page.textContent('#snapshot-id'), shown.id, 'the page names the id it loaded');
    // another snapshot is taken meanwhile: `latest` is now another one
    const res = await fetch(`${url}/v1/agents/ana/snapshots`, {
      method: 'POST',
      headers: { authorization: `Bearer ${WRITE_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ label: 'newer than the page' }),
    });
    assert.equal(res.status, 201);
    const newer = (await res.json()) as SnapshotMeta;
    assert.notEqual(newer.id, shown.id);
    await page.click('#verify');
    await waitShowing(page, '#verify-report');
    await page.click('#restore-preview');
    await waitShowing(page, '#restore-report');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    assert.equal(download.suggestedFilename(), `${shown.id}.tar.zst`);
    assert.equal(await page.getAttribute('#diff-live', 'href'), `#/diff/default/ana/${shown.id}/live`);
    const api = requests
      .filter((u) => u.startsWith(`${url}/v1/agents/ana/snapshots/`))
      .map((u) => new URL(u).pathname);
    // one request named latest: the page's load of its metadata; every other one names the id it got
    assert.deepEqual(
      api.filter((p) => !p.startsWith(`/v1/agents/ana/snapshots/${shown.id}/`)),
      ['/v1/agents/ana/snapshots/latest'],
    );
    for (const action of ['verify', 'restore', 'export', 'ls'])
      assert.ok(api.includes(`/v1/agents/ana/snapshots/${shown.id}/${action}`), action);
  } finally {
    await context.close();
  }
});

test('the fleet alerts a damaged snapshot once a verify finds it (last: it damages the store)', async () => {
  // flip one byte in the middle of every pack file of the repository
  const packs = join(root, 'state', 'repository', 'packs');
  for (const dir of readdirSync(packs))
    for (const name of readdirSync(join(packs, dir))) {
      const file = join(packs, dir, name);
      const bytes = readFileSync(file);
      const i = bytes.length >> 1;
      bytes[i] = bytes[i]! ^ 0xff;
      writeFileSync(file, bytes);
    }
  const newest = (await snapshotter.list('ana'))[0]!;
  const v = await fetch(`${url}/v1/agents/ana/snapshots/${newest.id}/verify`, {
    headers: { authorization: `Bearer ${READ_TOKEN}` },
  });
  assert.equal(v.status, 200);
  assert.equal(((await v.json()) as { status: string }).status, 'damaged');
  const { context, page } = await open();
  try {
    await login(page, READ_TOKEN);
    const row = page.locator('#fleet tr[data-agent="ana"]');
    await row.waitFor();
    assert.equal(await row.getAttribute('class'), 'alerting');
    assert.match(
      (await row.locator('.alerts').textContent()) ?? '',
      new RegExp(`${newest.id} verified damaged`),
    );
  } finally {
    await context.close();
  }
});
