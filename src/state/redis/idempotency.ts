// Idempotency records and in-flight locks on Redis, so a retry that lands on another replica is replayed and a
// duplicate waits for the replica serving the first. Records are kept within idempotency.max_entries and
// max_total_bytes for the whole fleet, least recently used out first (a sorted set orders them). A waiter learns
// that a lock went by polling it (a duplicate in flight is rare; a shared poll per key). A request with a fresh key
// makes two round trips: begin (a stored record, or else the lock, in one script) and putAndRelease, which the
// answer does not wait for (the lock, held until it lands, makes a retry wait for the record).
//
// While Redis is down the replica's own memory store answers (src/state/memory/idempotency.ts); a record a
// replica stored there during an outage is still found by that replica afterwards.
import { MemoryIdempotencyStore } from "../memory/idempotency.ts";
import { storedSize } from "../memory/idempotency.ts";
import { detach, type BeginResult, type IdempotencyStore, type LockResult, type MaybePromise, type StoredResponse } from "../types.ts";
import { RELEASE, releaseLua } from "./breakers.ts";
import { FAILED, Script, type RedisLink } from "./link.ts";

/** How often a waiter asks whether the lock it waits on is gone. */
const WAIT_POLL_MS = 50;
/** Locks this replica may hold in Redis but could not release, kept to release when Redis is back; at most this many (each lapses with its TTL anyway). */
const MAX_UNRELEASED = 10_000;
/** A lock asked for without a TTL (the middleware always gives one) lasts this long at most. */
const DEFAULT_LOCK_MS = 3_600_000;

/**
 * KEYS: record, lru (sorted set: member -> use order), sizes (hash), bytes (counter), seq (counter); ARGV[1] the
 * member (the idempotency key), ARGV[2] now. A record is "<expires>\n<payload>": `rec` is the live record (false when
 * none), and a hit moves to the most recently used end.
 */
const FIND = `
local rec = redis.call('GET', KEYS[1])
if rec then
  local nl = string.find(rec, '\\n', 1, true)
  if tonumber(string.sub(rec, 1, nl - 1)) <= tonumber(ARGV[2]) then
    redis.call('DEL', KEYS[1])
    local s = redis.call('HGET', KEYS[3], ARGV[1])
    if s then redis.call('DECRBY', KEYS[4], s) end
    redis.call('HDEL', KEYS[3], ARGV[1])
    redis.call('ZREM', KEYS[2], ARGV[1])
    rec = false
  else
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), ARGV[1])
  end
end
`;

const GET = new Script(FIND + "return rec");

/**
 * KEYS: record, lru, sizes, bytes, seq; ARGV: member, value, size, ttl ms, max entries, max bytes, record key
 * prefix. Replaces the member's record, then drops the least recently used (and those Redis already expired)
 * while over a bound.
 */
const STORE = `
local m, size = ARGV[1], tonumber(ARGV[3])
local old = redis.call('HGET', KEYS[3], m)
if old then
  redis.call('DECRBY', KEYS[4], old)
  redis.call('HDEL', KEYS[3], m)
  redis.call('ZREM', KEYS[2], m)
  redis.call('DEL', KEYS[1])
end
if size > tonumber(ARGV[6]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), m)
redis.call('HSET', KEYS[3], m, size)
local bytes = redis.call('INCRBY', KEYS[4], size)
local maxEntries, maxBytes = tonumber(ARGV[5]), tonumber(ARGV[6])
while true do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not oldest or oldest == m then break end
  local rec = ARGV[7] .. oldest
  if redis.call('ZCARD', KEYS[2]) <= maxEntries and bytes <= maxBytes and redis.call('EXISTS', rec) == 1 then break end
  local s = tonumber(redis.call('HGET', KEYS[3], oldest) or '0')
  bytes = redis.call('DECRBY', KEYS[4], s)
  redis.call('HDEL', KEYS[3], oldest)
  redis.call('ZREM', KEYS[2], oldest)
  redis.call('DEL', rec)
end
return 1
`;

const PUT = new Script(STORE);

/** PUT's keys and arguments, then KEYS[6] the lock and ARGV[8] its holder's token: the lock is released first. */
const PUT_AND_RELEASE = new Script(releaseLua("KEYS[6]", "ARGV[8]") + STORE);

/**
 * Lua: takes the lock at `lk` for fingerprint `fp` and `token` for `ttl` ms from `now`, answering {1}, or answers
 * {0, holder's fingerprint} while another holds it. The lock is "<expires>|<fingerprint>|<token>".
 */
const TAKE_LOCK = `
local v = redis.call('GET', lk)
if v then
  local expires, fingerprint = string.match(v, '^([^|]*)|(.*)|[^|]*$')
  if tonumber(expires) > now then return {0, fingerprint} end
end
redis.call('SET', lk, (now + tonumber(ttl)) .. '|' .. fp .. '|' .. token, 'PX', ttl)
return {1}
`;

/** KEYS[1] the lock; ARGV: fingerprint, token, now, ttl ms. */
const LOCK = new Script(`local lk, fp, token, now, ttl = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]` + TAKE_LOCK);

/** GET's keys and arguments, then KEYS[6] the lock, ARGV: fingerprint, token, ttl ms. A hit answers {2, record}. */
const BEGIN = new Script(
  FIND + `if rec then return {2, rec} end
local lk, fp, token, now, ttl = KEYS[6], ARGV[3], ARGV[4], tonumber(ARGV[2]), ARGV[5]` + TAKE_LOCK,
);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface RedisIdempotencyOptions {
  maxEntries: () => number;
  maxBytes: () => number;
  now: () => number;
}

export class RedisIdempotencyStore implements IdempotencyStore {
  readonly local: MemoryIdempotencyStore;
  /** key -> the shared wait of this replica's requests on another holder's lock */
  readonly #waits = new Map<string, Promise<void>>();
  /**
   * token -> lock key: a lock whose taking timed out (a frozen Redis may still run it when it wakes) or whose release
   * failed. Left there, it would make a retry on another replica wait out the lock's TTL (minutes), for a holder
   * that is long done; released (token-checked) as soon as Redis answers again.
   */
  readonly #unreleased = new Map<string, string>();
  readonly #k: { lru: string; sizes: string; bytes: string; seq: string; record: string; lock: string };

  constructor(readonly link: RedisLink, prefix: string, readonly opts: RedisIdempotencyOptions) {
    this.local = new MemoryIdempotencyStore(opts);
    const p = `${prefix}idem:`;
    this.#k = { lru: `${p}lru`, sizes: `${p}sizes`, bytes: `${p}bytes`, seq: `${p}seq`, record: `${p}r:`, lock: `${p}l:` };
    link.onUp(() => {
      const locks = [...this.#unreleased];
      this.#unreleased.clear();
      for (const [token, lockKey] of locks) void this.#release(lockKey, token);
    });
  }

  /** Releases `token`'s lock; one that cannot be released now is released when Redis is back. */
  #release(lockKey: string, token: string): Promise<void> {
    return this.link.eval(RELEASE, [lockKey], [token]).then((r) => {
      if (r === FAILED) this.#unreleasedLock(lockKey, token);
    });
  }

  #unreleasedLock(lockKey: string, token: string): void {
    if (this.#unreleased.size >= MAX_UNRELEASED) this.#unreleased.delete(this.#unreleased.keys().next().value!);
    this.#unreleased.set(token, lockKey);
  }

  #keys(key: string): string[] {
    const k = this.#k;
    return [k.record + key, k.lru, k.sizes, k.bytes, k.seq];
  }

  get(key: string): MaybePromise<StoredResponse | undefined> {
    if (!this.link.up) return this.local.get(key);
    return this.link.eval<Uint8Array | null>(GET, this.#keys(key), [key, String(this.opts.now())]).then((r) => {
      if (r instanceof Uint8Array) return decode(r);
      return this.local.get(key);
    });
  }

  put(key: string, value: StoredResponse, ttlMs: number): MaybePromise<void> {
    if (!this.link.up) return this.local.put(key, value, ttlMs);
    return this.link.eval(PUT, this.#keys(key), this.#putArgs(key, value, ttlMs)).then((r) => {
      if (r === FAILED) this.local.put(key, value, ttlMs);
    });
  }

  #putArgs(key: string, value: StoredResponse, ttlMs: number): (string | Uint8Array)[] {
    const ttl = Math.max(1, Math.ceil(ttlMs));
    return [key, encode(value, this.opts.now() + ttlMs), String(storedSize(value)), String(ttl), String(Math.max(1, this.opts.maxEntries())), String(this.opts.maxBytes()), this.#k.record];
  }

  lock(key: string, fingerprint: string, ttlMs = DEFAULT_LOCK_MS): MaybePromise<LockResult> {
    if (!this.link.up) return this.local.lock(key, fingerprint, ttlMs);
    const lockKey = this.#k.lock + key;
    const token = crypto.randomUUID();
    return this.link.eval<[number, Uint8Array?]>(LOCK, [lockKey], [fingerprint, token, String(this.opts.now()), lockTtl(ttlMs)]).then((r): LockResult => {
      if (r === FAILED) this.#unreleasedLock(lockKey, token);
      if (r === FAILED || !Array.isArray(r)) return this.local.lock(key, fingerprint, ttlMs);
      return this.#lockResult(r, key, lockKey, token);
    });
  }

  begin(key: string, fingerprint: string, ttlMs = DEFAULT_LOCK_MS): MaybePromise<BeginResult> {
    if (!this.link.up) return this.local.begin(key, fingerprint, ttlMs);
    const lockKey = this.#k.lock + key;
    const token = crypto.randomUUID();
    const args = [key, String(this.opts.now()), fingerprint, token, lockTtl(ttlMs)];
    return this.link.eval<[number, Uint8Array?]>(BEGIN, [...this.#keys(key), lockKey], args).then((r): BeginResult => {
      if (r === FAILED) this.#unreleasedLock(lockKey, token);
      if (r === FAILED || !Array.isArray(r)) return this.local.begin(key, fingerprint, ttlMs);
      if (r[0] === 2) return { stored: decode(r[1]!) };
      const lock = this.#lockResult(r, key, lockKey, token);
      // a record this replica kept while Redis was down, as get() finds it
      const stored = this.local.get(key);
      if (!stored) return lock;
      if (lock.acquired) detach(lock.release);
      return { stored };
    });
  }

  /** The answer of LOCK or BEGIN's lock part as a LockResult. */
  #lockResult(r: [number, Uint8Array?], key: string, lockKey: string, token: string): LockResult {
    if (r[0] !== 1) return { acquired: false, fingerprint: decoder.decode(r[1]), released: this.#waitFor(key, lockKey) };
    return {
      acquired: true,
      release: () => this.#release(lockKey, token),
      putAndRelease: (value, ttlMs) => {
        if (!this.link.up) {
          this.#unreleasedLock(lockKey, token);
          return this.local.put(key, value, ttlMs);
        }
        return this.link.eval(PUT_AND_RELEASE, [...this.#keys(key), lockKey], [...this.#putArgs(key, value, ttlMs), token]).then((res) => {
          if (res !== FAILED) return;
          this.#unreleasedLock(lockKey, token);
          this.local.put(key, value, ttlMs);
        });
      },
    };
  }

  /** Settles once the lock on `key` is gone, lapsed or taken over, or Redis cannot tell (the caller asks again). */
  #waitFor(key: string, lockKey: string): Promise<void> {
    let w = this.#waits.get(key);
    if (w) return w;
    w = new Promise<void>((resolve) => {
      let first: string | undefined;
      const check = async () => {
        const v = await this.link.call<Uint8Array | null>(["GET", lockKey]);
        const held = v instanceof Uint8Array ? decoder.decode(v) : null;
        first ??= held ?? "";
        const expired = held !== null && Number(held.slice(0, held.indexOf("|"))) <= this.opts.now();
        if (v === FAILED || held === null || held !== first || expired) {
          this.#waits.delete(key);
          resolve();
        } else setTimeout(check, WAIT_POLL_MS);
      };
      void check();
    });
    this.#waits.set(key, w);
    return w;
  }
}

/** The lock's TTL argument: whole ms, at least 1, at most DEFAULT_LOCK_MS. */
function lockTtl(ttlMs: number): string {
  return String(Math.max(1, Math.ceil(Math.min(ttlMs, DEFAULT_LOCK_MS))));
}

/** "<expires>\n" then the fingerprint, status, stream flag and headers as JSON (its length in 4 bytes first), then the body. */
function encode(v: StoredResponse, expires: number): Uint8Array {
  const head = encoder.encode(`${Math.ceil(expires)}\n`);
  const meta = encoder.encode(JSON.stringify([v.fingerprint, v.status, v.stream, v.headers]));
  let len = head.byteLength + 4 + meta.byteLength;
  for (const c of v.chunks) len += c.byteLength;
  const out = new Uint8Array(len);
  out.set(head, 0);
  new DataView(out.buffer).setUint32(head.byteLength, meta.byteLength);
  out.set(meta, head.byteLength + 4);
  let at = head.byteLength + 4 + meta.byteLength;
  for (const c of v.chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

function decode(rec: Uint8Array): StoredResponse {
  const start = rec.indexOf(10) + 1;
  const metaLen = new DataView(rec.buffer, rec.byteOffset + start, 4).getUint32(0);
  const [fingerprint, status, stream, headers] = JSON.parse(decoder.decode(rec.subarray(start + 4, start + 4 + metaLen)));
  return { fingerprint, status, stream, headers, chunks: [rec.subarray(start + 4 + metaLen)] };
}
