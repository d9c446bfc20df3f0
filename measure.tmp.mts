// Quick measurement: bytes stored by a second snapshot after the 1 % change (repository core only).
import { cpSync, mkdtempSync, readdirSync, statSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ensureRefAgent, changeRefAgentOnePercent } from './bench/fixtures.ts';
import { LocalBackend } from './src/backend/local.ts';
import { Repository } from './src/repository/repository.ts';
import { storeContent } from './src/repository/content.ts';
import { storeLiveHistory } from './src/repository/git-history.ts';
import { recordRefs } from './src/git/history.ts';
const ref = ensureRefAgent();
const work = mkdtempSync('/tmp/measure-');
cpSync(ref.paths.root, join(work, 'agent'), { recursive: true });
const p = { ...ref.paths };
for (const k of Object.keys(p) as (keyof typeof p)[]) if (typeof p[k] === 'string') (p as any)[k] = (p[k] as string).replace(ref.paths.root, join(work, 'agent'));
const repo = await Repository.init(new LocalBackend(join(work, 'repo')));
function walk(dir: string, rel = ''): string[] { const out: string[] = []; for (const e of readdirSync(dir, { withFileTypes: true })) { if (e.name === '.git') continue; const r = rel ? `${rel}/${e.name}` : e.name; if (e.isDirectory()) out.push(...walk(join(dir, e.name), r)); else out.push(r); } return out.sort(); }
let prev: any;
for (let step = 0; step < 3; step++) {
  if (step > 0) changeRefAgentOnePercent(p as any, step);
  const t0 = performance.now();
  const stage = mkdtempSync(join(work, 'stage-'));
  for (const db of ['long_term', 'vector', 'concepts', 'compactions']) {
    const d = new Database(join(p.sqliteDir, `${db}.sqlite`)); d.exec(`VACUUM INTO '${join(stage, db)}.sqlite'`); d.close();
  }
  const t1 = performance.now();
  const w = repo.writer();
  const perDb: Record<string, number> = {};
  for (const db of ['long_term', 'vector', 'concepts', 'compactions']) {
    const before = w.stats.rawNew;
    await storeContent(w, repo.config.chunker, { path: join(stage, `${db}.sqlite`), sqlite: true });
    perDb[db] = w.stats.rawNew - before;
  }
  const beforeFiles = w.stats.rawNew;
  for (const f of walk(p.memdir)) await storeContent(w, repo.config.chunker, { path: join(p.memdir, f), sqlite: false });
  perDb.files = w.stats.rawNew - beforeFiles;
  const refs = await recordRefs(p.memdir);
  const beforeGit = w.stats.rawNew;
  const art = await storeLiveHistory(w, repo.config.chunker, p.memdir, refs, prev, stage);
  perDb.git = w.stats.rawNew - beforeGit;
  prev = { packs: art!.packs, refs };
  const st = await w.finish();
  const t2 = performance.now();
  console.log(JSON.stringify({ step, vacuumMs: Math.round(t1 - t0), storeMs: Math.round(t2 - t1), rawNewMB: +(st.rawNew / 1e6).toFixed(2), storedNewMB: +(st.storedNew / 1e6).toFixed(3), blobsNew: st.blobsNew, blobsKnown: st.blobsKnown, perDbRawNew: perDb, chain: art!.packs!.length }));
  rmSync(stage, { recursive: true });
}
console.log(work);
