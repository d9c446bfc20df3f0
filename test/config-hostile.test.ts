// The configuration file and the environment against a hostile tester (stop 47): a YAML error is one
// line naming the file, line and column, never the file's text (a secret on a duplicated key); tags,
// directives and a second document are refused; every path key is resolved against the file's
// directory with `~` expanded (a list from the schema, so none is left out); a directory, a device that
// never ends or a file over the bound is refused as a config, key, identity or .creds file (a pipe is
// read), and so is a config that is not UTF-8; a numeric variable that is not a whole number counts as its default and is warned of.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs, { mkdirSync, type PathLike, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { configStringKeys, loadConfig } from '../src/config/config.js';
import { generateIdentity, loadIdentities } from '../src/crypto/age.js';
import { loadSigningKey, loadTrustedKeys } from '../src/crypto/sign.js';
import { envInteger, envIntegerWarnings, parseEnvInteger } from '../src/util/env-number.js';
import { looseKeyFileWarning } from '../src/util/key-file.js';
import { credsFileAuthenticator } from '../src/util/nats-client.js';
import { runCli, sampleAgent, tempDir } from './helpers/env.js';

/** How many times `fn` opens `path` (node:fs's openSync, which the library's modules import, counted). */
function countOpens(path: string, fn: () => void): number {
  const real = fs.openSync;
  let n = 0;
  fs.openSync = ((p: PathLike, ...rest: unknown[]) => {
    if (p === path) n++;
    return (real as (...a: unknown[]) => number)(p, ...rest);
  }) as typeof fs.openSync;
  syncBuiltinESMExports();
  try {
    fn();
  } finally {
    fs.openSync = real;
    syncBuiltinESMExports();
  }
  return n;
}

const configError =
  (re: RegExp, code = 'CONFIG') =>
  (err: Error & { code?: string }) => {
    assert.equal(err.code, code, err.message);
    assert.match(err.message, re);
    return true;
  };

test('a YAML problem is one line naming the file, line and column and the reason, never the text; tags, directives and a second document are refused', async (t) => {
  const dir = tempDir(t);
  const f = join(dir, 'c.yaml');
  const SECRET = 's3cr3t-t0ken-value-123456';
  const cases: Array<[string, string]> = [
    [
      `memory:\n  snapshot:\n    server:\n      token: ${SECRET}\n      token: ${SECRET}\n`,
      'is not valid YAML at line 5, column 7: Map keys must be unique',
    ],
    [
      `memory:\n  snapshot:\n    store:\n      s3:\n        secret_access_key: "${SECRET}\n`,
      'is not valid YAML at line 6, column 1: Missing closing "quote',
    ],
    // messages whose tail quotes the source: cut at their first ": "
    [
      `memory:\n  snapshot: |${SECRET}\n    x\n`,
      'is not valid YAML at line 2, column 14: Block scalar header includes extra characters',
    ],
    [
      `memory: {snapshot: {}}}${SECRET}\n`,
      'is not valid YAML at line 1, column 23: Unexpected flow-map-end token in YAML stream',
    ],
    [
      'memory:\n  snapshot:\n    root: !custom foo\n',
      'is refused at line 3, column 11: Unresolved tag: !custom (a config file takes plain YAML',
    ],
    [
      'memory:\n  snapshot:\n    root: !!int foo\n',
      'is refused at line 3, column 11: Unresolved tag: tag:yaml.org,2002:int',
    ],
    ['%FOO bar\n---\nmemory: {}\n', 'is refused at line 1, column 1: Unknown directive %FOO'],
    [
      'memory:\n  snapshot:\n    zstd_level: 3\n---\nmemory:\n  snapshot:\n    zstd_level: 4\n',
      'has a second YAML document at line 4: a config file holds one YAML document',
    ],
    [
      `memory:\n  snapshot:\n    root: *${SECRET}\n`,
      'is not valid YAML: Unresolved alias (the anchor must be set before the alias)',
    ],
  ];
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  for (const [text, want] of cases) {
    writeFileSync(f, text);
    assert.throws(
      () => loadConfig(f),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'CONFIG', text);
        assert.ok(err.message.startsWith(`config file ${f} ${want}`), `${text}\n  got: ${err.message}`);
        assert.doesNotMatch(err.message, /\n|s3cr3t/, text);
        assert.equal(err.cause, undefined, 'no YAML error (and its source) hangs on it');
        return true;
      },
    );
  }
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(warnings, [], 'nothing went to process warnings (stderr)');
  // the CLI: one `error:` line on stderr, the JSON error the same line
  writeFileSync(f, cases[0]![0]);
  const r = await runCli([
    'list',
    '--agent',
    'ana',
    '--state-root',
    join(dir, 'state'),
    '--config',
    f,
    '--json',
  ]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `error: config file ${f} ${cases[0]![1]}\n`);
  const e = JSON.parse(r.stdout).error;
  assert.equal(e.code, 'CONFIG');
  assert.doesNotMatch(JSON.stringify(e), /s3cr3t|\\n/);
});

test('every path key is resolved against the config file directory, ~ and ~/… are the home directory, ~user is refused', (t) => {
  const keys = configStringKeys();
  const paths = keys.filter((k) => k.path).map((k) => k.key);
  assert.deepEqual(paths, [
    'root',
    'memdir_root',
    'sqlite_root',
    'encryption.identity_path',
    'store.nats.creds_file',
    'signing.key_path',
    'signing.trusted_keys[]',
    'events.creds_file',
    'metrics.textfile',
  ]);
  // a string key named as a path is marked as one (a new key cannot be left out)
  for (const { key, path } of keys)
    if (/(root|_path|_file|textfile|_keys\[\])$/.test(key)) assert.ok(path, `${key} is a path key`);
  const dir = tempDir(t);
  const f = join(dir, 'c.yaml');
  // one config setting every path key (JSON is YAML), the value read back by the same dotted key
  const configWith = (value: (i: number) => string) => {
    const snapshot: Record<string, unknown> = {};
    paths.forEach((key, i) => {
      const segs = key.replace('[]', '').split('.');
      let o = snapshot;
      for (const s of segs.slice(0, -1)) {
        o[s] ??= {};
        o = o[s] as Record<string, unknown>;
      }
      o[segs.at(-1)!] = key.endsWith('[]') ? [value(i)] : value(i);
    });
    writeFileSync(f, JSON.stringify({ memory: { snapshot } }));
    const got = loadConfig(f).snapshot as Record<string, unknown>;
    return paths.map((key) => {
      let v: unknown = got;
      for (const s of key.replace('[]', '').split('.')) v = (v as Record<string, unknown>)[s];
      return key.endsWith('[]') ? (v as string[])[0] : v;
    });
  };
  const cwd = process.cwd();
  process.chdir(mkdtempIn(dir));
  t.after(() => process.chdir(cwd));
  assert.deepEqual(
    configWith((i) => `./sub/p${i}`),
    paths.map((_, i) => join(dir, 'sub', `p${i}`)),
  );
  assert.deepEqual(
    configWith((i) => `~/p${i}`),
    paths.map((_, i) => join(homedir(), `p${i}`)),
  );
  assert.deepEqual(
    configWith(() => '~'),
    paths.map(() => homedir()),
  );
  assert.deepEqual(
    configWith((i) => `/abs/p${i}`),
    paths.map((_, i) => `/abs/p${i}`),
  );
  // an inline key among trusted_keys is a key, not a path
  writeFileSync(f, 'memory:\n  snapshot:\n    signing:\n      trusted_keys: [nexo-sign-pub1abc, k.pub]\n');
  assert.deepEqual(loadConfig(f).snapshot.signing?.trusted_keys, ['nexo-sign-pub1abc', join(dir, 'k.pub')]);
  for (const key of ['root', 'metrics.textfile']) {
    const [a, b] = key.split('.');
    writeFileSync(f, `memory:\n  snapshot:\n${b ? `    ${a}:\n      ${b}` : `    ${a}`}: ~bob/x\n`);
    assert.throws(
      () => loadConfig(f),
      configError(new RegExp(`^memory\\.snapshot\\.${key}: ~user is not expanded`)),
    );
  }
});

function mkdtempIn(dir: string): string {
  const d = join(dir, 'elsewhere');
  mkdirSync(d, { recursive: true });
  return d;
}

test('events.creds_file: relative to the config file; a credentials file that cannot be read is said as that, not as an unreachable broker', async (t) => {
  const a = sampleAgent(t, 'ana', { files: 1, commits: 1, memories: 2, embeddings: 1 });
  const cfgDir = join(a.root, 'cfg');
  mkdirSync(cfgDir);
  const cfg = join(cfgDir, 'ev.yaml');
  writeFileSync(
    cfg,
    'memory:\n  snapshot:\n    events:\n      nats_url: nats://127.0.0.1:1\n      creds_file: ./my.creds\n',
  );
  const elsewhere = mkdtempIn(a.root);
  const r = await runCli(['snapshot', '--agent', 'ana', ...a.flags, '--config', cfg], { cwd: elsewhere });
  assert.equal(r.code, 0, r.stderr);
  const creds = join(cfgDir, 'my.creds');
  assert.match(
    r.stderr,
    new RegExp(
      `warning: event broker nats://127\\.0\\.0\\.1:1 not contacted: reading the NATS credentials file ${creds.replace(/[.]/g, '\\.')}: ENOENT.*; dropping events until the credentials file can be used\\n`,
    ),
  );
  assert.doesNotMatch(r.stderr, /unreachable/);
});

test('a config, key, identity or .creds file that is a directory, an endless device or over its bound is refused, naming the file and the bound; a pipe is read; a config that is not UTF-8 names its line', async (t) => {
  const dir = tempDir(t);
  // a pipe (`--config <(…)`) is read as it comes, from its writer
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const writer = spawn('sh', ['-c', 'printf "memory:\\n  snapshot:\\n    root: /srv/piped\\n" > "$0"', fifo]);
  // Opened once: a second open (one to look at it, one to read) let the writer write to the first and
  // go, and the second then waited for a writer forever (a test process hung there, stop 48).
  const opens = countOpens(fifo, () => assert.equal(loadConfig(fifo).snapshot.root, '/srv/piped'));
  assert.equal(opens, 1, 'the pipe is opened once');
  await once(writer, 'exit');
  // /dev/zero never ends: refused once past the bound, never read whole
  assert.throws(
    () => loadConfig('/dev/zero'),
    configError(/^config file \/dev\/zero holds more than a config file may hold \(1 MiB\): not read$/),
  );
  assert.throws(
    () => loadSigningKey('/dev/zero'),
    configError(/more than a key file may hold \(64 KiB\)/, 'KEY'),
  );
  for (const [path, kind] of [[dir, 'a directory']] as const) {
    const not = `${path} is ${kind}, not a regular file, a pipe or a device: not read`;
    assert.throws(() => loadConfig(path), configError(new RegExp(`^config file ${not}$`)));
    assert.throws(() => loadSigningKey(path), configError(new RegExp(`^key: key file ${not}$`), 'KEY'));
    assert.throws(() => loadTrustedKeys([path]), configError(new RegExp(`^key: key file ${not}$`), 'KEY'));
    assert.throws(
      () => loadIdentities(path),
      configError(new RegExp(`^encryption: identity file ${not}$`), 'ENCRYPTION'),
    );
    assert.throws(
      () => credsFileAuthenticator(path),
      configError(new RegExp(`^NATS credentials file ${not}$`)),
    );
  }
  const big = join(dir, 'big');
  writeFileSync(big, `${'#'.repeat(1024 * 1024)}\n`);
  assert.throws(
    () => loadConfig(big),
    configError(/^config file .*big is 1048577 bytes, more than a config file may hold \(1 MiB\): not read$/),
  );
  writeFileSync(big, `#${' '.repeat(64 * 1024)}\n`);
  assert.throws(
    () => loadSigningKey(big),
    configError(
      /^key: key file .*big is 65538 bytes, more than a key file may hold \(64 KiB\): not read$/,
      'KEY',
    ),
  );
  assert.throws(
    () => loadIdentities(big),
    configError(/more than an identity file may hold \(64 KiB\)/, 'ENCRYPTION'),
  );
  assert.throws(
    () => credsFileAuthenticator(big),
    configError(/more than a credentials file may hold \(64 KiB\)/),
  );
  const f = join(dir, 'c.yaml');
  writeFileSync(f, Buffer.from('memory:\n  snapshot:\n    root: "caf\xe9"\n', 'latin1'));
  assert.throws(
    () => loadConfig(f),
    configError(
      /^config file .*c\.yaml is not UTF-8 at line 3 \(saved in Latin-1 or another legacy encoding\?\): not read$/,
    ),
  );
  writeFileSync(f, '\ufeffmemory:\n  snapshot:\n    root: "café"\n');
  assert.equal(loadConfig(f).snapshot.root, join(dir, 'café'));
});

test('CLI: keygen -y and verify --trust refuse /dev/zero (KEY), never reading it whole', async () => {
  for (const args of [
    ['keygen', '-y', '/dev/zero', '--json'],
    ['verify', '--trust', '/dev/zero', '/nonexistent.tar.zst', '--json'],
  ]) {
    const r = await runCli(args);
    assert.equal(r.code, 1, args.join(' '));
    assert.equal(JSON.parse(r.stdout).error.code, 'KEY', args.join(' '));
    assert.match(r.stderr, /key file \/dev\/zero holds more than a key file may hold \(64 KiB\): not read/);
  }
});

test('a numeric environment variable: digits only (spaces around ignored); blank is the default, anything else the default with a warning', async () => {
  const cases: Array<[string | undefined, number | 'unset' | 'invalid']> = [
    [undefined, 'unset'],
    ['', 'unset'],
    [' ', 'unset'],
    ['\t\r\n', 'unset'],
    ['0', 0],
    [' 60\r\n', 60],
    ['007', 7],
    [String(Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER],
    ['9007199254740993', 'invalid'],
  ];
  for (const odd of [
    '0x0',
    '0.0',
    '-0',
    '0b0',
    '0o0',
    '+0',
    '1e3',
    '0.5',
    '60s',
    'abc',
    '1_000',
    '٣',
    'Infinity',
  ])
    cases.push([odd, 'invalid']);
  for (const [raw, want] of cases) assert.equal(parseEnvInteger(raw), want, JSON.stringify(raw));
  const env = {
    NEXO_MEMORY_GIT_CPU_SECONDS: '0x0',
    NEXO_MEMORY_PROGRESS_AFTER_MS: '',
    NEXO_MEMORY_GIT_MAX_OBJECT_BYTES: '0',
  };
  assert.equal(envInteger('NEXO_MEMORY_GIT_CPU_SECONDS', 60, env), 60);
  assert.equal(envInteger('NEXO_MEMORY_PROGRESS_AFTER_MS', 1000, env), 1000);
  assert.equal(envInteger('NEXO_MEMORY_GIT_MAX_OBJECT_BYTES', 5, env), 0);
  assert.deepEqual(envIntegerWarnings(env), [
    'NEXO_MEMORY_GIT_CPU_SECONDS="0x0" is not a whole number (digits only; 0 where it turns something off): its default is used',
  ]);
  // the CLI says so, on stderr, whatever the command
  const r = await runCli(['keygen', '-y', '/nonexistent'], {
    env: { NEXO_MEMORY_SQLITE_THREADS_MIN_BYTES: '-0' },
  });
  assert.match(
    r.stderr,
    /^warning: NEXO_MEMORY_SQLITE_THREADS_MIN_BYTES="-0" is not a whole number \(digits only; 0 where it turns something off\): its default is used\n/,
  );
});

test('a key given as a pipe is read once per process: the permission check does not read it, a second load gets the same identities (stop 48)', async (t) => {
  const dir = tempDir(t);
  // A signing key path that is a FIFO others may open (mkfifo's 0644): warned of without being read.
  // Reading it there took the key the loader then waited for, and `list` waited on a pipe it never needed.
  const keyFifo = join(dir, 'sign.fifo');
  execFileSync('mkfifo', ['-m', '644', keyFifo]);
  const keyWriter = spawn('sh', ['-c', 'printf "NEXO-SIGN-SECRET-KEY-1 x\\n" > "$0"', keyFifo]);
  t.after(() => keyWriter.kill());
  let warning: string | undefined;
  const looked = countOpens(keyFifo, () => {
    warning = looseKeyFileWarning(keyFifo, 'signing');
  });
  assert.equal(looked, 0, 'the permission check opened the pipe');
  assert.match(warning ?? '', /readable by group and others \(mode 0644\)/);

  // An identity file that is a pipe, written once: a command loads its identities more than once (each
  // snapshot it resolves, then the one it reads); the second load waited for a writer that had gone.
  const idFifo = join(dir, 'id.fifo');
  execFileSync('mkfifo', ['-m', '600', idFifo]);
  const { identity, recipient } = generateIdentity();
  const idWriter = spawn('sh', ['-c', `printf '%s\\n' "$1" > "$0"`, idFifo, identity]);
  t.after(() => idWriter.kill());
  let loads: string[][] = [];
  const opened = countOpens(idFifo, () => {
    loads = [loadIdentities(idFifo), loadIdentities(idFifo)].map((ids) => ids.map((i) => i.recipient));
  });
  assert.equal(opened, 1, 'the pipe was opened again');
  assert.deepEqual(loads, [[recipient], [recipient]]);
});
