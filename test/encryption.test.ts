// Encryption (age v1, X25519): interop with the real `age` CLI both ways, several recipients,
// identity files, listing and verify without an identity (exit 3, never "ok"), full verify, restore
// and diff with one, and every bad input (wrong identity, corrupt identity file, tampered or
// truncated stream, unknown recipient type): a clear error, nothing restored, nothing left behind.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { generateIdentity } from '../src/crypto/age.js';
import { LocalSnapshotter } from '../src/index.js';
import { verifyBundleFile, verifyExitCode } from '../src/verify/verify.js';
import { runBuiltCli } from './helpers/built-cli.js';
import { runCli, sampleAgent, tempDir } from './helpers/env.js';
import { serveBuilt } from './helpers/serve.js';

function keyFile(dir: string, name: string): { path: string; recipient: string } {
  const id = generateIdentity();
  const path = join(dir, name);
  writeFileSync(path, `# created: 2026-11-26\n# public key: ${id.recipient}\n\n${id.identity}\n`);
  return { path, recipient: id.recipient };
}

function ageCliKey(dir: string, name: string): { path: string; recipient: string } {
  const path = join(dir, name);
  execFileSync('age-keygen', ['-o', path], { stdio: 'ignore' });
  return { path, recipient: execFileSync('age-keygen', ['-y', path]).toString().trim() };
}

const loadIds = async (p: string) => (await import('../src/crypto/age.js')).loadIdentities(p);

/** The `warning:` lines of a command's stderr. */
const warningLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.startsWith('warning:'));

test('an encrypted snapshot: age CLI decrypts it, tar lists it, list shows its metadata, verify says 3 without identity', async (t) => {
  const a = sampleAgent(t);
  const keys = tempDir(t);
  const k1 = keyFile(keys, 'k1.txt');
  const k2 = ageCliKey(keys, 'k2.txt');
  const meta = await a.snapshotter.snapshot({
    agentId: 'ana',
    label: 'secret',
    encrypt: [k1.recipient, k2.recipient],
  });
  assert.ok(meta.bundle_path.endsWith('.tar.zst.age'));
  assert.equal(meta.encrypted, true);
  for (const k of [k1, k2]) {
    const names = execFileSync('sh', ['-c', `age -d -i ${k.path} ${meta.bundle_path} | tar --zstd -tf -`])
      .toString()
      .trim()
      .split('\n');
    assert.equal(names[0], 'manifest.json');
    assert.ok(names.includes('sqlite/long_term.sqlite'));
  }
  const [listed] = await a.snapshotter.list('ana');
  assert.equal(listed!.id, meta.id);
  assert.equal(listed!.label, 'secret');
  assert.equal(listed!.encrypted, true);
  const bare = await verifyBundleFile(meta.bundle_path);
  assert.equal(bare.status, 'incomplete');
  assert.equal(verifyExitCode(bare), 3);
  assert.equal(bare.age_protected, true);
  assert.equal(bare.bundle_sha256_ok, true);
  assert.equal(bare.manifest_ok, false, 'never "ok" for what was not checked');
  assert.ok(bare.not_checked.some((n) => n.check === 'contents'));
  for (const k of [k1, k2]) {
    const full = await verifyBundleFile(meta.bundle_path, { identities: await loadIds(k.path), deep: true });
    assert.equal(full.status, 'verified', JSON.stringify(full.problems));
    assert.ok(full.manifest_ok && full.per_artifact_ok && full.age_protected);
    assert.equal(full.deep?.git, 'ok');
  }
  const m = JSON.parse(
    execFileSync('sh', [
      '-c',
      `age -d -i ${k1.path} ${meta.bundle_path} | tar --zstd -xOf - manifest.json`,
    ]).toString(),
  );
  assert.equal(m.encryption.scheme, 'age');
  assert.equal(m.encryption.recipients_fingerprint.length, 2);
  let r = await runCli(['verify', meta.bundle_path]);
  assert.equal(r.code, 3);
  for (const field of ['manifest_ok', 'layout_ok', 'size_ok'])
    assert.match(
      r.stdout,
      new RegExp(`^${field}: +false \\(not checked\\)$`, 'm'),
      'said as not checked, not as failed',
    );
  assert.match(r.stdout, /^bundle_sha256_ok: true /m);
  r = await runCli(['verify', meta.bundle_path, '--decrypt-identity', k2.path, '--json']);
  assert.equal(r.code, 0, r.stderr);
});

test('an identity file readable by group or others: one warning naming it and `chmod 600`, and the command still works; keygen --age writes 0600', async (t) => {
  const a = sampleAgent(t);
  const keys = tempDir(t);
  const file = join(keys, 'age identity.txt'); // a space: the chmod line quotes it
  const made = await runBuiltCli(['keygen', '--age', '--out', file]);
  assert.equal(made.code, 0, made.stderr);
  assert.equal(statSync(file).mode & 0o777, 0o600, 'keygen --age writes the identity 0600');
  const recipient = /age1[0-9a-z]+/.exec(made.stdout)![0];
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', encrypt: [recipient] });
  const verify = () => runBuiltCli(['verify', meta.bundle_path, '--decrypt-identity', file]);

  let r = await verify();
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /warning/, '0600: no warning');

  chmodSync(file, 0o644);
  r = await verify();
  assert.equal(r.code, 0, `still used: ${r.stderr}`);
  const warnings = warningLines(r.stderr);
  assert.deepEqual(warnings, [
    `warning: identity file ${file} is readable by group and others (mode 0644): whoever can read it can ` +
      `decrypt your encrypted snapshots; make it private with \`chmod 600 '${file}'\``,
  ]);

  // From the config (encryption.identity_path), read by the snapshotter and by the command: one warning.
  chmodSync(file, 0o640);
  const cfg = join(keys, 'memory.yaml');
  writeFileSync(cfg, `memory:\n  snapshot:\n    encryption:\n      identity_path: ${JSON.stringify(file)}\n`);
  r = await runBuiltCli(['diff', '--agent', 'ana', meta.id, 'live', '--config', cfg, ...a.flags]);
  assert.equal(r.code, 0, r.stderr);
  const fromConfig = warningLines(r.stderr);
  assert.equal(fromConfig.length, 1, r.stderr);
  assert.match(fromConfig[0]!, /readable by group \(mode 0640\).*`chmod 600 '.*age identity\.txt'`$/);
  // the same file named by the config and, relative to the working directory, by the flag: one warning
  r = await runBuiltCli(
    [
      'diff',
      '--agent',
      'ana',
      meta.id,
      'live',
      '--config',
      cfg,
      '--decrypt-identity',
      'age identity.txt',
      ...a.flags,
    ],
    { cwd: keys },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(warningLines(r.stderr).length, 1, r.stderr);

  chmodSync(file, 0o600);
  r = await verify();
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
});

test('a signing key readable by group or others: one warning per file (flag, config, keygen -y, serve at start), the key still signs; keygen writes it 0600 whatever the umask', async (t) => {
  const a = sampleAgent(t, 'ana', {
    files: 4,
    commits: 2,
    memories: 40,
    embeddings: 20,
    concepts: 10,
    compactions: 5,
  });
  const keys = tempDir(t);
  const key = join(keys, 'sign key'); // a space: the chmod line quotes it
  // umask 000: the modes are keygen's own, not what a umask took away
  const umask = process.umask(0);
  let made: Awaited<ReturnType<typeof runBuiltCli>>;
  try {
    made = await runBuiltCli(['keygen', '--out', key, '--json']);
  } finally {
    process.umask(umask);
  }
  assert.equal(made.code, 0, made.stderr);
  assert.equal(statSync(key).mode & 0o777, 0o600, 'the secret key is 0600 under umask 000');
  assert.equal(statSync(`${key}.pub`).mode & 0o777, 0o644, 'its public key is for everyone to read');
  const keyId = JSON.parse(made.stdout).key_id as string;
  const snapshot = (args: string[], cwd?: string) =>
    runBuiltCli(['snapshot', '--agent', 'ana', '--json', ...a.flags, ...args], cwd ? { cwd } : {});
  const signedBy = (r: { stdout: string }) => JSON.parse(r.stdout).signed_by;

  let r = await snapshot(['--sign', key]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(signedBy(r), keyId);
  assert.deepEqual(warningLines(r.stderr), [], '0600: no warning');

  chmodSync(key, 0o644);
  r = await snapshot(['--sign', key]);
  assert.equal(r.code, 0, `still used: ${r.stderr}`);
  assert.equal(signedBy(r), keyId);
  assert.deepEqual(warningLines(r.stderr), [
    `warning: signing key file ${key} is readable by group and others (mode 0644): whoever can read it can ` +
      `sign snapshots as you; make it private with \`chmod 600 '${key}'\``,
  ]);
  r = await runBuiltCli(['keygen', '-y', key]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(warningLines(r.stderr).length, 1, r.stderr);
  // the .pub (0644, public) given by mistake: the KEY error, no warning about a secret it does not hold
  r = await snapshot(['--sign', `${key}.pub`]);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(JSON.parse(r.stdout).error.code, 'KEY');
  assert.deepEqual(warningLines(r.stderr), []);

  // From the config (signing.key_path) and, relative to the working directory, by the flag: one warning.
  chmodSync(key, 0o640);
  const cfg = join(keys, 'memory.yaml');
  writeFileSync(
    cfg,
    `memory:\n  snapshot:\n    signing:\n      key_path: ${JSON.stringify(key)}\n    server:\n      token: ${'t'.repeat(32)}\n`,
  );
  r = await snapshot(['--config', cfg, '--sign', 'sign key'], keys);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(signedBy(r), keyId);
  const fromBoth = warningLines(r.stderr);
  assert.equal(fromBoth.length, 1, r.stderr);
  assert.match(
    fromBoth[0]!,
    /readable by group \(mode 0640\).*sign snapshots as you.*`chmod 600 '.*sign key'`$/,
  );

  // The daemon says it once, at start (before it listens), and not again when it signs.
  const d = await serveBuilt(t, ['--config', cfg, ...a.flags]);
  assert.equal(warningLines(d.stderr()).length, 1, d.stderr());
  const res = await fetch(`${d.url}/v1/agents/ana/snapshots`, {
    method: 'POST',
    headers: { authorization: `Bearer ${'t'.repeat(32)}`, 'content-type': 'application/json' },
    body: '{}',
  });
  const body = (await res.json()) as { signed_by?: string };
  assert.equal(res.status, 201, JSON.stringify(body));
  assert.equal(body.signed_by, keyId, 'signed with the configured key');
  assert.equal(await d.stop(), 0);
  assert.deepEqual(warningLines(d.stderr()), fromBoth, d.stderr());

  chmodSync(key, 0o600);
  r = await snapshot(['--config', cfg]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(signedBy(r), keyId);
  assert.deepEqual(warningLines(r.stderr), [], r.stderr);
});

test('restore and diff of an encrypted bundle with an identity; the pre-restore anchor is encrypted too', async (t) => {
  const keys = tempDir(t);
  const k = keyFile(keys, 'k.txt');
  const base = sampleAgent(t);
  const s = new LocalSnapshotter({
    stateRoot: base.stateRoot,
    memdirRoot: base.memdirRoot,
    sqliteRoot: base.sqliteRoot,
    recipients: [k.recipient],
  });
  const snap = await s.snapshot({ agentId: 'ana' });
  assert.equal(snap.encrypted, true, 'configured recipients apply by default');
  const db = new Database(join(base.sqliteDir, 'long_term.sqlite'));
  db.prepare('DELETE FROM memories WHERE id <= 5').run();
  db.close();
  const later = await s.snapshot({ agentId: 'ana' });
  const d = await s.diff({ agentId: 'ana', a: snap.id, b: later.id, decryptIdentity: k.path });
  assert.equal(d.sqlite_summary.long_term_rows_removed, 5);
  await assert.rejects(s.diff({ agentId: 'ana', a: snap.id, b: later.id }), { code: 'ENCRYPTION' });
  const r = await s.restore({ agentId: 'ana', bundle: snap.bundle_path, decryptIdentity: k.path });
  const check = new Database(join(base.sqliteDir, 'long_term.sqlite'), { readonly: true });
  assert.equal(check.prepare('SELECT count(*) FROM memories').pluck().get(), 200);
  check.close();
  const anchor = (await s.list('ana')).find((x) => x.id === r.pre_snapshot)!;
  assert.ok(anchor.bundle_path.endsWith('.age') && anchor.encrypted);
  await assert.rejects(s.restore({ agentId: 'ana', bundle: snap.bundle_path }), {
    code: 'ENCRYPTION',
    exitCode: 7,
  });
});

test('a plaintext bundle encrypted by the age CLI restores with our tool', async (t) => {
  const a = sampleAgent(t);
  const keys = tempDir(t);
  const k = ageCliKey(keys, 'k.txt');
  const plain = await a.snapshotter.snapshot({ agentId: 'ana' });
  const out = join(tempDir(t), 'exported.tar.zst.age');
  execFileSync('age', ['-r', k.recipient, '-o', out, plain.bundle_path]);
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  db.prepare('DELETE FROM memories').run();
  db.close();
  const r = await a.snapshotter.restore({ agentId: 'ana', bundle: out, decryptIdentity: k.path });
  assert.equal(r.from, plain.id);
  const check = new Database(join(a.sqliteDir, 'long_term.sqlite'), { readonly: true });
  assert.equal(check.prepare('SELECT count(*) FROM memories').pluck().get(), 200);
  check.close();
});

test('bad keys and damaged streams: a clear error, nothing restored, nothing left behind', async (t) => {
  const a = sampleAgent(t);
  const keys = tempDir(t);
  const k = keyFile(keys, 'k.txt');
  const other = keyFile(keys, 'other.txt');
  const snap = await a.snapshotter.snapshot({ agentId: 'ana', encrypt: [k.recipient] });
  // a wrong identity
  await assert.rejects(
    verifyBundleFile(snap.bundle_path, { identities: await loadIds(other.path) }),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ENCRYPTION');
      assert.match(err.message, /no identity matched/);
      return true;
    },
  );
  // a corrupt identity file, an empty one
  writeFileSync(join(keys, 'bad.txt'), '# comment\nAGE-SECRET-KEY-1NOTAKEY\n');
  await assert.rejects(loadIds(join(keys, 'bad.txt')), /identity parse failed.*bad\.txt, line 2\)/);
  // an SSH private key, and an identity file that is itself age-encrypted (passphrase): said so
  writeFileSync(join(keys, 'ssh.txt'), '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n');
  await assert.rejects(loadIds(join(keys, 'ssh.txt')), /SSH private key: SSH identities are not supported/);
  writeFileSync(join(keys, 'pass.txt'), '-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24\n');
  await assert.rejects(loadIds(join(keys, 'pass.txt')), /passphrase-protected identities are not supported/);
  writeFileSync(join(keys, 'empty.txt'), '# only a comment\n\n');
  await assert.rejects(loadIds(join(keys, 'empty.txt')), /no identities/);
  // an unknown recipient type, and not a recipient at all: refused before anything is created
  const before = readdirSync(join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana')).sort();
  for (const bad of [
    'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG',
    'age1notarecipient',
    'age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3ht3qk',
  ]) {
    await assert.rejects(a.snapshotter.snapshot({ agentId: 'ana', encrypt: [bad] }), { code: 'ENCRYPTION' });
  }
  // an identity (a secret key) given as a recipient, whole or with one character changed, and an SSH
  // key: the error says what it is and never repeats it (it lands in logs and JSON errors)
  const secret = generateIdentity().identity;
  const changed = `${secret.slice(0, -3)}${secret.at(-3) === 'Q' ? 'P' : 'Q'}${secret.slice(-2)}`;
  for (const [given, says] of [
    [secret, /is an age identity \(a secret key\), not a recipient/],
    [changed, /is an age identity \(a secret key\), not a recipient/],
    ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG', /SSH recipients are not supported/],
  ] as const) {
    const r = await runCli(['snapshot', '--agent', 'ana', '--encrypt', given, '--json', ...a.flags]);
    assert.equal(r.code, 7, r.stdout);
    assert.match(r.stderr, says);
    assert.ok(!`${r.stdout}${r.stderr}`.includes(given.slice(20, 40)), 'the value is not repeated');
  }
  assert.deepEqual(readdirSync(join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana')).sort(), before);
  // a tampered and a truncated stream: damaged, and restore changes nothing
  const bytes = readFileSync(snap.bundle_path);
  const dir = tempDir(t);
  const tampered = Buffer.from(bytes);
  tampered[Math.floor(bytes.length * 0.7)]! ^= 1;
  writeFileSync(join(dir, 'tampered.tar.zst.age'), tampered);
  writeFileSync(join(dir, 'truncated.tar.zst.age'), bytes.subarray(0, bytes.length - 100));
  const ids = await loadIds(k.path);
  const liveBefore = readFileSync(join(a.sqliteDir, 'long_term.sqlite'));
  for (const name of ['tampered.tar.zst.age', 'truncated.tar.zst.age']) {
    const rep = await verifyBundleFile(join(dir, name), { identities: ids });
    assert.equal(rep.status, 'damaged', name);
    assert.ok(
      rep.problems.some((p) => /authentication|truncated/.test(p.message)),
      JSON.stringify(rep.problems),
    );
    await assert.rejects(
      a.snapshotter.restore({ agentId: 'ana', bundle: join(dir, name), decryptIdentity: k.path }),
      { exitCode: 2 },
    );
  }
  assert.ok(readFileSync(join(a.sqliteDir, 'long_term.sqlite')).equals(liveBefore));
  assert.equal((await a.snapshotter.list('ana')).length, 1, 'no pre-restore snapshot from a refused restore');
  assert.deepEqual(
    readdirSync(a.sqliteDir).filter((n) => n.startsWith('.')),
    [],
  );
});

test('an encrypted bundle without its sidecar still lists (from its name and the directory)', async (t) => {
  const a = sampleAgent(t);
  const k = keyFile(tempDir(t), 'k.txt');
  const snap = await a.snapshotter.snapshot({ agentId: 'ana', encrypt: [k.recipient] });
  const { rmSync } = await import('node:fs');
  rmSync(`${snap.bundle_path}.meta.json`);
  const [m] = await a.snapshotter.list('ana');
  assert.equal(m!.id, snap.id);
  assert.equal(m!.agent_id, 'ana');
  assert.equal(m!.encrypted, true);
  assert.equal(m!.file_sha256, snap.file_sha256);
});

test('the STREAM encoder at chunk boundaries: the age CLI decrypts every size, however the input is split', async (t) => {
  const { ageEncrypt, CHUNK } = await import('../src/crypto/age.js');
  const { randomBytes } = await import('node:crypto');
  const k = keyFile(tempDir(t), 'k.txt');
  for (const size of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17]) {
    for (const split of [size || 1, 1000, CHUNK, 7 * 1024 + 3]) {
      const data = randomBytes(size);
      async function* pieces(): AsyncGenerator<Buffer> {
        for (let i = 0; i < data.length; i += split) yield data.subarray(i, i + split);
      }
      const parts: Buffer[] = [];
      for await (const c of ageEncrypt(pieces(), [k.recipient])) parts.push(Buffer.from(c));
      const plain = execFileSync('age', ['-d', '-i', k.path], { input: Buffer.concat(parts) });
      assert.ok(plain.equals(data), `size ${size}, split ${split}`);
    }
  }
});
