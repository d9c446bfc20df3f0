// Signatures (ed25519 over the manifest seal): keygen files and permissions, signed snapshots that
// verify with --trust, and every way to get it wrong — a manifest edited and re-sealed without the key,
// a signature stripped, a bundle re-signed by another key, an unsigned bundle, a wrong key — exits 2;
// restore under require_signature refuses before anything is written; signed + encrypted bundles;
// corrupt and wrong-type key files; export --decrypt-identity verifies the copy before publishing.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { generateIdentity, loadIdentities } from '../src/crypto/age.js';
import { generateSigningKey, loadSigningKey, secretKeyFileText } from '../src/crypto/sign.js';
import { manifestSeal } from '../src/format/manifest.js';
import { trustPolicy } from '../src/format/signature.js';
import { LocalSnapshotter } from '../src/index.js';
import { verifyBundleFile, verifyExitCode } from '../src/verify/verify.js';
import { forgeBundle, readEntries, repack, writeBundleFile } from './helpers/bundles.js';
import { gnuExtract, runCli, sampleAgent, tempDir } from './helpers/env.js';

interface KeyPair {
  secretPath: string;
  publicKey: string;
  keyId: string;
}

function signingKeyFile(dir: string, name: string): KeyPair {
  const k = generateSigningKey();
  const secretPath = join(dir, name);
  writeFileSync(secretPath, secretKeyFileText(k), { mode: 0o600 });
  writeFileSync(`${secretPath}.pub`, `${k.publicKey}\n`);
  return { secretPath, publicKey: k.publicKey, keyId: k.keyId };
}

function ageKeyFile(dir: string, name: string): { path: string; recipient: string } {
  const id = generateIdentity();
  const path = join(dir, name);
  writeFileSync(path, `# test identity\n${id.identity}\n`);
  return { path, recipient: id.recipient };
}

type Entries = Awaited<ReturnType<typeof readEntries>>;

/** Rewrites the manifest of a plaintext bundle (as an attacker without the key could) and repacks it. */
async function forge(
  bundle: string,
  out: string,
  edit: (m: Record<string, unknown>) => void,
  opts: { reseal?: boolean } = {},
): Promise<string> {
  const entries: Entries = await readEntries(bundle);
  const m = JSON.parse(entries[0]!.data.toString()) as Record<string, unknown>;
  edit(m);
  if (opts.reseal !== false) m.manifest_seal = manifestSeal(m);
  const data = Buffer.from(JSON.stringify(m, null, 2));
  return writeBundleFile(out, repack([{ path: 'manifest.json', data }, ...entries.slice(1)]));
}

const codes = (r: { problems: Array<{ code: string }> }) => r.problems.map((p) => p.code);

test('keygen writes a 0600 secret key and a .pub, never overwrites, and -y prints the public key', async (t) => {
  const dir = tempDir(t);
  const key = join(dir, 'sign.key');
  let r = await runCli(['keygen', '--out', key, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { public_key: string; key_id: string };
  assert.deepEqual(out, {
    kind: 'ed25519',
    public_key: out.public_key,
    key_id: out.key_id,
    secret_key_path: key,
    public_key_path: `${key}.pub`,
  });
  assert.match(out.public_key, /^nexo-sign-pub1[02-9ac-hj-np-z]+$/);
  assert.match(out.key_id, /^[0-9a-f]{16}$/);
  assert.equal(statSync(key).mode & 0o777, 0o600);
  assert.equal(statSync(`${key}.pub`).mode & 0o777, 0o644);
  assert.equal(readFileSync(`${key}.pub`, 'utf8').trim(), out.public_key);
  const text = readFileSync(key, 'utf8');
  assert.match(text, /^# /m);
  assert.ok(text.includes(`# public key: ${out.public_key}`));
  assert.equal(loadSigningKey(key).publicKey, out.public_key);
  r = await runCli(['keygen', '--out', key]);
  assert.equal(r.code, 6, 'an existing key is never replaced');
  assert.equal(readFileSync(key, 'utf8'), text);
  r = await runCli(['keygen', '-y', key]);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), out.public_key);
  // -y of the .pub file itself says what -y takes
  r = await runCli(['keygen', '-y', `${key}.pub`]);
  assert.equal(r.code, 1, r.stderr); // KEY
  assert.match(r.stderr, /is a public key already; -y prints the public key of a secret key file/);
  // a directory that does not exist is named as such (not the temporary file's ENOENT alone), both kinds
  for (const args of [[], ['--age']]) {
    const nowhere = join(dir, 'no-such-dir', 'k');
    r = await runCli(['keygen', ...args, '--out', nowhere, '--json']);
    assert.equal(r.code, 1, r.stderr);
    const err = JSON.parse(r.stdout).error as { code: string; message: string };
    assert.equal(err.code, 'IO');
    // (the ed25519 pair writes its .pub first)
    const file = args.length > 0 ? nowhere : `${nowhere}.pub`;
    assert.ok(
      err.message.startsWith(
        `creating ${file}: its directory ${join(dir, 'no-such-dir')} does not exist (keygen never creates directories; create it first)`,
      ),
      err.message,
    );
  }
  // --age: an identity file the age CLI reads, 0600, whose recipient encrypts for it
  const ageFile = join(dir, 'age.txt');
  r = await runCli(['keygen', '--age', '--out', ageFile, '--json']);
  assert.equal(r.code, 0, r.stderr);
  // one shape for every key: kind, public_key, then what applies (key_id, the files written)
  const made = JSON.parse(r.stdout) as { public_key: string };
  const recipient = made.public_key;
  assert.deepEqual(made, { kind: 'age', public_key: recipient, secret_key_path: ageFile });
  r = await runCli(['keygen', '-y', ageFile, '--json']);
  assert.deepEqual(JSON.parse(r.stdout), { kind: 'age', public_key: recipient });
  r = await runCli(['keygen', '-y', key, '--json']);
  assert.deepEqual(JSON.parse(r.stdout), { kind: 'ed25519', public_key: out.public_key, key_id: out.key_id });
  assert.equal(statSync(ageFile).mode & 0o777, 0o600);
  assert.equal(execFileSync('age-keygen', ['-y', ageFile]).toString().trim(), recipient);
  const sealed = execFileSync('age', ['-r', recipient], { input: 'hello' });
  assert.equal(execFileSync('age', ['-d', '-i', ageFile], { input: sealed }).toString(), 'hello');
  // Human output says what README and --help say it prints: the recipient (for --encrypt), not a
  // "public key" that could be taken for a signing key (--trust).
  const ageFile2 = join(dir, 'age2.txt');
  r = await runCli(['keygen', '--age', '--out', ageFile2]);
  assert.equal(r.code, 0, r.stderr);
  const recipient2 = execFileSync('age-keygen', ['-y', ageFile2]).toString().trim();
  assert.equal(r.stdout, `recipient: ${recipient2}\n`);
  assert.equal(r.stderr, `age identity written to ${ageFile2} (mode 0600)\n`);
});

test('a signed snapshot: v3 manifest, key id in list and verify, --trust exits 0, GNU tar reads it', async (t) => {
  const a = sampleAgent(t);
  const k = signingKeyFile(tempDir(t), 'sign.key');
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', label: 'signed', sign: k.secretPath });
  assert.equal(meta.signed_by, k.keyId);
  assert.equal(meta.bundle_format, 'nexo-memory-snapshot-v3');
  const m = JSON.parse(readFileSync(join(gnuExtract(t, meta.bundle_path), 'manifest.json'), 'utf8'));
  assert.equal(m.manifest_version, 3);
  assert.equal(m.signature.scheme, 'ed25519');
  assert.equal(m.signature.key_id, k.keyId);
  assert.equal(m.signature.public_key, k.publicKey);
  assert.equal(manifestSeal(m), m.manifest_seal, 'the seal excludes the signature');

  const [listed] = await a.snapshotter.list('ana');
  assert.equal(listed!.signed_by, k.keyId);
  let r = await runCli(['list', '--agent', 'ana', '--state-root', a.stateRoot]);
  assert.ok(r.stdout.includes(`sig:${k.keyId}`), r.stdout);

  const plain = await verifyBundleFile(meta.bundle_path);
  assert.equal(plain.status, 'verified');
  assert.deepEqual(plain.signature, { status: 'valid', key_id: k.keyId });
  assert.ok(plain.not_checked.some((n) => n.check === 'signature_trust'));

  r = await runCli(['verify', meta.bundle_path, '--trust', k.publicKey, '--json']);
  assert.equal(r.code, 0, r.stdout);
  assert.deepEqual(JSON.parse(r.stdout).signature, { status: 'trusted', key_id: k.keyId });
  // --trust is repeatable and takes files: another key, then the .pub file
  const other = signingKeyFile(tempDir(t), 'other.key');
  r = await runCli([
    'verify',
    meta.bundle_path,
    '--trust',
    other.publicKey,
    '--trust',
    `${k.secretPath}.pub`,
  ]);
  assert.equal(r.code, 0, r.stdout);
  assert.match(r.stdout, new RegExp(`signature: +trusted \\(key ${k.keyId}\\)`));
  // export's own verify of the copy checks the configured trusted keys as verify does (not required:
  // an untrusted signature is said so, and the export goes on)
  const out = tempDir(t);
  for (const [trusted, status] of [
    [k.publicKey, 'trusted'],
    [other.publicKey, 'untrusted'],
  ] as const) {
    const s = new LocalSnapshotter({
      stateRoot: a.stateRoot,
      memdirRoot: a.memdirRoot,
      sqliteRoot: a.sqliteRoot,
      trustedKeys: [trusted],
    });
    const x = await s.export('ana', undefined, meta.id, join(out, `${status}.tar.zst`), { redact: false });
    assert.equal(x.verify.signature?.status, status);
    const trust = x.verify.not_checked.find((n) => n.check === 'signature_trust');
    if (status === 'trusted') assert.equal(trust, undefined, 'who signed was checked');
    else assert.match(trust?.reason ?? '', /not among the trusted keys/);
  }
});

test('tampering under a signature exits 2: edited + re-sealed, stripped, re-signed by another key', async (t) => {
  const a = sampleAgent(t);
  const keys = tempDir(t);
  const k = signingKeyFile(keys, 'sign.key');
  const attacker = loadSigningKey(signingKeyFile(keys, 'attacker.key').secretPath);
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', sign: k.secretPath });
  const dir = tempDir(t);

  // one manifest field changed, both seals recomputed: only the signature can tell
  const edited = await forge(meta.bundle_path, join(dir, 'edited.tar.zst'), (m) => {
    m.label = 'innocent';
  });
  for (const trust of [[k.publicKey], []]) {
    const r = await runCli(['verify', edited, ...trust.flatMap((x) => ['--trust', x]), '--json']);
    assert.equal(r.code, 2, 'a signature that does not verify is damage, trusted keys or not');
    const rep = JSON.parse(r.stdout);
    assert.equal(rep.signature.status, 'invalid');
    assert.equal(rep.status, 'damaged');
    assert.deepEqual(codes(rep), ['SIGNATURE_INVALID']);
    assert.equal(rep.manifest_ok, true, 'the seals themselves match: the attacker recomputed them');
  }

  // the signature removed, the format turned back to unsigned v2 and re-sealed
  const stripped = await forge(meta.bundle_path, join(dir, 'stripped.tar.zst'), (m) => {
    delete m.signature;
    m.manifest_version = 2;
    m.bundle_format = 'nexo-memory-snapshot-v2';
    (m.schema_versions as Record<string, number>).manifest = 2;
  });
  assert.equal(
    verifyExitCode(await verifyBundleFile(stripped)),
    0,
    'a valid unsigned bundle without --trust',
  );
  let r = await runCli(['verify', stripped, '--trust', k.publicKey, '--json']);
  assert.equal(r.code, 2);
  assert.deepEqual(codes(JSON.parse(r.stdout)), ['SIGNATURE_MISSING']);

  // the signature removed, still v3
  const bare = await forge(meta.bundle_path, join(dir, 'bare.tar.zst'), (m) => {
    delete m.signature;
  });
  r = await runCli(['verify', bare, '--json']);
  assert.equal(r.code, 2);
  assert.deepEqual(codes(JSON.parse(r.stdout)), ['SIGNATURE_INVALID']);

  // a signature field smuggled into an unsigned v2 manifest, sealed or not: only v3 carries one
  for (const reseal of [false, true]) {
    const smuggled = await forge(
      stripped,
      join(dir, `smuggled-${reseal}.tar.zst`),
      (m) => {
        m.signature = { scheme: 'ed25519', key_id: k.keyId, public_key: k.publicKey, value: 'AAAA' };
      },
      { reseal },
    );
    r = await runCli(['verify', smuggled, '--json']);
    assert.equal(r.code, 2);
    assert.deepEqual(codes(JSON.parse(r.stdout)), ['BUNDLE_DAMAGED']);
  }

  // edited and re-signed with the attacker's own key: valid, but not by a trusted key
  const { sealManifest } = await import('../src/format/manifest.js');
  const resigned = await forge(
    meta.bundle_path,
    join(dir, 'resigned.tar.zst'),
    (m) => {
      const { manifest } = sealManifest(
        {
          ...(m as never as Parameters<typeof sealManifest>[0]),
          label: 'evil',
        },
        attacker,
      );
      for (const key of Object.keys(m)) delete m[key];
      Object.assign(m, manifest);
    },
    { reseal: false },
  );
  const loose = await verifyBundleFile(resigned);
  assert.equal(loose.status, 'verified');
  assert.deepEqual(loose.signature, { status: 'valid', key_id: attacker.keyId });
  r = await runCli(['verify', resigned, '--trust', k.publicKey, '--json']);
  assert.equal(r.code, 2);
  const rep = JSON.parse(r.stdout);
  assert.deepEqual(codes(rep), ['SIGNATURE_UNTRUSTED']);
  assert.equal(rep.signature.key_id, attacker.keyId);
});

test('a signature spelled another way is invalid: public key in upper case or with spaces, base64 without padding or with stray bits', async (t) => {
  const a = sampleAgent(t);
  const keys = tempDir(t);
  const k = signingKeyFile(keys, 'sign.key');
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', sign: k.secretPath });
  const dir = tempDir(t);
  assert.equal(
    (await verifyBundleFile(meta.bundle_path, { trust: trustPolicy([k.publicKey], true) })).status,
    'verified',
  );
  const respell: Array<[string, (sig: Record<string, string>) => void]> = [
    ['upper-case public key', (sig) => (sig.public_key = sig.public_key!.toUpperCase())],
    ['public key with a space', (sig) => (sig.public_key = ` ${sig.public_key}`)],
    ['value without padding', (sig) => (sig.value = sig.value!.replace(/=+$/, ''))],
    [
      'value with non-zero padding bits',
      (sig) => {
        const v = sig.value!;
        const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
        const last = alphabet.indexOf(v[85]!);
        sig.value = `${v.slice(0, 85)}${alphabet[last ^ 1]}==`; // the same 64 bytes, another text
      },
    ],
  ];
  for (const [name, edit] of respell) {
    const p = await forge(meta.bundle_path, join(dir, `${name.replaceAll(' ', '-')}.tar.zst`), (m) =>
      edit(m.signature as Record<string, string>),
    );
    const r = await verifyBundleFile(p, { trust: trustPolicy([k.publicKey], true) });
    assert.equal(r.signature?.status, 'invalid', name);
    assert.deepEqual(codes(r), ['SIGNATURE_INVALID'], name);
  }
});

test('unsigned bundle or wrong key with --trust: exit 2; the same through the library', async (t) => {
  const a = sampleAgent(t);
  const keys = tempDir(t);
  const k = signingKeyFile(keys, 'sign.key');
  const wrong = signingKeyFile(keys, 'wrong.key');
  const unsigned = await a.snapshotter.snapshot({ agentId: 'ana' });
  assert.equal(unsigned.signed_by, undefined);
  let r = await runCli(['verify', unsigned.bundle_path, '--trust', k.publicKey, '--json']);
  assert.equal(r.code, 2);
  assert.equal(JSON.parse(r.stdout).signature.status, 'unsigned');
  assert.equal(JSON.parse(r.stdout).status, 'untrusted');
  assert.deepEqual(codes(JSON.parse(r.stdout)), ['SIGNATURE_MISSING']);
  const signed = await a.snapshotter.snapshot({ agentId: 'ana', sign: loadSigningKey(k.secretPath) });
  r = await runCli(['verify', signed.bundle_path, '--trust', wrong.publicKey]);
  assert.equal(r.code, 2);
  assert.match(r.stdout, /SIGNATURE_UNTRUSTED/);
  const rep = await a.snapshotter.verify(signed.bundle_path, { trust: [`${wrong.secretPath}.pub`] });
  assert.equal(rep.status, 'untrusted', 'intact but signed by a key not trusted: untrusted, not damaged');
  assert.deepEqual(codes(rep), ['SIGNATURE_UNTRUSTED']);
  const ok = await a.snapshotter.verify(signed.bundle_path, { trust: [k.publicKey] });
  assert.equal(ok.status, 'verified');
  // trusted keys in the config without require_signature: reported, not required
  const cfg = join(keys, 'config.yaml');
  writeFileSync(cfg, `snapshot:\n  signing:\n    trusted_keys: [${wrong.publicKey}]\n`);
  r = await runCli(['verify', signed.bundle_path, '--config', cfg, '--json']);
  assert.equal(r.code, 0, r.stdout);
  assert.equal(JSON.parse(r.stdout).signature.status, 'untrusted');
  writeFileSync(
    cfg,
    `snapshot:\n  signing:\n    trusted_keys: [${wrong.publicKey}]\n    require_signature: true\n`,
  );
  r = await runCli(['verify', signed.bundle_path, '--config', cfg]);
  assert.equal(r.code, 2);
  // a library restore given trusted keys requires a signature by one of them
  await assert.rejects(
    a.snapshotter.restore({ agentId: 'ana', bundle: unsigned.bundle_path, trust: [k.publicKey] }),
    { code: 'SIGNATURE_MISSING' },
  );
});

test('restore with require_signature: unsigned, tampered and untrusted bundles are refused before anything is written', async (t) => {
  const base = sampleAgent(t);
  const keys = tempDir(t);
  const k = signingKeyFile(keys, 'sign.key');
  const other = signingKeyFile(keys, 'other.key');
  const s = new LocalSnapshotter({
    stateRoot: base.stateRoot,
    memdirRoot: base.memdirRoot,
    sqliteRoot: base.sqliteRoot,
    lockTimeoutMs: 5_000,
    signingKey: k.secretPath,
    trustedKeys: [`${k.secretPath}.pub`],
    requireSignature: true,
  });
  const unsignedSnap = await base.snapshotter.snapshot({ agentId: 'ana' });
  const signedSnap = await s.snapshot({ agentId: 'ana' });
  assert.equal(signedSnap.signed_by, k.keyId, 'the configured key signs by default');
  const byOther = await s.snapshot({ agentId: 'ana', sign: other.secretPath });
  const tampered = await forge(signedSnap.bundle_path, join(tempDir(t), 'tampered.tar.zst'), (m) => {
    m.created_by = 'someone-else';
  });
  const db = new Database(join(base.sqliteDir, 'long_term.sqlite'));
  db.prepare('DELETE FROM memories WHERE id <= 7').run();
  db.close();
  const snapDir = join(base.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  const live = () => readFileSync(join(base.sqliteDir, 'long_term.sqlite'));
  const liveBefore = live();
  const filesBefore = readdirSync(snapDir).sort();
  const memdirBefore = readdirSync(base.memdir).sort();
  for (const [bundle, code] of [
    [unsignedSnap.bundle_path, 'SIGNATURE_MISSING'],
    [tampered, 'SIGNATURE_INVALID'],
    [byOther.bundle_path, 'SIGNATURE_UNTRUSTED'],
  ] as const) {
    await assert.rejects(s.restore({ agentId: 'ana', bundle }), { code, exitCode: 2, outcome: 'untrusted' });
    await assert.rejects(s.restore({ agentId: 'ana', bundle, dryRun: true }), { code });
  }
  // an invalid signature is refused even where signatures are not required
  await assert.rejects(base.snapshotter.restore({ agentId: 'ana', bundle: tampered }), {
    code: 'SIGNATURE_INVALID',
  });
  assert.ok(live().equals(liveBefore), 'live data byte-identical');
  assert.deepEqual(readdirSync(snapDir).sort(), filesBefore, 'no pre-restore anchor, no leftovers');
  assert.deepEqual(readdirSync(base.memdir).sort(), memdirBefore);
  assert.deepEqual(
    readdirSync(base.sqliteDir).filter((n) => n.startsWith('.')),
    [],
  );

  // a bundle signed by the trusted key restores; its anchor is signed too, so undo works under the rule
  const r = await s.restore({ agentId: 'ana', bundle: signedSnap.bundle_path });
  assert.deepEqual(r.signature, { status: 'trusted', key_id: k.keyId });
  const check = new Database(join(base.sqliteDir, 'long_term.sqlite'), { readonly: true });
  assert.equal(check.prepare('SELECT count(*) FROM memories').pluck().get(), 200);
  check.close();
  const anchor = (await s.list('ana')).find((x) => x.id === r.pre_snapshot)!;
  assert.equal(anchor.signed_by, k.keyId);
  await s.restore({ agentId: 'ana', bundle: anchor.bundle_path });
  assert.ok(live().length > 0);

  // the CLI: config signing.require_signature refuses with exit 2
  const cfg = join(keys, 'config.yaml');
  writeFileSync(
    cfg,
    `memory:\n  snapshot:\n    signing:\n      trusted_keys: [${k.publicKey}]\n      require_signature: true\n`,
  );
  const before = live();
  const cli = await runCli(
    [
      'restore',
      '--agent',
      'ana',
      '--from',
      unsignedSnap.bundle_path,
      '--config',
      cfg,
      '--json',
      ...base.flags,
    ],
    { env: { NEXO_MEMORY_RESTORE_ALLOW: 'true' } },
  );
  assert.equal(cli.code, 2, cli.stderr);
  assert.equal(JSON.parse(cli.stdout).error.code, 'SIGNATURE_MISSING');
  assert.ok(live().equals(before));
  // require_signature without trusted keys is a config error
  writeFileSync(cfg, 'memory:\n  snapshot:\n    signing:\n      require_signature: true\n');
  const bad = await runCli([
    'list',
    '--agent',
    'ana',
    '--config',
    cfg,
    '--json',
    '--state-root',
    base.stateRoot,
  ]);
  assert.equal(bad.code, 1);
  assert.equal(JSON.parse(bad.stdout).error.code, 'CONFIG');
  assert.match(bad.stderr, /signing\.require_signature/);
});

test('signed and encrypted: verifies with identity and trust; without the identity it cannot say (exit 3)', async (t) => {
  const a = sampleAgent(t);
  const keys = tempDir(t);
  const k = signingKeyFile(keys, 'sign.key');
  const age = ageKeyFile(keys, 'age.txt');
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', sign: k.secretPath, encrypt: [age.recipient] });
  assert.ok(meta.bundle_path.endsWith('.age'));
  assert.equal(meta.signed_by, k.keyId);
  let r = await runCli([
    'verify',
    meta.bundle_path,
    '--decrypt-identity',
    age.path,
    '--trust',
    k.publicKey,
    '--json',
  ]);
  assert.equal(r.code, 0, r.stdout);
  assert.equal(JSON.parse(r.stdout).signature.status, 'trusted');
  r = await runCli(['verify', meta.bundle_path, '--trust', k.publicKey, '--json']);
  assert.equal(r.code, 3);
  assert.ok(JSON.parse(r.stdout).not_checked.some((n: { check: string }) => n.check === 'signature'));
  const other = signingKeyFile(keys, 'other.key');
  r = await runCli(['verify', meta.bundle_path, '--decrypt-identity', age.path, '--trust', other.publicKey]);
  assert.equal(r.code, 2);
});

test('bad keys: corrupt, wrong type, secret where public belongs — typed KEY errors, nothing created', async (t) => {
  const a = sampleAgent(t);
  const keys = tempDir(t);
  const k = signingKeyFile(keys, 'sign.key');
  const snapDir = join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana');
  const corrupt = join(keys, 'corrupt.key');
  const text = readFileSync(k.secretPath, 'utf8');
  const line = text.split('\n').find((l) => l.startsWith('NEXO-SIGN-SECRET-KEY-1'))!;
  const flipped = `${line.slice(0, 30)}${line[30] === 'Q' ? 'P' : 'Q'}${line.slice(31)}`;
  writeFileSync(corrupt, text.replace(line, flipped));
  const age = ageKeyFile(keys, 'age.txt');
  const rsa = join(keys, 'rsa.pem');
  writeFileSync(
    rsa,
    generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }),
  );
  for (const [file, message] of [
    [corrupt, /corrupt secret key/],
    [age.path, /age identity/],
    [`${k.secretPath}.pub`, /a public key/],
    [rsa, /rsa key; signatures need ed25519/],
    [join(keys, 'missing.key'), /cannot read key file/],
  ] as const) {
    await assert.rejects(
      a.snapshotter.snapshot({ agentId: 'ana', sign: file }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'KEY');
        assert.match(err.message, message);
        return true;
      },
    );
  }
  assert.equal(existsSync(snapDir) ? readdirSync(snapDir).length : 0, 0, 'nothing created');
  const r = await runCli(['snapshot', '--agent', 'ana', '--sign', age.path, '--json', ...a.flags]);
  assert.equal(r.code, 1);
  assert.equal(JSON.parse(r.stdout).error.code, 'KEY');
  // trust: a secret key, an age recipient, a corrupt public key
  assert.throws(() => trustPolicy([k.secretPath], true), /a secret key; trust its public key/);
  assert.throws(() => trustPolicy([age.recipient], true), /age recipient/);
  const secretLine = readFileSync(k.secretPath, 'utf8').trim().split('\n').pop()!;
  assert.throws(
    () => trustPolicy([secretLine], true),
    (err: Error) =>
      /a secret key; trust its public key/.test(err.message) && !err.message.includes(secretLine),
  );
  const lastChar = k.publicKey.endsWith('x') ? 'y' : 'x'; // always a different character
  assert.throws(() => trustPolicy([`${k.publicKey.slice(0, -1)}${lastChar}`], true), /corrupt public key/);
  const v = await runCli(['verify', '/nonexistent.tar.zst', '--trust', age.recipient]);
  assert.equal(v.code, 1);
  // PEM ed25519 keys (openssl genpkey -algorithm ed25519) work for signing and trust
  const pair = generateKeyPairSync('ed25519');
  const pem = join(keys, 'ed.pem');
  writeFileSync(pem, pair.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  writeFileSync(join(keys, 'ed.pub.pem'), pair.publicKey.export({ format: 'pem', type: 'spki' }));
  const snap = await a.snapshotter.snapshot({ agentId: 'ana', sign: pem });
  const rep = await verifyBundleFile(snap.bundle_path, {
    trust: trustPolicy([join(keys, 'ed.pub.pem')], true),
  });
  assert.equal(rep.status, 'verified');
  assert.equal(rep.signature?.status, 'trusted');
});

test('export --decrypt-identity verifies the copy of an encrypted bundle before publishing it', async (t) => {
  const a = sampleAgent(t);
  const keys = tempDir(t);
  const age = ageKeyFile(keys, 'age.txt');
  const wrongAge = ageKeyFile(keys, 'wrong.txt');
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', encrypt: [age.recipient] });
  const out = tempDir(t);
  // without the identity only the bytes are checked: the copy is "incomplete", never "verified"
  const blind = await a.snapshotter.export('ana', undefined, meta.id, join(out, 'blind.tar.zst.age'));
  assert.equal(blind.verify.status, 'incomplete');
  assert.equal(blind.verify.manifest_ok, false);
  let r = await runCli([
    'export',
    '--agent',
    'ana',
    '--id',
    meta.id,
    '--to',
    join(out, 'full.tar.zst.age'),
    '--decrypt-identity',
    age.path,
    '--json',
    '--state-root',
    a.stateRoot,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const full = JSON.parse(r.stdout);
  assert.equal(full.verify.status, 'verified');
  assert.equal(full.verify.manifest_ok, true);
  assert.equal(full.verify.artifacts_checked, full.verify.artifacts_total);
  // a wrong identity: an encryption error, nothing published
  r = await runCli([
    'export',
    '--agent',
    'ana',
    '--id',
    meta.id,
    '--to',
    join(out, 'wrong.tar.zst.age'),
    '--decrypt-identity',
    wrongAge.path,
    '--state-root',
    a.stateRoot,
  ]);
  assert.equal(r.code, 7);
  assert.equal(existsSync(join(out, 'wrong.tar.zst.age')), false);
  // a payload tampered in the store with its sibling rewritten to match: only the identity can tell
  const bytes = readFileSync(meta.bundle_path);
  bytes[Math.floor(bytes.length * 0.6)]! ^= 1;
  writeBundleFile(meta.bundle_path, bytes);
  const blind2 = await a.snapshotter.export('ana', undefined, meta.id, join(out, 'blind2.tar.zst.age'));
  assert.equal(blind2.verify.status, 'incomplete');
  await assert.rejects(
    a.snapshotter.export('ana', undefined, meta.id, join(out, 'checked.tar.zst.age'), {
      decryptIdentity: age.path,
    }),
    { exitCode: 2 },
  );
  assert.deepEqual(
    readdirSync(out)
      .filter((n) => n.startsWith('checked') || n.includes('.tmp'))
      .sort(),
    [],
    'nothing left behind',
  );
  // the identity from the library and the CLI both accept loadIdentities-compatible files
  assert.equal(loadIdentities(age.path).length, 1);
});

test('an unreadable configured signing key: list and verify still work, snapshot and restore refuse before creating anything', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 3, commits: 2 });
  const first = await a.snapshotter.snapshot({ agentId: 'ana' });
  const dir = tempDir(t);
  const cfg = join(dir, 'config.yaml');
  writeFileSync(cfg, `snapshot:\n  signing:\n    key_path: ${join(dir, 'missing.key')}\n`);
  const store = () => readdirSync(join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana')).sort();
  const before = store();
  let r = await runCli(['list', '--agent', 'ana', '--json', '--config', cfg, '--state-root', a.stateRoot]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(
    (JSON.parse(r.stdout) as Array<{ id: string }>).map((m) => m.id),
    [first.id],
  );
  r = await runCli(['verify', first.bundle_path, '--config', cfg, '--json']);
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(['snapshot', '--agent', 'ana', '--json', '--config', cfg, ...a.flags]);
  assert.equal(r.code, 1);
  assert.equal(JSON.parse(r.stdout).error.code, 'KEY');
  r = await runCli(
    ['restore', '--agent', 'ana', '--from', first.bundle_path, '--json', '--config', cfg, ...a.flags],
    { env: { NEXO_MEMORY_RESTORE_ALLOW: 'true' } },
  );
  assert.equal(r.code, 1);
  assert.equal(JSON.parse(r.stdout).error.code, 'KEY');
  assert.deepEqual(store(), before, 'nothing created, no anchor');
});

test('a bundle of the store re-sealed by someone without the key: what verify says, by the sibling and the store (docs/format.md §5, decisions "Errors and exit codes")', async (t) => {
  const a = sampleAgent(t);
  const keys = tempDir(t);
  const k = signingKeyFile(keys, 'sign.key');
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const unsignedStore = a.snapshotter;
  const store = (o: { requireSignature: boolean }) =>
    new LocalSnapshotter({
      stateRoot: a.stateRoot,
      memdirRoot: a.memdirRoot,
      sqliteRoot: a.sqliteRoot,
      signingKey: k.secretPath,
      trustedKeys: [k.publicKey],
      ...o,
    });
  const signedStore = store({ requireSignature: true });
  const looseStore = store({ requireSignature: false }); // trusted keys, no signature required
  // a memory file rewritten, every hash the format has recomputed: sizes, digests, both seals
  const rewrite = async (
    snap: { bundle_path: string },
    edit: (m: Record<string, unknown>) => void = () => {},
  ) =>
    forgeBundle(await readEntries(snap.bundle_path), (m, rest) => {
      rest.find((e) => e.path.startsWith('memory_files/'))!.data = Buffer.from('rewritten\n');
      edit(m);
    });
  const unsigned = await unsignedStore.snapshot({ agentId: 'ana', sign: false });
  const signed = await signedStore.snapshot({ agentId: 'ana' });
  const toV2 = (m: Record<string, unknown>) => {
    delete m.signature;
    m.manifest_version = 2;
    m.bundle_format = 'nexo-memory-snapshot-v2';
    (m.schema_versions as Record<string, number>).manifest = 2;
  };
  const cases = [
    { name: 'unsigned', snap: unsigned, bytes: await rewrite(unsigned) },
    { name: 'signed, signature kept', snap: signed, bytes: await rewrite(signed) },
    { name: 'signed, turned unsigned', snap: signed, bytes: await rewrite(signed, toV2) },
  ];
  type Row = [string, number, string[]];
  const expected: Record<string, Record<string, Record<string, Row>>> = {
    unsigned: {
      stale: { unsigned: ['damaged', 2, ['CHECKSUM_MISMATCH']] },
      updated: { unsigned: ['verified', 0, []] },
      missing: { unsigned: ['incomplete', 3, []] },
    },
    'signed, signature kept': {
      stale: {
        signed: ['damaged', 2, ['SIGNATURE_INVALID', 'CHECKSUM_MISMATCH']],
        loose: ['damaged', 2, ['SIGNATURE_INVALID', 'CHECKSUM_MISMATCH']],
      },
      updated: {
        signed: ['damaged', 2, ['SIGNATURE_INVALID']],
        loose: ['damaged', 2, ['SIGNATURE_INVALID']],
      },
      missing: {
        signed: ['damaged', 2, ['SIGNATURE_INVALID']],
        loose: ['damaged', 2, ['SIGNATURE_INVALID']],
      },
    },
    'signed, turned unsigned': {
      stale: {
        signed: ['damaged', 2, ['SIGNATURE_MISSING', 'CHECKSUM_MISMATCH']],
        loose: ['damaged', 2, ['CHECKSUM_MISMATCH']],
      },
      updated: { signed: ['untrusted', 2, ['SIGNATURE_MISSING']], loose: ['verified', 0, []] },
      missing: { signed: ['untrusted', 2, ['SIGNATURE_MISSING']], loose: ['incomplete', 3, []] },
    },
  };
  const original = new Map([unsigned, signed].map((s) => [s.id, readFileSync(s.bundle_path)]));
  for (const c of cases) {
    for (const sibling of ['stale', 'updated', 'missing'] as const) {
      writeFileSync(c.snap.bundle_path, c.bytes);
      const siblingPath = `${c.snap.bundle_path}.sha256`;
      if (sibling === 'stale') writeFileSync(siblingPath, sha(original.get(c.snap.id)!));
      if (sibling === 'updated') writeFileSync(siblingPath, sha(c.bytes));
      if (sibling === 'missing') rmSync(siblingPath, { force: true });
      const stores =
        c.snap === unsigned ? { unsigned: unsignedStore } : { signed: signedStore, loose: looseStore };
      for (const [which, s] of Object.entries(stores)) {
        const r = await s.verifySnapshot('ana', undefined, c.snap.id);
        const what = `${c.name}, sibling ${sibling}, ${which} store`;
        assert.deepEqual([r.status, verifyExitCode(r), codes(r)], expected[c.name]![sibling]![which], what);
        // what the hashes say, whoever made them: everything inside agrees with itself
        assert.equal(r.manifest_ok, true, what);
        assert.equal(r.per_artifact_ok, true, what);
        // bundle_sha256_ok is the file against its sibling (the digest seal is in manifest_ok)
        assert.equal(r.bundle_sha256_ok, sibling === 'updated', what);
        assert.equal(r.sibling, { stale: 'mismatch', updated: 'ok', missing: 'missing' }[sibling], what);
      }
    }
  }
  // the text report says what was not checked: the sibling, not the digest seal
  const r = await runCli(['verify', '--agent', 'ana', '--id', signed.id, '--state-root', a.stateRoot]);
  assert.equal(r.code, 3, r.stdout);
  assert.match(r.stdout, /^status: +incomplete$/m);
  assert.match(r.stdout, /^bundle_sha256_ok: false \(sibling missing\)$/m);
  assert.match(r.stdout, /^manifest_ok: +true$/m);
});
