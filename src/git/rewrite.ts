// Owns rewriting the history carried in a git bundle, never the live repository. The bundle's refs are
// set up in a scratch bare repository (its objects read in place from the repository the bundle was made
// from, or fetched from the bundle). Pass 1 streams `git fast-export` and passes every data block (each
// file version once, each commit and tag message) to a transform. Only when something changed, pass 2
// exports the history without file contents, gives the redacted file versions inline and the redacted
// messages, and `git fast-import`s it into a second scratch repository that borrows the unchanged
// objects; its refs and HEAD are bundled over the original bundle. Signed tags lose their signatures.

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
  /** What the current data block belongs to, and the id of the current blob (`--show-original-ids`). */
  context: DataKind = 'blob';
  mark = '';
  commits = 0;

  constructor(
    private readonly onLine: (line: string, raw: Buffer) => void,
    private readonly onData: (data: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
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
const EXPORT_FLAGS = ['--signed-tags=strip', '--tag-of-filtered-object=rewrite', '--reencode=yes'];

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
  if (changedBlobs.size === 0 && changedMessages.size === 0 && !(await secretInExtraHeaders(src, transform)))
    return { changed: false, commits: scan.commits };

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
  const tmp = `${resolve(bundle)}.rewritten`;
  await gitOk(dst, ['bundle', 'create', '-q', tmp, '--all'], 'git bundle create');
  await rename(tmp, resolve(bundle));
  return { changed: true, commits: scan.commits, ...(headOid ? { headOid } : {}) };
}
