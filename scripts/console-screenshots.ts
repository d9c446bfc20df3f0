// `node --import tsx scripts/console-screenshots.ts`: the screenshots of the web console in docs/
// (fleet, agent timeline, snapshot page with the memory browser, diff), taken with Debian's chromium
// (playwright-core) from `nexo-memory serve` on a sample agent with a few snapshots of each kind.

import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { chromium } from 'playwright-core';
import { LocalSnapshotter } from '../src/index.js';
import { buildSampleAgent, gitEnv } from './sample-agent.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const root = mkdtempSync(join(tmpdir(), 'nexo-shots-'));
const token = 'screenshot-token-0123456789';
execFileSync(process.execPath, ['--import', 'tsx', join(repo, 'scripts', 'build-console.ts')], {
  stdio: 'inherit',
});
const a = buildSampleAgent(root, 'ana', { memories: 300, embeddings: 50, files: 12, commits: 4 });
buildSampleAgent(root, 'bob', { memories: 100, embeddings: 20, files: 6, commits: 2, seed: 7 });
const s = new LocalSnapshotter({
  stateRoot: a.stateRoot,
  memdirRoot: a.memdirRoot,
  sqliteRoot: a.sqliteRoot,
});
const kinds = [
  'cli',
  'scheduled',
  'scheduled',
  'auto-pre-dream',
  'scheduled',
  'auto-pre-mutating-tool',
  'cli',
];
for (const [i, createdBy] of kinds.entries()) {
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  const insert = db.prepare(
    'INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)',
  );
  for (let k = 0; k < 5 + i * 7; k++)
    insert.run(Date.now(), 'fact', `fact ${i}.${k}: the agent learned something`, 1);
  db.close();
  appendFileSync(join(a.memdir, 'MEMORY.md'), `\n- learned in round ${i}\n`);
  execFileSync('git', ['commit', '-qam', `memory: round ${i}`], { cwd: a.memdir, env: gitEnv });
  await s.snapshot({ agentId: 'ana', label: i === 0 ? 'baseline' : `round ${i}`, createdBy });
}
await s.snapshot({ agentId: 'bob', label: 'first', createdBy: 'cli' });
const metas = await s.list('ana');
await s.pin('ana', undefined, metas[metas.length - 1]!.id, 'baseline');

const daemon = spawn(
  process.execPath,
  [
    join(repo, 'src', 'cli', 'main.ts'),
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--state-root',
    a.stateRoot,
    '--memdir-root',
    a.memdirRoot,
    '--sqlite-root',
    a.sqliteRoot,
  ],
  {
    env: { ...process.env, NODE_OPTIONS: '--import tsx', NEXO_MEMORY_TOKEN: token },
    stdio: ['ignore', 'pipe', 'ignore'],
  },
);
const url = await new Promise<string>((res) => {
  let out = '';
  daemon.stdout!.on('data', (c) => {
    out += c;
    const m = /listening on (\S+)\n/.exec(out);
    if (m) res(m[1]!);
  });
});
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
const page = await browser.newPage({ viewport: { width: 1360, height: 860 } });
await page.goto(`${url}/`);
await page.fill('#token', token);
await page.click('#login button[type=submit]');
await page.waitForSelector('#fleet tr[data-agent="ana"]');
const shot = (name: string) =>
  page.screenshot({ path: join(repo, 'docs', `console-${name}.png`), fullPage: false });
await shot('fleet');
await page.goto(`${url}/#/agent/default/ana`);
await page.waitForSelector('#timeline tbody tr');
await shot('timeline');
const first = metas[metas.length - 1]!.id;
await page.goto(`${url}/#/snapshot/default/ana/${metas[1]!.id}`);
await page.click('#verify');
await page.waitForSelector('#verify-report');
await page.click('#browser-tree button[data-path="memdir"]');
await page.click('#browser-tree button[data-path="memdir/MEMORY.md"]');
await page.waitForSelector('#browser-content .markdown');
await page.locator('#verify-report').scrollIntoViewIfNeeded();
await shot('snapshot');
await page.goto(`${url}/#/diff/default/ana/${first}/${metas[0]!.id}`);
await page.waitForSelector('#diff-tables');
await shot('diff');
await browser.close();
daemon.kill('SIGTERM');
rmSync(root, { recursive: true, force: true });
process.stdout.write('docs/console-{fleet,timeline,snapshot,diff}.png written\n');
