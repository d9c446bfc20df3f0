// Cross-process exclusion: the (tenant, agent) lock between processes, takeover after kill -9, and the
// write gate proving that every component of a snapshot shows the same instant while a writer runs.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { closeGate, gateWantedPath } from '../src/agent/write-gate.js';
import { ClosureResolver, LocalSnapshotter, WriteGate, WriteGateTimeoutError } from '../src/index.js';
import { LockTimeoutError, lockWanted, tryAcquire } from '../src/store/lock.js';
import { runBuiltCli } from './helpers/built-cli.js';
import { agentConfig, gnuExtract, runCli, sampleAgent, startFixture } from './helpers/env.js';
import { until } from './helpers/wait.js';

test('a second snapshot waits for the lock held by another process, then fails with CONCURRENT', async (t) => {
  const a = sampleAgent(t);
  const holder = startFixture(t, 'hold-lock.ts', [a.stateRoot, 'ana']);
  await holder.ready;
  const s = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    lockTimeoutMs: 400,
  });
  const started = Date.now();
  await assert.rejects(
    s.snapshot({ agentId: 'ana' }),
    (err: Error & { code?: string; exitCode?: number }) => {
      assert.equal(err.code, 'CONCURRENT');
      assert.equal(err.exitCode, 4);
      assert.match(err.message, /ana/);
      assert.match(err.message, /test-holder \(pid \d+/, 'names the holder');
      return true;
    },
  );
  assert.ok(Date.now() - started >= 380, 'it waited for the lock timeout');
  // the same agent id in another tenant, with live paths of its own (a tenant-aware resolver), is a
  // different lock
  const other = sampleAgent(t, 'ana');
  const sOther = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    resolver: new ClosureResolver({
      memdir: (id, tenant) => join(tenant === 'acme' ? other.memdirRoot : a.memdirRoot, id),
      sqliteDir: (id, tenant) => join(tenant === 'acme' ? other.sqliteRoot : a.sqliteRoot, id),
    }),
    lockTimeoutMs: 400,
  });
  assert.equal((await sOther.snapshot({ agentId: 'ana', tenant: 'acme' })).tenant, 'acme');
  // with the default resolver (the tenant ignored) it is the same live agent: the default tenant's
  // lock is taken too, so it waits for the holder (a restore there cleaned up the other's staging)
  await assert.rejects(s.snapshot({ agentId: 'ana', tenant: 'acme' }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'CONCURRENT');
    assert.match(err.message, /test-holder/);
    return true;
  });
  await assert.rejects(s.recover('ana', 'acme'), { code: 'CONCURRENT' });
  const swept = await s.gc({ agentId: 'ana', tenant: 'acme', dryRun: true });
  assert.match(swept.agents[0]!.skipped ?? '', /busy/, 'gc skips it too');
  // a lock left by a killed process is taken over at once
  holder.child.kill('SIGKILL');
  await holder.exited;
  const meta = await s.snapshot({ agentId: 'ana' });
  assert.equal(meta.agent_id, 'ana');
});

test('CONCURRENT names the operation refused and what is running (the holder as recorded), whatever they are', async (t) => {
  const a = sampleAgent(t);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  await a.snapshotter.snapshot({ agentId: 'ana' });
  const s = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    lockTimeoutMs: 300,
  });
  const refused = async (op: Promise<unknown>, message: RegExp, details: Record<string, unknown>) =>
    assert.rejects(
      op,
      (err: Error & { code?: string; exitCode?: number; details?: Record<string, unknown> }) => {
        assert.equal(err.code, 'CONCURRENT', err.message);
        assert.equal(err.exitCode, 4);
        assert.match(err.message, message);
        assert.doesNotMatch(err.message, /snapshot operation already in progress/);
        // how long it waited for the holder: the lock timeout (300 ms here), in the message and the details
        assert.ok(Number(err.details?.waited_ms) >= 250, JSON.stringify(err.details));
        assert.deepEqual(
          { ...err.details, holder: undefined, waited_ms: undefined },
          { agent_id: 'ana', tenant: 'default', ...details, waited_ms: undefined },
        );
        return true;
      },
    );
  // the agent lock, held by another process recorded as `test-holder`: a restore and a pin are refused
  const holder = startFixture(t, 'hold-lock.ts', [a.stateRoot, 'ana']);
  await holder.ready;
  const byHolder =
    /: test-holder \(pid \d+ on [^,]+, since [0-9T:.-]+Z\) is running \(waited \d+\.\d s; lock_timeout_secs sets how long\)$/;
  await refused(
    s.restore({ agentId: 'ana', bundle: snap.bundle_path }),
    new RegExp(`^restore refused for agent ana \\(tenant default\\)${byHolder.source}`),
    { refused: 'restore', holder: undefined },
  );
  await refused(
    s.pin('ana', undefined, snap.id),
    /^pin refused for agent ana \(tenant default\): test-holder \(pid/,
    {
      refused: 'pin',
      holder: undefined,
    },
  );
  holder.child.kill('SIGKILL');
  await holder.exited;
  // the write gate, held by a memory writer in a batch: the snapshot is refused, naming the writers
  const writer = startFixture(t, 'hold-gate.ts', [a.stateRoot, 'ana']);
  await writer.ready;
  await refused(
    s.snapshot({ agentId: 'ana' }),
    /^snapshot refused for agent ana \(tenant default\): a write batch of its memory writers \(write gate\) is running \(waited \d+\.\d s; lock_timeout_secs sets how long\)$/,
    { refused: 'snapshot', holder: undefined },
  );
  writer.child.kill('SIGKILL');
  await writer.exited;
  // the readers lock: a delete waits for a reader (a verify, not only an export), a reader for a remover
  const { reading } = await a.snapshotter.locateForReading('ana', undefined, snap.id, 'verify');
  await refused(
    s.delete('ana', undefined, snap.id),
    /^delete refused for agent ana \(tenant default\): a reader of its snapshot bundles \(export, verify, ls, cat, find\) is running \(waited \d+\.\d s; lock_timeout_secs sets how long\)$/,
    { refused: 'delete', holder: undefined },
  );
  reading.release();
  const remover = tryAcquire(a.snapshotter.layout.readersLockPath('default', 'ana'), 'exclusive')!;
  await refused(
    s.verifySnapshot('ana', undefined, snap.id),
    /^verify refused for agent ana \(tenant default\): a delete, migrate or gc of its snapshot bundles is running \(waited \d+\.\d s; lock_timeout_secs sets how long\)$/,
    { refused: 'verify', holder: undefined },
  );
  remover.release();
  assert.equal(
    (await s.verifySnapshot('ana', undefined, snap.id)).manifest_ok,
    true,
    'a reader runs once it is gone',
  );
});

test('a snapshot waiting for the lock succeeds as soon as the holder goes away', async (t) => {
  const a = sampleAgent(t);
  const holder = startFixture(t, 'hold-lock.ts', [a.stateRoot, 'ana']);
  await holder.ready;
  const pending = a.snapshotter.snapshot({ agentId: 'ana' });
  setTimeout(() => holder.child.kill('SIGKILL'), 300);
  const meta = await pending;
  assert.equal((await a.snapshotter.list('ana'))[0]!.id, meta.id);
});

test('CLI: snapshot and delete exit 4 while another process holds the agent lock', async (t) => {
  const a = sampleAgent(t);
  const first = await a.snapshotter.snapshot({ agentId: 'ana' });
  await a.snapshotter.snapshot({ agentId: 'ana' });
  const cfg = join(a.root, 'config.yaml');
  writeFileSync(cfg, 'memory:\n  snapshot:\n    lock_timeout_secs: 1\n');
  const holder = startFixture(t, 'hold-lock.ts', [a.stateRoot, 'ana']);
  await holder.ready;
  let r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--config', cfg, '--json']);
  assert.equal(r.code, 4, r.stderr);
  assert.equal(JSON.parse(r.stdout).error.code, 'CONCURRENT');
  r = await runCli([
    'delete',
    '--agent',
    'ana',
    '--id',
    first.id,
    '--yes',
    '--state-root',
    a.stateRoot,
    '--config',
    cfg,
  ]);
  assert.equal(r.code, 4, r.stderr);
  assert.equal((await a.snapshotter.list('ana')).length, 2, 'nothing deleted');
});

test('CLI: a garbled agent lock or write gate is IO naming the file and saying it may be removed; removed, the next run works', async (t) => {
  const a = sampleAgent(t);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const env = { NEXO_MEMORY_RESTORE_ALLOW: '1' };
  const cases = [
    ['agent lock', a.snapshotter.layout.agentLockPath('default', 'ana'), ['snapshot', '--agent', 'ana']],
    [
      'write gate',
      a.snapshotter.layout.writeGatePath('default', 'ana'),
      ['restore', '--agent', 'ana', '--from', snap.id, '--no-auto-pre-snapshot'],
    ],
  ] as const;
  for (const [what, path, cmd] of cases) {
    writeFileSync(path, 'not a lock '.repeat(200));
    let r = await runCli([...cmd, ...a.flags, '--json'], { env });
    assert.equal(r.code, 1, `${what}: ${r.stderr}`);
    const e = JSON.parse(r.stdout).error as { code: string; message: string };
    assert.equal(e.code, 'IO', `${what}: ${r.stdout}`);
    assert.ok(e.message.includes(path), `${what}: the message names the file: ${e.message}`);
    assert.match(e.message, /the lock file is damaged .*remove it when no nexo-memory operation/, what);
    rmSync(path);
    r = await runCli([...cmd, ...a.flags, '--json'], { env });
    assert.equal(r.code, 0, `${what}: ${r.stderr}`);
  }
});

test("CLI: a garbled marker of the write gate is IO naming it, when a snapshot has to wait for a writer's batch", async (t) => {
  const a = sampleAgent(t);
  const wanted = gateWantedPath(a.snapshotter.layout.writeGatePath('default', 'ana'));
  const writer = startFixture(t, 'hold-gate.ts', [a.stateRoot, 'ana']);
  await writer.ready;
  writeFileSync(wanted, 'not a lock '.repeat(200));
  let r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json']);
  assert.equal(r.code, 1, r.stderr);
  const e = JSON.parse(r.stdout).error as { code: string; message: string };
  assert.equal(e.code, 'IO', r.stdout);
  assert.ok(e.message.startsWith(`closing the write gate ${wanted}: the lock file is damaged`), e.message);
  assert.match(e.message, /the lock file is damaged/);
  await writer.killGroup();
  rmSync(wanted);
  r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--json']);
  assert.equal(r.code, 0, r.stderr);
});

test('lock files are plain SQLite transactions: another process sees them busy', async (t) => {
  const a = sampleAgent(t);
  const holder = startFixture(t, 'hold-lock.ts', [a.stateRoot, 'ana']);
  await holder.ready;
  const path = a.snapshotter.layout.agentLockPath('default', 'ana');
  assert.equal(tryAcquire(path, 'exclusive'), undefined);
  assert.equal(tryAcquire(path, 'shared'), undefined);
  holder.child.kill('SIGKILL');
  await holder.exited;
  const held = tryAcquire(path, 'exclusive');
  assert.ok(held);
  held.release();
});

test('write gate: every snapshot taken while a writer runs shows one counter in every component', async (t) => {
  const a = sampleAgent(t, 'ana', { memories: 500, embeddings: 300 });
  const writer = startFixture(t, 'writer.ts', [a.stateRoot, a.sqliteDir, a.memdir, 'ana']);
  await writer.ready;
  const counters: number[] = [];
  /** The writer's live counter (its state file, read whole or not at all). */
  const live = (): number => {
    try {
      return JSON.parse(readFileSync(join(a.sqliteDir, 'extract_cursor.json'), 'utf8')).counter as number;
    } catch {
      return 0; // between the writer's truncation and its write
    }
  };
  for (let i = 0; i < 6; i++) {
    // the writer wrote a batch since the last snapshot (a loaded machine can starve it for a while: a
    // fixed pause could leave it no turn, and the snapshots then show fewer than three counters)
    await until(live, (n) => n > (counters.at(-1) ?? 0));
    const meta = await a.snapshotter.snapshot({ agentId: 'ana' });
    const x = gnuExtract(t, meta.bundle_path);
    const seen: Record<string, number> = {};
    for (const db of ['long_term', 'vector', 'concepts', 'compactions']) {
      const d = new Database(join(x, 'sqlite', `${db}.sqlite`), { readonly: true });
      seen[db] = d.prepare('SELECT n FROM counter').pluck().get() as number;
      assert.equal(
        d.prepare('SELECT max(n) FROM log').pluck().get(),
        seen[db],
        `${db}: log and counter agree`,
      );
      d.close();
    }
    seen.memdir = Number(readFileSync(join(x, 'memory_files', 'counter.md'), 'utf8').split(' ')[1]);
    seen.state = JSON.parse(readFileSync(join(x, 'state', 'extract_cursor.json'), 'utf8')).counter;
    const n = seen.long_term!;
    assert.ok(n > 0);
    for (const [component, value] of Object.entries(seen))
      assert.equal(value, n, `snapshot ${i}: ${component} shows ${value}, long_term ${n}`);
    const manifest = JSON.parse(readFileSync(join(x, 'manifest.json'), 'utf8'));
    const committed = Math.floor(n / 3) * 3;
    if (committed > 0)
      assert.equal(manifest.git.head_subject, `counter ${committed}`, 'git HEAD matches the same batch');
    counters.push(n);
  }
  await writer.killGroup();
  assert.ok(new Set(counters).size >= 3, `the writer kept writing between snapshots: ${counters}`);
  assert.deepEqual(
    [...counters].sort((x, y) => x - y),
    counters,
    'counters only grow',
  );
});

test('write gate API: in-process batches run while the gate is open and wait while a snapshot holds it', async (t) => {
  const a = sampleAgent(t);
  const gate = WriteGate.forAgent(a.stateRoot, 'ana', 'default', { timeoutMs: 5_000 });
  assert.equal(await gate.write(() => 7), 7);
  const held = tryAcquire(a.snapshotter.layout.writeGatePath('default', 'ana'), 'exclusive')!;
  let ran = false;
  const batch = gate.write(() => {
    ran = true;
  });
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(ran, false, 'the batch waits while the gate is closed');
  held.release();
  await batch;
  assert.equal(ran, true);
  const short = WriteGate.forAgent(a.stateRoot, 'ana', 'default', { timeoutMs: 100 });
  const held2 = tryAcquire(a.snapshotter.layout.writeGatePath('default', 'ana'), 'exclusive')!;
  await assert.rejects(
    short.write(() => 1),
    /write gate/,
  );
  held2.release();
});

test("write gate of live memory shared by tenants: a writer under either tenant's gate holds back the copy", async (t) => {
  const a = sampleAgent(t);
  const s = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    lockTimeoutMs: 300,
  });
  // a writer inside a batch, under one tenant's gate (the default resolver: both tenants' `ana` is one
  // live agent), while a snapshot, a live diff and a restore of the other tenant try to copy or swap
  const duringBatch = async (gateTenant: string, body: () => Promise<void>) => {
    let end!: () => void;
    let inside!: () => void;
    const entered = new Promise<void>((r) => {
      inside = r;
    });
    const batch = WriteGate.forAgent(a.stateRoot, 'ana', gateTenant).write(async () => {
      inside();
      await new Promise<void>((r) => {
        end = r;
      });
    });
    await entered;
    try {
      await body();
    } finally {
      end();
      await batch;
    }
  };
  const busy = (err: Error & { code?: string }) => {
    assert.equal(err.code, 'CONCURRENT');
    assert.match(err.message, /write gate/);
    return true;
  };
  const first = await s.snapshot({ agentId: 'ana' });
  await duringBatch('acme', async () => {
    await assert.rejects(s.snapshot({ agentId: 'ana' }), busy);
    await assert.rejects(s.diff({ agentId: 'ana', a: first.id, b: 'live' }), busy);
    await assert.rejects(s.restore({ agentId: 'ana', snapshot: first.id, autoPreSnapshot: false }), busy);
  });
  await duringBatch('default', async () => {
    await assert.rejects(s.snapshot({ agentId: 'ana', tenant: 'acme' }), busy);
  });
  // once the batches ended, both tenants snapshot; no gate is left closed behind a refusal
  assert.equal((await s.snapshot({ agentId: 'ana', tenant: 'acme' })).tenant, 'acme');
  assert.equal((await s.snapshot({ agentId: 'ana' })).tenant, 'default');
  // a tenant-aware resolver gives each tenant live memory of its own: a writer under acme's gate does not
  // hold back the default tenant's snapshot
  const other = sampleAgent(t, 'ana');
  const sOwn = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    resolver: new ClosureResolver({
      memdir: (id, tenant) => join(tenant === 'acme' ? other.memdirRoot : a.memdirRoot, id),
      sqliteDir: (id, tenant) => join(tenant === 'acme' ? other.sqliteRoot : a.sqliteRoot, id),
    }),
    lockTimeoutMs: 300,
  });
  await duringBatch('acme', async () => {
    assert.equal((await sOwn.snapshot({ agentId: 'ana' })).tenant, 'default');
  });
});

test('write gate API: a write() called while closeGate waits does not join the batch in flight; it runs after the closed step', async (t) => {
  const a = sampleAgent(t);
  const path = a.snapshotter.layout.writeGatePath('default', 'ana');
  const gate = WriteGate.forAgent(a.stateRoot, 'ana', 'default', { timeoutMs: 5_000 });
  const order: string[] = [];
  let endFirst = () => {};
  let firstInside = () => {};
  const inside = new Promise<void>((r) => {
    firstInside = r;
  });
  const first = gate.write(async () => {
    firstInside();
    await new Promise<void>((r) => {
      endFirst = r;
    });
    order.push('first left');
  });
  await inside;
  const closing = closeGate(path, 5_000).then((g) => {
    order.push('closed');
    return g;
  });
  await until(() => lockWanted(gateWantedPath(path)));
  assert.ok(lockWanted(gateWantedPath(path)), 'the waiting step marks the gate wanted');
  const second = gate.write(() => {
    order.push('second');
  });
  // a writer that times out while the step waits says so with its own error
  const short = WriteGate.forAgent(a.stateRoot, 'ana', 'default', { timeoutMs: 50 });
  await assert.rejects(
    short.write(() => 1),
    (err: Error) => {
      assert.ok(err instanceof WriteGateTimeoutError);
      assert.equal(err.name, 'WriteGateTimeoutError');
      return true;
    },
  );
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(order, [], 'the second batch waits although the process holds the gate for the first');
  endFirst();
  await first;
  const g = await closing;
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(order, ['first left', 'closed'], 'the step got the gate; the second batch still waits');
  await g.release();
  await second;
  assert.deepEqual(order, ['first left', 'closed', 'second']);
  assert.equal(lockWanted(gateWantedPath(path)), false, 'no marker is left');
});

test('write gate API: a write() nested in a batch while a step waits joins (after a bounded wait) instead of deadlocking', async (t) => {
  const a = sampleAgent(t);
  const path = a.snapshotter.layout.writeGatePath('default', 'ana');
  const gate = WriteGate.forAgent(a.stateRoot, 'ana', 'default', { timeoutMs: 5_000 });
  const order: string[] = [];
  let closing: Promise<{ release(): Promise<void> }> | undefined;
  await gate.write(async () => {
    closing = closeGate(path, 5_000).then((g) => {
      order.push('closed');
      return g;
    });
    await until(() => lockWanted(gateWantedPath(path)));
    assert.ok(lockWanted(gateWantedPath(path)), 'the step waits for this batch');
    // the inner call cannot wait for the step, which waits for this batch: it joins
    await gate.write(() => {
      order.push('inner');
    });
    order.push('outer left');
  });
  const g = await closing!;
  assert.deepEqual(order, ['inner', 'outer left', 'closed']);
  await g.release();
});

test('closeGate: taken at once when no writer holds the gate, waited for (fairly) while one does', async (t) => {
  const a = sampleAgent(t);
  const path = a.snapshotter.layout.writeGatePath('default', 'ana');
  // free: closed at once; a writer cannot enter until it is released
  const free = await closeGate(path, 5_000);
  assert.equal(tryAcquire(path, 'shared'), undefined, 'a writer is kept out while the gate is closed');
  await free.release();
  await free.release(); // idempotent
  const writer = tryAcquire(path, 'shared');
  assert.ok(writer, 'released: a writer enters again');
  // held by a writer: closeGate waits, and takes the gate once the writer leaves
  let closed = false;
  const waiting = closeGate(path, 5_000).then((g) => {
    closed = true;
    return g;
  });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(closed, false, 'closeGate waits while a writer is inside a batch');
  writer.release();
  const g = await waiting;
  assert.equal(tryAcquire(path, 'shared'), undefined, 'the waiting snapshot now holds the gate');
  await g.release();
  const after = tryAcquire(path, 'shared');
  assert.ok(after, 'and releases it');
  after.release();
  // still held: closeGate gives up after its timeout
  const busy = tryAcquire(path, 'shared')!;
  await assert.rejects(closeGate(path, 150), LockTimeoutError);
  busy.release();
});

test('write gate: a busy writer whose batches always overlap cannot starve a snapshot; batches started while it waits wait', async (t) => {
  const a = sampleAgent(t);
  const config = agentConfig(a, ['    lock_timeout_secs: 5']);
  const writer = startFixture(t, 'overlapping-writer.ts', [a.stateRoot, a.sqliteDir, 'ana']);
  await writer.ready;
  const r = await runBuiltCli(['snapshot', '--agent', 'ana', '--json', '--config', config]);
  assert.equal(r.code, 0, `the snapshot got the gate: ${r.stderr}`);
  interface Batch {
    id: number;
    called: number;
    entered: number;
    left: number;
    error?: string;
  }
  /** The batches the writer reported so far (whole lines only). */
  const reported = (): Batch[] =>
    writer
      .output()
      .split('\n')
      .slice(0, -1)
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Batch);
  // what the snapshot holds: only whole batches, and every batch up to the last one it holds
  const x = gnuExtract(t, JSON.parse(r.stdout).bundle_path);
  const d = new Database(join(x, 'sqlite', 'long_term.sqlite'), { readonly: true });
  const rows = d.prepare('SELECT id, phase FROM batches').all() as { id: number; phase: string }[];
  d.close();
  const started = new Set(rows.filter((row) => row.phase === 'start').map((row) => row.id));
  const ended = new Set(rows.filter((row) => row.phase === 'end').map((row) => row.id));
  assert.deepEqual([...started].sort(), [...ended].sort(), 'no batch is in the copy half written');
  const last = Math.max(...ended);
  // the writer resumes once the snapshot released the gate: wait for a batch after the next one (or a
  // failed write) rather than a fixed pause, which a loaded machine can outlast
  await until(
    reported,
    (bs) =>
      bs.some((b) => b.error !== undefined) ||
      (bs.some((b) => b.id === last + 1) && bs.some((b) => b.id > last + 1)),
  );
  await writer.killGroup();
  const batches = reported();
  assert.deepEqual(
    batches.filter((b) => b.error),
    [],
    'no write failed',
  );
  assert.equal(ended.size, last, 'the copy holds batches 1..last');
  const byId = new Map(batches.map((b) => [b.id, b]));
  const lastIn = byId.get(last)!;
  const next = byId.get(last + 1);
  assert.ok(next, 'the batch after the copy ran once the snapshot released the gate');
  // batch last+1 was called inside batch `last` (the writer's rule), while the snapshot waited for the
  // gate: it did not join the writer's shared lock, it entered only after every batch of the copy left
  assert.ok(next.called < lastIn.left, 'the next batch was called while the last copied one was in flight');
  const copiedLeft = Math.max(...[...ended].map((id) => byId.get(id)!.left));
  assert.ok(
    next.entered > copiedLeft,
    `batch ${last + 1} waited (entered ${next.entered.toFixed(1)}) until the batches of the copy had left (${copiedLeft.toFixed(1)})`,
  );
  assert.ok(
    batches.some((b) => b.id > last + 1),
    'the writer resumed: later batches ran after the snapshot',
  );
});

test('a CONCURRENT refusal names only a live holder: a killed holder left its record, a release removes its own', async (t) => {
  const a = sampleAgent(t);
  const s = new LocalSnapshotter({
    stateRoot: a.stateRoot,
    memdirRoot: a.memdirRoot,
    sqliteRoot: a.sqliteRoot,
    lockTimeoutMs: 200,
  });
  const lockPath = s.layout.agentLockPath('default', 'ana');
  const record = `${lockPath}.owner`;
  await s.snapshot({ agentId: 'ana' });
  assert.equal(existsSync(record), false, 'a finished snapshot leaves no record of holding the lock');
  // A holder that records nothing (docs/locking.md: any language may take the lock) beside the record of
  // a process that held the lock before and was killed (its pid is gone)
  const gone = Number(execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']));
  const recordOf = (pid: number, operation: string) =>
    JSON.stringify({ pid, host: hostname(), operation, since_ms: Date.now() - 60_000 });
  writeFileSync(record, recordOf(gone, 'restore'));
  const held = tryAcquire(lockPath, 'exclusive')!;
  t.after(() => held.release());
  await assert.rejects(s.snapshot({ agentId: 'ana' }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'CONCURRENT');
    assert.doesNotMatch(err.message, /restore|pid/, `the dead process is not named: ${err.message}`);
    return true;
  });
  // a live holder's record still names it
  writeFileSync(record, recordOf(process.pid, 'test-holder'));
  await assert.rejects(s.snapshot({ agentId: 'ana' }), /test-holder \(pid \d+/);
  held.release();
  assert.equal(existsSync(record), false, "the release removed this process's record");
  assert.equal((await s.snapshot({ agentId: 'ana' })).agent_id, 'ana');
});
