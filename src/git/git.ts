// Owns every use of the git CLI: inspecting a memdir repository (HEAD, branch or detached, author
// metadata), writing its whole history as a `git bundle` of all refs, and checking a bundle. git runs
// with a clean environment: no discovery above the memdir, no prompts, no optional locks (so the
// agent's own git is never blocked), C locale.

import { spawn } from 'node:child_process';
import { lstat, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { GitError } from '../model/errors.js';

export interface GitResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function gitEnv(cwd: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_OBJECT_DIRECTORY', 'GIT_COMMON_DIR'])
    delete env[k];
  env.GIT_CEILING_DIRECTORIES = dirname(resolve(cwd));
  env.GIT_TERMINAL_PROMPT = '0';
  env.GIT_OPTIONAL_LOCKS = '0';
  env.LC_ALL = 'C';
  return env;
}

/** Runs git in `cwd`; resolves with the exit code (never rejects on a non-zero exit). */
export function runGit(cwd: string, args: string[]): Promise<GitResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('git', ['-c', `safe.directory=${resolve(cwd)}`, ...args], {
      cwd,
      env: gitEnv(cwd),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => reject(new GitError(`cannot run git: ${e.message}`, { cause: e })));
    child.on('close', (code) =>
      resolvePromise({
        code: code ?? 128,
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
  const top = await runGit(memdir, ['rev-parse', '--show-toplevel']);
  if (top.code !== 0) throw new GitError(`memdir ${memdir} has a .git that git cannot read: ${top.stderr}`);
  const sym = await runGit(memdir, ['symbolic-ref', '-q', 'HEAD']);
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
  const meta = await gitOk(
    memdir,
    ['log', '-1', '--format=%H%x00%an%x00%ae%x00%at%x00%s', 'HEAD'],
    'reading HEAD commit',
  );
  const [oid, name, email, at, subject] = meta.replace(/\n$/, '').split('\0');
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
 * Writes the repository's whole history (every ref, and HEAD when detached) as a git bundle at `dst`.
 * Returns false, writing nothing, when there is nothing to bundle (no repository or no commits).
 */
export async function createBundle(memdir: string, info: RepoInfo, dst: string): Promise<boolean> {
  if (info.repository === 'absent') return false;
  const refs = await gitOk(memdir, ['for-each-ref', '--count=1', '--format=%(refname)'], 'listing refs');
  if (refs.trim() === '' && info.headOid === undefined) return false;
  await gitOk(memdir, ['bundle', 'create', '-q', resolve(dst), '--all'], 'git bundle create');
  return true;
}

/** `ok`, or why `git bundle verify` refuses the bundle (run in a scratch repository). */
export async function verifyBundle(bundlePath: string): Promise<string> {
  const scratch = await mkdtemp(join(tmpdir(), 'nexo-git-verify-'));
  try {
    await gitOk(scratch, ['init', '-q', '--bare'], 'git init');
    const r = await runGit(scratch, ['bundle', 'verify', '-q', resolve(bundlePath)]);
    return r.code === 0 ? 'ok' : r.stderr || `git bundle verify exited ${r.code}`;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** `ok`, or what `git fsck` reports for a raw `.git` directory (v1 bundles). */
export async function fsckGitDir(gitDir: string): Promise<string> {
  const r = await runGit(dirname(gitDir), ['--git-dir', gitDir, 'fsck', '--no-progress', '--no-dangling']);
  return r.code === 0 ? 'ok' : r.stderr || `git fsck exited ${r.code}`;
}

export async function gitVersion(): Promise<string> {
  const r = await runGit(tmpdir(), ['--version']);
  return r.stdout.trim().replace(/^git version /, '');
}
