// Owns metering a backend: every call of the wrapped backend is told to a BackendObserver as one
// request — its operation, whether it succeeded, and the bytes it moved (up for a save, down for a
// load, counted as they pass, so a load that fails mid-way reports what it delivered). The observer of
// a run feeds the store families of src/metrics/metrics.ts. Under the retry wrapper, each attempt is a
// request of its own.

import type {
  Backend,
  Handle,
  ObjectInfo,
  ObjectType,
  Packing,
  Range,
  SaveOptions,
  SaveSource,
  SweepReport,
} from './backend.js';
import { listNames, sourceChunks } from './backend.js';
import type { BackendObserver } from './remote.js';

export class MeteredBackend implements Backend {
  constructor(
    readonly inner: Backend,
    private readonly observer: BackendObserver,
  ) {}

  get location(): string {
    return this.inner.location;
  }

  get completeLoads(): boolean {
    return this.inner.completeLoads === true;
  }

  get packing(): Packing | undefined {
    return this.inner.packing;
  }

  private report(op: Parameters<BackendObserver['request']>[0], ok: boolean, bytes: number): void {
    try {
      this.observer.request(op, ok ? 'ok' : 'error', bytes);
    } catch {
      // metrics never fail an operation
    }
  }

  async save(h: Handle, data: SaveSource, opts?: SaveOptions): Promise<void> {
    let bytes = 0;
    const counted =
      data instanceof Uint8Array
        ? data
        : (async function* () {
            for await (const c of sourceChunks(data)) {
              bytes += c.length;
              yield c;
            }
          })();
    if (data instanceof Uint8Array) bytes = data.length;
    try {
      await this.inner.save(h, counted, opts);
    } catch (err) {
      this.report('save', false, data instanceof Uint8Array ? 0 : bytes);
      throw err;
    }
    this.report('save', true, bytes);
  }

  async *load(h: Handle, range?: Range): AsyncGenerator<Uint8Array> {
    let bytes = 0;
    let failed = false;
    try {
      for await (const c of this.inner.load(h, range)) {
        bytes += c.length;
        yield c;
      }
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      // also when the caller stops reading early: the request happened, with the bytes it moved
      this.report('load', !failed, bytes);
    }
  }

  async stat(h: Handle): Promise<ObjectInfo> {
    try {
      const info = await this.inner.stat(h);
      this.report('stat', true, 0);
      return info;
    } catch (err) {
      this.report('stat', false, 0);
      throw err;
    }
  }

  async *list(type: ObjectType): AsyncGenerator<ObjectInfo> {
    try {
      yield* this.inner.list(type);
    } catch (err) {
      this.report('list', false, 0);
      throw err;
    }
    this.report('list', true, 0);
  }

  /** The inner backend's names (listNames), counted as one `list` request. */
  async listNames(type: ObjectType): Promise<string[]> {
    try {
      const names = await listNames(this.inner, type);
      this.report('list', true, 0);
      return names;
    } catch (err) {
      this.report('list', false, 0);
      throw err;
    }
  }

  /** The inner backend's state token, counted as one `stat` request. */
  async stateToken(): Promise<string | undefined> {
    if (!this.inner.stateToken) return undefined;
    try {
      const token = await this.inner.stateToken();
      this.report('stat', true, 0);
      return token;
    } catch (err) {
      this.report('stat', false, 0);
      throw err;
    }
  }

  async remove(h: Handle): Promise<void> {
    try {
      await this.inner.remove(h);
    } catch (err) {
      this.report('remove', false, 0);
      throw err;
    }
    this.report('remove', true, 0);
  }

  /** The inner backend's sweep (none: nothing to sweep), counted as one `remove` request. */
  async sweepLeftovers(olderThanMs: number): Promise<SweepReport> {
    if (!this.inner.sweepLeftovers) return { removed: 0, bytes: 0 };
    try {
      const r = await this.inner.sweepLeftovers(olderThanMs);
      this.report('remove', true, 0);
      return r;
    } catch (err) {
      this.report('remove', false, 0);
      throw err;
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
