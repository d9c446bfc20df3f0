// Owns fault injection for tests: FaultyBackend wraps any backend and, by rules chosen per operation, type
// and name, makes calls fail (the nth, once, every, or with a probability), cuts loads short, flips bits
// in loaded data, truncates saved objects or delays calls. Deterministic for a seed. Tests use it instead
// of fault points inside production code; every fault that takes effect is recorded in `fired`.

import { createHash } from 'node:crypto';
import { InvalidInputError, IoError } from '../model/errors.js';
import {
  type Backend,
  type Handle,
  type ObjectInfo,
  type ObjectType,
  type Packing,
  type Range,
  type SaveOptions,
  type SaveSource,
  sourceChunks,
  validateHandle,
  validateRange,
  validateType,
} from './backend.js';

export type FaultOp = 'save' | 'load' | 'stat' | 'list' | 'remove';

export type Fault =
  /**
   * The call fails with `error` (default: IoError, errno EIO). `afterBytes` (save, load): once that many
   * bytes of the stream have passed (or at its end, if shorter). `afterCommit` (save, remove): after the
   * inner backend has done it, like a lost acknowledgement.
   */
  | {
      readonly kind: 'error';
      readonly error?: Error | ((call: FaultCall) => Error);
      readonly afterBytes?: number;
      readonly afterCommit?: boolean;
    }
  /** load: the stream ends without an error after `keep` bytes (default: half of the bytes asked for). */
  | { readonly kind: 'short-read'; readonly keep?: number }
  /**
   * load: bit `bit` of the loaded bytes is inverted (bit b is `1 << (b % 8)` of byte `floor(b / 8)`,
   * counted from the start of the range); default: a random bit from the seeded generator.
   */
  | { readonly kind: 'bit-flip'; readonly bit?: number }
  /** save: only the first `keep` bytes (default: half) are stored, and the save reports success. */
  | { readonly kind: 'truncate'; readonly keep?: number }
  /** The call waits `ms` milliseconds first. */
  | { readonly kind: 'latency'; readonly ms: number };

/** Which of the calls a rule matches it fires on (default: every). `nth` counts from 1. */
export type FaultWhen = 'every' | 'once' | { readonly nth: number } | { readonly probability: number };

export interface FaultRule {
  readonly op: FaultOp;
  /** Only calls on these types (default: all). */
  readonly types?: readonly ObjectType[];
  /** Only calls on these names (default: all; a rule with names never matches list). */
  readonly names?: readonly string[];
  readonly when?: FaultWhen;
  readonly fault: Fault;
}

export interface FaultCall {
  readonly op: FaultOp;
  readonly type: ObjectType;
  readonly name: string | undefined;
  /** The how-many-th call of this operation on the wrapper, from 1. */
  readonly call: number;
}

export interface FiredFault extends FaultCall {
  readonly kind: Fault['kind'];
  readonly detail?: Record<string, unknown>;
}

const OPS_OF: Record<Fault['kind'], readonly FaultOp[]> = {
  error: ['save', 'load', 'stat', 'list', 'remove'],
  'short-read': ['load'],
  'bit-flip': ['load'],
  truncate: ['save'],
  latency: ['save', 'load', 'stat', 'list', 'remove'],
};

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function checkRule(rule: FaultRule): FaultRule {
  const { op, fault, when } = rule;
  if (!OPS_OF.error.includes(op)) throw new InvalidInputError(`fault rule: unknown operation ${String(op)}`);
  if (!fault || !(fault.kind in OPS_OF)) throw new InvalidInputError('fault rule: unknown fault kind');
  if (!OPS_OF[fault.kind].includes(op))
    throw new InvalidInputError(`fault rule: ${fault.kind} does not apply to ${op}`);
  for (const t of rule.types ?? []) validateType(t);
  if (fault.kind === 'error') {
    if (fault.afterBytes !== undefined && (!isCount(fault.afterBytes) || (op !== 'save' && op !== 'load')))
      throw new InvalidInputError('fault rule: afterBytes is a byte count, for save and load');
    if (fault.afterCommit && op !== 'save' && op !== 'remove')
      throw new InvalidInputError('fault rule: afterCommit is for save and remove');
    if (fault.afterCommit && fault.afterBytes !== undefined)
      throw new InvalidInputError('fault rule: afterBytes and afterCommit exclude each other');
  }
  if (
    (fault.kind === 'short-read' || fault.kind === 'truncate') &&
    fault.keep !== undefined &&
    !isCount(fault.keep)
  )
    throw new InvalidInputError('fault rule: keep is a byte count');
  if (fault.kind === 'bit-flip' && fault.bit !== undefined && !isCount(fault.bit))
    throw new InvalidInputError('fault rule: bit is a bit index');
  if (fault.kind === 'latency' && !isCount(fault.ms))
    throw new InvalidInputError('fault rule: ms is an integer');
  if (when !== undefined && when !== 'every' && when !== 'once') {
    if ('nth' in when && !(isCount(when.nth) && when.nth >= 1))
      throw new InvalidInputError('fault rule: nth counts from 1');
    if ('probability' in when && !(when.probability >= 0 && when.probability <= 1))
      throw new InvalidInputError('fault rule: probability is in [0, 1]');
  }
  return rule;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function injectedError(call: FaultCall): Error {
  const errno = Object.assign(new Error('EIO: injected fault'), { code: 'EIO' });
  return new IoError(`injected fault: ${call.op} ${call.type}${call.name ? `/${call.name}` : ''}`, errno);
}

type Matched = { fault: Fault; call: FaultCall };
type FaultOf<K extends Fault['kind']> = Extract<Fault, { kind: K }>;

/** The first matched fault of kind `kind` (passing `test`), typed. */
function pick<K extends Fault['kind']>(
  matched: Matched[],
  kind: K,
  test: (f: FaultOf<K>) => boolean = () => true,
): { m: Matched; fault: FaultOf<K> } | undefined {
  for (const m of matched)
    if (m.fault.kind === kind && test(m.fault as FaultOf<K>)) return { m, fault: m.fault as FaultOf<K> };
  return undefined;
}

export class FaultyBackend implements Backend {
  /** Every fault that took effect, in order. */
  readonly fired: FiredFault[] = [];
  private readonly rules: Array<{ rule: FaultRule; seen: number }> = [];
  private readonly calls = new Map<FaultOp, number>();
  private draws = 0;

  constructor(
    readonly inner: Backend,
    private readonly options: { seed?: number; rules?: readonly FaultRule[] } = {},
  ) {
    for (const r of options.rules ?? []) this.inject(r);
  }

  get location(): string {
    return this.inner.location;
  }

  get packing(): Packing | undefined {
    return this.inner.packing;
  }

  /** Adds a rule; rules apply in the order added. */
  inject(rule: FaultRule): this {
    this.rules.push({ rule: checkRule(rule), seen: 0 });
    return this;
  }

  /** Removes every rule (the log stays). */
  clear(): void {
    this.rules.length = 0;
  }

  /** A number in [0, 1) from the seeded sequence: SHA-256 of `seed:draw`. */
  private random(): number {
    const digest = createHash('sha256')
      .update(`${this.options.seed ?? 1}:${this.draws++}`)
      .digest();
    return digest.readUInt32BE(0) / 2 ** 32;
  }

  /** The faults that fire on this call, after counting it against every matching rule. */
  private match(op: FaultOp, type: ObjectType, name: string | undefined): Matched[] {
    const n = (this.calls.get(op) ?? 0) + 1;
    this.calls.set(op, n);
    const call: FaultCall = { op, type, name, call: n };
    const out: Matched[] = [];
    for (const r of this.rules) {
      const { rule } = r;
      if (rule.op !== op) continue;
      if (rule.types && !rule.types.includes(type)) continue;
      if (rule.names && (name === undefined || !rule.names.includes(name))) continue;
      r.seen++;
      const when = rule.when ?? 'every';
      const fires =
        when === 'every'
          ? true
          : when === 'once'
            ? r.seen === 1
            : 'nth' in when
              ? r.seen === when.nth
              : this.random() < when.probability;
      if (fires) out.push({ fault: rule.fault, call });
    }
    return out;
  }

  private record(m: Matched, detail?: Record<string, unknown>): void {
    this.fired.push({ ...m.call, kind: m.fault.kind, ...(detail ? { detail } : {}) });
  }

  private errorOf(m: Matched): Error {
    const f = m.fault as FaultOf<'error'>;
    return typeof f.error === 'function' ? f.error(m.call) : (f.error ?? injectedError(m.call));
  }

  /** Applies latency, then throws the first plain error fault. */
  private async before(matched: Matched[]): Promise<void> {
    for (const m of matched)
      if (m.fault.kind === 'latency') {
        this.record(m, { ms: m.fault.ms });
        await sleep(m.fault.ms);
      }
    const plain = pick(matched, 'error', (f) => f.afterBytes === undefined && !f.afterCommit);
    if (plain) {
      this.record(plain.m);
      throw this.errorOf(plain.m);
    }
  }

  private afterCommit(matched: Matched[]): void {
    const late = pick(matched, 'error', (f) => f.afterCommit === true);
    if (late) {
      this.record(late.m, { after_commit: true });
      throw this.errorOf(late.m);
    }
  }

  async save(h: Handle, data: SaveSource, opts?: SaveOptions): Promise<void> {
    h = validateHandle(h);
    const matched = this.match('save', h.type, h.name);
    await this.before(matched);
    let source: SaveSource = data;
    const truncate = pick(matched, 'truncate');
    if (truncate) source = this.truncated(source, truncate.m, truncate.fault.keep);
    const failing = pick(matched, 'error', (f) => f.afterBytes !== undefined);
    if (failing) source = this.failingAfter(source, failing.m, failing.fault.afterBytes!);
    await this.inner.save(h, source, opts);
    this.afterCommit(matched);
  }

  /** The first `keep` bytes of the source (default: half of it, which needs the whole source first). */
  private async *truncated(data: SaveSource, m: Matched, given?: number): AsyncGenerator<Uint8Array> {
    let chunks: AsyncIterable<Uint8Array> = sourceChunks(data);
    let keep = given;
    if (keep === undefined) {
      const all: Uint8Array[] = [];
      for await (const c of chunks) all.push(Buffer.from(c));
      const whole = Buffer.concat(all);
      keep = Math.floor(whole.length / 2);
      chunks = sourceChunks(whole);
    }
    let total = 0;
    for await (const c of chunks) {
      const room = Math.max(0, keep - total);
      if (room > 0) yield c.length <= room ? c : c.subarray(0, room);
      total += c.length;
    }
    if (total > keep) this.record(m, { kept: keep, of: total });
  }

  /** The source until `afterBytes` bytes, then the fault's error. */
  private async *failingAfter(data: SaveSource, m: Matched, limit: number): AsyncGenerator<Uint8Array> {
    let total = 0;
    for await (const c of sourceChunks(data)) {
      const room = limit - total;
      if (c.length > room) {
        if (room > 0) yield c.subarray(0, room);
        break;
      }
      yield c;
      total += c.length;
    }
    this.record(m, { after_bytes: limit });
    throw this.errorOf(m);
  }

  async *load(h: Handle, range?: Range): AsyncGenerator<Uint8Array> {
    h = validateHandle(h);
    range = validateRange(range);
    const matched = this.match('load', h.type, h.name);
    await this.before(matched);
    const short = pick(matched, 'short-read');
    const flip = pick(matched, 'bit-flip');
    const failing = pick(matched, 'error', (f) => f.afterBytes !== undefined);
    // The bytes asked for, when a default needs them: the range's length, or the object's size after it.
    let asked = range?.length;
    if (
      asked === undefined &&
      ((short && short.fault.keep === undefined) || (flip && flip.fault.bit === undefined))
    )
      asked = Math.max(0, (await this.inner.stat(h)).size - (range?.offset ?? 0));
    const keep = short ? (short.fault.keep ?? Math.floor(asked! / 2)) : Infinity;
    let bit = flip?.fault.bit;
    if (flip && bit === undefined && asked! > 0) bit = Math.floor(this.random() * asked! * 8);
    const failAt = failing ? failing.fault.afterBytes! : Infinity;
    const stop = Math.min(keep, failAt);

    let pos = 0;
    let cut = false;
    for await (const chunk of this.inner.load(h, range)) {
      if (pos >= stop) {
        cut = true;
        break;
      }
      let c = chunk;
      if (pos + c.length > stop) {
        c = c.subarray(0, stop - pos);
        cut = true;
      }
      if (bit !== undefined && bit >= pos * 8 && bit < (pos + c.length) * 8) {
        c[Math.floor(bit / 8) - pos]! ^= 1 << (bit % 8);
        this.record(flip!.m, { bit });
      }
      pos += c.length;
      yield c;
      if (cut) break;
    }
    if (failing && (pos >= failAt || !cut)) {
      this.record(failing.m, { after_bytes: failAt });
      throw this.errorOf(failing.m);
    }
    if (short && cut) this.record(short.m, { kept: keep });
  }

  async stat(h: Handle): Promise<ObjectInfo> {
    h = validateHandle(h);
    await this.before(this.match('stat', h.type, h.name));
    return this.inner.stat(h);
  }

  async *list(type: ObjectType): AsyncGenerator<ObjectInfo> {
    type = validateType(type);
    await this.before(this.match('list', type, undefined));
    yield* this.inner.list(type);
  }

  async remove(h: Handle): Promise<void> {
    h = validateHandle(h);
    const matched = this.match('remove', h.type, h.name);
    await this.before(matched);
    await this.inner.remove(h);
    this.afterCommit(matched);
  }

  async close(): Promise<void> {
    await this.inner.close();
  }
}
