// Hostile bundles refused everywhere (verify, restore, import, import into a repository), the live
// agent unchanged: paths restore cannot write, the git block rules, a corrupt git bundle with recomputed
// hashes, a state value restore cannot parse, and every hostile bundle of the foundation tests in
// verify.test.ts once more through restore and import. In a file of its own so the suite runs it
// beside verify.test.ts (helpers/hostile.ts holds what both use).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { git } from '../scripts/sample-agent.js';
import { verifyBundleFile } from '../src/verify/verify.js';
import {
  addMemoryFiles,
  bundleOf,
  forgeBundle,
  manifestFor,
  packOffset,
  rawHeader,
  repack,
  tarOf,
  writeBundleFile,
  zstd,
  zstdSplit,
  zstdWithZeros,
} from './helpers/bundles.js';
import { runCli } from './helpers/env.js';
import { hostileBase, mem, refusedEverywhere } from './helpers/hostile.js';

test('paths restore cannot write are refused from the manifest alone: a file that is also a directory, a 256-byte segment', async (t) => {
  const { a, entries, dir } = await hostileBase(t);
  const withFiles = (...files: Array<[string, string]>) =>
    forgeBundle(entries, (m, rest) =>
      addMemoryFiles(
        m,
        rest,
        files.map(([path, data]) => [path, Buffer.from(data)] as const),
      ),
    );
  const collide = writeBundleFile(
    join(dir, 'collide.tar.zst'),
    withFiles(['memory_files/zz', 'file'], ['memory_files/zz/b', 'inside']),
  );
  await refusedEverywhere(a, collide, 'UNSAFE_ENTRY');
  const long = writeBundleFile(
    join(dir, 'long.tar.zst'),
    withFiles([`memory_files/${'a'.repeat(256)}`, 'x']),
  );
  await refusedEverywhere(a, long, 'UNSAFE_ENTRY');
  // 255 bytes is a valid name
  const ok = writeBundleFile(join(dir, 'ok.tar.zst'), withFiles([`memory_files/${'a'.repeat(255)}`, 'x']));
  assert.equal((await verifyBundleFile(ok)).status, 'verified');
  // a memory file under a database's, its side files' or the state's file name: in the default layout
  // those are files of the memdir, which restore would turn into directories
  for (const under of [
    'long_term.sqlite/x',
    'vector.sqlite-wal/x',
    'concepts.sqlite-journal/a/b',
    'extract_cursor.json/x',
  ]) {
    const p = writeBundleFile(
      join(dir, `under-${under.replaceAll('/', '_')}.tar.zst`),
      withFiles([`memory_files/${under}`, 'x']),
    );
    await refusedEverywhere(a, p, 'UNSAFE_ENTRY');
  }
});

test("text output shows a bundle's escape sequences as escapes: no control character reaches the terminal", async (t) => {
  const { entries, dir } = await hostileBase(t);
  const evil = '\u001b[2K\r"status: verified"\u001b[8m\u009b31m\u202e';
  const p = writeBundleFile(
    join(dir, `evil${'\u001b]0;owned\u0007'}.tar.zst`),
    forgeBundle(entries, (m, rest) =>
      addMemoryFiles(m, rest, [
        [`memory_files/${evil}`, Buffer.from('x')],
        [`memory_files/${evil}/b\nfake`, Buffer.from('y')],
        [`memory_files/${evil}/b`, Buffer.from('z')],
      ]),
    ),
  );
  const r = await runCli(['verify', p]);
  assert.equal(r.code, 2, r.stderr);
  const shown = r.stdout + r.stderr;
  assert.doesNotMatch(shown, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202e]/, 'no raw control character');
  assert.match(shown, /\\(x1b|u001b)\[2K/, 'shown as an escape');
  const problems = r.stdout.split('\n').filter((l) => l.startsWith('problem:'));
  assert.ok(problems.length >= 1);
  assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('"status')).length, 0, 'no line forged');
});

test('git block rules: head_ref must be a safe branch name, HEAD must be what the git bundle carries', async (t) => {
  const { a, entries, dir } = await hostileBase(t);
  const head = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  const first = git(a.memdir, ['rev-list', '--max-parents=0', 'HEAD']).trim();
  const cases: Array<[string, (g: Record<string, unknown>, m: Record<string, unknown>) => void]> = [
    ['head_ref refs/heads/../../x', (g) => (g.head_ref = 'refs/heads/../../x')],
    ['head_ref with a control character', (g) => (g.head_ref = 'refs/heads/a\u0001b')],
    ['head_ref outside refs/heads', (g) => (g.head_ref = 'refs/tags/v1')],
    ['head_ref ending in .lock', (g) => (g.head_ref = 'refs/heads/main.lock')],
    ['head_ref missing on a branch', (g) => delete g.head_ref],
    ['head_oid another commit of the history', (g) => (g.head_oid = first)],
    ['head_oid not an object id', (g) => (g.head_oid = 'HEAD')],
    [
      'repository present without the git bundle',
      (_g, m) => {
        m.artifacts = (m.artifacts as Array<{ path_in_bundle: string }>).filter(
          (x) => x.path_in_bundle !== 'git/memdir.bundle',
        );
      },
    ],
    [
      'repository absent with a git bundle',
      (g) => {
        Object.assign(g, { repository: 'absent', head_oid: '0'.repeat(40), detached: false });
        delete g.head_ref;
      },
    ],
    ['detached with a head_ref', (g) => (g.detached = true)],
    ['repository missing', (g) => delete g.repository],
    ['snapshot_id not a UUID', (_g, m) => (m.snapshot_id = 'bad\nid')],
    ['agent_id invalid', (_g, m) => (m.agent_id = '../ana')],
  ];
  assert.notEqual(head, first);
  for (const [name, edit] of cases) {
    const p = writeBundleFile(
      join(dir, `${name.replaceAll(/[^a-z0-9]+/gi, '-')}.tar.zst`),
      forgeBundle(
        entries,
        (m, rest) => {
          edit(m.git as Record<string, unknown>, m);
          if (
            !(m.artifacts as Array<{ path_in_bundle: string }>).some(
              (x) => x.path_in_bundle === 'git/memdir.bundle',
            )
          )
            rest.splice(
              rest.findIndex((e) => e.path === 'git/memdir.bundle'),
              1,
            );
          // (framed as the writer frames: verify checks the history from its own frame, restore from the stream)
        },
        { frames: 'git' },
      ),
    );
    await t.test(name, () => refusedEverywhere(a, p, 'BUNDLE_DAMAGED'));
  }
});

test('a corrupt git bundle whose hashes were recomputed is refused by plain verify, restore and import', async (t) => {
  const { a, entries, dir } = await hostileBase(t);
  const gitEntry = entries.find((e) => e.path === 'git/memdir.bundle')!;
  const original = gitEntry.data;
  const start = packOffset(original);
  const head = git(a.memdir, ['rev-parse', 'HEAD']).trim();
  const commitOnlyPack = Buffer.from(
    git(a.memdir, ['pack-objects', '--stdout'], `${head}\n`) as unknown as string,
    'latin1',
  );
  const header = original.subarray(0, start);
  const cases: Array<[string, Buffer]> = [
    [
      'a flipped byte in the pack',
      (() => {
        const b = Buffer.from(original);
        b[start + Math.floor((b.length - start) / 2)]! ^= 0x55;
        return b;
      })(),
    ],
    ['a truncated pack', original.subarray(0, original.length - 30)],
    ['no pack at all', header],
    ['a pack without the trees and blobs', Buffer.concat([header, commitOnlyPack])],
    [
      'prerequisites',
      Buffer.concat([
        Buffer.from(header.toString('latin1').replace('\n', `\n-${head} partial\n`), 'latin1'),
        original.subarray(start),
      ]),
    ],
    [
      'a ref name with ..',
      Buffer.from(original.toString('latin1').replace(' refs/heads/main', ' refs/heads/a..b'), 'latin1'),
    ],
    [
      // git cannot hold a ref and a ref under it: verify said "verified", restore refused it
      'a ref under another ref',
      Buffer.concat([
        Buffer.from(header.toString('latin1').replace('\n', `\n${head} refs/heads/main/sub\n`), 'latin1'),
        original.subarray(start),
      ]),
    ],
    ['not a git bundle', Buffer.from('PK\u0003\u0004 not a bundle\n\n')],
    ['junk after the pack', Buffer.concat([original, Buffer.from('junk')])],
  ];
  for (const [name, data] of cases) {
    const p = writeBundleFile(
      join(dir, `${name.replaceAll(/[^a-z0-9]+/gi, '-')}.tar.zst`),
      forgeBundle(
        entries,
        (_m, rest) => {
          rest.find((e) => e.path === 'git/memdir.bundle')!.data = data;
        },
        { frames: 'git' }, // verify checks the history from its own frame, restore from the stream
      ),
    );
    await t.test(name, () => refusedEverywhere(a, p, 'BUNDLE_DAMAGED'));
  }
});

test("a zstd frame that starts inside another entry is never taken for the git bundle's", async (t) => {
  const { a, entries, dir } = await hostileBase(t);
  const intact = entries.find((e) => e.path === 'git/memdir.bundle')!.data;
  const broken = Buffer.from(intact);
  const start = packOffset(broken);
  broken[start + Math.floor((broken.length - start) / 2)]! ^= 0x55;
  // A memory file holding a tar header of the git bundle and the intact history: a frame starting there
  // shows a reader that follows frames an intact git bundle, which is not the one the manifest names.
  const decoy = Buffer.concat([rawHeader('git/memdir.bundle', intact.length, '0'), intact]);
  const tar = execFileSync('zstd', ['-dc'], {
    input: forgeBundle(entries, (m, rest) => {
      rest.find((e) => e.path === 'git/memdir.bundle')!.data = broken;
      addMemoryFiles(m, rest, [['memory_files/zz-decoy.md', decoy]]);
    }),
    maxBuffer: 1 << 28,
  });
  const at = tar.indexOf(decoy);
  assert.ok(at > 0 && at % 512 === 0);
  const p = writeBundleFile(join(dir, 'decoy.tar.zst'), zstdSplit(tar, at));
  const r = await verifyBundleFile(p);
  assert.ok(
    r.problems.some((x) => x.path === 'git/memdir.bundle' && /index-pack/.test(x.message)),
    JSON.stringify(r.problems),
  );
  await refusedEverywhere(a, p, 'BUNDLE_DAMAGED');
});

test('a state value restore cannot parse is refused by verify too', async (t) => {
  const { a, entries, dir } = await hostileBase(t);
  for (const [name, text] of [
    ['not JSON', '{"last_message_id": '],
    ['nested too deep', `${'['.repeat(100)}${']'.repeat(100)}`],
    ['a duplicate name', '{"a": 1, "a": 2}'],
  ] as const) {
    const p = writeBundleFile(
      join(dir, `${name.replaceAll(' ', '-')}.tar.zst`),
      forgeBundle(entries, (_m, rest) => {
        rest.find((e) => e.path === 'state/extract_cursor.json')!.data = Buffer.from(text);
      }),
    );
    await t.test(name, () => refusedEverywhere(a, p, 'BUNDLE_DAMAGED'));
  }
});

test('every hostile bundle of the foundation tests above is refused by restore and import too, the live agent unchanged', async (t) => {
  const { a, meta, entries, dir } = await hostileBase(t);
  const arts = [mem('memory_files/MEMORY.md')];
  const ok = manifestFor(arts);
  const bytes = readFileSync(meta.bundle_path);
  const flipped = Buffer.from(bytes);
  flipped[Math.floor(bytes.length / 3)]! ^= 0x01;
  const cases: Array<[string, Buffer]> = [
    ...['../x', 'memory_files//etc/x', '/abs/x', 'memory_files/../../x', 'memory_files/.git/config'].map(
      (path): [string, Buffer] => {
        const list = [mem('memory_files/MEMORY.md'), mem(path, 'evil')];
        return [`unsafe ${path}`, bundleOf(manifestFor(list), list)];
      },
    ),
    ...(['2', '1', '5', '6'] as const).map((type): [string, Buffer] => [
      `type ${type}`,
      bundleOf(ok, arts, [{ path: 'memory_files/evil', type, linkpath: '/etc/passwd' }]),
    ]),
    ['duplicate entry', bundleOf(ok, arts, [{ path: 'memory_files/MEMORY.md', data: 'x' }])],
    ['undeclared entry', bundleOf(ok, arts, [{ path: 'memory_files/extra.md', data: 'x' }])],
    ['missing artifact', bundleOf(manifestFor([...arts, mem('memory_files/gone.md')]), arts)],
    [
      'zeros after the end',
      zstdWithZeros(
        tarOf([
          { path: 'manifest.json', data: JSON.stringify(ok) },
          { path: 'memory_files/MEMORY.md', data: 'x' },
        ]),
        64 * 1024 * 1024,
      ),
    ],
    ['too new', bundleOf(manifestFor(arts, { manifest_version: 6 }), arts)],
    ['empty file', Buffer.alloc(0)],
    ['text', Buffer.from('not a bundle')],
    [
      'manifest not first',
      zstd(
        tarOf([
          { path: 'memory_files/a.md', data: 'x' },
          { path: 'manifest.json', data: '{}' },
        ]),
      ),
    ],
    ['truncated', bytes.subarray(0, Math.floor(bytes.length / 2))],
    ['flipped byte', flipped],
    [
      'replaced artifact',
      repack(
        entries.map((e, i) =>
          i === entries.length - 1 ? { ...e, data: Buffer.alloc(e.data.length, 0x41) } : e,
        ),
      ),
    ],
  ];
  for (const [name, data] of cases) {
    const p = writeBundleFile(join(dir, `${name.replaceAll(/[^a-z0-9]+/gi, '-')}.tar.zst`), data);
    await t.test(name, () => refusedEverywhere(a, p));
  }
});
