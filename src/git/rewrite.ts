// Owns rewriting the history carried in a git bundle, never the live repository. The bundle's refs are
// set up in a scratch bare repository (its objects read in place from the repository the bundle was made
// from, or fetched from the bundle). Pass 1 streams `git fast-export` and passes every data block (each
// file version once, each commit and tag message) to a transform. Only when something changed, pass 2
// exports the history without file contents, gives the redacted file versions inline and the redacted
// messages, and `git fast-import`s it into a second scratch repository that borrows the unchanged
// objects; its refs and HEAD are bundled over the original bundle. Signed tags lose their signatures.
// Refs that peel to a blob or a tree (which fast-export leaves out) are scanned too: see objectRefs.

import { randomUUID } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { GitError } from '../model/errors.js';
import { initBare, runGit, spawnGit, whenGitFails } from './git.js';

export type DataKind = 'blob' | 'commit' | 'tag';

/** Returns new bytes for a data block, or undefined to keep it. */
export type DataTransform = (data: Buffer, kind: DataKind) => Buffer | undefined;

export interface RewriteResult {
  changed: boolean;
  commits: number;
  /** Refs whose target (once annotated tags are peeled) is a blob or a tree: scanned, and kept. */
  objectRefs: number;
  /** HEAD of the rewritten history (only when changed and HEAD points at a commit). */
  headOid?: string;
}

async function gitOk(cwd: string, args: string[], what: string): Promise<string> {
  const r = await runGit(cwd, args);
  if (r.code !== 0) throw new GitError(`${what} failed: ${r.stderr || `exit ${r.code}`}`);
  return r.stdout;
}

/** Runs git with stdout (or stdin) bound to a file descriptor or a callback; rejects on non-zero exit. */
function gitStream(
  cwd: string,
  args: string[],
  io: { stdinFd?: number; onStdout?: (chunk: Buffer) => void },
  what: string,
): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawnGit(cwd, args, [io.stdinFd ?? 'ignore', io.onStdout ? 'pipe' : 'ignore', 'pipe']);
    if (!whenGitFails(child, reject)) return;
    const err: Buffer[] = [];
    let failed: unknown;
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    child.stdout?.on('data', (c: Buffer) => {
      if (failed) return;
      try {
        io.onStdout!(c);
      } catch (e) {
        failed = e;
        child.kill();
      }
    });
    child.on('close', (code) => {
      if (failed) reject(failed);
      else if (code !== 0)
        reject(
          new GitError(`${what} failed: ${Buffer.concat(err).toString('utf8').trim() || `exit ${code}`}`),
        );
      else resolvePromise();
    });
  });
}

/** Incremental parser of a fast-export stream: hands each command line and each data block on. */
class StreamParser {
  private pending: Buffer = Buffer.alloc(0);
  private need = -1; // bytes of data still to collect; -1 while reading command lines
  /** Chunks of a data block still short of `need`, joined once (joining at every chunk was quadratic). */
  private parts: Buffer[] = [];
  private partsBytes = 0;
  /** What the current data block belongs to, and the id of the current blob (`--show-original-ids`). */
  context: DataKind = 'blob';
  mark = '';
  commits = 0;

  constructor(
    private readonly onLine: (line: string, raw: Buffer) => void,
    private readonly onData: (data: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    if (this.need >= 0 && this.pending.length + this.partsBytes + chunk.length < this.need) {
      this.parts.push(chunk);
      this.partsBytes += chunk.length;
      return;
    }
    const pieces = [this.pending, ...this.parts, chunk].filter((b) => b.length > 0);
    this.parts = [];
    this.partsBytes = 0;
    this.pending = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
    let pos = 0;
    for (;;) {
      if (this.need >= 0) {
        if (this.pending.length - pos < this.need) break;
        const data = this.pending.subarray(pos, pos + this.need);
        pos += this.need;
        this.need = -1;
        this.onData(data);
        continue;
      }
      const nl = this.pending.indexOf(10, pos);
      if (nl === -1) break;
      const start = pos;
      const line = this.pending.toString('utf8', pos, nl);
      pos = nl + 1;
      if (line.startsWith('data ')) {
        if (line.startsWith('data <<'))
          throw new GitError('fast-export wrote delimited data, which is not expected');
        this.need = Number(line.slice(5));
        if (!Number.isSafeInteger(this.need)) throw new GitError(`fast-export: bad data line ${line}`);
        continue;
      }
      if (line === 'blob') {
        this.context = 'blob';
        this.mark = '';
      } else if (line.startsWith('commit ')) {
        this.context = 'commit';
        this.commits++;
      } else if (line.startsWith('tag ')) this.context = 'tag';
      else if (line.startsWith('original-oid ') && this.context === 'blob') this.mark = line.slice(13);
      this.onLine(line, this.pending.subarray(start, pos));
    }
    this.pending = pos >= this.pending.length ? Buffer.alloc(0) : this.pending.subarray(pos);
  }

  end(): void {
    if (this.pending.length > 0 || this.need >= 0) throw new GitError('fast-export stream ended mid-record');
  }
}

function readMarks(path: string): Map<string, string> {
  const marks = new Map<string, string>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const [mark, oid] = line.split(' ');
    if (mark && oid) marks.set(mark, oid);
  }
  return marks;
}

const DETACHED_REF = 'refs/nexo-redact/detached-head';
/** The first mark of the redacted blobs in the rewrite's stream: above any mark fast-export numbers. */
const BLOB_MARK_BASE = 2 ** 40;
/** The headers fast-export carries (or that name objects); any other header of a commit is dropped by it. */
const CARRIED_HEADERS = /^(commit|tree|parent|author|committer|encoding) /;

/**
 * Whether a header of a commit that fast-export does not carry (`gpgsig`, `mergetag`, any extra header)
 * holds a secret: pass 1 never sees them, and a rewrite drops them. Before (stop 38), such a history
 * with nothing else to redact was shipped as captured.
 */
async function secretInExtraHeaders(repo: string, transform: DataTransform): Promise<boolean> {
  const extra: string[] = [];
  let inHeader = false;
  let keep = false;
  let rest = '';
  const take = (line: string) => {
    if (line.startsWith('commit ')) {
      inHeader = true;
      keep = false;
    } else if (line === '') inHeader = false;
    else if (inHeader) {
      if (!line.startsWith(' ')) keep = !CARRIED_HEADERS.test(line);
      if (keep) extra.push(line);
    }
  };
  await gitStream(
    repo,
    ['rev-list', '--all', '--format=raw'],
    {
      onStdout: (c) => {
        const lines = (rest + c.toString('latin1')).split('\n');
        rest = lines.pop() ?? '';
        for (const l of lines) take(l);
      },
    },
    'git rev-list --format=raw',
  );
  take(rest);
  return extra.length > 0 && transform(Buffer.from(extra.join('\n'), 'latin1'), 'commit') !== undefined;
}
// (`--mark-tags`: a tag of a tag is exported, not refused)
const EXPORT_FLAGS = [
  '--signed-tags=strip',
  '--tag-of-filtered-object=rewrite',
  '--reencode=yes',
  '--mark-tags',
];

/**
 * Runs git with `input` (bytes) on stdin and returns its stdout as bytes; more than `limit` bytes of
 * output stop it (GitError). Ref names and tag messages are bytes, not necessarily UTF-8.
 */
function gitBytes(
  cwd: string,
  args: string[],
  what: string,
  input?: Buffer,
  limit = 2 ** 31,
): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    const child = spawnGit(cwd, args, [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe']);
    if (!whenGitFails(child, reject)) return;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    let failed: Error | undefined;
    child.stdout!.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = new GitError(`${what}: more than ${limit} bytes, too large to scan`);
        child.kill();
        return;
      }
      out.push(c);
    });
    child.stderr!.on('data', (c: Buffer) => {
      if (err.length < 64) err.push(c);
    });
    child.on('close', (code) => {
      if (failed) reject(failed);
      else if (code !== 0)
        reject(
          new GitError(`${what} failed: ${Buffer.concat(err).toString('utf8').trim() || `exit ${code}`}`),
        );
      else resolvePromise(Buffer.concat(out));
    });
    if (input !== undefined) {
      child.stdin!.on('error', () => {}); // git exiting before it read it all: its status says why
      child.stdin!.end(input);
    }
  });
}

/** Lines of `buf` (LF-separated, the last one may lack its LF), as latin1 text: bytes kept one to one. */
const linesOf = (buf: Buffer): string[] => {
  const lines = buf.toString('latin1').split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
};

/** An annotated tag object, as read from the repository. */
interface TagObject {
  object: string;
  type: string;
  /** The `tag` and `tagger` header lines (names and identities are not scanned), latin1. */
  kept: string[];
  /** Any other header (with its continuation lines), latin1: scanned; dropped when the tag is rewritten. */
  extra: string[];
  message: Buffer;
}

/** The largest tag object read to scan (its message is held in memory): larger is a GitError. */
const MAX_TAG_BYTES = 64 * 1024 * 1024;

async function readTag(repo: string, oid: string): Promise<TagObject> {
  const bytes = await gitBytes(
    repo,
    ['cat-file', 'tag', oid],
    `reading tag ${oid}`,
    undefined,
    MAX_TAG_BYTES,
  );
  const end = bytes.indexOf('\n\n');
  const head = linesOf(end === -1 ? bytes : bytes.subarray(0, end + 1));
  const object = /^object ([0-9a-f]{40}|[0-9a-f]{64})$/.exec(head[0] ?? '')?.[1];
  const type = /^type (blob|tree|commit|tag)$/.exec(head[1] ?? '')?.[1];
  if (!object || !type) throw new GitError(`tag ${oid} has no object or type header`);
  const kept: string[] = [];
  const extra: string[] = [];
  let into = kept;
  for (const line of head.slice(2)) {
    if (!line.startsWith(' ')) into = /^(tag|tagger) /.test(line) ? kept : extra;
    into.push(line);
  }
  return { object, type, kept, extra, message: end === -1 ? Buffer.alloc(0) : bytes.subarray(end + 2) };
}

/** Lines that start a signature appended to a tag's message (git's gpg-interface). */
const SIGNATURE_START = /^-----BEGIN (PGP SIGNATURE|PGP MESSAGE|SSH SIGNATURE|SIGNED MESSAGE)-----$/;

/** `message` without the signature git appends to a signed tag's message (from its last start line). */
function withoutSignature(message: Buffer): Buffer {
  const text = message.toString('latin1');
  let cut = -1;
  for (let at = 0; at < text.length; ) {
    const nl = text.indexOf('\n', at);
    const line = text.slice(at, nl === -1 ? text.length : nl);
    if (SIGNATURE_START.test(line)) cut = at;
    if (nl === -1) break;
    at = nl + 1;
  }
  return cut === -1 ? message : message.subarray(0, cut);
}

/**
 * A ref whose target, once its annotated tags are peeled, is a blob or a tree. `git fast-export` leaves
 * these out (a ref to a blob or a tree, a tag of a tree), so they are scanned apart: the blob or tree
 * is given to fast-export inside a commit of our own, the tags' messages go through the transform.
 */
interface ObjectRef {
  /** The ref's name, latin1 (bytes kept one to one). */
  ref: string;
  /** The tags from the ref's own object down, each tagging the next. */
  chain: string[];
  /** The blob or tree the chain ends at. */
  base: string;
  baseType: 'blob' | 'tree';
}

/** The refs of `repo` that peel to a blob or a tree, their tag chains read into `tags`. */
async function objectRefs(repo: string, tags: Map<string, TagObject>): Promise<ObjectRef[]> {
  const listed = linesOf(
    await gitBytes(
      repo,
      ['for-each-ref', '--format=%(objectname) %(objecttype) %(refname)'],
      'git for-each-ref',
    ),
  ).map((line) => {
    const [oid, type] = line.split(' ', 2);
    return { oid: oid!, type: type!, ref: line.slice(oid!.length + type!.length + 2) };
  });
  const tagged = listed.filter((r) => r.type === 'tag');
  const peeled = tagged.length
    ? linesOf(
        await gitBytes(
          repo,
          ['cat-file', '--batch-check=%(objectname) %(objecttype)'],
          'peeling tags',
          Buffer.from(tagged.map((r) => `${r.oid}^{}\n`).join(''), 'latin1'),
        ),
      )
    : [];
  const peel = new Map<string, { oid: string; type: string }>();
  for (const [i, r] of tagged.entries()) {
    const [oid, type] = (peeled[i] ?? '').split(' ');
    if (!oid || !type || type === 'missing') throw new GitError(`cannot peel the tag ${r.oid} of a ref`);
    peel.set(r.oid, { oid, type });
  }
  const found: ObjectRef[] = [];
  for (const r of listed) {
    const target = r.type === 'tag' ? peel.get(r.oid)! : { oid: r.oid, type: r.type };
    if (target.type !== 'blob' && target.type !== 'tree') continue;
    const chain: string[] = [];
    for (let at = r.oid; at !== target.oid; ) {
      // each step is one the peel above took: the chain ends (object ids cannot form a cycle)
      let tag = tags.get(at);
      if (!tag) {
        tag = await readTag(repo, at);
        tags.set(at, tag);
      }
      chain.push(at);
      at = tag.object;
    }
    found.push({ ref: r.ref, chain, base: target.oid, baseType: target.type });
  }
  return found;
}

/**
 * Points `scratch` at the objects of `repo` (read-only, through `objects/info/alternates`) and sets
 * its refs to the ones recorded in `bundle`. False when that is not possible (then the caller fetches).
 */
async function borrowObjects(
  scratch: string,
  bundle: string,
  repo: string,
  detached: boolean,
): Promise<boolean> {
  const common = await runGit(repo, ['rev-parse', '--path-format=absolute', '--git-common-dir']);
  if (common.code !== 0) return false;
  const heads = await gitOk(scratch, ['bundle', 'list-heads', resolve(bundle)], 'git bundle list-heads');
  const updates: string[] = [];
  for (const line of heads.split('\n')) {
    const [oid, ref] = line.split(' ');
    if (!oid || !ref) continue;
    if (ref === 'HEAD') {
      if (detached) updates.push(`create ${DETACHED_REF} ${oid}`);
    } else updates.push(`create ${ref} ${oid}`);
  }
  await writeFile(
    join(scratch, 'objects', 'info', 'alternates'),
    `${join(common.stdout.trim(), 'objects')}\n`,
  );
  const r = await runGit(scratch, ['update-ref', '--stdin'], `${updates.join('\n')}\n`);
  if (r.code === 0) return true;
  // e.g. an object the bundle holds is gone from the repository: start over from the bundle itself
  await rm(join(scratch, 'objects', 'info', 'alternates'), { force: true });
  return false;
}

/**
 * The object format a git bundle file declares: `sha256` when its header (the lines before the first
 * empty one) has the `@object-format=sha256` capability, otherwise `sha1`.
 */
function bundleObjectFormat(bundle: string): 'sha1' | 'sha256' {
  const fd = openSync(bundle, 'r');
  try {
    const head = Buffer.alloc(4096);
    const n = readSync(fd, head, 0, head.length, 0);
    const text = head.subarray(0, n).toString('latin1');
    const end = text.indexOf('\n\n');
    const lines = (end === -1 ? text : text.slice(0, end)).split('\n');
    return lines.includes('@object-format=sha256') ? 'sha256' : 'sha1';
  } finally {
    closeSync(fd);
  }
}

/**
 * Sets, in the rewritten repository `dst`, the refs that peel to a blob or a tree: each blob or tree is
 * the rewritten one its commit of our own carries (`<commit>:x`), each tag of a chain is written anew
 * (redacted message, no signature, no other header) when its target or message changed, else kept.
 */
async function setObjectRefs(
  dst: string,
  loose: ObjectRef[],
  bases: [string, 'blob' | 'tree'][],
  wrapPrefix: string,
  t: { tags: Map<string, TagObject>; messages: Map<string, Buffer>; headers: Set<string> },
): Promise<void> {
  const found = linesOf(
    await gitBytes(
      dst,
      ['cat-file', '--batch-check=%(objectname) %(objecttype)'],
      'git cat-file',
      Buffer.from(bases.map((_, i) => `${wrapPrefix}${i}:x\n`).join('')),
    ),
  );
  const newBase = new Map<string, string>();
  let emptyTree: string | undefined;
  for (const [i, [oid, type]] of bases.entries()) {
    const [now, nowType] = (found[i] ?? '').split(' ');
    if (nowType === type) newBase.set(oid, now!);
    // a tree with no file in it at all: fast-import keeps no empty directory
    else if (type === 'tree' && nowType === 'missing') {
      emptyTree ??= (await gitOk(dst, ['mktree'], 'git mktree')).trim();
      newBase.set(oid, emptyTree);
    } else throw new GitError(`rewritten history lost the ${type} ${oid} a ref names`);
  }
  const updates = bases.map((_, i) => `delete ${wrapPrefix}${i}\n`);
  const written = new Map<string, string>(); // `<tag> <new target>` -> the rewritten tag
  for (const r of loose) {
    let target = newBase.get(r.base)!;
    for (const oid of [...r.chain].reverse()) {
      const tag = t.tags.get(oid)!;
      if (target === tag.object && !t.messages.has(oid) && !t.headers.has(oid)) {
        target = oid;
        continue;
      }
      const key = `${oid} ${target}`;
      let made = written.get(key);
      if (made === undefined) {
        const head = [`object ${target}`, `type ${tag.type}`, ...tag.kept, '', ''].join('\n');
        const bytes = Buffer.concat([
          Buffer.from(head, 'latin1'),
          withoutSignature(t.messages.get(oid) ?? tag.message),
        ]);
        const w = await gitBytes(
          dst,
          ['hash-object', '-t', 'tag', '-w', '--stdin'],
          'git hash-object',
          bytes,
        );
        made = w.toString('latin1').trim();
        written.set(key, made);
      }
      target = made;
    }
    updates.push(`create ${r.ref} ${target}\n`);
  }
  await gitBytes(
    dst,
    ['update-ref', '--no-deref', '--stdin'],
    'git update-ref',
    Buffer.from(updates.join(''), 'latin1'),
  );
}

/**
 * Rewrites the history in `bundle` through `transform`, working in `workDir` (created; the caller
 * removes it). `head` says how HEAD looked when the bundle was made. The bundle is replaced only when
 * something changed. `objectsFrom` (the repository the bundle was made from) lets the scratch
 * repository read the bundle's objects in place instead of unpacking the bundle: objects are immutable,
 * so the refs recorded in the bundle name exactly the captured history. Nothing is written there.
 */
export async function rewriteBundle(
  bundle: string,
  workDir: string,
  head: { oid?: string; ref?: string; detached: boolean },
  transform: DataTransform,
  objectsFrom?: string,
): Promise<RewriteResult> {
  const src = join(workDir, 'src.git');
  const dst = join(workDir, 'dst.git');
  const stream = join(workDir, 'history.fi');
  const srcMarks = join(workDir, 'src.marks');
  const dstMarks = join(workDir, 'dst.marks');
  await mkdir(src, { recursive: true });
  // the history's object format (sha1 or sha256), as the git bundle's header says
  const format = bundleObjectFormat(bundle);
  await initBare(src, format);
  if (!(objectsFrom && (await borrowObjects(src, bundle, objectsFrom, head.detached)))) {
    const specs = ['+refs/*:refs/*', ...(head.detached ? [`HEAD:${DETACHED_REF}`] : [])];
    await gitOk(src, ['fetch', '-q', '--no-tags', resolve(bundle), ...specs], 'git fetch from the bundle');
  }

  // Refs that peel to a blob or a tree (fast-export leaves them out): each blob or tree they end at is
  // put in a commit of our own, under a namespace no captured ref has, which both passes carry like any
  // other (its files are scanned, redacted and rewritten into a new tree the same way); the refs are
  // taken out of the scratch repository and set again, through their rewritten tags, in the new one.
  const tags = new Map<string, TagObject>();
  const loose = await objectRefs(src, tags);
  const bases = [...new Map(loose.map((r) => [r.base, r.baseType])).entries()];
  const wrapPrefix = `refs/nexo-redact-${randomUUID()}/`;
  if (loose.length > 0) {
    const wrappers = bases.map(
      ([oid, type], i) =>
        `commit ${wrapPrefix}${i}\ncommitter nexo-memory <nexo-memory> 0 +0000\ndata 0\n` +
        `M ${type === 'tree' ? '040000' : '100644'} ${oid} x\n\n`,
    );
    await gitBytes(src, ['fast-import', '--quiet'], 'git fast-import', Buffer.from(wrappers.join('')));
    const out = loose.map((r) => `delete ${r.ref}\n`).join('');
    await gitBytes(
      src,
      ['update-ref', '--no-deref', '--stdin'],
      'git update-ref',
      Buffer.from(out, 'latin1'),
    );
  }

  // Pass 1: every data block (each blob once, each message) goes through the transform; redacted blobs
  // are kept by their id, redacted messages by their original bytes.
  const blobDir = join(workDir, 'blobs');
  await mkdir(blobDir);
  const changedBlobs = new Map<string, string>(); // blob id -> file holding the redacted bytes
  const changedMessages = new Map<string, Buffer>(); // original message (latin1) -> redacted
  const scan: StreamParser = new StreamParser(
    () => {},
    (data) => {
      const out = transform(data, scan.context);
      if (out === undefined) return;
      if (scan.context === 'blob') {
        const file = join(blobDir, String(changedBlobs.size));
        writeFileSync(file, out);
        changedBlobs.set(scan.mark, file);
      } else changedMessages.set(data.toString('latin1'), out);
    },
  );
  await gitStream(
    src,
    ['fast-export', '--all', '--show-original-ids', ...EXPORT_FLAGS],
    { onStdout: (c) => scan.push(c) },
    'git fast-export',
  );
  scan.end();
  const commits = scan.commits - bases.length;
  // the messages of the tags that lead to a blob or a tree, and any other header they have
  const tagMessages = new Map<string, Buffer>(); // tag id -> redacted message
  const tagHeaders = new Set<string>(); // tags with a secret in a header fast-export would drop
  for (const [oid, tag] of tags) {
    const out = transform(tag.message, 'tag');
    if (out !== undefined) tagMessages.set(oid, out);
    if (tag.extra.length > 0 && transform(Buffer.from(tag.extra.join('\n'), 'latin1'), 'tag') !== undefined)
      tagHeaders.add(oid);
  }
  if (
    changedBlobs.size === 0 &&
    changedMessages.size === 0 &&
    tagMessages.size === 0 &&
    tagHeaders.size === 0 &&
    !(await secretInExtraHeaders(src, transform))
  )
    return { changed: false, commits, objectRefs: loose.length };

  // Pass 2: the history without file contents. Each redacted blob is written first, under a mark of
  // its own; a file entry or an annotated tag naming it names that mark instead, every other entry keeps
  // naming the existing blob (read through alternates). (A tag of a blob kept the secret's blob before:
  // found in stop 38.)
  const fd = openSync(stream, 'w', 0o600);
  const markOf = new Map<string, string>();
  for (const [oid, file] of changedBlobs) {
    const mark = `:${BLOB_MARK_BASE + markOf.size}`;
    markOf.set(oid, mark);
    const bytes = readFileSync(file);
    writeSync(fd, `blob\nmark ${mark}\ndata ${bytes.length}\n`);
    writeSync(fd, bytes);
    writeSync(fd, '\n');
  }
  const write: StreamParser = new StreamParser(
    (line, raw) => {
      const m = /^M ([0-7]{6}) ([0-9a-f]{40}|[0-9a-f]{64}) (.*)$/.exec(line);
      const f = /^from ([0-9a-f]{40}|[0-9a-f]{64})$/.exec(line);
      const mark = m ? markOf.get(m[2]!) : f ? markOf.get(f[1]!) : undefined;
      if (mark === undefined) writeSync(fd, raw);
      else if (m) writeSync(fd, `M ${m[1]} ${mark} ${m[3]}\n`);
      else writeSync(fd, `from ${mark}\n`);
    },
    (data) => {
      const out = changedMessages.get(data.toString('latin1')) ?? data;
      writeSync(fd, `data ${out.length}\n`);
      writeSync(fd, out);
    },
  );
  try {
    await gitStream(
      src,
      ['fast-export', '--all', '--no-data', ...EXPORT_FLAGS, `--export-marks=${srcMarks}`],
      { onStdout: (c) => write.push(c) },
      'git fast-export --no-data',
    );
    write.end();
  } finally {
    closeSync(fd);
  }

  await mkdir(dst, { recursive: true });
  await initBare(dst, format);
  await writeFile(join(dst, 'objects', 'info', 'alternates'), `${join(resolve(src), 'objects')}\n`);
  const input = openSync(stream, 'r');
  try {
    await gitStream(
      dst,
      ['fast-import', '--quiet', `--export-marks=${dstMarks}`],
      { stdinFd: input },
      'git fast-import',
    );
  } finally {
    closeSync(input);
  }
  let headOid: string | undefined;
  if (head.detached && head.oid) {
    const oldToMark = new Map([...readMarks(srcMarks)].map(([mark, oid]) => [oid, mark]));
    const mark = oldToMark.get(head.oid);
    headOid = mark ? readMarks(dstMarks).get(mark) : undefined;
    if (!headOid) throw new GitError(`rewritten history lost the detached HEAD ${head.oid}`);
    await gitOk(dst, ['update-ref', '--no-deref', 'HEAD', headOid], 'setting a detached HEAD');
    await gitOk(dst, ['update-ref', '-d', DETACHED_REF], 'removing a scratch ref');
  } else if (head.ref) {
    await gitOk(dst, ['symbolic-ref', 'HEAD', head.ref], 'setting HEAD');
    const r = await runGit(dst, ['rev-parse', '-q', '--verify', 'HEAD^{commit}']);
    if (r.code === 0) headOid = r.stdout.trim();
  }
  if (loose.length > 0)
    await setObjectRefs(dst, loose, bases, wrapPrefix, { tags, messages: tagMessages, headers: tagHeaders });
  const tmp = `${resolve(bundle)}.rewritten`;
  await gitOk(dst, ['bundle', 'create', '-q', tmp, '--all'], 'git bundle create');
  await rename(tmp, resolve(bundle));
  return { changed: true, commits, objectRefs: loose.length, ...(headOid ? { headOid } : {}) };
}
