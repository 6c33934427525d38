// Why shared buffers and a list: 10,000 cached answers as objects would weigh on every GC (docs/decisions/0008, 0009).
// The in-memory idempotency store: LRU by max entries and total bytes, TTL per entry, and in-flight locks whose
// waiters are woken by a promise (src/state/types.ts has the interface).
import type { BeginResult, IdempotencyStore, LockResult, StoredResponse } from "../types.ts";

/** The bytes an entry is counted for against the store's byte bound: body, headers, fingerprint and 64 of bookkeeping. */
export function storedSize(v: StoredResponse): number {
  let n = 64 + v.fingerprint.length;
  for (const [k, val] of v.headers) n += k.length + val.length + 16;
  for (const c of v.chunks) n += c.byteLength + 16;
  return n;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
/** separates the fingerprint, header names and values in a record (a header value cannot contain NUL) */
const SEP = "\0";

/** Records are packed into shared buffers of this size; a record over a quarter of it gets a buffer of its own. */
const SLAB_BYTES = 256 * 1024;

/** A buffer that records are appended to, never overwritten; it is freed once no entry points into it. */
class Slab {
  used = 0;
  /** bytes of the records in it that are still in the store */
  live = 0;
  readonly buf: Uint8Array;
  constructor(size: number) {
    this.buf = new Uint8Array(size);
  }
}

interface Entry {
  key: string;
  /** the record: fingerprint and headers (UTF-8, NUL-separated; the first metaLen bytes), then the body */
  slab: Slab;
  off: number;
  len: number;
  metaLen: number;
  status: number;
  stream: boolean;
  expires: number;
  size: number;
  /** neighbours in least-recently-used order (prev: older, next: newer) */
  prev: Entry | null;
  next: Entry | null;
}

function decodeRecord(e: Entry): StoredResponse {
  const rec = e.slab.buf.subarray(e.off, e.off + e.len);
  const parts = decoder.decode(rec.subarray(0, e.metaLen)).split(SEP);
  const headers: [string, string][] = [];
  for (let i = 1; i + 1 < parts.length; i += 2) headers.push([parts[i], parts[i + 1]]);
  // a view of the slab: its bytes are never written again (the caller copies what it sends)
  return { fingerprint: parts[0], status: e.status, headers, stream: e.stream, chunks: [rec.subarray(e.metaLen)] };
}

interface Lock {
  fingerprint: string;
  /** the lock lapses at this time (a holder that never released) */
  expires: number;
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
 *
 * Each record (fingerprint, headers and body; a stream's transcript in one piece) is copied into a shared
 * 256 KiB buffer, so a long-lived entry is two small heap objects (the entry, its key) and the 10,000 records
 * of a full cache are some 200 buffers, not 10,000: every ArrayBuffer is work for each garbage collection, and
 * a string per record grows the JavaScript heap instead (docs/decisions/0008-idempotency-shared-buffers.md).
 * A buffer is freed when its last record goes; records left alone in half-empty buffers are moved (#compact),
 * so the buffers held stay within about twice the live bytes plus 512 KiB.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly #entries = new Map<string, Entry>();
  /** the slab being filled */
  #slab: Slab | null = null;
  /** bytes of the slabs that hold live records, and of the one being filled */
  #held = 0;
  /** bytes of the live records */
  #live = 0;
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
    this.#release(e);
  }

  /** Room for `len` bytes: in the slab being filled, or in a new one. */
  #alloc(len: number): { slab: Slab; off: number } {
    if (len > SLAB_BYTES / 4) return { slab: this.#newSlab(len), off: 0 };
    let slab = this.#slab;
    if (!slab || slab.used + len > slab.buf.length) {
      if (slab && slab.live === 0) this.#held -= slab.buf.length; // no record left in it: it goes
      slab = this.#slab = this.#newSlab(SLAB_BYTES);
    }
    const off = slab.used;
    slab.used += len;
    return { slab, off };
  }

  #newSlab(size: number): Slab {
    this.#held += size;
    return new Slab(size);
  }

  /** Writes the record of `v` into a slab. */
  #write(v: StoredResponse): { slab: Slab; off: number; len: number; metaLen: number } {
    let meta = v.fingerprint;
    for (const [k, val] of v.headers) meta += SEP + k + SEP + val;
    const m = encoder.encode(meta);
    let len = m.byteLength;
    for (const c of v.chunks) len += c.byteLength;
    const { slab, off } = this.#alloc(len);
    slab.buf.set(m, off);
    let at = off + m.byteLength;
    for (const c of v.chunks) {
      slab.buf.set(c, at);
      at += c.byteLength;
    }
    this.#place(slab, len);
    return { slab, off, len, metaLen: m.byteLength };
  }

  #place(slab: Slab, len: number): void {
    slab.live += len;
    this.#live += len;
  }

  /** The record of `e` leaves its slab; a slab with no live record left is freed (unless it is being filled). */
  #release(e: Entry): void {
    const slab = e.slab;
    slab.live -= e.len;
    this.#live -= e.len;
    if (slab.live === 0 && slab !== this.#slab) this.#held -= slab.buf.length;
  }

  /**
   * Over twice the live bytes held in slabs (records evicted from slabs that other records still pin): the
   * records of half-empty slabs are copied, oldest first, into the slab being filled, so the old slabs go.
   */
  #compact(): void {
    if (this.#held <= 2 * this.#live + 2 * SLAB_BYTES) return;
    for (let e = this.#oldest; e; e = e.next) {
      const old = e.slab;
      if (old === this.#slab || old.live * 2 > old.buf.length || e.len > SLAB_BYTES / 4) continue;
      const { slab, off } = this.#alloc(e.len);
      slab.buf.set(old.buf.subarray(e.off, e.off + e.len), off);
      this.#release(e);
      e.slab = slab;
      e.off = off;
      this.#place(slab, e.len);
    }
  }

  /** Bytes of the buffers that hold the records (for tests and docs: at most about twice the live bytes). */
  get heldBytes(): number {
    return this.#held;
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
    const size = storedSize(value);
    const old = this.#entries.get(key);
    if (old) this.#delete(old);
    const maxBytes = this.#maxBytes();
    if (size > maxBytes) return;
    const now = this.#now();
    const { slab, off, len, metaLen } = this.#write(value);
    const e: Entry = { key, slab, off, len, metaLen, status: value.status, stream: value.stream, expires: now + ttlMs, size, prev: null, next: null };
    this.#entries.set(key, e);
    this.#append(e);
    this.#bytes += size;
    const max = Math.max(1, this.#maxEntries());
    // from the least recently used end: over a bound, or expired
    for (let o = this.#oldest; o; o = this.#oldest) {
      if (this.#entries.size > max || this.#bytes > maxBytes || o.expires <= now) this.#delete(o);
      else break;
    }
    this.#compact();
  }

  /** Every in-process holder releases (the middleware does on every path), so `ttlMs` matters only for a stuck one. */
  lock(key: string, fingerprint: string, ttlMs = Infinity): LockResult {
    const now = this.#now();
    const held = this.#locks.get(key);
    if (held && held.expires > now) {
      held.released ??= new Promise<void>((r) => (held.resolve = r));
      return { acquired: false, fingerprint: held.fingerprint, released: held.released };
    }
    held?.resolve?.(); // a lapsed holder: whoever waits on it tries again
    const lock: Lock = { fingerprint, expires: now + ttlMs };
    this.#locks.set(key, lock);
    const release = () => {
      if (this.#locks.get(key) === lock) this.#locks.delete(key);
      lock.resolve?.();
    };
    return {
      acquired: true,
      release,
      putAndRelease: (value, ttlMs) => {
        try {
          this.put(key, value, ttlMs);
        } finally {
          release();
        }
      },
    };
  }

  begin(key: string, fingerprint: string, ttlMs = Infinity): BeginResult {
    const stored = this.get(key);
    return stored ? { stored } : this.lock(key, fingerprint, ttlMs);
  }
}
