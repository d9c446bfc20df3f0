// Owns where a repository is and opening its backend: `parseRepoLocation` turns what the user wrote
// (`--repo`, NEXO_MEMORY_REPO, the config's `store:` section) into a checked location — a directory
// (the local backend), `nats://host:port[,host:port…]/bucket` or `s3://bucket[/prefix]` — refusing
// credentials in a URL, empty or malformed buckets, bad ports and `..`, without ever echoing the text
// back when it may hold a secret. `openBackend` builds the Backend, importing its module on demand (every
// snapshotter parses a location; a command that opens no repository loads no backend, and the CLI loads
// no client library for a local repository): the local one (local.ts) as it is, a remote one (nats.ts,
// s3.ts) wrapped in metering (metered.ts), retries (retry.ts: what the backend itself does not
// see, a stream that ends early) and the local cache of immutable objects (cache.ts), in that order
// from the inside out.

import { join, resolve } from 'node:path';
import { ConfigError } from '../model/errors.js';
import type { Backend } from './backend.js';
import type {
  BackendObserver,
  NatsBackendOptions,
  OpenNatsBackend,
  OpenS3Backend,
  RetryOptions,
  S3BackendOptions,
} from './remote.js';

export type RepoKind = 'local' | 'nats' | 's3';

export type RepoLocation =
  | { readonly kind: 'local'; readonly path: string; readonly display: string }
  | {
      readonly kind: 'nats';
      readonly servers: readonly string[];
      readonly bucket: string;
      readonly display: string;
    }
  | { readonly kind: 's3'; readonly bucket: string; readonly prefix: string; readonly display: string };

/** What a remote backend needs beyond its location (the config's `store.nats` / `store.s3`). */
export interface BackendSettings {
  readonly nats?: Omit<NatsBackendOptions, 'servers' | 'bucket' | 'retry' | 'observer' | 'create'>;
  readonly s3?: Omit<S3BackendOptions, 'bucket' | 'prefix' | 'retry' | 'observer'>;
  readonly retry?: RetryOptions;
  /** Told every request of a remote backend (metrics). */
  readonly observer?: BackendObserver;
  /** Where the cache of immutable objects lives (`<state_root>/cache`); none: no cache. */
  readonly cacheRoot?: string;
  /** Create the remote buckets when missing (a snapshot into a new repository). */
  readonly create?: boolean;
}

const NATS_BUCKET = /^[A-Za-z0-9_-]{1,64}$/;
const S3_BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const S3_PREFIX_SEGMENT = /^[A-Za-z0-9!_.*'()-]{1,255}$/;
const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$/;
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
/** A known URL scheme not followed by `//` (`s3:/bucket`, `nats:host`): a mistyped URL, not a path. */
const MISTYPED_SCHEME = /^(nats|s3|file|https?|tls|wss?):(?!\/\/)/i;

/** Quoted for a message, only when it cannot hold a secret (no `@`, no `:` after the host). */
function quoted(text: string): string {
  const t = JSON.stringify(text);
  return t.length > 120 ? `${t.slice(0, 117)}...` : t;
}

function refuse(what: string): never {
  throw new ConfigError(`repository location: ${what}`);
}

function parseNats(rest: string): RepoLocation {
  const slash = rest.indexOf('/');
  if (slash < 0) refuse('a NATS repository is nats://host:port[,host:port…]/bucket; the bucket is missing');
  const hostPart = rest.slice(0, slash);
  const bucket = rest.slice(slash + 1);
  if (bucket === '') refuse('the NATS bucket is empty (nats://host:port/bucket)');
  if (!NATS_BUCKET.test(bucket))
    refuse(`the NATS bucket ${quoted(bucket)} must be 1..64 characters of [A-Za-z0-9_-]`);
  if (hostPart === '') refuse('a NATS repository needs at least one host:port');
  const servers: string[] = [];
  for (const hp of hostPart.split(',')) {
    const m = /^(.*):([^:\]]*)$/.exec(hp);
    if (!m) refuse(`the NATS server ${quoted(hp)} must be host:port`);
    const [, host, port] = m;
    if (!HOST.test(host!)) refuse(`the NATS server host ${quoted(host!)} is not a host name or address`);
    if (!/^[0-9]{1,5}$/.test(port!) || Number(port) < 1 || Number(port) > 65_535)
      refuse(`the port of NATS server ${quoted(host!)} must be 1..65535`);
    servers.push(`nats://${host}:${Number(port)}`);
  }
  const display = `nats://${servers.map((s) => s.slice('nats://'.length)).join(',')}/${bucket}`;
  return { kind: 'nats', servers, bucket, display };
}

function parseS3(rest: string): RepoLocation {
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const prefixText = slash < 0 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
  if (bucket === '') refuse('the S3 bucket is empty (s3://bucket[/prefix])');
  if (!S3_BUCKET.test(bucket) || bucket.includes('..'))
    refuse(
      `the S3 bucket ${quoted(bucket)} must be 3..63 characters of [a-z0-9.-], starting and ending with a letter or digit`,
    );
  const segments = prefixText === '' ? [] : prefixText.split('/');
  for (const s of segments) {
    if (s === '') refuse('the S3 prefix has an empty segment (//)');
    if (s === '.' || s === '..') refuse('the S3 prefix must not contain . or .. segments');
    if (!S3_PREFIX_SEGMENT.test(s))
      refuse(`the S3 prefix segment ${quoted(s)} must be characters of [A-Za-z0-9!_.*'()-]`);
  }
  const prefix = segments.join('/');
  return { kind: 's3', bucket, prefix, display: `s3://${bucket}${prefix ? `/${prefix}` : ''}` };
}

/**
 * A repository location from text: a path (absolute, or relative to `base`), `nats://…` or `s3://…`.
 * ConfigError for anything else, naming what is wrong without repeating a possible secret.
 */
export function parseRepoLocation(text: string, base = process.cwd()): RepoLocation {
  if (typeof text !== 'string' || text.trim() === '') refuse('it is empty');
  if (/[\u0000-\u001f\u007f]/.test(text)) refuse('it contains control characters');
  const scheme = SCHEME.exec(text);
  const mistyped = MISTYPED_SCHEME.exec(text);
  if (!scheme && mistyped)
    // taken as a path, it would put the URL's credentials, if any, into a directory name and reports
    refuse(
      `it starts with ${mistyped[1]!.toLowerCase()}: but not ${mistyped[1]!.toLowerCase()}://; write the URL with two slashes, or a local directory of that name as ./${mistyped[1]!.toLowerCase()}:…`,
    );
  if (!scheme) {
    const path = resolve(base, text);
    return { kind: 'local', path, display: path };
  }
  const name = scheme[1]!.toLowerCase();
  const rest = text.slice(scheme[0].length);
  const authority = rest.split('/')[0]!;
  if (authority.includes('@'))
    refuse(
      `credentials in the URL are refused (they would show in process lists and logs); give them in the config's store.${name === 's3' ? 's3' : 'nats'} section through \${VAR}`,
    );
  if (/[?#]/.test(rest)) refuse('query strings and fragments are not part of a repository URL');
  if (name === 'nats') return parseNats(rest);
  if (name === 's3') return parseS3(rest);
  if (name === 'file') refuse('give a local repository as a path, not a file:// URL');
  return refuse(
    `unknown scheme ${quoted(`${name}://`)}: use a path, nats://host:port/bucket or s3://bucket/prefix`,
  );
}

/** The cache directory of a location under `cacheRoot` (the SHA-256 of its display form). */
export async function cacheDirOf(cacheRoot: string, location: RepoLocation): Promise<string> {
  const { createHash } = await import('node:crypto');
  return join(cacheRoot, createHash('sha256').update(location.display).digest('hex'));
}

/** The remote backend factories, imported on demand (tests may point them elsewhere). */
export const remoteFactories = {
  async nats(): Promise<OpenNatsBackend> {
    return (await import('./nats.js')).openNatsBackend;
  },
  async s3(): Promise<OpenS3Backend> {
    return (await import('./s3.js')).openS3Backend;
  },
};

/**
 * The raw remote backend. It retries its own transient failures per `settings.retry` (it knows which
 * of its requests may be repeated) and tells `retry` to the observer; its requests are counted by the
 * metering wrapper, so the observer it gets counts only retries.
 */
async function openRemote(location: RepoLocation, settings: BackendSettings): Promise<Backend> {
  const common = {
    ...(settings.retry ? { retry: settings.retry } : {}),
    ...(settings.observer?.retry
      ? { observer: { request: () => {}, retry: settings.observer.retry.bind(settings.observer) } }
      : {}),
  };
  if (location.kind === 'nats') {
    const open = await remoteFactories.nats();
    return open({
      ...(settings.nats ?? {}),
      ...common,
      servers: location.servers,
      bucket: location.bucket,
      ...(settings.create ? { create: true } : {}),
    });
  }
  if (location.kind === 's3') {
    const open = await remoteFactories.s3();
    return open({ ...(settings.s3 ?? {}), ...common, bucket: location.bucket, prefix: location.prefix });
  }
  throw new ConfigError(`internal: ${location.kind} is not a remote location`);
}

/**
 * The backend of a repository location: a LocalBackend for a directory; for a remote store its backend,
 * metered (every request told to `settings.observer`), retried (RetryOptions) and cached under
 * `settings.cacheRoot`.
 */
export async function openBackend(location: RepoLocation, settings: BackendSettings = {}): Promise<Backend> {
  if (location.kind === 'local') return new (await import('./local.js')).LocalBackend(location.path);
  const raw = await openRemote(location, settings);
  const [{ MeteredBackend }, { RetryingBackend }, { CachedBackend }] = await Promise.all([
    import('./metered.js'),
    import('./retry.js'),
    import('./cache.js'),
  ]);
  let b: Backend = raw;
  if (settings.observer) b = new MeteredBackend(b, settings.observer);
  b = new RetryingBackend(b, {
    backend: location.kind,
    location: location.display,
    ...(settings.retry ?? {}),
    ...(settings.observer ? { observer: settings.observer } : {}),
  });
  if (settings.cacheRoot) b = new CachedBackend(b, await cacheDirOf(settings.cacheRoot, location));
  return b;
}
