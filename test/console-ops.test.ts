// The web console of a daemon that allows restore and runs a schedule, in a real browser (the Debian
// chromium package, headless, driven by playwright-core): the restore button restores the live memory
// for real, and closes with the environment's gate; the fleet shows the alerts of a late schedule, a
// failed scheduled run and a damaged snapshot, each produced for real; the timeline's kinds, flags and
// gc preview. One daemon (in this process: the schedule needs an interval under the config's 60 s
// minimum) and one browser for the whole file.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import type { Browser } from 'playwright-core';
import { bytes, shownName } from '../console/src/format.js';
import { gitEnv, type SampleAgentPaths } from '../scripts/sample-agent.js';
import { generateIdentity } from '../src/crypto/age.js';
import { generateSigningKey, LocalSnapshotter, parseSigningKey } from '../src/index.js';
import { newSnapshotId } from '../src/model/ids.js';
import type { SnapshotMeta } from '../src/model/types.js';
import { Daemon } from '../src/server/daemon.js';
import { launchBrowser, login, newPage, waitShowing } from './helpers/browser.js';
import { ensureConsoleBuilt } from './helpers/built-cli.js';
import { copySampleAgent, runTs, startFixture } from './helpers/env.js';
import { until } from './helpers/wait.js';

const WRITE_TOKEN = 'ops-write-token-0123456789abc';
const READ_TOKEN = 'ops-read-token-0123456789abcd';
const GATE = 'NEXO_MEMORY_RESTORE_ALLOW';
const HOUR = 3_600_000;
const SMALL = { files: 3, commits: 2, memories: 20, embeddings: 6, concepts: 4, compactions: 2 };
const NOTE_V1 = '# Plans\n\nthe first plan\n';
const NOTE_V2 = '# Plans\n\nthe second plan, after the edit\n';
// what an import before stop 44 stored from a forged bundle: shown by the console, never as it is
const HOSTILE_LABEL = 'safe \u202Eexe.txt\u202C label\nsecond line \u001b[31mRED';
const HOSTILE_BY = 'cli\u001b[31m\u2028x';

let root: string;
let bea: SampleAgentPaths;
let s: LocalSnapshotter;
let daemon: Daemon;
let url: string;
let browser: Browser;
let s1: SnapshotMeta;
let hostile: SnapshotMeta;
let s1Rows: number;
let editedRows: number;
let gateBefore: string | undefined;
let daemonLog = '';
const dialogs: string[] = [];

const rowsOf = (sqliteDir: string): number => {
  const db = new Database(join(sqliteDir, 'long_term.sqlite'), { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM memories').get() as { n: number }).n;
  } finally {
    db.close();
  }
};
const headOf = (memdir: string): string =>
  execFileSync('git', ['rev-parse', 'HEAD'], { cwd: memdir, env: gitEnv }).toString().trim();
const commitNote = (text: string, message: string, file = 'plans.md'): void => {
  writeFileSync(join(bea.memdir, file), text);
  execFileSync('git', ['add', '-A'], { cwd: bea.memdir, env: gitEnv });
  execFileSync('git', ['commit', '-qm', message], { cwd: bea.memdir, env: gitEnv });
};
const api = (path: string, token: string, init: { method?: string; body?: unknown } = {}) =>
  fetch(`${url}${path}`, {
    method: init.method ?? 'GET',
    headers: {
      authorization: `Bearer ${token}`,
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });

before(async () => {
  ensureConsoleBuilt();
  root = mkdtempSync(join(tmpdir(), 'nexo-console-ops-'));
  bea = copySampleAgent(root, 'bea', SMALL);
  const late = copySampleAgent(root, 'late', SMALL);
  const gone = copySampleAgent(root, 'gone', SMALL);
  const roots = { stateRoot: bea.stateRoot, memdirRoot: bea.memdirRoot, sqliteRoot: bea.sqliteRoot };
  s = new LocalSnapshotter({ ...roots, store: 'repository' });

  // bea: a pinned snapshot, then an edit of a file and of a table, and snapshots of every automatic kind
  commitNote(NOTE_V1, 'first plan');
  s1 = await s.snapshot({ agentId: 'bea', label: 'before the edit', createdBy: 'cli' });
  await s.pin('bea', 'default', s1.id);
  s1Rows = rowsOf(bea.sqliteDir);
  commitNote(NOTE_V2, 'second plan');
  const db = new Database(join(bea.sqliteDir, 'long_term.sqlite'));
  const insert = db.prepare(
    'INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)',
  );
  for (let i = 0; i < 5; i++) insert.run(Date.now(), 'fact', `learned after the plan ${i}`, 1);
  db.close();
  editedRows = rowsOf(bea.sqliteDir);
  await s.snapshot({ agentId: 'bea', label: 'before a dream', createdBy: 'auto-pre-dream' });
  await s.snapshot({ agentId: 'bea', label: 'before a tool', createdBy: 'auto-pre-mutating-tool' });
  await s.snapshot({ agentId: 'bea', label: 'by the agent itself', createdBy: 'tool' });
  // a 0.2 bundle of the same agent beside the repository, encrypted: the listing holds both
  await new LocalSnapshotter({ ...roots, store: 'bundles' }).snapshot({
    agentId: 'bea',
    label: 'an encrypted bundle',
    encrypt: [generateIdentity().recipient],
  });

  // old: a snapshot an earlier version imported with a label and a creator no snapshot may have (import
  // refuses them now): stored from a sound bundle with that metadata, as that import stored it
  copySampleAgent(root, 'old', SMALL);
  const elsewhere = copySampleAgent(join(root, 'elsewhere'), 'old', SMALL);
  const plain = await new LocalSnapshotter({
    stateRoot: elsewhere.stateRoot,
    memdirRoot: elsewhere.memdirRoot,
    sqliteRoot: elsewhere.sqliteRoot,
    store: 'bundles',
  }).snapshot({ agentId: 'old', label: 'plain' });
  {
    const { originOf, stageBundle, storeStaged } = await import('../src/snapshotter/ingest.js');
    const staging = mkdtempSync(join(root, 'staging-'));
    const staged = await stageBundle(plain.bundle_path, staging);
    const repo = await s.repository.openForWriting(s.recipients);
    const stored = await storeStaged(
      s.repository,
      repo,
      staged,
      {
        id: newSnapshotId(),
        agentId: 'old',
        tenant: 'default',
        label: HOSTILE_LABEL,
        createdAtMs: plain.created_at_ms,
        createdBy: HOSTILE_BY,
      },
      originOf(staged, 'import'),
      undefined,
    );
    rmSync(staging, { recursive: true, force: true });
    hostile = (await s.list('old')).find((m) => m.id === stored.id)!;
    assert.equal(hostile.label, HOSTILE_LABEL);
  }

  // late: its last snapshot was taken two hours ago; it is scheduled every hour
  const r = await runTs(join('test', 'fixtures', 'snapshot-earlier.ts'), [
    ...[roots.stateRoot, roots.memdirRoot, roots.sqliteRoot],
    'late',
    String(2 * HOUR),
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(Date.now() - (JSON.parse(r.stdout) as SnapshotMeta).created_at_ms >= 2 * HOUR);
  // gone: its database was overwritten: every scheduled run of it fails
  writeFileSync(join(gone.sqliteDir, 'long_term.sqlite'), Buffer.alloc(8192, 7));
  void late;

  gateBefore = process.env[GATE];
  process.env[GATE] = 'true';
  daemon = new Daemon({
    snapshotter: new LocalSnapshotter({
      ...roots,
      store: 'repository',
      signingKey: parseSigningKey(generateSigningKey().secretKey),
    }),
    listen: '127.0.0.1:0',
    token: WRITE_TOKEN,
    readToken: READ_TOKEN,
    allowRestore: true,
    schedule: [
      { agentId: 'late', tenant: 'default', intervalMs: HOUR },
      { agentId: 'gone', tenant: 'default', intervalMs: 3000 },
    ],
    retention: {
      policy: { keepCount: 1, keepDaily: 0, keepWeekly: 0, keepMonthly: 0, maxAgeDays: 0 },
      intervalMs: HOUR,
    },
    log: (line) => {
      daemonLog += `${line}\n`;
    },
  });
  url = (await daemon.start()).url;
  // The worker's first sweep runs at start; this waits for it (nothing is beyond the policy yet), so
  // the snapshots the tests take are only ever previewed, never removed.
  const gc = await api('/v1/gc', WRITE_TOKEN, { method: 'POST', body: {} });
  assert.equal(gc.status, 200);
  assert.equal(((await gc.json()) as { bundles_deleted: number }).bundles_deleted, 0);
  // old's second snapshot, after that sweep: under keep-count 1 the next gc would remove the first
  await s.snapshot({ agentId: 'old', label: 'newer' });
  browser = await launchBrowser();
});

after(async () => {
  if (process.env.NEXO_TEST_VERBOSE) process.stderr.write(daemonLog);
  await browser?.close();
  await daemon?.stop();
  if (gateBefore === undefined) delete process.env[GATE];
  else process.env[GATE] = gateBefore;
  if (root) rmSync(root, { recursive: true, force: true, maxRetries: 5 });
});

test('restore: the write token previews, confirms with the agent name, and the live memory is the snapshot again', async () => {
  const { context, page } = await newPage(browser, dialogs);
  try {
    await login(page, url, WRITE_TOKEN);
    await page.goto(`${url}/#/snapshot/default/bea/${s1.id}`);
    await waitShowing(page, '#restore-form');
    assert.equal((await page.textContent('#restore-form h2'))?.trim(), 'Restore agent bea to this snapshot');
    assert.equal(await page.isDisabled('#restore'), true, 'not before the name is typed');

    // the dry run says what would change, and changes nothing
    await page.click('#restore-preview');
    await waitShowing(page, '#restore-report');
    const preview = (await page.textContent('#restore-report')) ?? '';
    assert.match(preview, /A restore would change/);
    assert.match(preview, new RegExp(`memories: ${editedRows} → ${s1Rows} rows`));
    assert.equal(readFileSync(join(bea.memdir, 'plans.md'), 'utf8'), NOTE_V2);
    assert.equal(rowsOf(bea.sqliteDir), editedRows);

    // the confirmation names the agent: another name leaves the button disabled
    await page.fill('#restore-confirm', 'be');
    assert.equal(await page.isDisabled('#restore'), true);
    await page.fill('#restore-confirm', 'bea');
    assert.equal(await page.isDisabled('#restore'), false);
    await page.click('#restore');
    const done = page.locator('#restore-report', { hasText: `Restored from ${s1.id}` });
    await done.waitFor();

    // the live memory on disk is the snapshot's: the memdir file and HEAD, the table's rows
    assert.equal(readFileSync(join(bea.memdir, 'plans.md'), 'utf8'), NOTE_V1);
    assert.equal(headOf(bea.memdir), s1.git_oid);
    assert.equal(rowsOf(bea.sqliteDir), s1Rows);
    // what it replaced is kept in the pre-restore snapshot the report names
    const pre = (await s.list('bea')).find((m) => m.created_by === 'auto-pre-restore');
    assert.ok(pre, 'a pre-restore snapshot was taken');
    assert.match((await done.textContent()) ?? '', new RegExp(`pre-restore snapshot ${pre.id}`));
    // live progress: the restore's result on the activity panel
    await page
      .locator('#activity-recent li.ended.ok[data-op="restore"]', { hasText: `from=${s1.id} dry_run=false` })
      .waitFor();
    assert.deepEqual(dialogs, []);
  } finally {
    await context.close();
  }
});

test('restore: a read token sees no restore control on a server that allows restore, and the API refuses it', async () => {
  const { context, page } = await newPage(browser, dialogs);
  try {
    await login(page, url, READ_TOKEN);
    await page.goto(`${url}/#/snapshot/default/bea/${s1.id}`);
    await waitShowing(page, '#components table');
    for (const sel of ['#restore-form', '#restore', '#restore-preview', '#download'])
      assert.equal(await page.locator(sel).count(), 0, `no ${sel}`);
    const r = await api(`/v1/agents/bea/snapshots/${s1.id}/restore`, READ_TOKEN, {
      method: 'POST',
      body: { dry_run: false },
    });
    assert.equal(r.status, 403);
  } finally {
    await context.close();
  }
});

test('restore: with the environment gate closed the button is gone, the reason shown, and the API refuses', async () => {
  const pre = (await s.list('bea')).find((m) => m.created_by === 'auto-pre-restore')!;
  delete process.env[GATE];
  const { context, page } = await newPage(browser, dialogs);
  try {
    await login(page, url, WRITE_TOKEN);
    await page.goto(`${url}/#/snapshot/default/bea/${pre.id}`);
    await waitShowing(page, '#restore-preview');
    assert.equal(await page.locator('#restore-form, #restore').count(), 0, 'no restore button');
    assert.match(
      (await page.textContent('main')) ?? '',
      /Restore is off on this server: NEXO_MEMORY_RESTORE_ALLOW is not set in the daemon environment/,
    );
    const r = await api(`/v1/agents/bea/snapshots/${pre.id}/restore`, WRITE_TOKEN, {
      method: 'POST',
      body: { dry_run: false },
    });
    assert.equal(r.status, 403);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'RESTORE_REFUSED');
    assert.equal(readFileSync(join(bea.memdir, 'plans.md'), 'utf8'), NOTE_V1, 'nothing was restored');
    assert.equal(rowsOf(bea.sqliteDir), s1Rows);
    // the preview still works: it changes nothing
    await page.click('#restore-preview');
    await waitShowing(page, '#restore-report');
    assert.match((await page.textContent('#restore-report')) ?? '', /A restore would change/);
  } finally {
    process.env[GATE] = 'true';
    await context.close();
  }
});

test('rights: a restore refused because the gate closed after the page loaded makes the console ask its rights again: the restore control goes, the reason shows', async () => {
  const { context, page } = await newPage(browser, dialogs);
  try {
    await login(page, url, WRITE_TOKEN);
    await page.goto(`${url}/#/snapshot/default/bea/${s1.id}`);
    await waitShowing(page, '#restore-form');
    delete process.env[GATE]; // the operator closes the gate; the page still shows the button
    await page.fill('#restore-confirm', 'bea');
    await page.click('#restore');
    await page.locator('p.error', { hasText: 'NEXO_MEMORY_RESTORE_ALLOW' }).waitFor();
    // the refusal made it ask /v1/rights again: no control it cannot use, the reason instead
    await page
      .locator('main p.muted', {
        hasText:
          'Restore is off on this server: NEXO_MEMORY_RESTORE_ALLOW is not set in the daemon environment',
      })
      .waitFor();
    assert.equal(await page.locator('#restore-form, #restore').count(), 0);
    assert.equal(await page.textContent('#rights'), 'read and write', 'still a write token');
    assert.equal(await page.locator('#restore-preview').count(), 1);
    assert.equal(readFileSync(join(bea.memdir, 'plans.md'), 'utf8'), NOTE_V1, 'nothing was restored');
  } finally {
    process.env[GATE] = 'true';
    await context.close();
  }
});

test('a label and a creator no snapshot may have, stored by an earlier import: the table, the chart tooltip, the gc preview and the snapshot page show their controls as marks', async () => {
  const shown = shownName(HOSTILE_LABEL);
  assert.match(shown, /⟨U\+202E⟩.*⟨U\+000A⟩.*⟨U\+001B⟩/);
  const { context, page } = await newPage(browser, dialogs);
  const raw = /[\u0000-\u001f\u202a-\u202e\u2028]/;
  try {
    await login(page, url, READ_TOKEN);
    await page.goto(`${url}/#/agent/default/old`);
    await waitShowing(page, `#timeline tr[data-id="${hostile.id}"]`);
    const row = page.locator(`#timeline tr[data-id="${hostile.id}"]`);
    assert.equal(await row.locator('td.label').textContent(), shown);
    const tip =
      (await page.locator(`#timeline-chart .mark[data-id="${hostile.id}"] title`).textContent()) ?? '';
    assert.ok(tip.includes(shown), tip);
    assert.doesNotMatch(tip, raw);
    // the retention preview: the older snapshot of two under keep-count 1
    const doomed = page.locator('#gc-preview li', { hasText: hostile.id.slice(0, 18) });
    await doomed.waitFor();
    assert.equal(await doomed.locator('.label').textContent(), shown);
    assert.doesNotMatch((await doomed.textContent()) ?? '', raw);
    await page.goto(`${url}/#/snapshot/default/old/${hostile.id}`);
    await waitShowing(page, '#snapshot-label');
    assert.equal(await page.textContent('#snapshot-label'), shown);
    assert.equal(await page.textContent('#snapshot-created-by'), `(${shownName(HOSTILE_BY)})`);
    assert.doesNotMatch((await page.textContent('main')) ?? '', raw);
  } finally {
    await context.close();
  }
});

test('fleet: a late schedule and a failed scheduled run are alerts; an agent without either has none', async () => {
  const { context, page } = await newPage(browser, dialogs);
  try {
    await login(page, url, READ_TOKEN);
    // the failed run: the page reloads the fleet when a run ends, so it shows once the first one failed
    const failed = page.locator('#fleet tr[data-agent="gone"] li.alert-schedule_failed');
    await failed.waitFor();
    assert.match(
      (await failed.textContent()) ?? '',
      /^the last scheduled run failed: .*file is not a database \(SQLITE, error id [0-9a-f]{8}\)$/,
    );
    const late = page.locator('#fleet tr[data-agent="late"]');
    assert.equal(await late.getAttribute('class'), 'alerting');
    assert.match(
      (await late.locator('li.alert-late').textContent()) ?? '',
      /^no snapshot for \d+ s \(scheduled every 3600 s\)$/,
    );
    assert.equal(await late.locator('li.alert-schedule_failed').count(), 0, 'its runs did not fail');
    assert.match((await late.locator('td').nth(3).textContent()) ?? '', /^2\.\d h ago$/);
    // bea: no schedule, nothing damaged: no alert; its pinned snapshot is counted
    const b = page.locator('#fleet tr[data-agent="bea"]');
    assert.equal(await b.getAttribute('class'), '');
    assert.equal((await b.locator('td').last().textContent())?.trim(), 'none');
    const fleet = (await (await api('/v1/fleet', READ_TOKEN)).json()) as {
      agents: Array<{ agent_id: string; snapshots: number; pins: number }>;
    };
    const row = fleet.agents.find((a) => a.agent_id === 'bea')!;
    assert.equal(row.pins, 1);
    assert.equal((await b.locator('td').nth(2).textContent())?.trim(), String(row.snapshots));
    assert.equal((await b.locator('td').nth(6).textContent())?.trim(), '1');
  } finally {
    await context.close();
  }
});

test('timeline (after the restore above): every kind and flag, snapshots taken from the page, what the next gc removes', async () => {
  const { context, page } = await newPage(browser, dialogs);
  try {
    await login(page, url, WRITE_TOKEN);
    await page.goto(`${url}/#/agent/default/bea`);
    await waitShowing(page, '#timeline tbody tr');
    const before = (await s.list('bea')).length;
    for (const label of ['from the page 1', 'from the page 2']) {
      await page.fill('#snapshot-now input', label);
      await page.click('#snapshot-now button');
      await page.locator('#timeline td.label', { hasText: label }).waitFor();
    }
    // a redacted one through the API: the page reloads its timeline when the snapshot ends
    assert.equal(
      (
        await api('/v1/agents/bea/snapshots', WRITE_TOKEN, {
          method: 'POST',
          body: { label: 'redacted', redact: true },
        })
      ).status,
      201,
    );
    await page.locator('#timeline td.label', { hasText: /^redacted$/ }).waitFor();
    const metas = await s.list('bea');
    assert.equal(metas.length, before + 3);
    assert.equal(await page.locator('#timeline tbody tr').count(), metas.length);
    assert.equal(await page.locator('#timeline-chart .mark').count(), metas.length);
    const kindOf: Record<string, string> = {
      cli: 'manual',
      api: 'manual',
      'auto-pre-dream': 'pre-dream',
      'auto-pre-restore': 'pre-restore',
      'auto-pre-mutating-tool': 'pre-mutating-tool',
      tool: 'tool',
    };
    const seen = new Set<string>();
    for (const m of metas) {
      const tr = page.locator(`#timeline tr[data-id="${m.id}"]`);
      const kind = kindOf[m.created_by ?? 'cli'] ?? 'manual';
      seen.add(kind);
      assert.equal(await tr.locator('span.kind').textContent(), kind, `${m.id} ${m.created_by}`);
      const flags = (await tr.locator('.flags .flag').allTextContents()).sort();
      const want = [
        ...(m.pinned ? ['pinned'] : []),
        ...(m.signed_by ? ['signed'] : []),
        ...(m.encrypted ? ['encrypted'] : []),
        ...(m.redactions_applied ? ['redacted'] : []),
      ].sort();
      assert.deepEqual(flags, want, `flags of ${m.label}`);
      assert.equal(
        await tr.locator('td.num').textContent(),
        bytes((m as { added_bytes?: number }).added_bytes ?? m.bundle_size_bytes),
      );
    }
    assert.deepEqual([...seen].sort(), ['manual', 'pre-dream', 'pre-mutating-tool', 'pre-restore', 'tool']);
    // each kind has its colour: the agent's own snapshots are not drawn as manual ones (stop 51)
    const colour = (kind: string) =>
      page
        .locator(`#timeline span.kind.kind-${kind}`)
        .first()
        .evaluate(
          (e) =>
            (globalThis as unknown as { getComputedStyle(x: unknown): { color: string } }).getComputedStyle(e)
              .color,
        );
    assert.notEqual(await colour('tool'), await colour('manual'));
    for (const flag of ['pinned', 'signed', 'encrypted', 'redacted'])
      assert.ok(
        (await page.locator('#timeline .flags .flag', { hasText: flag }).count()) > 0,
        `some snapshot is ${flag}`,
      );
    // what the next gc would remove: the retention dry run, in the chart and the list. A dry run skips
    // an agent whose lock another operation holds (the page's own preview, reloaded after each
    // snapshot, may be running): asked again until it is not skipped.
    type Preview = { decisions: Array<{ id: string; action: string }>; skipped?: string };
    const preview = await until(
      async () => (await (await api('/v1/agents/bea/retention', READ_TOKEN)).json()) as Preview,
      (p) => p.skipped === undefined,
    );
    const doomed = preview.decisions.filter((d) => d.action === 'delete').map((d) => d.id);
    assert.ok(doomed.length > 0, 'keep-count 1 leaves older manual snapshots to remove');
    // (the page reloads the preview after each snapshot: wait for the one after the last; one that
    // was skipped, the agent busy, shows "Not swept now" and is asked for again by reloading the page)
    await until(
      async () => {
        if ((await page.getByText('Not swept now').count()) > 0) {
          await page.reload();
          await waitShowing(page, '#timeline tbody tr');
        }
        return page.locator('#gc-preview li').count();
      },
      (n) => n === doomed.length,
    );
    assert.equal(await page.locator('#timeline-chart .doomed').count(), doomed.length);
    for (const id of doomed)
      assert.equal(await page.locator(`#timeline tr[data-id="${id}"] .doomed-key`).textContent(), 'removes');
    assert.equal(await page.locator('#timeline-chart .pin-ring').count(), 1);
    assert.ok(!doomed.includes(s1.id), 'the pinned snapshot is kept');
    // live progress of a gc: a dry run started elsewhere ends on the activity panel
    assert.equal((await api('/v1/gc', WRITE_TOKEN, { method: 'POST', body: { dry_run: true } })).status, 200);
    await page.locator('#activity-recent li.ended.ok[data-op="gc"]', { hasText: 'gc (dry run)' }).waitFor();
    assert.equal((await s.list('bea')).length, metas.length, 'a dry run removes nothing');
  } finally {
    await context.close();
  }
});

test('live progress: an API snapshot shows its phase while a memory writer holds it up, then its result', async (t) => {
  const { context, page } = await newPage(browser, dialogs);
  try {
    await login(page, url, READ_TOKEN);
    await waitShowing(page, '#activity .ok');
    // a memory writer mid-batch: the snapshot waits in its capture step until the batch ends
    const writer = startFixture(t, 'hold-gate.ts', [bea.stateRoot, 'bea']);
    await writer.ready;
    const res = api('/v1/agents/bea/snapshots', WRITE_TOKEN, {
      method: 'POST',
      body: { label: 'while a writer writes' },
    });
    const running = page.locator('#activity-running li.running[data-op="snapshot"]', {
      hasText: 'snapshot bea · api',
    });
    // started, then its phase (the capture step, where it waits for the writer)
    await running.filter({ hasText: 'capture' }).waitFor();
    assert.equal(await running.locator('progress').count(), 1);
    await writer.killGroup();
    const r = await res;
    assert.equal(r.status, 201);
    const meta = (await r.json()) as SnapshotMeta;
    await page
      .locator('#activity-recent li.ended.ok[data-op="snapshot"]', { hasText: `snapshot_id=${meta.id}` })
      .waitFor();
    assert.equal(await running.count(), 0, 'no longer running');
  } finally {
    await context.close();
  }
});

test('fleet: a damaged snapshot stays an alert after a later verify of another snapshot passes (last: it damages the store)', async () => {
  const packsDir = join(root, 'state', 'repository', 'packs');
  const packs = () =>
    new Set(
      readdirSync(packsDir).flatMap((d) => readdirSync(join(packsDir, d)).map((n) => join(packsDir, d, n))),
    );
  const { context, page } = await newPage(browser, dialogs);
  try {
    await login(page, url, WRITE_TOKEN);
    await page.goto(`${url}/#/agent/default/bea`);
    await waitShowing(page, '#timeline tbody tr');
    // a snapshot with content of its own: its new chunks are in packs no other snapshot uses
    const old = packs();
    commitNote('# Only here\n\nwhat only the damaged snapshot holds\n', 'a new file', 'only-here.md');
    await page.fill('#snapshot-now input', 'to be damaged');
    await page.click('#snapshot-now button');
    await page.locator('#timeline td.label', { hasText: 'to be damaged' }).waitFor();
    const damaged = (await s.list('bea')).find((m) => m.label === 'to be damaged')!;
    const added = [...packs()].filter((p) => !old.has(p));
    assert.ok(added.length > 0, 'the snapshot wrote packs');
    for (const file of added) {
      const bytes = readFileSync(file);
      const i = bytes.length >> 1;
      bytes[i] = bytes[i]! ^ 0xff;
      writeFileSync(file, bytes);
    }
    // verify both from their pages: the damaged one, then a sound one
    await page.goto(`${url}/#/snapshot/default/bea/${damaged.id}`);
    await page.click('#verify');
    await page.locator('#verify-report strong', { hasText: 'damaged' }).waitFor();
    await page.goto(`${url}/#/snapshot/default/bea/${s1.id}`);
    await waitShowing(page, '#snapshot-label');
    await page.click('#verify');
    await page.locator('#verify-report strong', { hasText: 'verified' }).waitFor();
    // the fleet still alerts the damaged snapshot
    await page.goto(`${url}/#/`);
    const row = page.locator('#fleet tr[data-agent="bea"]');
    await row.waitFor();
    assert.equal(await row.getAttribute('class'), 'alerting');
    assert.match(
      (await row.locator('td').nth(7).textContent()) ?? '',
      /^verified /,
      'the last verify passed',
    );
    assert.match(
      (await row.locator('li.alert-damaged').textContent()) ?? '',
      new RegExp(`snapshot ${damaged.id} verified damaged`),
    );
  } finally {
    await context.close();
  }
});
