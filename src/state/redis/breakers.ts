// Breaker openings and probe permits on Redis. A publication goes into a hash (the openings in force, for a
// replica that starts later) and onto a short stream (every publication, in order); each replica reads the
// stream's new entries every POLL_MS, one round trip whatever the traffic, so the request path never waits on
// Redis for its breakers. A replica hears its own publications at once, locally.
//
// While Redis is down: publications still reach this replica's own breakers, the poll resumes when Redis is
// back (from a fresh snapshot if Redis restarted empty), and a probe permit is granted locally, so each
// replica probes on its own as a lone router would.
import type { BreakerStore, ProbePermit } from "../types.ts";
import { FAILED, Script, type RedisLink } from "./link.ts";

type Listener = (provider: string, until: number) => void;

/** Openings reach the other replicas within this (the contract: within 1 s). */
const POLL_MS = 250;
/** Publications kept on the stream (about: trimmed with MAXLEN ~); a replica further behind reads a snapshot. */
const STREAM_LEN = 1000;
/** The most stream entries one poll reads. */
const POLL_COUNT = 200;

/** KEYS[1] openings hash, KEYS[2] stream; ARGV: provider, until (0: reset), origin. */
const PUBLISH = new Script(`
local now = tonumber(ARGV[4])
if tonumber(ARGV[2]) > now then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ${STREAM_LEN}, '*', 'p', ARGV[1], 'u', ARGV[2], 'o', ARGV[3])
return 1
`);

/**
 * KEYS[1] openings hash, KEYS[2] stream; ARGV[1] the last stream id read ("" for none). Answers
 * {"S", last id, provider, until, ...} (a snapshot of the openings: first poll, or the stream was reset or
 * trimmed past what this replica read) or {"E", last id, id, fields, ...} (the entries after ARGV[1]).
 */
const POLL = new Script(`
local function parse(id)
  local d = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end
local function before(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local last = ARGV[1]
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local topId = top[1] and top[1][1] or '0-0'
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if last == '' or before(topId, last) or (first[1] and before(last, first[1][1]) and last ~= '0-0') then
  local out = {'S', topId}
  local h = redis.call('HGETALL', KEYS[1])
  for i = 1, #h do out[#out + 1] = h[i] end
  return out
end
local entries = redis.call('XRANGE', KEYS[2], '(' .. last, '+', 'COUNT', ${POLL_COUNT})
local out = {'E', last}
for _, e in ipairs(entries) do
  out[2] = e[1]
  local f = e[2]
  local p, u, o
  for i = 1, #f, 2 do
    if f[i] == 'p' then p = f[i + 1] elseif f[i] == 'u' then u = f[i + 1] elseif f[i] == 'o' then o = f[i + 1] end
  end
  out[#out + 1] = p
  out[#out + 1] = u
  out[#out + 1] = o
end
return out
`);

/** KEYS[1] the permit; ARGV: token, now, ttl ms. The permit is "expiry|token". */
const ACQUIRE = new Script(`
local v = redis.call('GET', KEYS[1])
if v then
  local bar = string.find(v, '|', 1, true)
  if tonumber(string.sub(v, 1, bar - 1)) > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], (tonumber(ARGV[2]) + tonumber(ARGV[3])) .. '|' .. ARGV[1], 'PX', ARGV[3])
return 1
`);

/** Lua: deletes the permit or lock at `key`, whose value ends with "|token", only if it is still `token`'s. */
export const releaseLua = (key: string, token: string) => `
local held = redis.call('GET', ${key})
if held and string.sub(held, -(#${token} + 1)) == '|' .. ${token} then redis.call('DEL', ${key}) end
`;

/** KEYS[1] a permit or lock; ARGV[1] the token. */
export const RELEASE = new Script(releaseLua("KEYS[1]", "ARGV[1]") + "return 1");

const decoder = new TextDecoder();
const text = (b: unknown) => (b instanceof Uint8Array ? decoder.decode(b) : String(b));

export class RedisBreakerStore implements BreakerStore {
  readonly #listeners = new Set<{ listener: Listener }>();
  /** provider -> until, as last heard (openings in force for a new subscriber) */
  readonly #known = new Map<string, number>();
  /** the last stream id read; "" before the first poll */
  #last = "";
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** tells this replica's publications apart on the stream */
  readonly #origin = crypto.randomUUID();
  readonly #openings: string;
  readonly #stream: string;

  constructor(readonly link: RedisLink, readonly prefix: string, readonly now: () => number) {
    this.#openings = `${prefix}breakers:open`;
    this.#stream = `${prefix}breakers:events`;
  }

  publish(provider: string, until: number): Promise<void> {
    this.#heard(provider, until);
    return this.link.eval(PUBLISH, [this.#openings, this.#stream], [provider, String(until), this.#origin, String(this.now())]).then(() => {});
  }

  subscribe(listener: Listener): () => void {
    const t = this.now();
    for (const [p, u] of this.#known) if (u > t) deliver(listener, p, u);
    const s = { listener };
    this.#listeners.add(s);
    if (!this.#timer && !this.#closed) void this.#poll();
    return () => void this.#listeners.delete(s);
  }

  acquireProbe(provider: string, ttlMs: number): ProbePermit | Promise<ProbePermit | null> {
    const key = `${this.prefix}breakers:probe:${provider}`;
    const token = crypto.randomUUID();
    if (!this.link.up) return LOCAL_PERMIT;
    return this.link.eval<number>(ACQUIRE, [key], [token, String(this.now()), String(Math.ceil(ttlMs))]).then((r) => {
      if (r === FAILED) return LOCAL_PERMIT;
      if (r !== 1) return null;
      return { release: () => this.link.eval(RELEASE, [key], [token]).then(() => {}) };
    });
  }

  /** Stops the poll (tests; a server's store lives as long as the process). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  #heard(provider: string, until: number): void {
    if (until > this.now()) this.#known.set(provider, until);
    else this.#known.delete(provider);
    for (const s of this.#listeners) deliver(s.listener, provider, until);
  }

  async #poll(): Promise<void> {
    const r = await this.link.eval<Uint8Array[]>(POLL, [this.#openings, this.#stream], [this.#last]);
    if (this.#closed) return;
    if (r !== FAILED && Array.isArray(r)) this.#read(r.map(text));
    this.#timer = setTimeout(() => void this.#poll(), POLL_MS);
  }

  #read(r: string[]): void {
    const t = this.now();
    this.#last = r[1];
    if (r[0] === "S") {
      const open = new Map<string, number>();
      for (let i = 2; i + 1 < r.length; i += 2) if (Number(r[i + 1]) > t) open.set(r[i], Number(r[i + 1]));
      // what this replica believed open and is not any more (e.g. Redis restarted empty) stays as it is locally:
      // its breakers run out their cool-off on their own
      for (const [p, u] of open) if (this.#known.get(p) !== u) this.#heard(p, u);
      return;
    }
    for (let i = 2; i + 2 < r.length; i += 3) if (r[i + 2] !== this.#origin) this.#heard(r[i], Number(r[i + 1]));
  }
}

/** The permit of a replica that cannot reach Redis: it probes on its own. */
const LOCAL_PERMIT: ProbePermit = { release() {} };

/** A listener's failure stays its own. */
function deliver(listener: Listener, provider: string, until: number): void {
  try {
    listener(provider, until);
  } catch {
    // nothing to undo
  }
}
