// Owns the git bundle file as a v2 bundle carries it (`git/memdir.bundle`): reading its header from the
// stream (signature `# v2 git bundle` or `# v3 git bundle`, v3 capabilities, no prerequisites, refs with
// valid names), handing over the pack bytes that follow, git's ref-name rules (check-ref-format), and
// what the header must say given the manifest's git block (HEAD's commit among the refs). Pure.

/** Longest header accepted (a ref line is an object id, a space and a ref name). */
export const MAX_GIT_BUNDLE_HEADER = 16 * 1024 * 1024;

export interface GitBundleHeader {
  version: 2 | 3;
  objectFormat: 'sha1' | 'sha256';
  /** Ref name → object id, in header order. `HEAD` is one of them when the bundle carries it. */
  refs: Map<string, string>;
}

const OID_LENGTH = { sha1: 40, sha256: 64 } as const;

/**
 * Why `name` is not a valid ref name by git's rules (git-check-ref-format), or undefined: no empty
 * component or one starting with `.` or ending with `.lock`, no `..`, no control character, space,
 * `~ ^ : ? * [ \`, no `@{`, not `@`, no trailing `.` or `/`, no leading `/`, at least two components.
 */
export function refNameProblem(name: string): string | undefined {
  if (name === '' || name === '@') return 'empty or "@"';
  if (name.includes('..')) return 'contains ".."';
  if (name.includes('@{')) return 'contains "@{"';
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return 'contains a control character';
    if (' ~^:?*[\\'.includes(name[i]!)) return `contains ${JSON.stringify(name[i])}`;
  }
  if (name.endsWith('.')) return 'ends with "."';
  const parts = name.split('/');
  if (parts.length < 2) return 'has a single component';
  for (const p of parts) {
    if (p === '') return 'has an empty component (leading, trailing or double "/")';
    if (p.startsWith('.')) return 'has a component starting with "."';
    if (p.endsWith('.lock')) return 'has a component ending with ".lock"';
  }
  return undefined;
}

/** Why `name` is not a branch HEAD may point at in a manifest (`refs/heads/…`, valid), or undefined. */
export function headRefProblem(name: string): string | undefined {
  if (!name.startsWith('refs/heads/')) return 'is not a branch (refs/heads/…)';
  return refNameProblem(name);
}

/**
 * Splits a git bundle stream into its header and its pack: push() the stream's chunks in order; it
 * returns the bytes after the header (the pack) once the header is complete, and throws an Error
 * naming the first problem of the header.
 */
export class GitBundleHeaderReader {
  private buf: Buffer = Buffer.alloc(0);
  header: GitBundleHeader | undefined;

  /** The pack bytes in `chunk` (all of it once the header was read; none while it is incomplete). */
  push(chunk: Buffer): Buffer {
    if (this.header) return chunk;
    this.buf = Buffer.concat([this.buf, chunk]);
    const end = this.buf.indexOf('\n\n');
    if (end === -1) {
      if (this.buf.length > MAX_GIT_BUNDLE_HEADER) throw new Error('git bundle header too long');
      return Buffer.alloc(0);
    }
    this.header = parseHeader(this.buf.subarray(0, end + 1).toString('latin1'));
    const rest = this.buf.subarray(end + 2);
    this.buf = Buffer.alloc(0);
    return rest;
  }

  /** Throws when the stream ended before the header did. */
  end(): GitBundleHeader {
    if (!this.header) throw new Error('git bundle ends inside its header');
    return this.header;
  }
}

/** Parses the header text up to and including the newline before the blank line (latin1: bytes kept). */
function parseHeader(text: string): GitBundleHeader {
  const lines = text.slice(0, -1).split('\n');
  const signature = lines.shift();
  const version = signature === '# v2 git bundle' ? 2 : signature === '# v3 git bundle' ? 3 : undefined;
  if (version === undefined) throw new Error('not a git bundle (no "# v2/v3 git bundle" signature)');
  let objectFormat: GitBundleHeader['objectFormat'] = 'sha1';
  while (version === 3 && lines[0]?.startsWith('@')) {
    const cap = lines.shift()!;
    if (cap === '@object-format=sha1' || cap === '@object-format=sha256')
      objectFormat = cap.slice('@object-format='.length) as GitBundleHeader['objectFormat'];
    else throw new Error(`git bundle capability ${JSON.stringify(cap)} is not accepted`);
  }
  const oid = new RegExp(`^[0-9a-f]{${OID_LENGTH[objectFormat]}}$`);
  const refs = new Map<string, string>();
  for (const line of lines) {
    if (line.startsWith('-'))
      throw new Error(
        'git bundle has prerequisites (an incomplete history): the bundle must carry all of it',
      );
    const sp = line.indexOf(' ');
    const id = line.slice(0, sp);
    const name = line.slice(sp + 1);
    if (sp === -1 || !oid.test(id))
      throw new Error(`git bundle header line ${JSON.stringify(line)} is malformed`);
    const bad =
      name === 'HEAD' ? undefined : name.startsWith('refs/') ? refNameProblem(name) : 'is not under refs/';
    if (bad) throw new Error(`git bundle ref ${JSON.stringify(name)} ${bad}`);
    if (refs.has(name)) throw new Error(`git bundle lists ref ${JSON.stringify(name)} twice`);
    refs.set(name, id);
  }
  if (refs.size === 0) throw new Error('git bundle lists no refs');
  const conflict = refNamesConflict([...refs.keys()]);
  if (conflict) throw new Error(`git bundle ${conflict}`);
  return { version, objectFormat, refs };
}

/**
 * Two ref names git cannot hold at once, one a directory of the other (`refs/heads/a` and
 * `refs/heads/a/b`: a ref is a file, so it cannot also be a directory), said as a problem; undefined
 * when there are none. Every ref of a history is set in one transaction, which git refuses whole.
 */
export function refNamesConflict(names: readonly string[]): string | undefined {
  const all = new Set(names);
  for (const name of names) {
    for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
      const above = name.slice(0, i);
      if (all.has(above))
        return `lists ref ${JSON.stringify(name)} under ref ${JSON.stringify(above)}: git cannot hold both`;
    }
  }
  return undefined;
}

/** What the manifest says HEAD is, for checking the bundle's refs against it. */
export interface ExpectedHead {
  head_oid: string;
  head_ref?: string | undefined;
  detached?: boolean | undefined;
}

/** Why the header disagrees with the manifest's HEAD (`present` repositories only), or undefined. */
export function headProblem(header: GitBundleHeader, head: ExpectedHead): string | undefined {
  const name = head.detached ? 'HEAD' : head.head_ref;
  if (name === undefined) return 'the manifest names no branch for HEAD';
  // Header names are read byte for byte (latin1); the manifest's are UTF-8.
  const oid = header.refs.get(Buffer.from(name, 'utf8').toString('latin1'));
  if (oid === undefined) return `the git bundle does not carry ${name}`;
  if (oid !== head.head_oid)
    return `the git bundle's ${name} is ${oid}, the manifest's HEAD is ${head.head_oid}`;
  return undefined;
}
