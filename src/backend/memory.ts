// Owns the in-memory backend for unit tests: objects in a Map per type, with the local backend's semantics
// (a save is visible only once complete and is dropped when its source fails, ifAbsent never replaces,
// saved and loaded bytes are copies). Several MemoryBackend instances can share one MemoryStore, like
// clients of one remote store.

import { ObjectExistsError, ObjectNotFoundError } from '../model/errors.js';
import {
  type Backend,
  type Handle,
  OBJECT_TYPES,
  type ObjectInfo,
  type ObjectType,
  type Range,
  resolveRange,
  type SaveOptions,
  type SaveSource,
  sourceChunks,
  validateHandle,
  validateRange,
  validateType,
} from './backend.js';

/** Bytes per chunk of a load, so consumers see a stream as they would from a file or the network. */
const LOAD_CHUNK = 64 * 1024;

/** The objects, shareable between backends. */
export class MemoryStore {
  readonly objects = new Map<ObjectType, Map<string, Buffer>>(OBJECT_TYPES.map((t) => [t, new Map()]));
}

let instances = 0;

export class MemoryBackend implements Backend {
  readonly location: string;

  constructor(readonly store: MemoryStore = new MemoryStore()) {
    this.location = `memory:${++instances}`;
  }

  private objectsOf(type: ObjectType): Map<string, Buffer> {
    return this.store.objects.get(type)!;
  }

  private get(h: Handle): Buffer {
    const data = this.objectsOf(h.type).get(h.name);
    if (data === undefined) throw new ObjectNotFoundError(h.type, h.name, this.location);
    return data;
  }

  async save(h: Handle, data: SaveSource, opts?: SaveOptions): Promise<void> {
    h = validateHandle(h);
    const parts: Buffer[] = [];
    for await (const chunk of sourceChunks(data)) parts.push(Buffer.from(chunk)); // a copy
    const objects = this.objectsOf(h.type);
    if (opts?.ifAbsent && objects.has(h.name)) throw new ObjectExistsError(h.type, h.name, this.location);
    objects.set(h.name, Buffer.concat(parts));
  }

  async *load(h: Handle, range?: Range): AsyncGenerator<Uint8Array> {
    h = validateHandle(h);
    range = validateRange(range);
    const data = this.get(h);
    const { start, end } = resolveRange(h, range, data.length);
    for (let pos = start; pos < end; pos += LOAD_CHUNK)
      yield Buffer.from(data.subarray(pos, Math.min(end, pos + LOAD_CHUNK)));
  }

  async stat(h: Handle): Promise<ObjectInfo> {
    h = validateHandle(h);
    return { name: h.name, size: this.get(h).length };
  }

  async *list(type: ObjectType): AsyncGenerator<ObjectInfo> {
    type = validateType(type);
    for (const [name, data] of [...this.objectsOf(type)]) yield { name, size: data.length };
  }

  async remove(h: Handle): Promise<void> {
    h = validateHandle(h);
    this.objectsOf(h.type).delete(h.name);
  }

  async close(): Promise<void> {}
}
