// The idempotency store: the interface the idempotency middleware talks to, and the in-memory backend
// (LRU by max entries and total bytes, TTL per entry). Another backend (Redis, a database) implements the
// same three methods; the middleware does not change.

/** A final response kept for replay. */
export interface StoredResponse {
  /** identifies the request (path and body hash): a repeat with another fingerprint is a key reuse */
  fingerprint: string;
  status: number;
  headers: [string, string][];
  /** true for an SSE response: `chunks` is the event transcript, replayed as a stream */
  stream: boolean;
  /** the body bytes, in the chunks they were sent in */
  chunks: Uint8Array[];
}

export type LockResult =
  /** this request owns the key until release() (called once its response is stored or given up) */
  | { acquired: true; release(): void }
  /** another request with the key is in flight: `fingerprint` is its fingerprint, `released` settles when it is done */
  | { acquired: false; fingerprint: string; released: Promise<void> };

export interface IdempotencyStore {
  get(key: string): Promise<StoredResponse | undefined>;
  put(key: string, value: StoredResponse, ttlMs: number): Promise<void>;
  /** Takes the in-flight lock of `key` for a request with `fingerprint`, or reports who holds it. */
  lock(key: string, fingerprint: string): Promise<LockResult>;
}

export function storedSize(v: StoredResponse): number {
  let n = 64 + v.fingerprint.length;
  for (const [k, val] of v.headers) n += k.length + val.length + 16;
  for (const c of v.chunks) n += c.byteLength + 16;
  return n;
}

interface Entry {
  key: string;
  value: StoredResponse;
  expires: number;
  size: number;
  /** neighbours in least-recently-used order (prev: older, next: newer) */
  prev: Entry | null;
  next: Entry | null;
}

interface Lock {
  fingerprint: string;
  released: Promise<void>;
  release(): void;
}

export interface MemoryStoreOptions {
  /** entries kept at most (read on every put, so a config reload applies) */
  maxEntries: () => number;
  /** total bytes kept at most (storedSize of every entry); an entry larger than this is not stored */
  maxBytes?: number;
  /** clock in ms */
  now?: () => number;
}

/**
 * In-memory store: a Map for lookups plus a doubly linked list in least-recently-used order, with a TTL per
 * entry; every operation is O(1). The order is not kept in the Map's own insertion order on purpose: a Map
 * used as a queue (delete the oldest entry, append a new one) keeps the deleted slots until it rehashes, and
 * finding the first live entry then costs more with every put.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly #entries = new Map<string, Entry>();
  readonly #locks = new Map<string, Lock>();
  readonly #maxEntries: () => number;
  readonly #maxBytes: number;
  readonly #now: () => number;
  #bytes = 0;
  /** least recently used */
  #oldest: Entry | null = null;
  /** most recently used */
  #newest: Entry | null = null;

  constructor(opts: MemoryStoreOptions) {
    this.#maxEntries = opts.maxEntries;
    this.#maxBytes = opts.maxBytes ?? 256 * 1024 * 1024;
    this.#now = opts.now ?? (() => performance.now());
  }

  get size(): number {
    return this.#entries.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get inFlight(): number {
    return this.#locks.size;
  }

  #unlink(e: Entry): void {
    if (e.prev) e.prev.next = e.next;
    else this.#oldest = e.next;
    if (e.next) e.next.prev = e.prev;
    else this.#newest = e.prev;
    e.prev = e.next = null;
  }

  #append(e: Entry): void {
    e.prev = this.#newest;
    if (this.#newest) this.#newest.next = e;
    else this.#oldest = e;
    this.#newest = e;
  }

  #delete(e: Entry): void {
    this.#entries.delete(e.key);
    this.#unlink(e);
    this.#bytes -= e.size;
  }

  get(key: string): Promise<StoredResponse | undefined> {
    const e = this.#entries.get(key);
    if (!e) return Promise.resolve(undefined);
    if (e.expires <= this.#now()) {
      this.#delete(e);
      return Promise.resolve(undefined);
    }
    if (e !== this.#newest) {
      this.#unlink(e);
      this.#append(e); // most recently used
    }
    return Promise.resolve(e.value);
  }

  put(key: string, value: StoredResponse, ttlMs: number): Promise<void> {
    const size = storedSize(value);
    const old = this.#entries.get(key);
    if (old) this.#delete(old);
    if (size > this.#maxBytes) return Promise.resolve();
    const now = this.#now();
    const e: Entry = { key, value, expires: now + ttlMs, size, prev: null, next: null };
    this.#entries.set(key, e);
    this.#append(e);
    this.#bytes += size;
    const max = Math.max(1, this.#maxEntries());
    // from the least recently used end: over a bound, or expired
    for (let o = this.#oldest; o; o = this.#oldest) {
      if (this.#entries.size > max || this.#bytes > this.#maxBytes || o.expires <= now) this.#delete(o);
      else break;
    }
    return Promise.resolve();
  }

  lock(key: string, fingerprint: string): Promise<LockResult> {
    const held = this.#locks.get(key);
    if (held) return Promise.resolve({ acquired: false, fingerprint: held.fingerprint, released: held.released });
    let resolve!: () => void;
    const released = new Promise<void>((r) => (resolve = r));
    const lock: Lock = {
      fingerprint,
      released,
      release: () => {
        if (this.#locks.get(key) === lock) this.#locks.delete(key);
        resolve();
      },
    };
    this.#locks.set(key, lock);
    return Promise.resolve({ acquired: true, release: lock.release });
  }
}
