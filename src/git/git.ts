// Owns every use of the git CLI: the one place git is started (sanitized, below: spawned here, or with
// the same arguments and environment on the program host, util/program-host.ts), inspecting a memdir
// repository (HEAD, branch or detached, author metadata), and writing its whole history as a `git
// bundle` of all refs. (Checking a bundle's pack is git/pack-check.ts.)
//
// git runs on hostile content (bundles, a v1 bundle's raw `.git` files, memory files with any
// `.gitattributes`), so every command gets the same environment, whatever repository it runs in: no
// system or global config and no GIT_* variable from the caller, no discovery above `cwd`, no prompts,
// no pager, no optional locks (so the agent's own git is never blocked), C locale, replace refs ignored,
// and `-c` overrides that take precedence over any repository config: no fsmonitor, no hooks, no
// transport but local files, no ssh command, editor or askpass, no automatic gc or maintenance, no
// submodule recursion, no signature checks. Filters, textconv and diff drivers run only where a
// config defines them; the only config git reads here is a repository's own, and every repository built
// from bundle content gets a config git wrote (docs/decisions.md, "Git on untrusted content").

import { type ChildProcess, type IOType, type StdioNull, type StdioPipe, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { lstat, rm } from 'node:fs/promises';
import { devNull, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { GitError, IoError } from '../model/errors.js';
import { childrenApart } from '../util/child-group.js';
import { hostWriteFailure } from '../util/disk-full.js';
import { envInteger } from '../util/env-number.js';
import { type ProgramResult, programHostSettled, runOnHost } from '../util/program-host.js';

export interface GitResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The signal that ended git, when one did. */
  signal?: NodeJS.Signals | null;
  /** git stopped at its fuse (runGit with one): stderr then says which limit (fuseTripped). */
  tripped?: boolean;
}

/**
 * The fuse of a git process that reads the objects of an untrusted pack (a bundle's, a repository's,
 * a v1 bundle's raw `.git`): a pack of a few KB can hold deltas whose results are gigabytes
 * (docs/decisions.md, "The git delta bomb"). `maxObjectBytes` is git's GIT_ALLOC_LIMIT, a limit on
 * every single allocation, so on the largest object git builds (and index-pack runs two threads, its
 * delta base cache at git's default); `cpuSeconds` the process's CPU time (RLIMIT_CPU, all its threads), after
 * which the kernel stops it with SIGXCPU. 0 turns either off.
 */
export interface GitFuse {
  maxObjectBytes: number;
  cpuSeconds: number;
}

/** The defaults: no memory file of an agent is near 512 MiB; index-pack checks ~5 s of objects a GB. */
export const GIT_MAX_OBJECT_BYTES = 512 * 1024 * 1024;
export const GIT_CPU_SECONDS = 60;
/** CPU seconds added per MiB of the pack, where its size is known before it streams. */
export const GIT_CPU_SECONDS_PER_MIB = 1;
/**
 * At most this many seconds are added for the pack's size: a repository manifest's pack size is the
 * snapshot author's word until the pack has been read, so a forged size must not lift the limit.
 */
export const GIT_CPU_SECONDS_MAX_FOR_SIZE = 540;

/** The lowest object limit taken: git itself allocates buffers of 1 MiB (the index of a `reset`). */
export const GIT_MIN_OBJECT_BYTES = 4 * 1024 * 1024;

/**
 * A limit from the environment (util/env-number.ts): `0` turns it off; any other whole number is raised
 * to `min`; unset, blank or not a whole number (a fraction, `0x0`, `-0`), the default: only a written 0
 * turns a fuse off.
 */
const envLimit = (
  name: 'NEXO_MEMORY_GIT_MAX_OBJECT_BYTES' | 'NEXO_MEMORY_GIT_CPU_SECONDS',
  fallback: number,
  min: number,
): number => {
  const v = envInteger(name, fallback);
  return v === 0 ? 0 : Math.max(min, v);
};

/**
 * The fuse for a pack of `packBytes` (0: unknown), from NEXO_MEMORY_GIT_MAX_OBJECT_BYTES and
 * NEXO_MEMORY_GIT_CPU_SECONDS (read at each call), else the defaults.
 */
export function gitFuse(packBytes = 0): GitFuse {
  const maxObjectBytes = envLimit(
    'NEXO_MEMORY_GIT_MAX_OBJECT_BYTES',
    GIT_MAX_OBJECT_BYTES,
    GIT_MIN_OBJECT_BYTES,
  );
  const base = envLimit('NEXO_MEMORY_GIT_CPU_SECONDS', GIT_CPU_SECONDS, 1);
  const forSize = Math.min(
    GIT_CPU_SECONDS_MAX_FOR_SIZE,
    Math.ceil((packBytes / (1024 * 1024)) * GIT_CPU_SECONDS_PER_MIB),
  );
  const cpuSeconds = base === 0 ? 0 : base + forSize;
  return { maxObjectBytes, cpuSeconds };
}

/**
 * Why git stopped at `fuse` (a sentence naming the limit and how to raise it), or undefined when it
 * did not: git's own refusal of an allocation over GIT_ALLOC_LIMIT, or the kernel's SIGXCPU at the
 * soft CPU limit (the hard one, 5 s on, is SIGKILL: only for a git that would not stop).
 */
export function fuseTripped(
  r: { code: number | null; signal?: NodeJS.Signals | null; stderr: string },
  fuse: GitFuse | undefined,
): string | undefined {
  if (!fuse) return undefined;
  const alloc = /attempting to allocate (\d+) over limit (\d+)/.exec(r.stderr);
  if (alloc)
    return (
      `an object of the git history needs ${alloc[1]} bytes, over the limit of ${alloc[2]} bytes on one ` +
      'git object (NEXO_MEMORY_GIT_MAX_OBJECT_BYTES; a pack whose deltas expand that far is refused, ' +
      'as a delta bomb would be): if the snapshot is trusted, raise NEXO_MEMORY_GIT_MAX_OBJECT_BYTES'
    );
  if (fuse.cpuSeconds > 0 && r.signal === 'SIGXCPU')
    return (
      `git used its limit of ${fuse.cpuSeconds} s of CPU on the git history (NEXO_MEMORY_GIT_CPU_SECONDS, ` +
      `plus ${GIT_CPU_SECONDS_PER_MIB} s per MiB of pack; a pack whose deltas expand that far is refused, ` +
      'as a delta bomb would be): if the snapshot is trusted, raise NEXO_MEMORY_GIT_CPU_SECONDS'
    );
  return undefined;
}

/** Variables of the caller that can make git run a program or read config outside the repository. */
const DROPPED_ENV = ['PAGER', 'EDITOR', 'VISUAL', 'SSH_ASKPASS', 'XDG_CONFIG_HOME', 'EXINIT'];

/** The environment of every git command: the caller's, minus GIT_* and DROPPED_ENV, plus ours. */
function gitEnv(cwd: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.toUpperCase().startsWith('GIT_') || DROPPED_ENV.includes(k.toUpperCase())) continue;
    env[k] = v;
  }
  env.GIT_CONFIG_NOSYSTEM = '1';
  env.GIT_CONFIG_GLOBAL = devNull;
  env.HOME = devNull; // no global config for a git older than 2.32 either (it ignores GIT_CONFIG_GLOBAL)
  env.GIT_ATTR_NOSYSTEM = '1';
  env.GIT_CEILING_DIRECTORIES = dirname(resolve(cwd));
  env.GIT_TERMINAL_PROMPT = '0';
  env.GIT_OPTIONAL_LOCKS = '0';
  env.GIT_NO_REPLACE_OBJECTS = '1';
  env.LC_ALL = 'C';
  return env;
}

/**
 * Settings given on the command line, which win over any repository's config (git passes them on to the
 * git processes it starts, except the `upload-pack` of a local fetch, which runs in the source
 * repository: a bundle, a quarantine with git's own config, or the live memdir). Values git treats as
 * "off": `cat` (pager), `:` (editor), an empty askpass. An ssh command can only be reached through the
 * ssh transport, which is not allowed; `false` stands in case it ever were.
 */
const SANITIZED_CONFIG = [
  'core.fsmonitor=false',
  `core.hooksPath=${devNull}`,
  `core.attributesFile=${devNull}`,
  `core.excludesFile=${devNull}`,
  'core.pager=cat',
  'core.editor=:',
  'sequence.editor=:',
  'core.askPass=',
  'credential.helper=',
  'core.sshCommand=false',
  'protocol.allow=never',
  'protocol.file.allow=always',
  'gc.auto=0',
  'maintenance.auto=false',
  'fetch.recurseSubmodules=false',
  'submodule.recurse=false',
  'log.showSignature=false',
];

/** The arguments git is spawned with for `args` run in `cwd`. */
function gitArgs(cwd: string, args: readonly string[]): string[] {
  return [
    '--no-pager',
    ...SANITIZED_CONFIG.flatMap((c) => ['-c', c]),
    '-c',
    `safe.directory=${resolve(cwd)}`,
    ...args,
  ];
}

/**
 * The program, arguments and environment of git for `args` in `cwd`; with a fuse, git's allocation
 * limit in its environment (inherited by the git processes it starts) and its CPU limit set by `sh`
 * (`ulimit`, POSIX; soft limit then a hard one 5 s on), which then becomes git (`exec`).
 */
function gitCommand(
  cwd: string,
  args: readonly string[],
  fuse?: GitFuse,
): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  const env = gitEnv(cwd);
  if (!fuse) return { file: 'git', args: gitArgs(cwd, args), env };
  if (fuse.maxObjectBytes > 0) env.GIT_ALLOC_LIMIT = String(fuse.maxObjectBytes);
  // index-pack's memory is about one object per thread plus its delta base cache: two threads (git would
  // start up to 20 on a large host), and the cache at git's default so no repository config raises it
  const full = gitArgs(cwd, ['-c', 'pack.threads=2', '-c', 'core.deltaBaseCacheLimit=96m', ...args]);
  if (fuse.cpuSeconds <= 0) return { file: 'git', args: full, env };
  // (a lower limit the caller's shell already set stays: raising it fails, and git runs under it)
  const cpu = `ulimit -t ${fuse.cpuSeconds + 5} 2>/dev/null; ulimit -S -t ${fuse.cpuSeconds} 2>/dev/null; exec git "$@"`;
  return { file: 'sh', args: ['-c', cpu, 'sh', ...full], env };
}

/**
 * Spawns git, sanitized, in `cwd`: every git process of this package starts here. With `fuse`, under
 * its limits (GitFuse).
 */
export function spawnGit(
  cwd: string,
  args: readonly string[],
  stdio: [IOType | number, StdioPipe | StdioNull | number, StdioPipe],
  fuse?: GitFuse,
): ChildProcess {
  const c = gitCommand(cwd, args, fuse);
  // apart from this process's group when this process handles its stop signals (util/child-group.ts)
  return spawn(c.file, c.args, { cwd, env: c.env, stdio, detached: childrenApart() });
}

/** Failures to start a process that are this host's lack of a resource, not git's fault. */
const RESOURCE_ERRNOS = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'ENOMEM']);

/**
 * The error of a git that could not start, or whose program host ended before it did: IoError
 * (details.errno) when the host ran out of a resource (`ulimit -n` reached: EMFILE), GitError otherwise
 * (git not installed: ENOENT), marked `notRun`: never damage of what git was given.
 */
export function gitSpawnError(e: Error): GitError | IoError {
  const code = (e as NodeJS.ErrnoException).code;
  return code !== undefined && RESOURCE_ERRNOS.has(code)
    ? new IoError('cannot run git', e)
    : new GitError(`cannot run git: ${e.message}`, { cause: e, notRun: true });
}

/**
 * Listens for `child`'s failure to start (rejecting with gitSpawnError) before anything else of it is
 * used; false when it did not start, whose pipes may be missing (EMFILE: never made): use nothing else.
 */
export function whenGitFails(child: ChildProcess, reject: (e: Error) => void): boolean {
  child.on('error', (e) => reject(gitSpawnError(e)));
  return child.pid !== undefined;
}

/**
 * Runs git in `cwd`, with `input` on stdin when given; resolves with the exit code (never rejects on a
 * non-zero exit). On the program host when it is up (util/program-host.ts), else spawned here. With
 * `fuse`, under its limits; when git stops at one, its stderr is what fuseTripped says.
 */
export async function runGit(
  cwd: string,
  args: string[],
  input?: string | Uint8Array,
  fuse?: GitFuse,
): Promise<GitResult> {
  const r = await runGitOnFiles(cwd, args, input === undefined ? {} : { input }, fuse);
  const tripped = fuseTripped(r, fuse);
  return tripped === undefined ? r : { ...r, stderr: tripped, tripped: true };
}

/** A git run on the program host as this module's result; a run that could not start as gitSpawnError's. */
function fromHost(hosted: Promise<ProgramResult>): Promise<GitResult> {
  return hosted.then(
    (r) => ({
      code: r.code ?? 128,
      signal: r.signal,
      stdout: r.stdout.toString('utf8'),
      stderr: r.stderr.toString('utf8').trim(),
    }),
    (e: Error) => {
      throw gitSpawnError(e);
    },
  );
}

/**
 * Runs git in `cwd` with the file `path` as its standard input, and resolves with its exit code and
 * output as runGit's (never rejecting on a non-zero exit), but as git left them: fuseTripped is the
 * caller's. The file's name goes once git holds it open, so its space goes once git has read it. On
 * the program host when it is up, else spawned here: a file, not a pipe, so the host can hand it over.
 */
export function runGitOnFile(cwd: string, args: string[], path: string, fuse?: GitFuse): Promise<GitResult> {
  return runGitOnFiles(cwd, args, { inputFile: path }, fuse);
}

/**
 * Runs git in `cwd` with `input` on its standard input and its standard output into the new file
 * `path` (created private; an existing one is an error), and resolves with its exit code and stderr as
 * runGit's (stdout empty; never rejecting on a non-zero exit). On the program host when it is up, else
 * spawned here. git's own failure to write there (a full disk) is its exit status and stderr.
 */
export function runGitToFile(cwd: string, args: string[], input: string, path: string): Promise<GitResult> {
  return runGitOnFiles(cwd, args, { input, outputFile: path });
}

/**
 * Every buffered git run (runGit, runGitOnFile, runGitToFile): on the program host when it is up, else
 * spawned here, with the files (if any) as git's descriptors and `input` (if any) piped in.
 */
async function runGitOnFiles(
  cwd: string,
  args: string[],
  io: { inputFile?: string; input?: string | Uint8Array; outputFile?: string },
  fuse?: GitFuse,
): Promise<GitResult> {
  const c = gitCommand(cwd, args, fuse);
  const hosted = runOnHost({
    file: c.file,
    args: c.args,
    cwd,
    env: c.env,
    ...io,
    ...(io.inputFile === undefined ? {} : { removeInputFile: true }),
  });
  if (hosted) return fromHost(hosted);
  const fds: number[] = [];
  let child: ChildProcess;
  try {
    const stdin = io.inputFile === undefined ? undefined : openSync(io.inputFile, 'r');
    if (stdin !== undefined) fds.push(stdin);
    const stdout = io.outputFile === undefined ? undefined : openSync(io.outputFile, 'wx', 0o600);
    if (stdout !== undefined) fds.push(stdout);
    child = spawnGit(
      cwd,
      args,
      [stdin ?? (io.input === undefined ? 'ignore' : 'pipe'), stdout ?? 'pipe', 'pipe'],
      fuse,
    );
  } finally {
    for (const fd of fds) closeSync(fd); // git has its own descriptors of them now
  }
  const result = gitResultOf(child);
  if (io.inputFile !== undefined) rmSync(io.inputFile, { force: true });
  if (io.input !== undefined && child.pid !== undefined) {
    child.stdin!.on('error', () => {}); // git exiting before it read it all (EPIPE): its status says why
    child.stdin!.end(io.input);
  }
  return result;
}

/**
 * The exit code and output (stdout and stderr, piped) of a spawned git; a spawn failure rejects with
 * gitSpawnError's error.
 */
export function gitResultOf(child: ChildProcess): Promise<GitResult> {
  return new Promise((resolvePromise, reject) => {
    if (!whenGitFails(child, reject)) return;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (c: Buffer) => out.push(c)); // (none when it goes to a file)
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    child.on('close', (code, signal) =>
      resolvePromise({
        code: code ?? 128,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8').trim(),
      }),
    );
  });
}

async function gitOk(cwd: string, args: string[], what: string): Promise<string> {
  const r = await runGit(cwd, args);
  if (r.code !== 0) throw new GitError(`${what} failed in ${cwd}: ${r.stderr || `exit ${r.code}`}`);
  return r.stdout;
}

export interface RepoInfo {
  repository: 'absent' | 'empty' | 'present';
  headOid?: string;
  headRef?: string;
  detached: boolean;
  subject: string;
  author: string;
  authorTsMs: number;
}

/**
 * Reads the memdir's repository state. A memdir without `.git` is `absent`; a `.git` git cannot read is
 * a GitError (never a placeholder); a repository whose HEAD has no commit yet is `empty`.
 */
export async function inspectRepo(memdir: string): Promise<RepoInfo> {
  try {
    await lstat(join(memdir, '.git'));
  } catch {
    return { repository: 'absent', detached: false, subject: '', author: '', authorTsMs: 0 };
  }
  // The usual case, HEAD on a commit, in two git processes side by side; anything else (an unborn HEAD,
  // a .git git cannot read) is told apart by the steps after.
  const [log, sym] = await Promise.all([
    runGit(memdir, ['log', '-1', `--format=${COMMIT_FORMAT}`, 'HEAD', '--']),
    runGit(memdir, ['symbolic-ref', '-q', 'HEAD']),
  ]);
  if (log.code === 0 && sym.code <= 1) return present(log.stdout, sym);
  const top = await runGit(memdir, ['rev-parse', '--show-toplevel']);
  if (top.code !== 0) throw new GitError(`memdir ${memdir} has a .git that git cannot read: ${top.stderr}`);
  if (sym.code > 1) throw new GitError(`reading HEAD of ${memdir}: ${sym.stderr}`);
  const headRef = sym.code === 0 ? sym.stdout.trim() : undefined;
  const head = await runGit(memdir, ['rev-parse', '-q', '--verify', 'HEAD^{commit}']);
  if (head.code !== 0) {
    // Unborn HEAD: make sure the repository itself is readable before calling it empty.
    await gitOk(memdir, ['for-each-ref', '--count=1'], 'listing refs');
    return {
      repository: 'empty',
      ...(headRef ? { headRef } : {}),
      detached: false,
      subject: '',
      author: '',
      authorTsMs: 0,
    };
  }
  throw new GitError(`reading HEAD commit failed in ${memdir}: ${log.stderr || `exit ${log.code}`}`);
}

/** What inspectRepo reads of HEAD's commit: oid, author name, email, time (s) and subject. */
const COMMIT_FORMAT = '%H%x00%an%x00%ae%x00%at%x00%s';

/** A repository with HEAD on a commit: `log` in COMMIT_FORMAT, `sym` from `symbolic-ref -q HEAD`. */
function present(log: string, sym: GitResult): RepoInfo {
  const headRef = sym.code === 0 ? sym.stdout.trim() : undefined;
  const [oid, name, email, at, subject] = log.replace(/\n$/, '').split('\0');
  return {
    repository: 'present',
    headOid: oid!,
    ...(headRef ? { headRef } : {}),
    detached: headRef === undefined,
    subject: subject ?? '',
    author: `${name || 'unknown'} <${email ?? ''}>`,
    authorTsMs: Number(at) * 1000,
  };
}

/**
 * Writes the repository's whole history (every ref under `refs/`, and HEAD when it has a commit) as a
 * git bundle at `dst`. Returns false, writing nothing, when there is nothing to bundle (no repository
 * or no commits). Not `--all`: in a repository with linked worktrees (a memdir that is one, or has
 * some) it also lists the other worktrees' HEADs (`main-worktree/HEAD`, `worktrees/<name>/HEAD`), which
 * are not refs a bundle may carry, and verify would refuse every such snapshot.
 */
export async function createBundle(memdir: string, info: RepoInfo, dst: string): Promise<boolean> {
  if (info.repository === 'absent') return false;
  if (info.headOid === undefined) {
    // no commit at HEAD: a bundle only when some ref has one
    const refs = await gitOk(memdir, ['for-each-ref', '--count=1', '--format=%(refname)'], 'listing refs');
    if (refs.trim() === '') return false;
  }
  // (`--`: revisions end there, so a memory file named HEAD is not taken for one)
  const tips = [...(info.headOid !== undefined ? ['HEAD'] : []), '--glob=refs/*', '--'];
  await gitOk(memdir, ['bundle', 'create', '-q', resolve(dst), ...tips], 'git bundle create');
  return true;
}

/**
 * The tips a git bundle at `bundle` carries (`git bundle list-heads`), by name (`HEAD`, `refs/…`).
 */
export async function bundleHeads(memdir: string, bundle: string): Promise<Map<string, string>> {
  const out = await gitOk(memdir, ['bundle', 'list-heads', resolve(bundle)], 'git bundle list-heads');
  const heads = new Map<string, string>();
  for (const line of out.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp > 0) heads.set(line.slice(sp + 1), line.slice(0, sp));
  }
  return heads;
}

/** The names of the memdir's refs (`refs/…`), as `git bundle create --glob=refs/*` takes them. */
export async function refNames(memdir: string): Promise<string[]> {
  const out = await gitOk(memdir, ['for-each-ref', '--format=%(refname)', 'refs/'], 'listing refs');
  return out.split('\n').filter((line) => line !== '');
}

/**
 * Another of `names` (the memdir's refs) that makes the ref `name` ambiguous to git, or undefined: git
 * resolves a name given to `git bundle create` by its rules (`refs/<name>`, `refs/tags/<name>`,
 * `refs/heads/<name>`, `refs/remotes/<name>`, `refs/remotes/<name>/HEAD` besides the name itself) and
 * silently leaves out of the bundle a name that two of them match (refs/heads/main beside
 * refs/refs/heads/main).
 */
export function ambiguousRef(name: string, names: ReadonlySet<string>): string | undefined {
  return [
    `refs/${name}`,
    `refs/tags/${name}`,
    `refs/heads/${name}`,
    `refs/remotes/${name}`,
    `refs/remotes/${name}/HEAD`,
  ].find((other) => names.has(other));
}

/**
 * Writes the empty bare repository `git init --bare --template=` makes (gitrepository-layout: HEAD, the
 * config git writes, objects/, refs/) into the new, empty private directory `dir`, without running
 * git: a verify's scratch repository for index-pack, where the `git init` cost 50-120 ms of a verify's
 * critical path (docs/operations.md, stop 66). Its files are created exclusively.
 */
export function writeBareRepo(dir: string, objectFormat: 'sha1' | 'sha256'): void {
  const extensions = objectFormat === 'sha256' ? '[extensions]\n\tobjectformat = sha256\n' : '';
  const version = objectFormat === 'sha256' ? 1 : 0;
  const config = `[core]\n\trepositoryformatversion = ${version}\n\tfilemode = true\n\tbare = true\n${extensions}`;
  try {
    for (const sub of ['objects/info', 'objects/pack', 'refs/heads', 'refs/tags'])
      mkdirSync(join(dir, sub), { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, 'config'), config, { flag: 'wx', mode: 0o600 });
    writeFileSync(join(dir, 'HEAD'), 'ref: refs/heads/main\n', { flag: 'wx', mode: 0o600 });
  } catch (err) {
    throw new IoError(`creating the repository ${dir}`, err);
  }
}

/**
 * Creates an empty bare repository at `dir` (made if missing) for git alone to read: its config is the
 * one git writes, and no template (no sample hooks, `description` or `info/exclude`; decisions.md, "Git
 * on untrusted content").
 */
export async function initBare(dir: string, objectFormat?: 'sha1' | 'sha256'): Promise<void> {
  const format = objectFormat ? [`--object-format=${objectFormat}`] : [];
  const r = await runGit(dirname(resolve(dir)), [
    'init',
    '-q',
    '--bare',
    '--template=',
    ...format,
    resolve(dir),
  ]);
  if (r.code !== 0) throw await initFailure(dir, r);
}

/**
 * A `git init` of `dir` that failed: `IO` with its errno when it could not write for want of room (or on
 * a read-only disk) and the disk agrees (util/disk-full.ts; stop 54: a full disk said `GIT`), else GIT.
 */
export async function initFailure(dir: string, r: { code: number | null; stderr: string }): Promise<Error> {
  const message = `git init of ${dir} failed: ${r.stderr || `exit ${r.code}`}`;
  return (await hostWriteFailure(r.stderr, dirname(resolve(dir)), message)) ?? new GitError(message);
}

/**
 * Refuses (GitError) a memdir whose repository is shallow (`git clone --depth`): its history stops at
 * commits whose parents it does not have, so no snapshot of it could be checked or restored (the pack
 * is not self-contained, and a git bundle cannot say where the history was cut). A `.git` directory is
 * checked for git's `shallow` file; any other `.git` (a worktree's or submodule's pointer file) is asked.
 */
export async function refuseShallow(memdir: string): Promise<void> {
  let shallow: boolean;
  const dotGit = join(memdir, '.git');
  if ((await lstat(dotGit)).isDirectory()) {
    shallow = await lstat(join(dotGit, 'shallow')).then(
      () => true,
      () => false,
    );
  } else {
    const r = await runGit(memdir, ['rev-parse', '--is-shallow-repository']);
    shallow = r.code === 0 && r.stdout.trim() === 'true';
  }
  if (shallow)
    throw new GitError(
      `memdir ${memdir} is a shallow clone: its history stops at commits whose parents it lacks, and a ` +
        'snapshot of it could not be checked or restored; fetch the whole history first ' +
        '(git -C <memdir> fetch --unshallow), or make the memdir a repository of its own',
    );
}

/** The object format of a repository whose object ids look like `oid` (64 hex digits: sha256). */
export const objectFormatOf = (oid: string): 'sha1' | 'sha256' => (oid.length === 64 ? 'sha256' : 'sha1');

/**
 * Makes the new, still empty repository at `dir` (bare, or with a `.git` in it) again with
 * `objectFormat` when git made it with another: callers create scratch repositories before they have
 * read which format a history uses (git's default, sha1), and git cannot change a repository's format.
 */
export async function ensureObjectFormat(dir: string, objectFormat: 'sha1' | 'sha256'): Promise<void> {
  const r = await runGit(dir, ['rev-parse', '--show-object-format']);
  if (r.code === 0 && r.stdout.trim() === objectFormat) return;
  const dotGit = join(dir, '.git');
  let bare = true;
  try {
    await lstat(dotGit);
    bare = false;
  } catch {
    // a bare repository: the directory is the repository
  }
  await rm(bare ? dir : dotGit, { recursive: true, force: true });
  if (bare) await initBare(dir, objectFormat);
  else await initRepo(dir, objectFormat);
}

/**
 * `git init` of a new non-bare repository at `dir` with git's usual layout (its default template), as a
 * restored memdir has.
 */
export async function initRepo(dir: string, objectFormat: 'sha1' | 'sha256'): Promise<void> {
  const r = await runGit(dirname(resolve(dir)), [
    'init',
    '-q',
    `--object-format=${objectFormat}`,
    resolve(dir),
  ]);
  if (r.code !== 0) throw await initFailure(dir, r);
}

/**
 * fsck's message ids for quirks that real histories carry (old git's modes, odd dates, names and
 * e-mails) and that do not stop a checkout. Every other finding is fatal where packs from a bundle or a
 * repository are indexed (STRICT_PACK): a tree entry named `.`, `..` or `.git`, an empty name or one
 * holding a `/`, unsorted or repeated entries, a hostile `.gitmodules` or `.gitattributes`, a broken
 * object or link. (Each id exists since git 2.25; an id git does not know would stop every index-pack.)
 */
const HISTORY_QUIRKS = [
  'badDate',
  'badDateOverflow',
  'badEmail',
  'badFilemode',
  'badName',
  'badTimezone',
  'extraHeaderEntry',
  'missingEmail',
  'missingNameBeforeEmail',
  'missingSpaceBeforeDate',
  'missingSpaceBeforeEmail',
  'missingTaggerEntry',
  'multipleAuthors',
  'nulInCommit',
  'zeroPaddedDate',
  'zeroPaddedFilemode',
];

/**
 * The `git index-pack` option for a pack from a bundle or a repository: each object is checked as
 * `git fsck` would, and every finding but HISTORY_QUIRKS stops it, so a history that verifies is one
 * git will check out (restore refuses the same pack with the same reason).
 */
export const STRICT_PACK = `--strict=${HISTORY_QUIRKS.map((id) => `${id}=ignore`).join(',')}`;

/** `git fsck` settings making the findings STRICT_PACK stops on for tree entries errors, not warnings. */
const CHECKOUT_FSCK = ['hasDot', 'hasDotdot', 'hasDotgit', 'emptyName', 'fullPathname'].flatMap((id) => [
  '-c',
  `fsck.${id}=error`,
]);

let version: Promise<string> | undefined;

/**
 * The version of the git on PATH, asked once per process (every snapshot records it in its manifest,
 * after its copies: it waits for the program host to be up, up to 2 s, rather than fork this process
 * while its copy threads work).
 */
export function gitVersion(): Promise<string> {
  version ??= programHostSettled(2000)
    .then(() => runGit(tmpdir(), ['--version']))
    .then(
      (r) => r.stdout.trim().replace(/^git version /, ''),
      (err: unknown) => {
        version = undefined; // asked again next time (git may be installed by then)
        throw err;
      },
    );
  return version;
}

/**
 * `git fsck` of a repository this package built (a restore's, a scratch or quarantine repository) with
 * `args`: such a repository has no commit-graph and no multi-pack index (nothing here writes one, and
 * none comes with a history), so fsck is told not to start the two processes that would verify them.
 * A tree entry git would not check out is an error (CHECKOUT_FSCK), as it is for a bundle's pack.
 */
export function fsckBuilt(repo: string, args: readonly string[]): Promise<GitResult> {
  return runGit(
    repo,
    ['-c', 'core.commitGraph=false', '-c', 'core.multiPackIndex=false', ...CHECKOUT_FSCK, 'fsck', ...args],
    undefined,
    gitFuse(), // it reads objects of an untrusted history (a v1 bundle's raw `.git`: every object)
  );
}
