// Owns the memdir half of a diff: commits reachable from one side and not the other (each history
// fetched into its own scratch repository at the same time, then walked together), and the working trees compared file by file with git's own
// diff (`git diff --no-index`: line counts, binary detection, unified patches for --detail; no external
// diff or textconv, whatever attributes the trees ship). A file whose only difference is placeholders on
// one side for the other side's secrets is `redacted`, not `modified`; patches are shown redacted unless
// the caller asked for the values as stored.

import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { gitFuse, initBare, objectFormatOf, runGit } from '../git/git.js';
import { BundleDamagedError, GitError } from '../model/errors.js';
import { MAX_SCANNED_FILE_BYTES } from '../policy/redaction/redact.js';
import { asText, type RedactionPolicy, redactText } from '../policy/redaction/scan.js';
import { hostWriteFailure } from '../util/disk-full.js';
import { allSettledOrThrow } from '../util/settle.js';
import { placeholdersInBytes, showText } from './secrets.js';
import type { Side } from './sides.js';
import type { SecretsView } from './sqlite.js';

export interface FileChange {
  path: string;
  /**
   * `redacted`: the only difference is placeholders on one side where the other has the secrets.
   * `renamed`: a file gone from a whose content (same SHA-256) is at `path` in b, under `old_path`
   * (an exact rename, as git detects it: not empty, byte for byte).
   */
  status: 'added' | 'removed' | 'modified' | 'redacted' | 'renamed';
  /** When `renamed`: its path in a. */
  old_path?: string;
  /** When `redacted`: the side (its label) that holds the placeholders. */
  placeholders_in?: string;
  insertions: number;
  deletions: number;
  binary: boolean;
  /** Unified diff (text files, with --detail). */
  patch?: string;
  /**
   * Set when `patch` was cut at a line's end to the caller's bound (`maxPatchBytes`; or what was left
   * of `maxDetailBytes`, which may leave it empty).
   */
  patch_truncated?: true;
  /** With `patch_truncated`: the whole patch's size in UTF-8 bytes. */
  patch_bytes?: number;
}

async function git(cwd: string, args: string[]): Promise<string> {
  const r = await runGit(cwd, args);
  if (r.code !== 0) throw new GitError(`${args[0]} failed while diffing: ${r.stderr}`);
  return r.stdout;
}

/** Fetches a side's history (every ref, and HEAD, which carries a detached HEAD) into a new bare repo. */
export async function fetchHistory(side: Side, repo: string): Promise<void> {
  await mkdir(repo, { recursive: true });
  // the format of the side's history (git fetches only between repositories of one format)
  await initBare(repo, side.head ? objectFormatOf(side.head) : undefined);
  if (!side.history || !side.head) return;
  // a snapshot's history is untrusted (a bundle's or a v1 bundle's objects): fetched under the fuse
  const fuse = side.label === 'live' ? undefined : gitFuse();
  const r = await runGit(
    repo,
    ['fetch', '-q', '--no-tags', side.history.path, '+refs/*:refs/side/*'],
    undefined,
    fuse,
  );
  if (r.code !== 0) {
    // a snapshot's history that git cannot fetch is damaged (a v1 bundle's, say, that needs alternates)
    const message = `the history of ${side.label} cannot be read: ${r.stderr}`;
    if (side.label === 'live') throw new GitError(message);
    // a host that could not write for git (a full disk, confirmed by the disk) is no damage (stop 54)
    const bytes = (await stat(side.history.path).catch(() => undefined))?.size ?? 0;
    throw (await hostWriteFailure(r.stderr, repo, message, 2 * bytes)) ?? new BundleDamagedError(message);
  }
  await runGit(
    repo,
    ['fetch', '-q', '--no-tags', side.history.path, '+HEAD:refs/side-head'],
    undefined,
    fuse,
  );
}

/** Commits reachable from b's HEAD and not from a's, and the reverse. */
export async function commitsBetween(
  a: Side,
  b: Side,
  scratch: string,
): Promise<{ forward: number; reverse: number }> {
  if (!a.head && !b.head) return { forward: 0, reverse: 0 };
  // Indexing a fetched pack is the slow part: both run at once, in two repositories; then the first
  // borrows the second's objects (alternates) to walk both histories by commit id.
  const [ra, rb] = [resolve(scratch, 'a'), resolve(scratch, 'b')];
  await allSettledOrThrow([fetchHistory(a, ra), fetchHistory(b, rb)]);
  await writeFile(join(ra, 'objects', 'info', 'alternates'), `${join(rb, 'objects')}\n`);
  const count = async (from: string | undefined, to: string | undefined): Promise<number> => {
    if (!to) return 0;
    const range = from ? [`${from}..${to}`] : [to];
    return Number((await git(ra, ['rev-list', '--count', ...range])).trim());
  };
  const [forward, reverse] = await allSettledOrThrow([count(a.head, b.head), count(b.head, a.head)]);
  return { forward, reverse };
}

/** The working-tree changes from a to b. */
export async function treeChanges(
  a: Side,
  b: Side,
  cwd: string,
  detail: boolean,
  secrets: SecretsView,
  /** Each patch cut to at most this many bytes (whole lines); no bound when undefined. */
  maxPatchBytes?: number,
): Promise<FileChange[]> {
  const changed = new Map<string, FileChange['status']>();
  const placeholders = new Map<string, string>();
  for (const [rel, sha] of b.files) {
    const before = a.files.get(rel);
    if (before === undefined) changed.set(rel, 'added');
    else if (before !== sha) {
      const side = placeholdersInBytes(
        secrets.policy,
        await readFile(join(a.tree, rel)),
        await readFile(join(b.tree, rel)),
      );
      changed.set(rel, side ? 'redacted' : 'modified');
      if (side) placeholders.set(rel, side === 'a' ? secrets.labels.a : secrets.labels.b);
    }
  }
  for (const rel of a.files.keys()) if (!b.files.has(rel)) changed.set(rel, 'removed');
  if (changed.size === 0) return [];
  const renamedFrom = exactRenames(a.files, b.files, changed);
  const ta = relative(cwd, a.tree);
  const tb = relative(cwd, b.tree);
  const base = [
    '-c',
    'core.quotepath=off',
    'diff',
    '--no-index',
    '--no-renames',
    '--no-color',
    '--no-ext-diff',
    '--no-textconv',
  ];
  const numstat = await runGit(cwd, [...base, '--numstat', '-z', ta, tb]);
  if (numstat.code > 1) throw new GitError(`diff of the working trees failed: ${numstat.stderr}`);
  // Records: "<ins>\t<del>\t\0<path a>\0<path b>\0"
  const fields = numstat.stdout.split('\0');
  const stats = new Map<string, { ins: number; del: number; binary: boolean }>();
  for (let i = 0; i + 2 < fields.length; i += 3) {
    const [ins, del] = fields[i]!.split('\t');
    const pa = fields[i + 1]!;
    const pb = fields[i + 2]!;
    const rel = pb !== '/dev/null' ? pb.slice(tb.length + 1) : pa.slice(ta.length + 1);
    stats.set(rel, {
      ins: ins === '-' ? 0 : Number(ins),
      del: del === '-' ? 0 : Number(del),
      binary: ins === '-',
    });
  }
  const patches = new Map<string, string>();
  if (detail) {
    // Redacted output: git diffs the shown texts (each changed file's whole text through the rules, as a
    // redacted export holds it), never the stored ones, so no line, hunk header or context of the patch
    // can hold a byte of a secret the rules find in the whole file (a key block cut by a hunk included).
    const shown = secrets.shown.policy
      ? await shownTrees(a, b, changed, cwd, secrets.shown.policy)
      : undefined;
    const [pa, pb] = shown?.trees ?? [ta, tb];
    const full = await runGit(cwd, [...base, '--src-prefix=a/', '--dst-prefix=b/', pa, pb]);
    if (full.code > 1) throw new GitError(`diff of the working trees failed: ${full.stderr}`);
    // Each chunk is given to the file its own header names, never by position: the headers git prints
    // for a file (in both trees, only in b's, only in a's: a live side's tree leaves out the files
    // identical to the other side), quoted as git quotes them, are looked up.
    const byHeader = new Map<string, string | null>();
    for (const rel of stats.keys()) {
      for (const [x, y] of [
        [pa, pb],
        [pb, pb],
        [pa, pa],
      ]) {
        const header = `diff --git ${gitQuoted(`a/${x}/${rel}`)} ${gitQuoted(`b/${y}/${rel}`)}`;
        // (two files' headers alike would make the chunk's file unknown: null, refused below)
        byHeader.set(header, byHeader.has(header) && byHeader.get(header) !== rel ? null : rel);
      }
    }
    for (const chunk of patchChunks(full.stdout)) {
      const rel = byHeader.get(chunk.header);
      if (rel == null) throw new GitError(`git diff printed a patch for no changed file: ${chunk.header}`);
      // the trees' directories are taken out of the header lines only, never out of the content
      let head = chunk.head;
      for (const side of [pa, pb]) head = head.replaceAll(`a/${side}/`, 'a/').replaceAll(`b/${side}/`, 'b/');
      // (the shown trees' texts are redacted already; the header's names go through the rules as before)
      patches.set(
        rel,
        (patches.get(rel) ?? '') +
          (shown && !shown.raw.has(rel)
            ? showText(secrets.shown, head) + chunk.body
            : showText(secrets.shown, head + chunk.body)),
      );
    }
  }
  return [...changed]
    .sort(([x], [y]) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
    .map(([path, status]) => {
      const from = renamedFrom.get(path);
      const counted = stats.get(path) ?? { ins: 0, del: 0, binary: false };
      // an exact rename changes no line (git's `| 0`); its patch is git's rename header
      const st = from !== undefined ? { ...counted, ins: 0, del: 0 } : counted;
      const patch =
        status === 'redacted'
          ? undefined
          : from !== undefined
            ? detail
              ? renamePatch(from, path, secrets)
              : undefined
            : patches.get(path);
      const side = placeholders.get(path);
      return {
        path,
        status,
        ...(from !== undefined ? { old_path: from } : {}),
        ...(side !== undefined ? { placeholders_in: side } : {}),
        insertions: st.ins,
        deletions: st.del,
        binary: st.binary,
        ...(patch !== undefined && !st.binary ? boundedPatch(patch, maxPatchBytes) : {}),
      };
    });
}

/**
 * The texts a redacted patch is computed from: each changed file of each side (added, removed,
 * modified; not a redaction-only change, not an exact rename) written under `cwd` with its whole text
 * through the rules (bytes no rule changed are written as they are, so git tells binary files apart as
 * before). A file that is not text (not UTF-8, a NUL byte) or larger than redaction scans, on either
 * side, is written as it is on both and named in `raw`: its patch goes through the rules as git
 * prints it, as before (decoding it would change every line that is not UTF-8; a huge one cannot be
 * one string). Returns the two trees, relative to `cwd`.
 */
async function shownTrees(
  a: Side,
  b: Side,
  changed: ReadonlyMap<string, FileChange['status']>,
  cwd: string,
  policy: RedactionPolicy,
): Promise<{ trees: [string, string]; raw: Set<string> }> {
  const trees: [string, string] = ['shown-a', 'shown-b'];
  const raw = new Set<string>();
  for (const d of trees) await mkdir(join(cwd, d));
  for (const [rel, status] of changed) {
    if (status !== 'added' && status !== 'removed' && status !== 'modified') continue;
    const sides = [
      [a, trees[0]],
      [b, trees[1]],
    ] as const;
    const read: Array<{ bytes: Buffer; text: string | undefined; target: string }> = [];
    for (const [side, dir] of sides) {
      if (!side.files.has(rel)) continue;
      const bytes = await readFile(join(side.tree, rel));
      const text = bytes.length <= MAX_SCANNED_FILE_BYTES ? asText(bytes) : undefined;
      if (text === undefined) raw.add(rel);
      read.push({ bytes, text, target: join(cwd, dir, rel) });
    }
    for (const { bytes, text, target } of read) {
      const r = raw.has(rel) || text === undefined ? undefined : redactText(policy, text);
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, r && r.matches > 0 ? r.text : bytes);
    }
  }
  return { trees, raw };
}

/** SHA-256 of no bytes: empty files are never paired as renames (git does not pair them either). */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/**
 * Exact renames among `changed`: each added path whose content (SHA-256) is that of a removed path is
 * paired with the first such path (byte order), both in byte order, each removed path once. The pair
 * becomes one `renamed` entry at the new path (the removed one leaves `changed`). No content is read:
 * the hashes are known. Returns new path → old path.
 */
function exactRenames(
  a: ReadonlyMap<string, string>,
  b: ReadonlyMap<string, string>,
  changed: Map<string, FileChange['status']>,
): Map<string, string> {
  const byOrder = (x: string, y: string) => Buffer.compare(Buffer.from(x), Buffer.from(y));
  const gone = new Map<string, string[]>();
  for (const [rel, status] of [...changed].sort(([x], [y]) => byOrder(x, y))) {
    const sha = a.get(rel);
    if (status !== 'removed' || sha === undefined || sha === EMPTY_SHA256) continue;
    gone.set(sha, [...(gone.get(sha) ?? []), rel]);
  }
  const from = new Map<string, string>();
  if (gone.size === 0) return from;
  for (const [rel, status] of [...changed].sort(([x], [y]) => byOrder(x, y))) {
    if (status !== 'added') continue;
    const old = gone.get(b.get(rel)!)?.shift();
    if (old === undefined) continue;
    changed.delete(old);
    changed.set(rel, 'renamed');
    from.set(rel, old);
  }
  return from;
}

/** git's patch of an exact rename: its header, no hunk. */
function renamePatch(from: string, to: string, secrets: SecretsView): string {
  return showText(
    secrets.shown,
    `diff --git ${gitQuoted(`a/${from}`)} ${gitQuoted(`b/${to}`)}\nsimilarity index 100%\nrename from ${gitQuoted(from)}\nrename to ${gitQuoted(to)}\n`,
  );
}

/** A path as git prints it in a patch's header (core.quotepath=off): C-quoted when it holds a
 * double quote, a backslash or a control character. */
export function gitQuoted(path: string): string {
  if (!/["\\\x00-\x1f\x7f]/.test(path)) return path;
  const named: Record<string, string> = {
    '\x07': '\\a',
    '\b': '\\b',
    '\t': '\\t',
    '\n': '\\n',
    '\v': '\\v',
    '\f': '\\f',
    '\r': '\\r',
    '"': '\\"',
    '\\': '\\\\',
  };
  let out = '"';
  for (const ch of path) {
    const code = ch.codePointAt(0)!;
    if (named[ch] !== undefined) out += named[ch];
    else if (code < 0x20 || code === 0x7f) out += `\\${code.toString(8).padStart(3, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/** One file's patch in git's output: its `diff --git` line, its header lines (with that line), and its hunks. */
interface PatchChunk {
  header: string;
  head: string;
  body: string;
}

/**
 * Splits the output of `git diff` (patch format) into its files' chunks by its grammar: a chunk's
 * header lines up to its first hunk, then each hunk's lines counted by the hunk's own header, so no
 * line of a file's content (one that looks like a header, or one holding a carriage return) can end
 * a chunk or start another. Lines are ended by \n alone, as git ends them.
 */
export function patchChunks(out: string): PatchChunk[] {
  const lines = out.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const chunks: PatchChunk[] = [];
  const bad = (i: number) =>
    new GitError(
      `git diff printed a patch this reader does not follow at line ${i + 1}: ${JSON.stringify(lines[i]?.slice(0, 200))}`,
    );
  let i = 0;
  while (i < lines.length) {
    const first = lines[i]!;
    if (!first.startsWith('diff --git ')) throw bad(i);
    const head: string[] = [first];
    i++;
    // header lines: modes, index, `Binary files … differ`, then `--- ` and `+++ ` when there are hunks
    while (i < lines.length && !lines[i]!.startsWith('diff --git ') && !lines[i]!.startsWith('@@ ')) {
      head.push(lines[i]!);
      i++;
    }
    const body: string[] = [];
    while (i < lines.length && lines[i]!.startsWith('@@ ')) {
      const m = /^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@/.exec(lines[i]!);
      if (!m) throw bad(i);
      let old = m[1] === undefined ? 1 : Number(m[1]);
      let now = m[2] === undefined ? 1 : Number(m[2]);
      body.push(lines[i]!);
      i++;
      while (old > 0 || now > 0) {
        if (i >= lines.length) throw bad(i);
        const line = lines[i]!;
        const c = line[0];
        if (c === ' ' || line === '') {
          old--;
          now--;
        } else if (c === '-') old--;
        else if (c === '+') now--;
        else if (c !== '\\') throw bad(i);
        if (old < 0 || now < 0) throw bad(i);
        body.push(line);
        i++;
      }
      // `\ No newline at end of file` after the hunk's last line
      if (i < lines.length && lines[i]!.startsWith('\\')) body.push(lines[i++]!);
    }
    chunks.push({
      header: first,
      head: `${head.join('\n')}\n`,
      body: body.length > 0 ? `${body.join('\n')}\n` : '',
    });
  }
  return chunks;
}

/** The patch, or its first whole lines within `max` (≥ 1) bytes with the cut said and the whole size. */
export function boundedPatch(
  patch: string,
  max: number | undefined,
): Pick<FileChange, 'patch' | 'patch_truncated' | 'patch_bytes'> {
  if (max === undefined || patch.length <= max / 3) return { patch };
  const bytes = Buffer.from(patch, 'utf8');
  if (bytes.length <= max) return { patch };
  const nl = bytes.lastIndexOf(0x0a, max - 1);
  // a first line longer than the bound is cut inside it, never inside a character
  let end = nl >= 0 ? nl + 1 : max;
  while (end > 0 && end < bytes.length && (bytes[end]! & 0xc0) === 0x80) end--;
  return { patch: bytes.subarray(0, end).toString('utf8'), patch_truncated: true, patch_bytes: bytes.length };
}
