// Owns keeping the packs of one read open across its runs: where the backend can open an object once
// for many range reads (Backend.openReader: local files), each pack is opened once, not once per run
// (a repository restore of ref-170 read ~800 runs, each a load that opened, checked and closed its pack
// file again: docs/operations.md, stop 66). At most MAX_OPEN stay open once their reads end: the least
// recently used with no read under way are closed. Elsewhere each run is a ranged load.

import type { Backend, ObjectReader } from '../backend/backend.js';
import { ObjectTooLargeError } from '../model/errors.js';
import { MAX_PACK, packTooLarge } from './pack.js';

const MAX_OPEN = 16;

interface Open {
  reader: Promise<ObjectReader>;
  /** Reads under way. */
  busy: number;
  /** When it was last asked for (a counter). */
  used: number;
}

export class PackReaders {
  private readonly open = new Map<string, Open>();
  private clock = 0;

  constructor(private readonly backend: Backend & Required<Pick<Backend, 'openReader'>>) {}

  /** Packs are kept open when the backend can (openReader); undefined otherwise. */
  static of(backend: Backend): PackReaders | undefined {
    return backend.openReader
      ? new PackReaders(backend as Backend & Required<Pick<Backend, 'openReader'>>)
      : undefined;
  }

  /** `length` bytes of `pack` from `offset` (errors as readObjectRange's). */
  async read(pack: string, offset: number, length: number): Promise<Buffer> {
    let o = this.open.get(pack);
    if (!o) {
      const reader = this.backend
        .openReader({ type: 'packs', name: pack }, MAX_PACK)
        .catch((err: unknown) => {
          this.open.delete(pack);
          if (err instanceof ObjectTooLargeError && err.size !== undefined)
            throw packTooLarge(pack, err.size);
          throw err;
        });
      o = { reader, busy: 0, used: 0 };
      this.open.set(pack, o);
    }
    o.used = ++this.clock;
    o.busy++;
    this.closeIdle();
    try {
      return await (await o.reader).read(offset, length);
    } finally {
      o.busy--;
      this.closeIdle();
    }
  }

  /** Closes every pack; reads still under way fail. */
  async close(): Promise<void> {
    const all = [...this.open.values()];
    this.open.clear();
    await Promise.all(
      all.map((o) =>
        o.reader.then(
          (r) => r.close(),
          () => undefined,
        ),
      ),
    );
  }

  /** Closes the least recently used packs with no read under way while more than MAX_OPEN are open. */
  private closeIdle(): void {
    while (this.open.size > MAX_OPEN) {
      let oldest: [string, Open] | undefined;
      for (const e of this.open) if (e[1].busy === 0 && (!oldest || e[1].used < oldest[1].used)) oldest = e;
      if (!oldest) return;
      this.open.delete(oldest[0]);
      void oldest[1].reader.then(
        (r) => r.close(),
        () => undefined,
      );
    }
  }
}
