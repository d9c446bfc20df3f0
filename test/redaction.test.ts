// Redaction: synthetic secrets of every rule planted in every component (memory files, history blobs,
// commit and tag messages, state, SQLite text incl. full-text indexes) are gone from the decompressed
// bundle and from every git object after a restore; look-alikes stay byte for byte; anchors are exact;
// the CLI and config switch it; bad input fails with typed errors and leaves nothing behind.
// Every secret is assembled at run time, so this file holds no literal secret-shaped string.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { git, rng } from '../scripts/sample-agent.js';
import { generateIdentity } from '../src/crypto/age.js';
import { generateSigningKey, secretKeyFileText } from '../src/crypto/sign.js';
import { rewriteBundle } from '../src/git/rewrite.js';
import {
  compileRedactionPolicy,
  LocalSnapshotter,
  ORIGINAL_RULE_IDS,
  REDACTION_RULES,
  redactText,
} from '../src/index.js';
import { Daemon } from '../src/server/daemon.js';
import { ensureBuilt } from './helpers/built-cli.js';
import { bundleOf, manifestFor, writeBundleFile } from './helpers/bundles.js';
import { type Agent, gnuExtract, runCli, sampleAgent, startFixture, tempDir } from './helpers/env.js';
import { REPO } from './helpers/repo.js';

const r = rng(20261126);
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const UPPER_DIGITS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const rnd = (n: number, alphabet = ALNUM): string =>
  Array.from({ length: n }, () => alphabet[Math.floor(r() * alphabet.length)]).join('');

interface Planted {
  rule: string;
  secret: string;
  /** The part that must never ship (the random body). */
  needle: string;
}

/** One or more synthetic secrets per rule, built from pieces. */
function syntheticSecrets(): Planted[] {
  const p = (rule: string, secret: string, needle: string): Planted => ({ rule, secret, needle });
  const pemBody = Array.from({ length: 6 }, () => rnd(64, `${ALNUM}+/`)).join('\n');
  const dash5 = '-'.repeat(5);
  const jwtParts = [`eyJ${rnd(24)}`, `eyJ${rnd(40)}`, rnd(43)];
  const out: Planted[] = [];
  let b: string;
  b = pemBody;
  out.push(
    p(
      'private-key',
      `${dash5}BEGIN RSA PRIVATE ${'KEY'}${dash5}\n${b}\n${dash5}END RSA PRIVATE ${'KEY'}${dash5}`,
      b.slice(0, 60),
    ),
  );
  b = rnd(86);
  out.push(p('anthropic-api-key', `${'sk'}-ant-api03-${b}AA`, b));
  b = rnd(48);
  out.push(p('openai-api-key', `${'sk'}-proj-${b}`, b));
  b = rnd(48);
  out.push(p('openai-api-key', `${'sk'}-${b}`, b));
  b = rnd(16, UPPER_DIGITS);
  out.push(p('aws-access-key-id', `${'AK'}IA${b}`, b));
  b = rnd(16, UPPER_DIGITS);
  out.push(p('aws-access-key-id', `${'AS'}IA${b}`, b));
  b = rnd(36);
  out.push(p('github-token', `${'gh'}p_${b}`, b));
  b = rnd(36);
  out.push(p('github-token', `${'gh'}s_${b}`, b));
  b = `${rnd(22)}_${rnd(59)}`;
  out.push(p('github-fine-grained-pat', `${'github'}_pat_${b}`, b));
  b = rnd(20);
  out.push(p('gitlab-token', `${'gl'}pat-${b}`, b));
  b = `${rnd(12, '0123456789')}-${rnd(13, '0123456789')}-${rnd(24)}`;
  out.push(p('slack-token', `${'xo'}xb-${b}`, b));
  b = `T${rnd(10, UPPER_DIGITS)}/B${rnd(10, UPPER_DIGITS)}/${rnd(24)}`;
  out.push(p('slack-webhook-url', `https://hooks.${'slack'}.com/services/${b}`, b));
  b = rnd(40);
  out.push(p('bearer-token', `Authorization: ${'Bear'}er ${b}`, b));
  out.push(p('jwt', jwtParts.join('.'), jwtParts[2]!));
  b = rnd(24);
  out.push(p('stripe-api-key', `${'sk'}_live_${b}`, b));
  b = rnd(35);
  out.push(p('google-api-key', `${'AI'}za${b}`, b));
  b = rnd(18);
  out.push(p('url-credentials', `postgres://admin:${b}@db.internal.example:5432/memory`, b));
  b = rnd(28);
  out.push(p('generic-secret', `client_${'secret'} = ${b}`, b));
  b = `${rnd(10)}_${rnd(10)}`;
  out.push(p('generic-secret', `"api_${'key'}": "${b}"`, b));
  return out;
}

const SECRETS = syntheticSecrets();
const ALL_TEXT = SECRETS.map((s) => `- ${s.rule}: ${s.secret}`).join('\n');

/** Strings that look a little like secrets and must never be touched. */
function lookAlikes(): string {
  const uuid = '3f2b8c1e-9d4a-4e7b-8a6c-2d1f0e9b7a54';
  const gitHash = 'e83c5163316f89bfbde7d9ab23ca2e25604af290';
  const bytes = Buffer.from(Array.from({ length: 3000 }, () => Math.floor(r() * 256)));
  return [
    '# Look-alikes',
    `Request ${uuid} was traced through commit ${gitHash} (short ${gitHash.slice(0, 12)}).`,
    `![diagram](data:image/png;base64,${bytes.toString('base64')})`,
    'The key points: keep the secret recipe safe, and the password is written on no sticky note.',
    'password: see the vault. token: refreshed hourly. secret = unknown. api_key = changeme',
    'The key = consolidation. The token: well-known-and-boring. secret: documentation-pipeline.',
    'Ask about the sk-learn pipeline and the task-management-system-overview doc.',
    'Mail ana@example.com or open https://docs.example.com/a/b?x=1#frag and https://user@example.com/.',
    'Version 1.2.3-beta, ids AKIA-like-but-short AKIA1234, ghp_short, eyJhbGciOi.not-a-token.',
    `Checksum sha256:${'ab'.repeat(32)} and a path /home/ana/.ssh/known_hosts.`,
    '',
  ].join('\n');
}

function tarStream(bundle: string): Buffer {
  return execFileSync('zstd', ['-dc', bundle], { maxBuffer: 512 * 1024 * 1024 });
}

/** Every object of every git repository: commits, tags, trees, blobs, as one buffer. */
function allGitObjects(repo: string): Buffer {
  return execFileSync('git', ['cat-file', '--batch-all-objects', '--batch'], {
    cwd: repo,
    maxBuffer: 512 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function cloneBundle(t: Parameters<typeof tempDir>[0], bundle: string): string {
  const dir = join(tempDir(t, 'nexo-clone-'), 'repo.git');
  execFileSync('git', ['clone', '-q', '--mirror', bundle, dir], { stdio: 'pipe' });
  return dir;
}

function leaks(haystack: Buffer): string[] {
  return SECRETS.filter((s) => haystack.includes(s.needle)).map(
    (s) => `${s.rule}: ${s.needle.slice(0, 12)}…`,
  );
}

function storeEntries(a: Agent, agentId = 'ana'): string[] {
  const dir = join(a.stateRoot, 'tenants', 'default', 'snapshots', agentId);
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

/** Plants every secret in every component of the sample agent `a`. */
function plantEverywhere(a: Agent): void {
  const m = a.memdir;
  // history only: added, committed, then deleted
  writeFileSync(join(m, 'old-credentials.md'), `# Old\n${ALL_TEXT}\n`);
  git(m, ['add', '-A']);
  git(m, ['commit', '-q', '-m', `add credentials\n\n${ALL_TEXT}`]);
  git(m, ['rm', '-q', 'old-credentials.md']);
  git(m, ['commit', '-q', '-m', 'remove credentials']);
  // committed and still in the working tree
  mkdirSync(join(m, 'notes'), { recursive: true });
  writeFileSync(join(m, 'notes', 'secrets.md'), `# Keys the agent saw\n${ALL_TEXT}\n`);
  git(m, ['add', '-A']);
  git(m, ['commit', '-q', '-m', `notes: ${SECRETS[6]!.secret}`]);
  git(m, ['tag', '-a', 'v1', '-m', `release with ${ALL_TEXT}`]);
  // uncommitted: an edit and an untracked file
  writeFileSync(
    join(m, 'MEMORY.md'),
    `${readFileSync(join(m, 'MEMORY.md'), 'utf8')}\nNew: ${SECRETS[2]!.secret}\n`,
  );
  writeFileSync(join(m, 'untracked.md'), `${ALL_TEXT}\n`);
  // larger than the in-memory capture limit: staged on disk, redacted by the worker thread
  writeFileSync(join(m, 'big.md'), `${'Plain prose line of the agent. '.repeat(40_000)}\n${ALL_TEXT}\n`);
  // binary file: not scanned, reported
  writeFileSync(join(m, 'avatar.bin'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 3, 0, 255]));
  // state
  writeFileSync(
    join(a.sqliteDir, 'extract_cursor.json'),
    `${JSON.stringify({ last_message_id: 99, note: ALL_TEXT, api_key: SECRETS[SECRETS.length - 1]!.needle })}\n`,
  );
  // databases: plain text columns, an internal and an external-content FTS5 index with sync triggers,
  // a UNIQUE column, a WITHOUT ROWID table
  const lt = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  lt.exec(`
    CREATE VIRTUAL TABLE notes_fts USING fts5(body);
    CREATE VIRTUAL TABLE memories_fts USING fts5(content, content='memories', content_rowid='id');
    INSERT INTO memories_fts(memories_fts) VALUES ('rebuild');
    CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
      INSERT INTO memories_fts(rowid, content) VALUES (new.id, new.content); END;
    CREATE TRIGGER memories_au AFTER UPDATE ON memories BEGIN
      INSERT INTO memories_fts(memories_fts, rowid, content) VALUES ('delete', old.id, old.content);
      INSERT INTO memories_fts(rowid, content) VALUES (new.id, new.content); END;
    CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE notes_fts_archive (body TEXT);
  `);
  const ins = lt.prepare('INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)');
  for (const s of SECRETS) ins.run(1, 'fact', `The user pasted ${s.secret} into the chat.`, 0.5);
  ins.run(2, 'fact', ALL_TEXT, 0.9);
  for (const s of SECRETS) lt.prepare('INSERT INTO notes_fts (body) VALUES (?)').run(`note ${s.secret} end`);
  lt.prepare('INSERT INTO notes_fts_archive (body) VALUES (?)').run(ALL_TEXT); // named like a shadow table
  lt.prepare('INSERT INTO kv (k, v) VALUES (?, ?)').run(`cfg-${SECRETS[6]!.secret}`, SECRETS[4]!.secret);
  // a text with a NUL byte before the secret (SQLite's GLOB stops at the NUL)
  lt.exec('CREATE TABLE nul_notes (body TEXT)');
  lt.prepare('INSERT INTO nul_notes (body) VALUES (?)').run(`note\u0000 ${SECRETS[0]!.secret}`);
  // external-content indexes whose content= is not the table's exact name: another case, and a view
  lt.exec(`
    CREATE VIRTUAL TABLE mem_ci_fts USING fts5(content, content='Memories', content_rowid='id');
    CREATE VIEW mem_v AS SELECT id, content FROM memories;
    CREATE VIRTUAL TABLE memv_fts USING fts5(content, content='mem_v', content_rowid='id');
    INSERT INTO mem_ci_fts(mem_ci_fts) VALUES ('rebuild');
    INSERT INTO memv_fts(memv_fts) VALUES ('rebuild');
  `);
  lt.close();
  const con = new Database(join(a.sqliteDir, 'concepts.sqlite'));
  // two names that redact to the same text collide on UNIQUE(name)
  con
    .prepare('INSERT INTO concepts (name, summary) VALUES (?, ?)')
    .run(`token ${SECRETS[6]!.secret}`, ALL_TEXT);
  con.prepare('INSERT INTO concepts (name, summary) VALUES (?, ?)').run(`token ${SECRETS[7]!.secret}`, 'x');
  con.close();
  const cmp = new Database(join(a.sqliteDir, 'compactions.sqlite'));
  cmp
    .prepare('INSERT INTO compactions (session_id, created_at, summary) VALUES (?, ?, ?)')
    .run('s-x', 1, ALL_TEXT);
  cmp.close();
  const vec = new Database(join(a.sqliteDir, 'vector.sqlite'));
  vec
    .prepare('INSERT INTO embeddings (memory_id, model, dim, vec) VALUES (?, ?, ?, ?)')
    .run(1, `model-with-${SECRETS[0]!.secret}`, 2, Buffer.alloc(8));
  vec.close();
}

test('the rule table: stable ids, the original seven keep their names, every rule fires on its secret', () => {
  assert.deepEqual(
    REDACTION_RULES.map((x) => x.id),
    [
      'private-key',
      'anthropic-api-key',
      'openai-api-key',
      'aws-access-key-id',
      'github-token',
      'slack-token',
      'bearer-token',
      'jwt',
      'github-fine-grained-pat',
      'gitlab-token',
      'slack-webhook-url',
      'stripe-api-key',
      'google-api-key',
      'url-credentials',
      'generic-secret',
    ],
  );
  for (const id of ORIGINAL_RULE_IDS)
    assert.ok(
      REDACTION_RULES.some((x) => x.id === id),
      id,
    );
  const policy = compileRedactionPolicy();
  for (const s of SECRETS) {
    const out = redactText(policy, `before ${s.secret} after`);
    assert.deepEqual(Object.keys(out.counts), [s.rule], `${s.rule} fired alone on ${s.secret.slice(0, 16)}`);
    assert.ok(out.text.includes(`[REDACTED:${s.rule}]`), out.text);
    assert.ok(!out.text.includes(s.needle), `${s.rule} left its body`);
    assert.ok(out.text.startsWith('before ') && out.text.endsWith(' after'));
  }
  // only the password of a URL and only the value of an assignment are replaced
  assert.equal(
    redactText(policy, SECRETS.find((s) => s.rule === 'url-credentials')!.secret).text,
    'postgres://admin:[REDACTED:url-credentials]@db.internal.example:5432/memory',
  );
  assert.equal(
    redactText(policy, SECRETS.find((s) => s.rule === 'generic-secret')!.secret).text,
    'client_secret = [REDACTED:generic-secret]',
  );
  // the look-alike corpus passes untouched
  const corpus = lookAlikes();
  assert.deepEqual(redactText(policy, corpus), { text: corpus, counts: {}, matches: 0 });
  // allowlist and exclusions
  const gh = SECRETS.find((s) => s.rule === 'github-token')!;
  const allow = compileRedactionPolicy({ allowlist: [gh.needle.slice(0, 20)], excludeRules: ['jwt'] });
  assert.equal(redactText(allow, gh.secret).matches, 0);
  const jwt = SECRETS.find((s) => s.rule === 'jwt')!;
  assert.equal(redactText(allow, jwt.secret).matches, 0);
  assert.throws(() => compileRedactionPolicy({ excludeRules: ['no-such-rule'] }), { code: 'INVALID_INPUT' });
  assert.throws(() => compileRedactionPolicy({ allowlist: ['(unclosed'] }), { code: 'INVALID_INPUT' });
});

test('rule gaps closed: quoted values with # @ , or spaces, long values, a Telegram token, URL passwords with an empty user, # or @, the JSON and YAML Authorization header; prose, phrases, handles, emails, quoted URLs and times stay', () => {
  const policy = compileRedactionPolicy();
  // secrets assembled at run time (no secret-shaped literal in this file)
  // (a digit at its end: a multi-word quoted value is a secret only when every word holds a digit or symbol)
  const v = `${rnd(16)}7`;
  const long = rnd(300);
  const bearer = rnd(32, '0123456789abcdef');
  const cases: [string, string, string][] = [
    // [text, expected output, rule]
    [
      `DB_PASS${'WORD'}="${v.slice(0, 3)}#${v.slice(3)}"`,
      'DB_PASSWORD="[REDACTED:generic-secret]"',
      'generic-secret',
    ],
    [
      `DB_PASS${'WORD'}='${v.slice(0, 3)}#${v.slice(3)}'`,
      "DB_PASSWORD='[REDACTED:generic-secret]'",
      'generic-secret',
    ],
    [`pass${'word'}: P@${v}-Zq81`, 'password: [REDACTED:generic-secret]', 'generic-secret'],
    [`pass${'word'} = "Summer2024, ${v}"`, 'password = "[REDACTED:generic-secret]"', 'generic-secret'],
    [
      `{"pass${'word'}":"${v} ${v.slice(2)}","user":"bob"}`,
      '{"password":"[REDACTED:generic-secret]","user":"bob"}',
      'generic-secret',
    ],
    [
      `{\\"pass${'word'}\\":\\"${v}@x,y\\"}`,
      '{\\"password\\":\\"[REDACTED:generic-secret]\\"}',
      'generic-secret',
    ],
    [`api_${'key'} = ${long} next`, 'api_key = [REDACTED:generic-secret] next', 'generic-secret'],
    [`"access_${'token'}": "${long}"`, '"access_token": "[REDACTED:generic-secret]"', 'generic-secret'],
    [
      `TELEGRAM_BOT_${'TOKEN'}=${rnd(9, '0123456789')}:AA${rnd(33)}`,
      'TELEGRAM_BOT_TOKEN=[REDACTED:generic-secret]',
      'generic-secret',
    ],
    [`redis://:${v}@cache:6379/0`, 'redis://:[REDACTED:url-credentials]@cache:6379/0', 'url-credentials'],
    [
      `mysql://u:${v.slice(0, 4)}#${v.slice(4)}@h/db`,
      'mysql://u:[REDACTED:url-credentials]@h/db',
      'url-credentials',
    ],
    [`redis://:P@${v}@cache:6379`, 'redis://:[REDACTED:url-credentials]@cache:6379', 'url-credentials'],
    [`postgres://u:${long}@h/db`, 'postgres://u:[REDACTED:url-credentials]@h/db', 'url-credentials'],
    [
      `headers = {"Authorization": "${'Bear'}er ${bearer}"}`,
      'headers = {"Authorization": "Bearer [REDACTED:bearer-token]"}',
      'bearer-token',
    ],
    [
      `{'Authorization': '${'Bear'}er ${bearer}'}`,
      "{'Authorization': 'Bearer [REDACTED:bearer-token]'}",
      'bearer-token',
    ],
    // YAML: the key unquoted, the value quoted
    [
      `Authorization: "${'Bear'}er ${bearer}"`,
      'Authorization: "Bearer [REDACTED:bearer-token]"',
      'bearer-token',
    ],
    [
      `Authorization: '${'Bear'}er ${bearer}'`,
      "Authorization: 'Bearer [REDACTED:bearer-token]'",
      'bearer-token',
    ],
    // a passphrase of words, each with a digit or a symbol
    [`pass${'word'}: "Xk9#m Qp2$z"`, 'password: "[REDACTED:generic-secret]"', 'generic-secret'],
    [`DB_PASS${'WORD'}="Xk9#mQ2vLp7Rt4Wz"`, 'DB_PASSWORD="[REDACTED:generic-secret]"', 'generic-secret'],
    [`pass${'word'}: P@ssw0rd-Zq81xLm3`, 'password: [REDACTED:generic-secret]', 'generic-secret'],
    // the header keeps its form: the whole header text
    [`curl -H 'Authorization: ${'Bear'}er ${bearer}'`, "curl -H '[REDACTED:bearer-token]'", 'bearer-token'],
  ];
  for (const [text, expected, rule] of cases) {
    const out = redactText(policy, text);
    assert.equal(out.text, expected, text.slice(0, 40));
    assert.deepEqual(Object.keys(out.counts), [rule], text.slice(0, 40));
  }
  // the JSON form keeps a state value valid JSON (the rules ran on its text)
  assert.deepEqual(
    JSON.parse(redactText(policy, JSON.stringify({ Authorization: `${'Bear'}er ${bearer}` })).text),
    {
      Authorization: 'Bearer [REDACTED:bearer-token]',
    },
  );
  // not secrets: prose, quoted sentences of more than four words, quoted URLs, times, ports, a key name
  const kept = [
    'password: "see the vault"',
    '"secret": "Do not share This with anyone, 2 times"',
    '"token_uri": "https://oauth2.googleapis.com/token"',
    "token_endpoint = 'https://login.example.com/v2.0/token'",
    'token_url: https://auth.example.com/oauth2/token',
    'token_expiry: 2026-12-06T07:27:09Z',
    '"token_expiry": "2026-12-06T07:27:09Z"',
    'The token: it is 10:30 now, the secret_port: db:5432',
    'token: abcdefgh: xyz',
    'Mail ana@example.com, open https://user@example.com/ or https://docs.example.com:8080/a#x@y.',
    // a multi-word quoted value with a word of letters only (trailing punctuation aside) is a phrase
    'secret_santa: "Alice and Bob"',
    'password_hint: "First pet name"',
    `"secret_question": "Mother's maiden name"`,
    'token: "Refresh the cache"',
    'token_type: "Refresh Token"',
    'secretName: "My App Secret"',
    '{"secret": "Project Phoenix"}',
    'access_key_rotation: "every 90 Days"',
    'api_key_status: "Revoked on Monday"',
    'password_policy: "At least 12 Chars"',
    'passwordless: "Enabled via WebAuthn"',
    'The secret: "Love is patient, Kind"',
    'secret: "Ship v2.3 on Friday!"',
    '"Correct horse battery staple"',
    'passphrase: "Correct horse battery staple"',
    // handles, channels and email addresses
    '"credentials_contact": "security@Company1.com"',
    'token: "@AliceBot_2"',
    'bot_token_username: @MyHelperBot2',
    '- token: #General-Channel2',
    'token_owner: Alice.Smith@Example.com',
  ];
  for (const text of kept) assert.deepEqual(redactText(policy, text), { text, counts: {}, matches: 0 }, text);
});

test("the rules stay linear on hostile text of megabytes (a child process: a regression ends in its timeout, not this file's)", () => {
  ensureBuilt();
  const script = `
    const { compilePolicy, redactText } = await import(${JSON.stringify(pathToFileURL(join(REPO, 'dist/src/policy/redaction/scan.js')).href)});
    const p = compilePolicy();
    const M = 2_000_000;
    const rep = (s) => s.repeat(Math.ceil(M / s.length));
    const inputs = [
      'tok' + 'en=' + rep('tok' + 'en=') + ' =',
      'pass' + 'word="' + rep('aB3 '),
      rep('pass' + 'word="xY9 '),
      '://a:' + rep('x'),
      rep('://a:b'),
      '://a:' + rep('b@'),
      'api_' + 'key = ' + rep('aB3xZ9qQ'),
      rep('"Authorization": "Bear' + 'er '),
      'tok' + 'en: ' + rep('a:b'),
      rep('tokensecretpassword') + '=',
      rep('sec' + 'ret: "ab ab ab ab ab '),
      rep('api_' + 'key = ' + 'aB3xZ9qQ'.repeat(33) + '= '),
    ];
    for (const text of inputs) redactText(p, text);
    console.log('done ' + inputs.length);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  assert.equal(r.signal, null, 'the scans ended (a quadratic scan of 2 MB takes hours)');
  assert.equal(r.stdout.trim(), 'done 12', r.stderr);
});

test('a redacted snapshot ships no planted secret in any component, and no git object holds one after restore', async (t) => {
  // 6,000 embeddings make the databases larger than the inline limit: they are redacted on worker threads
  // (the smaller agents of the other tests take the inline path)
  const a = sampleAgent(t, 'ana', { files: 6, commits: 3, embeddings: 6000 });
  plantEverywhere(a);
  const liveHead = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', redact: true, createdBy: 'cli' });
  assert.equal(meta.redactions_applied, true);

  // 1. the decompressed tar stream: memory files, state, manifest and the SQLite pages are plain bytes
  assert.deepEqual(leaks(tarStream(meta.bundle_path)), []);
  // 2. the history: every object of the shipped git bundle
  const x = gnuExtract(t, meta.bundle_path);
  const clone = cloneBundle(t, join(x, 'git', 'memdir.bundle'));
  assert.deepEqual(leaks(allGitObjects(clone)), []);
  assert.match(git(clone, ['tag', '-l', '-n9', 'v1']), /REDACTED:github-token/);
  assert.equal(git(clone, ['rev-list', '--all']).trim().split('\n').length, 6, 'every commit kept');
  // 3. the full-text indexes hold no token of a secret, and every database is intact
  const db = new Database(join(x, 'sqlite', 'long_term.sqlite'));
  for (const fts of ['notes_fts', 'memories_fts', 'mem_ci_fts', 'memv_fts']) {
    db.exec(`CREATE VIRTUAL TABLE temp.${fts}_terms USING fts5vocab(main, ${fts}, 'row')`);
    const terms = db.prepare(`SELECT term FROM temp.${fts}_terms`).pluck().all() as string[];
    assert.ok(terms.includes('redacted'), `${fts} indexes the redacted text`);
    for (const s of SECRETS)
      for (const piece of s.needle.split(/[^A-Za-z0-9]/).filter((p) => p.length >= 8))
        assert.ok(
          !terms.some((term) => term.includes(piece.toLowerCase())),
          `${fts} still indexes ${s.rule}`,
        );
  }
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  assert.equal(
    (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'trigger'").get() as { n: number }).n,
    2,
    'triggers recreated',
  );
  assert.match((db.prepare('SELECT v FROM kv').get() as { v: string }).v, /^\[REDACTED:aws-access-key-id\]$/);
  db.close();
  const con = new Database(join(x, 'sqlite', 'concepts.sqlite'), { readonly: true });
  const names = con
    .prepare("SELECT name FROM concepts WHERE name LIKE 'token %' ORDER BY id")
    .pluck()
    .all() as string[];
  assert.deepEqual(names, ['token [REDACTED:github-token]', 'token [REDACTED:github-token] #2']);
  con.close();

  // 4. the manifest says what happened, and what was not scanned
  const m = JSON.parse(readFileSync(join(x, 'manifest.json'), 'utf8'));
  const red = m.redactions;
  assert.equal(red.policy, 'memory-snapshot:default');
  assert.deepEqual(red.rules_applied, [...new Set(SECRETS.map((s) => s.rule))].sort());
  assert.equal(
    red.matches_redacted,
    Object.values(red.rule_counts as Record<string, number>).reduce((s, n) => s + n, 0),
  );
  for (const p of [
    'sqlite/long_term.sqlite',
    'sqlite/vector.sqlite',
    'sqlite/concepts.sqlite',
    'sqlite/compactions.sqlite',
    'state/extract_cursor.json',
    'git/memdir.bundle',
    'memory_files/MEMORY.md',
    'memory_files/notes/secrets.md',
    'memory_files/untracked.md',
    'memory_files/big.md',
    'manifest.json',
  ])
    assert.ok(red.artifacts_touched.includes(p), `artifacts_touched has ${p}`);
  assert.equal(red.git_history, 'rewritten');
  assert.equal(red.git.original_head_oid, liveHead);
  assert.notEqual(m.git.head_oid, liveHead);
  assert.equal(git(clone, ['rev-parse', 'refs/heads/main']).trim(), m.git.head_oid);
  assert.match(m.git.head_subject, /^notes: \[REDACTED:github-token\]$/);
  assert.equal(red.sqlite.concepts.unique_conflicts, 1);
  const notScanned = red.not_scanned as Array<{ artifact: string; what: string; reason: string }>;
  assert.ok(notScanned.some((n) => n.artifact === 'sqlite/vector.sqlite' && n.what === 'embeddings.vec'));
  assert.ok(notScanned.some((n) => n.artifact === 'memory_files/avatar.bin' && n.reason === 'binary data'));
  assert.ok(JSON.parse(readFileSync(join(x, 'state', 'extract_cursor.json'), 'utf8')).last_message_id === 99);
  const deep = await a.snapshotter.verify(meta.bundle_path, { deep: true });
  assert.equal(deep.status, 'verified', 'seals cover the redacted bytes');
  assert.equal(deep.deep?.git, 'ok', 'the rewritten history is a valid bundle');
  assert.deepEqual(Object.values(deep.deep?.sqlite_integrity ?? {}), ['ok', 'ok', 'ok', 'ok']);

  // 5. the live agent was never written
  assert.equal(leaks(allGitObjects(a.memdir)).length, SECRETS.length);
  assert.equal(git(a.memdir, ['rev-parse', 'HEAD']).trim(), liveHead);
  assert.equal(leaks(readFileSync(join(a.sqliteDir, 'long_term.sqlite'))).length > 0, true);

  // 6. restored elsewhere (import as a new agent): no git object, file or database holds a secret
  const report = await a.snapshotter.restore({ agentId: 'bob', bundle: meta.bundle_path, import: {} });
  assert.equal(report.redacted, true);
  assert.equal(report.redaction?.git_history, 'rewritten');
  const bob = join(a.memdirRoot, 'bob');
  assert.deepEqual(leaks(allGitObjects(bob)), []);
  assert.equal(git(bob, ['rev-parse', 'HEAD']).trim(), m.git.head_oid);
  // the redacted working tree matches the redacted history: only the uncommitted changes show
  assert.deepEqual(
    git(bob, ['status', '--porcelain'])
      .trim()
      .split('\n')
      .map((l) => l.trim())
      .sort(),
    ['?? avatar.bin', '?? big.md', '?? untracked.md', 'M MEMORY.md'],
  );
  assert.match(readFileSync(join(bob, 'notes', 'secrets.md'), 'utf8'), /\[REDACTED:private-key\]/);
  const bobDbs = readdirSync(join(a.sqliteRoot, 'bob')).filter((f) => f.endsWith('.sqlite'));
  assert.equal(bobDbs.length, 4);
  for (const f of bobDbs) assert.deepEqual(leaks(readFileSync(join(a.sqliteRoot, 'bob', f))), [], f);
});

test('look-alikes stay byte for byte: nothing fires, history is shipped as captured', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 4, commits: 2 });
  const corpus = lookAlikes();
  writeFileSync(join(a.memdir, 'lookalikes.md'), corpus);
  git(a.memdir, ['add', '-A']);
  git(a.memdir, ['commit', '-q', '-m', `look-alikes ${corpus.split('\n')[1]}`]);
  const lt = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  lt.prepare('INSERT INTO memories (created_at, kind, content, importance) VALUES (1, ?, ?, 0)').run(
    'x',
    corpus,
  );
  lt.close();
  const head = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', redact: true });
  const x = gnuExtract(t, meta.bundle_path);
  const m = JSON.parse(readFileSync(join(x, 'manifest.json'), 'utf8'));
  assert.equal(m.redactions.matches_redacted, 0);
  assert.deepEqual(m.redactions.rules_applied, []);
  assert.deepEqual(m.redactions.artifacts_touched, []);
  assert.equal(m.redactions.git_history, 'unchanged');
  assert.equal(m.git.head_oid, head);
  assert.equal(readFileSync(join(x, 'memory_files', 'lookalikes.md'), 'utf8'), corpus);
  const db = new Database(join(x, 'sqlite', 'long_term.sqlite'), { readonly: true });
  assert.equal(db.prepare('SELECT content FROM memories WHERE kind = ?').pluck().get('x'), corpus);
  db.close();
  // an unredacted snapshot of the same agent has the same database bytes: redaction changed nothing
  const plain = await a.snapshotter.snapshot({ agentId: 'ana' });
  const y = gnuExtract(t, plain.bundle_path);
  assert.equal(JSON.parse(readFileSync(join(y, 'manifest.json'), 'utf8')).redactions, undefined);
  for (const f of ['sqlite/long_term.sqlite', 'git/memdir.bundle', 'memory_files/lookalikes.md'])
    assert.ok(readFileSync(join(x, f)).equals(readFileSync(join(y, f))), f);
});

test('anchors are exact: the pre-restore snapshot is not redacted and undo brings the secrets back', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 4, commits: 2 });
  plantEverywhere(a);
  const head = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  const red = await a.snapshotter.snapshot({ agentId: 'ana', redact: true });
  const report = await a.snapshotter.restore({
    agentId: 'ana',
    bundle: red.bundle_path,
    allowRedacted: true,
  });
  assert.ok(report.pre_snapshot);
  assert.equal(report.redacted, true);
  const anchor = (await a.snapshotter.list('ana')).find((s) => s.id === report.pre_snapshot)!;
  assert.equal(anchor.redactions_applied, false);
  assert.equal(anchor.created_by, 'auto-pre-restore');
  assert.equal(leaks(tarStream(anchor.bundle_path)).length, SECRETS.length, 'the anchor holds every secret');
  await a.snapshotter.restore({ agentId: 'ana', bundle: anchor.bundle_path, autoPreSnapshot: false });
  assert.equal(git(a.memdir, ['rev-parse', 'HEAD']).trim(), head);
  assert.equal(
    readFileSync(join(a.memdir, 'notes', 'secrets.md'), 'utf8'),
    `# Keys the agent saw\n${ALL_TEXT}\n`,
  );
  assert.equal(leaks(readFileSync(join(a.sqliteDir, 'extract_cursor.json'))).length, SECRETS.length);
});

test('a detached HEAD with a secret in its commit is rewritten and restored detached', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 3, commits: 2 });
  const gh = SECRETS.find((s) => s.rule === 'github-token')!;
  git(a.memdir, ['checkout', '-q', '--detach']);
  writeFileSync(join(a.memdir, 'detached.md'), `${gh.secret}\n`);
  git(a.memdir, ['add', '-A']);
  git(a.memdir, ['commit', '-q', '-m', 'detached work']);
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', redact: true });
  const x = gnuExtract(t, meta.bundle_path);
  const m = JSON.parse(readFileSync(join(x, 'manifest.json'), 'utf8'));
  assert.equal(m.git.detached, true);
  assert.equal(m.redactions.git_history, 'rewritten');
  await a.snapshotter.restore({ agentId: 'carl', bundle: meta.bundle_path, import: {} });
  const carl = join(a.memdirRoot, 'carl');
  assert.equal(git(carl, ['rev-parse', 'HEAD']).trim(), m.git.head_oid);
  assert.throws(() => git(carl, ['symbolic-ref', '-q', 'HEAD']), 'HEAD is detached');
  assert.ok(!allGitObjects(carl).includes(gh.needle));
});

test('a secret only in a commit header fast-export drops, or in a blob an annotated tag names, is not shipped', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 2 });
  const gh = SECRETS.find((s) => s.rule === 'github-token')!;
  const aws = SECRETS.find((s) => s.rule === 'aws-access-key-id')!;
  const shipped = async () => {
    const meta = await a.snapshotter.snapshot({ agentId: 'ana', redact: true });
    const x = gnuExtract(t, meta.bundle_path);
    const m = JSON.parse(readFileSync(join(x, 'manifest.json'), 'utf8'));
    return { m, clone: cloneBundle(t, join(x, 'git', 'memdir.bundle')) };
  };
  // 1. a commit whose only secret is in headers fast-export does not carry (an extra header, gpgsig)
  const raw = [
    `tree ${git(a.memdir, ['rev-parse', 'HEAD^{tree}']).trim()}`,
    `parent ${git(a.memdir, ['rev-parse', 'HEAD']).trim()}`,
    'author A <a@example.com> 1700000000 +0000',
    'committer A <a@example.com> 1700000000 +0000',
    `x-note ${gh.secret}`,
    'gpgsig -----BEGIN PGP SIGNATURE-----',
    ` ${aws.secret}`,
    ' -----END PGP SIGNATURE-----',
    '',
    'a clean message',
    '',
  ].join('\n');
  const commit = execFileSync('git', ['hash-object', '-t', 'commit', '-w', '--stdin'], {
    cwd: a.memdir,
    input: raw,
  })
    .toString()
    .trim();
  git(a.memdir, ['update-ref', 'HEAD', commit]);
  let r = await shipped();
  assert.equal(r.m.redactions.git_history, 'rewritten');
  assert.deepEqual(leaks(allGitObjects(r.clone)), []);
  // 2. an annotated tag naming a blob that holds a secret: the tag names the redacted blob
  const blob = execFileSync('git', ['hash-object', '-w', '--stdin'], {
    cwd: a.memdir,
    input: `key ${gh.secret}\n`,
  })
    .toString()
    .trim();
  git(a.memdir, ['tag', '-a', '-m', 'clean msg', 'an-blob', blob]);
  r = await shipped();
  assert.deepEqual(leaks(allGitObjects(r.clone)), []);
  assert.match(git(r.clone, ['cat-file', '-p', 'an-blob^{}']), /^key \[REDACTED:github-token\]$/m);
});

test('redacted and encrypted: the age CLI decrypts a bundle that holds no planted secret; list shows both flags', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 3, commits: 2 });
  writeFileSync(join(a.memdir, 'keys.md'), `${ALL_TEXT}\n`);
  const id = generateIdentity();
  const key = join(tempDir(t), 'key.txt');
  writeFileSync(key, `${id.identity}\n`);
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', redact: true, encrypt: [id.recipient] });
  assert.equal(meta.encrypted, true);
  assert.equal(meta.redactions_applied, true);
  const plain = execFileSync('age', ['-d', '-i', key, meta.bundle_path], { maxBuffer: 256 * 1024 * 1024 });
  const tar = execFileSync('zstd', ['-dc'], { input: plain, maxBuffer: 256 * 1024 * 1024 });
  assert.ok(tar.includes(Buffer.from('[REDACTED:private-key]')));
  assert.deepEqual(leaks(tar), []);
  const listed = (await a.snapshotter.list('ana')).find((m) => m.id === meta.id)!;
  assert.equal(listed.encrypted && listed.redactions_applied, true);
});

test('history rewrite without the memdir: the bundle itself is unpacked; clean history is left as it is', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'repo');
  mkdirSync(repo);
  git(repo, ['init', '-q', '-b', 'main']);
  const gh = SECRETS.find((s) => s.rule === 'github-token')!;
  writeFileSync(join(repo, 'a.md'), `key ${gh.secret}\n`);
  git(repo, ['add', '-A']);
  git(repo, ['commit', '-q', '-m', 'one']);
  const bundle = join(dir, 'b.bundle');
  git(repo, ['bundle', 'create', '-q', bundle, '--all']);
  const before = readFileSync(bundle);
  const policy = compileRedactionPolicy();
  const clean = await rewriteBundle(
    bundle,
    join(dir, 'w1'),
    { ref: 'refs/heads/main', detached: false },
    () => undefined,
  );
  assert.equal(clean.changed, false);
  assert.ok(readFileSync(bundle).equals(before), 'unchanged bundle kept byte for byte');
  const res = await rewriteBundle(
    bundle,
    join(dir, 'w2'),
    { oid: git(repo, ['rev-parse', 'HEAD']).trim(), ref: 'refs/heads/main', detached: false },
    (data) => {
      const out = redactText(policy, data.toString('utf8'));
      return out.matches ? Buffer.from(out.text) : undefined;
    },
  );
  assert.equal(res.changed, true);
  assert.equal(res.commits, 1);
  const clone = cloneBundle(t, bundle);
  assert.equal(git(clone, ['rev-parse', 'HEAD']).trim(), res.headOid);
  assert.equal(git(clone, ['show', 'HEAD:a.md']), 'key [REDACTED:github-token]\n');
  assert.ok(!allGitObjects(clone).includes(gh.needle));
});

test('CLI: exact by default, --redact and config turn it on; list and restore show it; config errors name the key', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 3, commits: 2 });
  const gh = SECRETS.find((s) => s.rule === 'github-token')!;
  const jwt = SECRETS.find((s) => s.rule === 'jwt')!;
  writeFileSync(join(a.memdir, 'keys.md'), `${gh.secret}\n${jwt.secret}\n`);
  let r = await runCli(['snapshot', '--agent', 'ana', '--json', '--no-progress', ...a.flags]);
  assert.equal(r.code, 0, r.stderr);
  const exact = JSON.parse(r.stdout);
  assert.equal(exact.redactions_applied, false, 'a snapshot stays on the host: exact by default');
  assert.ok(tarStream(exact.bundle_path).includes(gh.needle));
  r = await runCli(['snapshot', '--agent', 'ana', '--redact', '--json', '--no-progress', ...a.flags]);
  const redacted = JSON.parse(r.stdout);
  assert.equal(redacted.redactions_applied, true);
  assert.deepEqual(leaks(tarStream(redacted.bundle_path)), []);
  r = await runCli(['list', '--agent', 'ana', '--state-root', a.stateRoot]);
  const rows = r.stdout.split('\n');
  assert.match(rows.find((l) => l.startsWith(redacted.id))!, /\bred\b/);
  assert.doesNotMatch(rows.find((l) => l.startsWith(exact.id))!, /\bred\b/);
  r = await runCli(['list', '--agent', 'ana', '--json', '--state-root', a.stateRoot]);
  const listed = JSON.parse(r.stdout) as Array<{ id: string; redactions_applied: boolean }>;
  assert.equal(listed.find((s) => s.id === redacted.id)!.redactions_applied, true);
  r = await runCli(['restore', '--agent', 'ana', '--from', redacted.bundle_path, '--dry-run', ...a.flags], {
    env: { NEXO_MEMORY_RESTORE_ALLOW: 'yes' },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /redacted: +yes \(2 secret\(s\) replaced: github-token, jwt\)/);

  const cfg = join(a.root, 'nexo.yaml');
  writeFileSync(
    cfg,
    `memory:\n  snapshot:\n    redaction:\n      enabled: true\n      exclude_rules: [jwt]\n      allowlist: ['^${'gh'}p_${gh.needle.slice(0, 6)}']\n`,
  );
  r = await runCli(['snapshot', '--agent', 'ana', '--json', '--config', cfg, ...a.flags]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).redactions_applied, true, 'redaction.enabled: true');
  const kept = tarStream(JSON.parse(r.stdout).bundle_path);
  assert.ok(kept.includes(gh.needle), 'allowlisted');
  assert.ok(kept.includes(jwt.needle), 'excluded rule');
  r = await runCli(['snapshot', '--agent', 'ana', '--no-redact', '--json', '--config', cfg, ...a.flags]);
  assert.equal(JSON.parse(r.stdout).redactions_applied, false);
  writeFileSync(cfg, 'snapshot:\n  redaction:\n    enabled: false\n');
  r = await runCli(['snapshot', '--agent', 'ana', '--redact', '--json', '--config', cfg, ...a.flags]);
  assert.equal(JSON.parse(r.stdout).redactions_applied, true);

  const before = storeEntries(a);
  // (a top-level `snapshot:` section's keys are named as the file writes them)
  for (const [yaml, key] of [
    ['snapshot:\n  redaction:\n    enable: true\n', /: snapshot\.redaction\.enable: unknown key/],
    [
      "snapshot:\n  redaction:\n    allowlist: ['(']\n",
      /: snapshot\.redaction\.allowlist\[0\] must be a valid regular expression/,
    ],
    [
      'snapshot:\n  redaction:\n    exclude_rules: [nope]\n',
      /: snapshot\.redaction\.exclude_rules\[0\] must be a redaction rule id/,
    ],
  ] as const) {
    writeFileSync(cfg, yaml);
    r = await runCli(['snapshot', '--agent', 'ana', '--json', '--config', cfg, ...a.flags]);
    assert.equal(r.code, 1);
    assert.equal(JSON.parse(r.stdout).error.code, 'CONFIG');
    assert.match(r.stderr, key);
  }
  assert.deepEqual(storeEntries(a), before, 'nothing created');
});

test('kill -9 while redacting: the live agent is untouched, nothing lists, the next snapshot cleans up', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 3, commits: 2 });
  plantEverywhere(a);
  const liveDb = readFileSync(join(a.sqliteDir, 'long_term.sqlite'));
  const liveHead = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  const child = startFixture(
    t,
    'snapshot-once.ts',
    [a.stateRoot, a.memdirRoot, a.sqliteRoot, 'ana', 'redact'],
    {
      NEXO_MEMORY_FAULTS: 'snapshot.redact=kill',
    },
  );
  assert.equal(await child.exited, -1, 'killed by the signal');
  assert.ok(
    storeEntries(a).some((n) => n.startsWith('.staging-')),
    'the kill left its staging',
  );
  assert.deepEqual(await a.snapshotter.list('ana'), []);
  assert.ok(readFileSync(join(a.sqliteDir, 'long_term.sqlite')).equals(liveDb));
  assert.equal(git(a.memdir, ['rev-parse', 'HEAD']).trim(), liveHead);
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', redact: true });
  assert.deepEqual(storeEntries(a), [
    `${meta.id}.tar.zst`,
    `${meta.id}.tar.zst.meta.json`,
    `${meta.id}.tar.zst.sha256`,
  ]);
  assert.deepEqual(leaks(tarStream(meta.bundle_path)), []);
});

test('bad input: typed errors before anything is created; a refused redaction leaves nothing behind', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1 });
  // Checked when an operation first needs the policy (LocalSnapshotter.policies), before it creates anything.
  const unknownRule = new LocalSnapshotter({ stateRoot: a.stateRoot, redaction: { excludeRules: ['nope'] } });
  await assert.rejects(unknownRule.snapshot({ agentId: 'ana', redact: true }), { code: 'INVALID_INPUT' });
  await assert.rejects(unknownRule.policies(), { code: 'INVALID_INPUT', message: /unknown rule id "nope"/ });
  assert.deepEqual(storeEntries(a), []);
  await assert.rejects(a.snapshotter.snapshot({ agentId: 'ana', redact: 'yes' as unknown as boolean }), {
    code: 'INVALID_INPUT',
  });
  await assert.rejects(
    a.snapshotter.snapshot({ agentId: 'ana', redact: true, createdBy: 'auto-pre-dream' }),
    {
      code: 'INVALID_INPUT',
      message: /anchor .*never redacted/,
    },
  );
  // a CHECK constraint refuses the redacted value: the snapshot fails as REDACTION, nothing stays
  const lt = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  lt.exec("CREATE TABLE strict_keys (k TEXT CHECK (k NOT LIKE '%REDACTED%'))");
  lt.prepare('INSERT INTO strict_keys VALUES (?)').run(
    SECRETS.find((s) => s.rule === 'github-token')!.secret,
  );
  lt.close();
  const live = readFileSync(join(a.sqliteDir, 'long_term.sqlite'));
  await assert.rejects(
    a.snapshotter.snapshot({ agentId: 'ana', redact: true }),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'REDACTION');
      assert.match(err.message, /sqlite\/long_term\.sqlite: .*CHECK/);
      return true;
    },
  );
  assert.deepEqual(storeEntries(a), []);
  assert.ok(readFileSync(join(a.sqliteDir, 'long_term.sqlite')).equals(live), 'live database untouched');
  // without redaction the same agent snapshots fine
  await a.snapshotter.snapshot({ agentId: 'ana' });
});

test('no byte of a secret survives in any shipped database file, whatever the page splits did', async (t) => {
  // Secrets in rows that land in pages that split while VACUUM INTO builds the copy (the first rows end
  // up in the root page's unused space once it becomes interior) and while redaction rewrites them (a
  // short generic secret grows into its placeholder, splitting index pages): many rows, secrets at the
  // start, the middle and the end, long values on overflow pages, an index and a WITHOUT ROWID key on
  // the secret column, an FTS5 index. Every byte of every shipped file is scanned, not the SQL view.
  const a = sampleAgent(t, 'ana', { files: 2, commits: 1, memories: 500, compactions: 300 });
  const r2 = rng(4711);
  /** `n` distinct characters: a generic secret needs some entropy to be one. */
  const distinct = (n: number): string => {
    for (;;) {
      const pool = [...ALNUM];
      const s = Array.from({ length: n }, () => pool.splice(Math.floor(r2() * pool.length), 1)[0]).join('');
      if (/[0-9]/.test(s) && /[A-Za-z]/.test(s)) return s;
    }
  };
  const planted: string[] = [];
  const secretFor = (i: number): string => {
    if (i % 3 === 0) {
      const body = distinct(36);
      planted.push(body);
      return `${'gh'}p_${body}`;
    }
    const body = distinct(12); // grows into `[REDACTED:generic-secret]`
    planted.push(body);
    return `api_${'key'} = ${body}`;
  };
  const at = (n: number): number[] => [
    ...Array.from({ length: 12 }, (_, i) => i + 1),
    ...Array.from({ length: Math.floor(n / 23) }, (_, i) => 13 + i * 23),
    n - 1,
    n,
  ];
  const lt = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  lt.exec(`
    CREATE INDEX memories_content ON memories(content);
    CREATE TABLE facts (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
    CREATE VIRTUAL TABLE notes_fts USING fts5(body);
  `);
  const ins = lt.prepare('INSERT INTO memories (created_at, kind, content, importance) VALUES (?, ?, ?, ?)');
  const fact = lt.prepare('INSERT INTO facts (k, v) VALUES (?, ?)');
  const note = lt.prepare('INSERT INTO notes_fts (body) VALUES (?)');
  lt.transaction(() => {
    for (let i = 1; i <= 4000; i++) {
      const long = i % 50 === 0 ? 'A long recollection of the day. '.repeat(300) : '';
      ins.run(i, 'fact', `Memory ${i} ${'of the agent '.repeat(1 + (i % 17))}${long}`, 0.5);
      fact.run(`fact-${String(i).padStart(5, '0')} ${'x'.repeat(i % 40)}`, `value ${i}`);
      note.run(`note ${i} ${'plain words '.repeat(1 + (i % 9))}`);
    }
  })();
  const put = lt.prepare('UPDATE memories SET content = ? WHERE id = ?');
  const putFact = lt.prepare(
    "UPDATE facts SET k = ?, v = ? WHERE k = (SELECT k FROM facts WHERE v = 'value ' || ?)",
  );
  const putNote = lt.prepare('UPDATE notes_fts SET body = ? WHERE rowid = ?');
  lt.transaction(() => {
    for (const id of at(4500)) {
      const long = id % 5 === 0 ? ` ${'and then some more detail '.repeat(400)}` : '';
      put.run(`Memory ${id}: the user pasted ${secretFor(id)} here.${long} End ${secretFor(id + 1)}`, id);
    }
    for (const id of at(4000)) {
      putFact.run(`fact ${secretFor(id)}`, `the value ${secretFor(id + 2)}`, String(id));
      putNote.run(`note ${secretFor(id)} end`, id);
    }
  })();
  lt.close();
  const cmp = new Database(join(a.sqliteDir, 'compactions.sqlite'));
  const putCmp = cmp.prepare('UPDATE compactions SET summary = summary || ? WHERE id = ?');
  cmp.transaction(() => {
    for (const id of at(300)) putCmp.run(` ${secretFor(id)}`, id);
  })();
  cmp.close();

  // Many short rows in an indexed column, a third of them with a short secret that grows when redacted:
  // the index pages split again and again while redaction runs (secure_delete alone left one behind).
  const con = new Database(join(a.sqliteDir, 'concepts.sqlite'));
  con.exec('CREATE TABLE hints (id INTEGER PRIMARY KEY, hint TEXT); CREATE INDEX hints_hint ON hints(hint)');
  const hint = con.prepare('INSERT INTO hints (hint) VALUES (?)');
  let lcg = 42;
  const next = (): number => {
    lcg = (lcg * 1103515245 + 12345) & 0x7fffffff;
    return lcg / 0x7fffffff;
  };
  con.transaction(() => {
    for (let i = 0; i < 20_000; i++) {
      let h = `${String(Math.floor(next() * 1e6)).padStart(7, '0')} ${'x'.repeat(Math.floor(next() * 60))}`;
      if (next() < 0.3) {
        const body = distinct(9);
        planted.push(body);
        h = `${h} api_${'key'} = ${body} `;
      }
      hint.run(h);
    }
  })();
  con.close();
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', redact: true });
  const x = gnuExtract(t, meta.bundle_path);
  const m = JSON.parse(readFileSync(join(x, 'manifest.json'), 'utf8'));
  assert.equal(m.redactions.matches_redacted, planted.length, 'every planted secret was found');
  // One pass over the bytes (searching each of ~7,000 secrets separately took minutes): every run of
  // ASCII letters and digits, and each of its substrings of a planted length, looked up in a set.
  const wanted = new Map<string, string>();
  for (const p of planted) {
    wanted.set(p, p);
    wanted.set(p.toLowerCase(), p);
  }
  const lengths = [...new Set(planted.map((p) => p.length))];
  const found = (bytes: Buffer): string[] => {
    const hits = new Set<string>();
    const text = bytes.toString('latin1');
    for (const run of text.matchAll(/[A-Za-z0-9]{9,}/g)) {
      const r = run[0];
      for (const len of lengths)
        for (let i = 0; i + len <= r.length; i++) {
          const p = wanted.get(r.slice(i, i + len));
          if (p) hits.add(p);
        }
    }
    return [...hits];
  };
  assert.deepEqual(found(tarStream(meta.bundle_path)), [], 'the decompressed tar stream');
  for (const f of ['long_term', 'concepts', 'compactions']) {
    const file = join(x, 'sqlite', `${f}.sqlite`);
    assert.deepEqual(found(readFileSync(file)), [], `${f}.sqlite, every byte`);
    const db = new Database(file, { readonly: true });
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    db.close();
  }
  // the live databases still hold them: the test planted where it meant to
  assert.ok(found(readFileSync(join(a.sqliteDir, 'long_term.sqlite'))).length > 0);
});

test("ANALYZE's samples and tables named like an unknown module's shadow tables: no secret ships unreported (stop 52)", async (t) => {
  // sqlite_stat4 holds verbatim copies of index keys, of rows deleted since ANALYZE too; the ordinary
  // table mem_notes is named like a shadow table of the virtual table `mem` (a module SQLite lacks)
  const a = sampleAgent(t, 'ana', { files: 1, commits: 1, memories: 20 });
  const token = (i: number): string => `${'gh'}p_STAT4SECRET${'z'.repeat(24)}${String(i).padStart(2, '0')}`;
  const con = new Database(join(a.sqliteDir, 'concepts.sqlite'));
  con.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, k TEXT); CREATE INDEX notes_k ON notes(k)');
  const ins = con.prepare('INSERT INTO notes (k) VALUES (?)');
  for (let i = 0; i < 50; i++) ins.run(`key ${i} ${token(i)}`);
  con.exec('ANALYZE');
  const samples = (con.prepare('SELECT count(*) AS n FROM sqlite_stat4').get() as { n: number }).n;
  assert.ok(samples > 0, 'this SQLite keeps STAT4 samples');
  con.exec('DELETE FROM notes WHERE id > 25'); // gone from the rows, still in the samples
  con.close();
  // samples of rows that hold no secret: the copy is still rewritten, so it is touched
  const cmp = new Database(join(a.sqliteDir, 'compactions.sqlite'));
  cmp.exec('CREATE TABLE plain (id INTEGER PRIMARY KEY, k TEXT); CREATE INDEX plain_k ON plain(k)');
  const insPlain = cmp.prepare('INSERT INTO plain (k) VALUES (?)');
  for (let i = 0; i < 30; i++) insPlain.run(`plain words ${i}`);
  cmp.exec('ANALYZE');
  cmp.close();
  const lt = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  lt.exec('CREATE TABLE mem_notes (id INTEGER PRIMARY KEY, body TEXT)');
  lt.prepare('INSERT INTO mem_notes (body) VALUES (?)').run(`remember ${'gh'}p_VECPREFIX${'q'.repeat(28)}`);
  lt.unsafeMode(true);
  lt.exec('PRAGMA writable_schema = ON');
  lt.prepare("INSERT INTO sqlite_schema VALUES ('table', 'mem', 'mem', 0, ?)").run(
    'CREATE VIRTUAL TABLE mem USING vec0(embedding float[4])',
  );
  lt.close();
  const meta = await a.snapshotter.snapshot({ agentId: 'ana', redact: true });
  const x = gnuExtract(t, meta.bundle_path);
  const shipped = readFileSync(join(x, 'sqlite', 'concepts.sqlite')).toString('latin1');
  assert.ok(!shipped.includes('STAT4SECRET'), 'no sample of a secret in the shipped concepts.sqlite');
  const db = new Database(join(x, 'sqlite', 'concepts.sqlite'), { readonly: true });
  assert.equal((db.prepare('SELECT count(*) AS n FROM sqlite_stat4').get() as { n: number }).n, 0);
  assert.ok(
    (db.prepare('SELECT count(*) AS n FROM sqlite_stat1').get() as { n: number }).n > 0,
    'stat1 kept',
  );
  assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  db.close();
  const m = JSON.parse(readFileSync(join(x, 'manifest.json'), 'utf8'));
  const notScanned = m.redactions.not_scanned as Array<{
    artifact: string;
    what: string;
    reason: string;
    count?: number;
  }>;
  const stat4 = notScanned.find((n) => n.what === 'sqlite_stat4' && n.artifact === 'sqlite/concepts.sqlite');
  assert.match(stat4?.reason ?? '', /removed/);
  assert.equal(stat4?.count, samples);
  assert.ok(m.redactions.artifacts_touched.includes('sqlite/compactions.sqlite'), 'samples removed: touched');
  // the table the redaction skipped by its name is named on its own
  const named = notScanned.find((n) => n.what === 'mem_notes');
  assert.match(named?.reason ?? '', /shadow table of virtual table "mem" \(module vec0\)/);
  assert.ok(notScanned.some((n) => n.what === 'mem' && /virtual table/.test(n.reason)));
});

test('export redacts what leaves the host: re-packed with the same id, a report, fresh seals and a new signature; --no-redact is exact; encrypted is copied as it is', async (t) => {
  const keys = tempDir(t);
  const k = generateSigningKey();
  writeFileSync(join(keys, 'sign.key'), secretKeyFileText(k), { mode: 0o600 });
  const a = sampleAgent(t, 'ana', { files: 4, commits: 2 }, { signingKey: join(keys, 'sign.key') });
  plantEverywhere(a);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana', label: 'to share' });
  assert.equal(leaks(tarStream(snap.bundle_path)).length, SECRETS.length, 'the snapshot itself is exact');
  const source = readFileSync(snap.bundle_path);
  const out = tempDir(t);

  const r = await a.snapshotter.export('ana', undefined, snap.id, out);
  assert.equal(r.path, join(out, `${snap.id}.tar.zst`));
  assert.deepEqual([r.copy, r.redacted, r.encrypted], ['redacted', true, false]);
  assert.equal(r.redaction?.git_history, 'rewritten');
  assert.equal(r.verify.status, 'verified');
  assert.deepEqual(r.verify.signature, { status: 'valid', key_id: k.keyId }, 'signed again by the host key');
  assert.equal(readFileSync(r.sibling_path, 'utf8').trim(), r.file_sha256);
  // every byte of the copy, and every object of its history
  assert.deepEqual(leaks(tarStream(r.path)), []);
  const x = gnuExtract(t, r.path);
  assert.deepEqual(leaks(allGitObjects(cloneBundle(t, join(x, 'git', 'memdir.bundle')))), []);
  const m = JSON.parse(readFileSync(join(x, 'manifest.json'), 'utf8'));
  assert.deepEqual(
    [m.snapshot_id, m.agent_id, m.label, m.created_at_ms, m.created_by],
    [snap.id, 'ana', 'to share', snap.created_at_ms, 'library'],
  );
  assert.equal(m.redactions.git_history, 'rewritten');
  assert.ok(m.redactions.matches_redacted >= SECRETS.length);
  assert.notEqual(m.bundle_sha256, snap.bundle_sha256, 'fresh seals over the redacted bytes');
  assert.equal(m.signature.key_id, k.keyId);
  assert.ok(readFileSync(snap.bundle_path).equals(source), 'the snapshot in the store is untouched');
  // restoring the copy in place needs the flag; importing it does not
  await assert.rejects(a.snapshotter.restore({ agentId: 'ana', bundle: r.path }), {
    code: 'REDACTED_BUNDLE',
  });
  const imported = await a.snapshotter.restore({ agentId: 'bob', bundle: r.path, import: {} });
  assert.equal(imported.from, snap.id);

  // an exact copy when asked; a redacted snapshot is copied as it is
  const exact = await a.snapshotter.export('ana', undefined, snap.id, join(out, 'exact.tar.zst'), {
    redact: false,
  });
  assert.deepEqual([exact.copy, exact.redacted, exact.repacked], ['exact', false, false]);
  assert.ok(readFileSync(exact.path).equals(source));
  const red = await a.snapshotter.snapshot({ agentId: 'ana', redact: true });
  const again = await a.snapshotter.export('ana', undefined, red.id, join(out, 'red.tar.zst'));
  assert.equal(again.copy, 'already_redacted');
  assert.equal(again.repacked, false, 'the file copied');
  assert.ok(readFileSync(again.path).equals(readFileSync(red.bundle_path)));

  // encrypted: protected, copied as it is; decrypted, the plaintext copy is redacted unless asked
  const id = generateIdentity();
  const idFile = join(keys, 'age.txt');
  writeFileSync(idFile, `${id.identity}\n`);
  const enc = await a.snapshotter.snapshot({ agentId: 'ana', encrypt: [id.recipient] });
  const e1 = await a.snapshotter.export('ana', undefined, enc.id, out);
  assert.deepEqual([e1.copy, e1.encrypted, e1.redacted], ['encrypted', true, false]);
  assert.equal(e1.path, join(out, `${enc.id}.tar.zst.age`));
  assert.ok(readFileSync(e1.path).equals(readFileSync(enc.bundle_path)));
  const e2 = await a.snapshotter.export('ana', undefined, enc.id, out, {
    decrypt: true,
    decryptIdentity: idFile,
  });
  assert.equal(e2.path, join(out, `${enc.id}.tar.zst`));
  assert.deepEqual([e2.copy, e2.encrypted, e2.redacted], ['redacted', false, true]);
  assert.deepEqual(leaks(tarStream(e2.path)), []);
  const e3 = await a.snapshotter.export('ana', undefined, enc.id, join(out, 'plain.tar.zst'), {
    decrypt: true,
    decryptIdentity: idFile,
    redact: false,
  });
  assert.deepEqual([e3.copy, e3.encrypted], ['exact', false]);
  assert.equal(leaks(tarStream(e3.path)).length, SECRETS.length);
  await assert.rejects(
    a.snapshotter.export('ana', undefined, enc.id, join(out, 'no-id'), { decrypt: true }),
    {
      code: 'INVALID_INPUT',
    },
  );

  // a v1 bundle's history (raw .git files) cannot be redacted: refused, nothing written; exact on request
  const v1id = '0190c3a2-0000-7000-8000-0000000000aa';
  const arts = [
    { path: 'memory_files/a.md', kind: 'memory_file', data: Buffer.from(`${SECRETS[6]!.secret}\n`) },
  ];
  writeBundleFile(
    join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana', `${v1id}.tar.zst`),
    bundleOf(manifestFor(arts, { snapshot_id: v1id }, 1), arts, [], { v1: true }),
  );
  await assert.rejects(a.snapshotter.export('ana', undefined, v1id, join(out, 'v1.tar.zst')), {
    code: 'REDACTION',
    message: /v1 bundle .*--no-redact/,
  });
  assert.equal(existsSync(join(out, 'v1.tar.zst')), false);
  assert.equal(
    (await a.snapshotter.export('ana', undefined, v1id, join(out, 'v1.tar.zst'), { redact: false })).copy,
    'exact',
  );
  assert.deepEqual(
    readdirSync(out).filter((n) => n.includes('.tmp-')),
    [],
    'no temporary file left at the target',
  );

  // the CLI: redacted by default and says so; --no-redact; the config key turns the default off
  const cliOut = tempDir(t);
  let c = await runCli([
    'export',
    '--agent',
    'ana',
    '--id',
    snap.id,
    '--to',
    cliOut,
    '--state-root',
    a.stateRoot,
  ]);
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /^redacted: yes, re-packed \(\d+ secret\(s\) replaced: .*git history rewritten\)/m);
  assert.deepEqual(leaks(tarStream(join(cliOut, `${snap.id}.tar.zst`))), []);
  c = await runCli([
    'export',
    '--agent',
    'ana',
    '--id',
    snap.id,
    '--to',
    join(cliOut, 'x.tar.zst'),
    '--no-redact',
    '--json',
    '--state-root',
    a.stateRoot,
  ]);
  assert.equal(JSON.parse(c.stdout).copy, 'exact');
  c = await runCli(['export', '--agent', 'ana', '--id', enc.id, '--to', cliOut, '--state-root', a.stateRoot]);
  assert.match(c.stdout, /^redacted: no \(age-encrypted, so protected: copied as it is\)$/m);
  const cfg = join(a.root, 'nexo.yaml');
  writeFileSync(cfg, 'memory:\n  snapshot:\n    redact_secrets_default: false\n');
  c = await runCli([
    'export',
    '--agent',
    'ana',
    '--id',
    snap.id,
    '--to',
    join(cliOut, 'y.tar.zst'),
    '--json',
    '--config',
    cfg,
    '--state-root',
    a.stateRoot,
  ]);
  assert.equal(JSON.parse(c.stdout).copy, 'exact');
});

test('the HTTP download is redacted unless ?redact=false: a re-packed bundle with its own digest; encrypted as it is', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 3, commits: 2 });
  plantEverywhere(a);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const id = generateIdentity();
  const enc = await a.snapshotter.snapshot({ agentId: 'ana', encrypt: [id.recipient] });
  const token = 't'.repeat(32);
  const d = new Daemon({ snapshotter: a.snapshotter, listen: '127.0.0.1:0', token });
  const { url } = await d.start();
  t.after(() => d.stop());
  const get = async (path: string) => {
    const res = await fetch(`${url}/v1/agents/ana/snapshots/${path}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return { res, bytes: Buffer.from(await res.arrayBuffer()) };
  };
  const file = join(tempDir(t), 'download.tar.zst');
  // the downloads' temporary files go to a directory of this test's (os.tmpdir() reads TMPDIR)
  const tmp = tempDir(t);
  const savedTmp = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  t.after(() => {
    process.env.TMPDIR = savedTmp;
  });
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
  }).stdout;
  mkdirSync(join(tmp, `nexo-download-${dead}-killed`), { mode: 0o700 });
  writeFileSync(join(tmp, `nexo-download-${dead}-killed`, 'x.tar.zst'), 'a copy a killed process left');
  mkdirSync(join(tmp, `nexo-download-${process.pid}-living`), { mode: 0o700 }); // a live process's: kept
  // what a user named alike is not scratch (stop 52): a file, a name mkdtemp would not give, a
  // directory of another mode, a symbolic link
  writeFileSync(join(tmp, `nexo-export-20261206-agent.tar.zst`), 'an export the user keeps here');
  mkdirSync(join(tmp, 'nexo-diff-2026-12-06'), { mode: 0o700 });
  mkdirSync(join(tmp, `nexo-diff-${dead}-userdr`), { mode: 0o755 });
  symlinkSync(join(tmp, 'nexo-diff-2026-12-06'), join(tmp, `nexo-browse-${dead}-linked`));
  const kept = [
    `nexo-browse-${dead}-linked`,
    'nexo-diff-2026-12-06',
    `nexo-diff-${dead}-userdr`,
    `nexo-download-${process.pid}-living`,
    'nexo-export-20261206-agent.tar.zst',
  ].sort();
  // the decrypted or unredacted scratch of a killed re-pack (redacted export), deep verify and a
  // verify's git history check (the pack written out for git, decrypted when the bundle is) too, and
  // (stop 52) a killed repository export's staging, diff's sides, a dry run's and a browsed database
  for (const kind of ['repack', 'verify', 'pack-check', 'export', 'diff', 'dry-run', 'browse']) {
    mkdirSync(join(tmp, `nexo-${kind}-${dead}-killed`), { mode: 0o700 });
    writeFileSync(join(tmp, `nexo-${kind}-${dead}-killed`, 'long_term.sqlite'), 'decrypted rows');
  }
  // while a re-packed download streams, its temporary copy is already gone from the disk
  const streaming = await fetch(`${url}/v1/agents/ana/snapshots/${snap.id}/export`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(streaming.headers.get('x-nexo-copy'), 'redacted');
  assert.deepEqual(readdirSync(tmp).sort(), kept);
  await streaming.arrayBuffer();

  let { res, bytes } = await get(`${snap.id}/export`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-nexo-redacted'), 'true');
  assert.equal(res.headers.get('x-nexo-copy'), 'redacted');
  assert.equal(res.headers.get('x-nexo-file-sha256'), createHash('sha256').update(bytes).digest('hex'));
  assert.equal(Number(res.headers.get('content-length')), bytes.length);
  writeFileSync(file, bytes);
  assert.deepEqual(leaks(tarStream(file)), []);
  const report = await a.snapshotter.verify(file);
  assert.equal(report.snapshot_id, snap.id);
  assert.equal(report.per_artifact_ok && report.manifest_ok, true, 'a sealed bundle');

  ({ res, bytes } = await get(`${snap.id}/export?redact=false`));
  assert.equal(res.headers.get('x-nexo-copy'), 'exact');
  assert.ok(bytes.equals(readFileSync(snap.bundle_path)), 'the bundle as it is, on request');
  assert.equal(res.headers.get('x-nexo-file-sha256'), snap.file_sha256);

  ({ res, bytes } = await get(`${enc.id}/export`));
  assert.equal(res.headers.get('x-nexo-copy'), 'encrypted');
  assert.ok(bytes.equals(readFileSync(enc.bundle_path)));
  assert.equal((await get(`${snap.id}/export?redact=maybe`)).res.status, 400);
  assert.deepEqual(
    readdirSync(join(a.stateRoot, 'tenants', 'default', 'snapshots', 'ana')).filter((n) => n.startsWith('.')),
    [],
    'nothing left in the store',
  );
  assert.deepEqual(readdirSync(tmp).sort(), kept, 'nor in the temporary directory');
});
