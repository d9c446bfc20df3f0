// Owns what a remote client is told of a failure — the HTTP API's error bodies, the activity feed's and
// the schedule's recorded errors, the MCP tools' errors — and what the server's own log gets of it. The
// client gets the stable code, a message without the host's places, and a short error id; the log gets
// one line with the same id and the whole message (and, for an error that is no SnapshotError, its
// stack), so an operator finds what a client reports. In a message, the directories and files the
// snapshotter was configured with are named by their role (`<state root>/tenants/…`), the temporary
// directory and the home directory too, and any other absolute path becomes `<path>`; an error that is
// no SnapshotError (a bug, an unwrapped system error) is `INTERNAL` without its message. The CLI (the
// operator at the host) never comes here: it keeps every message whole.

import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { SnapshotError, systemError } from '../model/errors.js';

/** A place on the host and the role it is named by in a client's message (`state root`). */
export interface HostPath {
  role: string;
  path: string;
}

/** An error as a remote client gets it: `{code, message, exit_code?, outcome, details?, error_id}`. */
export interface ClientError {
  code: string;
  message: string;
  exit_code?: number;
  outcome: string;
  details?: Record<string, unknown>;
  /** The same id is on the server's log line that holds the whole message. */
  error_id: string;
}

/** What may come just before a path in a message: its start, a space, a quote, a bracket, `=`, `,` or `:`. */
const BEFORE_PATH = `(?<=^|[\\s'"\`([{=,:])`;
/**
 * An absolute path (or a file: URL) that starts a word; a `:`, `.` or `;` that ends it is the sentence's.
 * Not the `//` of a URL (`nats://host:4222/bucket`, `s3://bucket`: a repository's place is no secret).
 */
const ABSOLUTE_PATH = new RegExp(
  `${BEFORE_PATH}(?:file://)?/(?!/)[^\\s'"\`()[\\]{},]*[^\\s'"\`()[\\]{},:.;]`,
  'g',
);

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export class ClientErrors {
  /** An error told to several clients (the board, then the response) keeps its id and is logged once. */
  private readonly seen = new WeakMap<object, ClientError>();
  private readonly places: Array<{ role: string; pattern: RegExp }>;
  private readonly log: (line: string) => void;

  constructor(opts: { hostPaths?: readonly HostPath[]; log?: (line: string) => void } = {}) {
    this.log = opts.log ?? (() => {});
    const all: HostPath[] = [
      ...(opts.hostPaths ?? []),
      { role: 'tmp', path: tmpdir() },
      { role: 'home', path: homedir() },
    ];
    const byPath = new Map<string, string>();
    for (const p of all) {
      for (const form of [resolve(p.path), realpathOr(p.path)]) {
        // the first role given for a place wins (a memdir root that is the state root); `/` is no place
        if (form.length > 1 && !byPath.has(form)) byPath.set(form, p.role);
      }
    }
    // the longest first: a state root under the temporary directory is the state root
    this.places = [...byPath]
      .sort((a, b) => b[0].length - a[0].length)
      .map(([path, role]) => ({
        role,
        pattern: new RegExp(
          `${BEFORE_PATH}(?:file://)?${escapeRegExp(path)}(?=$|[/\\s'"\`:;.,()[\\]{}])`,
          'g',
        ),
      }));
  }

  /**
   * A text for a client: the host's places by their role, and (unless the text is made of the request
   * alone) every other absolute path as `<path>`.
   */
  scrub(text: string, describesRequest = false): string {
    let out = text;
    for (const p of this.places) out = out.replace(p.pattern, `<${p.role}>`);
    if (!describesRequest) out = out.replace(ABSOLUTE_PATH, '<path>');
    return out;
  }

  /**
   * What a client is told of `err`, which happened in `where` (`POST /v1/agents/ana/snapshots`, a tool's
   * name, a scheduled run). The first time an error is told, the log gets its line.
   */
  report(err: unknown, where: string): ClientError {
    const key = err !== null && (typeof err === 'object' || typeof err === 'function') ? err : undefined;
    const known = key ? this.seen.get(key) : undefined;
    if (known) return { ...known, ...(known.details ? { details: { ...known.details } } : {}) };
    const error_id = newErrorId();
    let told: ClientError;
    // an unwrapped failure of a system call (too many open files, a full disk) is IO with its errno
    const typed = err instanceof SnapshotError ? err : systemError(err);
    if (typed) {
      const c = typed.toClientJSON();
      const details = c.details as Record<string, unknown> | undefined;
      told = {
        code: typed.code,
        message: this.scrub(String(c.message), typed.describesRequest),
        exit_code: typed.exitCode,
        outcome: typed.outcome,
        ...(details
          ? { details: this.scrubValue(details, typed.describesRequest) as Record<string, unknown> }
          : {}),
        error_id,
      };
      // a request's own error: the client has all of it, the log only that it happened (the message
      // may quote what was searched for)
      this.log(
        typed.describesRequest
          ? `error ${error_id} ${where}: ${typed.code}`
          : `error ${error_id} ${where}: ${typed.code} ${typed.message}`,
      );
    } else {
      const name = err instanceof Error ? err.name : typeof err;
      told = {
        code: 'INTERNAL',
        message: `internal error (${name}); the server's log has it under error id ${error_id}`,
        outcome: 'error',
        error_id,
      };
      const whole = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
      this.log(`error ${error_id} ${where}: INTERNAL ${whole}`);
    }
    if (key) this.seen.set(key, told);
    return told;
  }

  /**
   * A failure a report carries as text, with its code (a gc sweep's error of one agent): the client's
   * text of it and its id; the log gets the whole text under that id, as for `report`.
   */
  reportText(code: string, message: string, where: string): { message: string; error_id: string } {
    const error_id = newErrorId();
    this.log(`error ${error_id} ${where}: ${code} ${message}`);
    return { message: this.scrub(message), error_id };
  }

  private scrubValue(value: unknown, describesRequest: boolean): unknown {
    if (typeof value === 'string') return this.scrub(value, describesRequest);
    if (Array.isArray(value)) return value.map((v) => this.scrubValue(v, describesRequest));
    if (value && typeof value === 'object')
      return Object.fromEntries(
        Object.entries(value).map(([k, v]) => [k, this.scrubValue(v, describesRequest)]),
      );
    return value;
  }
}

/** Short (8 hex digits): said on the phone, searched in a log; unique enough among one server's errors. */
function newErrorId(): string {
  return randomBytes(4).toString('hex');
}

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}
