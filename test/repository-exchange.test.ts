
/** A snapshot of the agent in the bundle store (0.2 state roots, and bundles received from elsewhere). */
async function bundleSnapshot(a: Agent, label?: string) {
  return snapshotterOf(a, { store: 'bundles' }).snapshot({ agentId: 'ana', ...(label ? { label } : {}) });
}

/** Memory files and database rows of an agent, to compare two agents (or one, before and after). */
function liveContent(a: Agent, agent: string): string {
  const memdir = join(a.memdirRoot, agent);
  const files = git(memdir, ['ls-files', '-co', '--exclude-standard'])
    .split('\n')
    .filter(Boolean)
    .sort()
    .map((f) => `${f}:${readFileSync(join(memdir, f), 'utf8')}`);
  const db = new Database(join(a.sqliteRoot, agent, 'long_term.sqlite'), { readonly: true });
  const rows = JSON.stringify(db.prepare('SELECT * FROM memories ORDER BY rowid').all());
  db.close();
  return `${git(memdir, ['rev-parse', 'HEAD'])}${files.join('\n')}${rows}`;
}

test('import into a repository store: restored as the new agent and kept as its snapshot; --store-only changes nothing live; the same agent keeps the id, stored once', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const bundle = await bundleSnapshot(a, 'from host A');
  const s = snapshotterOf(a);

  const r = await s.restore({ agentId: 'clone', bundle: bundle.bundle_path, import: {} });
  assert.deepEqual(r.imported_from, { agent_id: 'ana', tenant: 'default' });
  assert.ok(r.stored_snapshot);
  assert.equal(liveContent(a, 'clone'), liveContent(a, 'ana'), 'the clone is the bundle');
  const [cloned] = await s.list('clone');
  assert.equal(cloned?.id, r.stored_snapshot);
  assert.notEqual(cloned?.id, bundle.id, 'a clone is a new snapshot');
  assert.equal(cloned?.created_by, 'import');
  assert.equal(cloned?.label, 'from host A');
  assert.equal(cloned?.bundle_format, 'nexo-memory-snapshot-v4');
  const v = await s.verifySnapshot('clone', 'default', cloned!.id);
  assert.equal(v.status, 'verified', JSON.stringify(v.problems));

  // an agent with memory is refused without --force, and nothing is stored
  await assert.rejects(s.restore({ agentId: 'clone', bundle: bundle.bundle_path, import: {} }), {
    code: 'RESTORE_REFUSED',
  });
  assert.equal((await s.list('clone')).length, 1);

  // --store-only as the bundle's own agent: its id, label, time and creator; nothing live changes
  const before = liveContent(a, 'ana');
  const stored = await s.storeBundle({ bundle: bundle.bundle_path, agentId: 'ana' });
  assert.equal(stored.stored, 'new');
  assert.equal(stored.snapshot.id, bundle.id);
  assert.equal(stored.snapshot.created_at_ms, bundle.created_at_ms);
  assert.equal(stored.snapshot.created_by, bundle.created_by);
  assert.equal(stored.snapshot.label, 'from host A');
  assert.equal(liveContent(a, 'ana'), before);
  const again = await s.storeBundle({ bundle: bundle.bundle_path, agentId: 'ana' });
  assert.equal(again.stored, 'already_present');
  assert.equal(again.snapshot.id, bundle.id);
  // listed once, although the bundle is still in the bundle store beside it
  assert.deepEqual(
    (await s.list('ana')).map((m) => [m.id, m.bundle_format]),
    [[bundle.id, 'nexo-memory-snapshot-v4']],
  );
  // its export is the same content as the bundle
  const exported = await s.export('ana', 'default', bundle.id, `${tempDir(t)}/`, { redact: false });
  assert.deepEqual(await contentOf(exported.path), await contentOf(bundle.bundle_path));

  // the bundle store has no place for it
  await assert.rejects(
    snapshotterOf(a, { store: 'bundles' }).storeBundle({ bundle: bundle.bundle_path, agentId: 'ana' }),
    { code: 'INVALID_INPUT' },
  );
});

test('import through the CLI: --store-only needs no restore gate; a full import reports the stored snapshot', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const bundle = await bundleSnapshot(a);
  let r = await runCli(
    ['import', '--from', bundle.bundle_path, '--agent', 'bob', '--store-only', '--json', ...a.flags],
    { env: { ...repoEnv, NEXO_MEMORY_RESTORE_ALLOW: '' } },
  );
  assert.equal(r.code, 0, r.stderr);
  const stored = JSON.parse(r.stdout) as { stored: string; snapshot: { id: string; agent_id: string } };
  assert.equal(stored.stored, 'new');
  assert.equal(stored.snapshot.agent_id, 'bob');
  assert.equal(existsSync(join(a.memdirRoot, 'bob')), false, 'nothing live was created');
  r = await runCli(['import', '--from', bundle.bundle_path, '--agent', 'carl', '--json', ...a.flags], {
    env: { ...repoEnv, NEXO_MEMORY_RESTORE_ALLOW: '' },
  });
  assert.equal(r.code, 6, 'a full import needs the restore gate');
  r = await runCli(['import', '--from', bundle.bundle_path, '--agent', 'carl', '--json', ...a.flags], {
    env: { ...repoEnv, NEXO_MEMORY_RESTORE_ALLOW: 'true' },
  });
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { stored_snapshot: string };
  r = await runCli(['list', '--agent', 'carl', '--json', '--state-root', a.stateRoot], { env: repoEnv });
  assert.deepEqual(
    (JSON.parse(r.stdout) as { id: string }[]).map((m) => m.id),
    [report.stored_snapshot],
  );
});

/** The agent as a v1 bundle of the original: raw `.git` files under `git/`, plus `extraGit` files. */
async function v1BundleOf(a: Agent, path: string, extraGit: Record<string, string> = {}): Promise<string> {
  const head = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  const arts: Array<{ path: string; kind: string; data: Buffer | string }> = [
    {
      path: 'sqlite/long_term.sqlite',
      kind: 'sqlite_long_term',
      data: readFileSync(join(a.sqliteDir, 'long_term.sqlite')),
    },
  ];
  const memory = git(a.memdir, ['ls-files', '-co', '--exclude-standard']).split('\n').filter(Boolean).sort();
  for (const rel of memory)
    arts.push({ path: `memory_files/${rel}`, kind: 'memory_file', data: readFileSync(join(a.memdir, rel)) });
  const raw = new Map<string, Buffer | string>();
  const gitDir = join(a.memdir, '.git');
  const walk = (d: string): void => {
    for (const e of readdirSync(join(gitDir, d), { withFileTypes: true })) {
      const rel = d ? `${d}/${e.name}` : e.name;
      if (e.isDirectory()) walk(rel);
      else if (e.isFile()) raw.set(rel, readFileSync(join(gitDir, rel)));
    }
  };
  walk('');
  for (const [rel, data] of Object.entries(extraGit)) raw.set(rel, data);
  for (const [rel, data] of [...raw].sort()) arts.push({ path: `git/${rel}`, kind: 'git_bundle', data });
  const manifest = manifestFor(
    arts,
    {
      label: 'from the original',
      created_by: 'cli',
      created_at_ms: 1_700_000_000_000,
      git: { head_oid: head, head_subject: 'the subject', head_author: 'a <b>', head_ts_ms: 1 },
    },
    1,
  );
  return writeBundleFile(path, bundleOf(manifest, arts, [], { v1: true }));
}

test('a v1 bundle of the original is stored in the repository (raw history quarantined, nothing of it run) and exports as a v2 bundle git clone reads', async (t) => {
  const a = sampleAgent(t, 'ana', SMALL);
  const marker = join(tempDir(t), 'ran');
  const v1 = await v1BundleOf(a, join(tempDir(t), 'v1.tar.zst'), {
    config: `[core]\n\tfsmonitor = "touch ${marker}"\n\thooksPath = hooks\n`,
    'hooks/post-checkout': `#!/bin/sh\ntouch ${marker}\n`,
    'hooks/reference-transaction': `#!/bin/sh\ntouch ${marker}\n`,
  });
  const s = snapshotterOf(a);
  const stored = await s.storeBundle({ bundle: v1, agentId: 'ana' });
  const id = stored.snapshot.id;
  assert.equal(stored.stored, 'new');
  assert.equal(stored.snapshot.label, 'from the original');
  assert.equal(stored.snapshot.created_at_ms, 1_700_000_000_000);
  assert.equal(stored.snapshot.git_oid, git(a.memdir, ['rev-parse', 'HEAD']).trim());
  assert.equal((await s.verifySnapshot('ana', 'default', id)).status, 'verified');
  const exported = await s.export('ana', 'default', id, `${tempDir(t)}/`, { redact: false });
  assert.equal(exported.verify.status, 'verified', JSON.stringify(exported.verify.problems));
  const clone = cloneHistory(t, exported.path);
  assert.equal(git(clone, ['rev-parse', 'HEAD']).trim(), git(a.memdir, ['rev-parse', 'HEAD']).trim());
  assert.equal(git(clone, ['log', '-1', '--format=%s']).trim(), git(a.memdir, ['log', '-1', '--format=%s']).trim());
  const v1Content = await contentOf(v1);
  const exportedContent = await contentOf(exported.path);
  for (const [path, sha] of v1Content) if (!path.startsWith('git/')) assert.equal(exportedContent.get(path), sha, path);
  assert.equal(existsSync(marker), false, 'nothing from the bundle ran');
});
