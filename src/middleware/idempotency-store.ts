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
  /** the body bytes (the memory store gives them back as one chunk) */
  chunks: Uint8Array[];
}

export type LockResult =
  /** this request owns the key until release() (called once its response is stored or given up) */
  | { acquired: true; release(): void }
  /** another request with the key is in flight: `fingerprint` is its fingerprint, `released` settles when it is done */
  | { acquired: false; fingerprint: string; released: Promise<void> };

/** A value or a promise of it: the in-memory store answers synchronously, a networked one with a promise. */
export type MaybePromise<T> = T | Promise<T>;

export interface IdempotencyStore {
  get(key: string): MaybePromise<StoredResponse | undefined>;
  /** Keeps `value` for `ttlMs`. The middleware does not touch `value.chunks` afterwards, so they may be kept as they are. */
  put(key: string, value: StoredResponse, ttlMs: number): MaybePromise<void>;
  /** Takes the in-flight lock of `key` for a request with `fingerprint`, or reports who holds it. */
  lock(key: string, fingerprint: string): MaybePromise<LockResult>;
}

/** The bytes an entry is counted for against the store's byte bound: body, headers, fingerprint and 64 of bookkeeping. */
export function storedSize(v: StoredResponse): number {
  let n = 64 + v.fingerprint.length;
  for (const [k, val] of v.headers) n += k.length + val.length + 16;
  for (const c of v.chunks) n += c.byteLength + 16;
  return n;
}

const encoder = new TextEncoder();
/** fatal: bytes that are not UTF-8 are kept as bytes (Entry.data an ArrayBuffer) rather than altered */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** separates the fingerprint, header names and values in a record (a header value cannot contain NUL) */
const SEP = "\0";
const WIDE = /[^\0-\xff]/;

/**
 * One stored response as a single string: the fingerprint and the headers (NUL-separated), then the body. A
 * long-lived entry is then three heap cells (the entry, its key, this string) instead of a dozen small objects
 * (arrays per header, strings, one buffer per stream chunk): fewer objects for every garbage collection to walk,
 * and fewer half-empty heap blocks kept alive by one old object each. A string rather than an ArrayBuffer: every
 * ArrayBuffer is also tracked outside the heap, and 10,000 of them held by the cache made Deno's full collections
 * long (docs/benchmarks.md, "Every feature on": p99.9 at 1,000 req/s 18-24 ms with ArrayBuffers, 5 ms with
 * strings). The bodies the router stores are UTF-8 text (JSON, SSE); a body that is not is kept as bytes.
 */
function encodeRecord(v: StoredResponse): { data: string | ArrayBuffer; metaLen: number } {
  let meta = v.fingerprint;
  for (const [k, val] of v.headers) meta += SEP + k + SEP + val;
  const m = encoder.encode(meta);
  let bodyLen = 0;
  for (const c of v.chunks) bodyLen += c.byteLength;
  const data = new ArrayBuffer(m.byteLength + bodyLen);
  const u8 = new Uint8Array(data);
  u8.set(m, 0);
  let off = m.byteLength;
  for (const c of v.chunks) {
    u8.set(c, off);
    off += c.byteLength;
  }
  try {
    return { data: utf8.decode(u8), metaLen: meta.length }; // metaLen in UTF-16 units of the string
  } catch {
    return { data, metaLen: m.byteLength }; // in bytes
  }
}

function decodeRecord(e: Entry): StoredResponse {
  const text = typeof e.data === "string";
  const meta = text ? (e.data as string).slice(0, e.metaLen) : new TextDecoder().decode(new Uint8Array(e.data as ArrayBuffer, 0, e.metaLen));
  const body = text ? encoder.encode((e.data as string).slice(e.metaLen)) : new Uint8Array(e.data as ArrayBuffer, e.metaLen);
  const parts = meta.split(SEP);
  const headers: [string, string][] = [];
  for (let i = 1; i + 1 < parts.length; i += 2) headers.push([parts[i], parts[i + 1]]);
  return { fingerprint: parts[0], status: e.status, headers, stream: e.stream, chunks: [body] };
}

interface Entry {
  key: string;
  /** fingerprint and headers (the first metaLen characters, or bytes for an ArrayBuffer), then the body */
  data: string | ArrayBuffer;
  metaLen: number;
  status: number;
  stream: boolean;
  expires: number;
  size: number;
  /** neighbours in least-recently-used order (prev: older, next: newer) */
  prev: Entry | null;
  next: Entry | null;
}

interface Lock {
  fingerprint: string;
  /** created when a second request with the key asks (most keys never see one) */
  released?: Promise<void>;
  resolve?: () => void;
}

export interface MemoryStoreOptions {
  /** entries kept at most (read on every put, so a config reload applies) */
  maxEntries: () => number;
  /** total bytes kept at most (storedSize of every entry; read on every put); an entry larger than this is not stored */
  maxBytes?: number | (() => number);
  /** clock in ms */
  now?: () => number;
}

export const DEFAULT_MAX_TOTAL_BYTES = 256 * 1024 * 1024;

/**
 * In-memory store: a Map for lookups plus a doubly linked list in least-recently-used order, with a TTL per
 * entry; every operation is O(1) and synchronous. The order is not kept in the Map's own insertion order on
 * purpose: a Map used as a queue (delete the oldest entry, append a new one) keeps the deleted slots until it
 * rehashes, and finding the first live entry then costs more with every put.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly #entries = new Map<string, Entry>();
  readonly #locks = new Map<string, Lock>();
  readonly #maxEntries: () => number;
  readonly #maxBytes: () => number;
  readonly #now: () => number;
  #bytes = 0;
  /** least recently used */
  #oldest: Entry | null = null;
  /** most recently used */
  #newest: Entry | null = null;

  constructor(opts: MemoryStoreOptions) {
    this.#maxEntries = opts.maxEntries;
    const mb = opts.maxBytes ?? DEFAULT_MAX_TOTAL_BYTES;
    this.#maxBytes = typeof mb === "number" ? () => mb : mb;
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

  get(key: string): StoredResponse | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (e.expires <= this.#now()) {
      this.#delete(e);
      return undefined;
    }
    if (e !== this.#newest) {
      this.#unlink(e);
      this.#append(e); // most recently used
    }
    return decodeRecord(e);
  }

  put(key: string, value: StoredResponse, ttlMs: number): void {
    let size = storedSize(value);
    const old = this.#entries.get(key);
    if (old) this.#delete(old);
    const maxBytes = this.#maxBytes();
    if (size > maxBytes) return;
    const now = this.#now();
    const { data, metaLen } = encodeRecord(value);
    // a string with a character beyond Latin-1 takes two bytes per character, which may be more than its UTF-8
    if (typeof data === "string" && WIDE.test(data)) size = Math.max(size, 2 * data.length + 64);
    if (size > maxBytes) return;
    const e: Entry = { key, data, metaLen, status: value.status, stream: value.stream, expires: now + ttlMs, size, prev: null, next: null };
    this.#entries.set(key, e);
    this.#append(e);
    this.#bytes += size;
    const max = Math.max(1, this.#maxEntries());
    // from the least recently used end: over a bound, or expired
    for (let o = this.#oldest; o; o = this.#oldest) {
      if (this.#entries.size > max || this.#bytes > maxBytes || o.expires <= now) this.#delete(o);
      else break;
    }
  }

  lock(key: string, fingerprint: string): LockResult {
    const held = this.#locks.get(key);
    if (held) {
      held.released ??= new Promise<void>((r) => (held.resolve = r));
      return { acquired: false, fingerprint: held.fingerprint, released: held.released };
    }
    const lock: Lock = { fingerprint };
    this.#locks.set(key, lock);
    return {
      acquired: true,
      release: () => {
        if (this.#locks.get(key) === lock) this.#locks.delete(key);
        lock.resolve?.();
      },
    };
  }
}
