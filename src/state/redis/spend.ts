// Budget spend counters on Redis: one hash per budget key and period, reserved and settled by one Lua script
// each, so replicas never pass a limit together. While Redis is down the replica's own counters answer (what
// budgets should do then, `budgets.on_backend_failure`, belongs to the budgets feature, which does not exist yet).
import { MemorySpendStore } from "../memory/spend.ts";
import type { MaybePromise, Reservation, SpendPeriod, SpendStore } from "../types.ts";
import { FAILED, Script, type RedisLink } from "./link.ts";

/**
 * KEYS[1] the counter (hash e: period end, s: spent, n: reservation ids, h:<id>: "amount|expires"); ARGV: now, op
 * ("read", "reserve", "settle"), then reserve: amount, limit, ttl ms, period end; settle: id, cost, period end.
 */
const SPEND = new Script(`
local now, op = tonumber(ARGV[1]), ARGV[2]
local e = redis.call('HGET', KEYS[1], 'e')
if e and tonumber(e) <= now then redis.call('DEL', KEYS[1]) end
local h = redis.call('HGETALL', KEYS[1])
local spent, reserved = 0, 0
for i = 1, #h, 2 do
  local f = h[i]
  if f == 's' then spent = tonumber(h[i + 1])
  elseif string.sub(f, 1, 2) == 'h:' then
    local amount, expires = string.match(h[i + 1], '^([^|]*)|(.*)$')
    if tonumber(expires) <= now then redis.call('HDEL', KEYS[1], f) else reserved = reserved + tonumber(amount) end
  end
end
local function fmt(x) return string.format('%.17g', x) end
local function keep(endsAt)
  redis.call('HSET', KEYS[1], 'e', endsAt)
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(tonumber(endsAt) - now)) + 60000)
end
if op == 'read' then return {fmt(spent), fmt(reserved)} end
if op == 'reserve' then
  local amount = tonumber(ARGV[3])
  if spent + reserved + amount > tonumber(ARGV[4]) then return {'', fmt(spent), fmt(reserved)} end
  local id = redis.call('HINCRBY', KEYS[1], 'n', 1)
  redis.call('HSET', KEYS[1], 'h:' .. id, ARGV[3] .. '|' .. fmt(now + tonumber(ARGV[5])))
  keep(ARGV[6])
  return {tostring(id)}
end
redis.call('HDEL', KEYS[1], 'h:' .. ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[1], 's', ARGV[4])
keep(ARGV[5])
return {}
`);

const decoder = new TextDecoder();
const num = (b: Uint8Array) => Number(decoder.decode(b));

export class RedisSpendStore implements SpendStore {
  readonly local: MemorySpendStore;

  constructor(readonly link: RedisLink, readonly prefix: string, readonly now: () => number) {
    this.local = new MemorySpendStore(now);
  }

  #key(key: string, period: SpendPeriod): string {
    return `${this.prefix}spend:${key}\n${period.id}`;
  }

  #run(key: string, period: SpendPeriod, args: string[]) {
    return this.link.eval<Uint8Array[]>(SPEND, [this.#key(key, period)], [String(this.now()), ...args]);
  }

  reserve(key: string, period: SpendPeriod, amount: number, limit: number, ttlMs: number): MaybePromise<Reservation> {
    if (!this.link.up) return this.local.reserve(key, period, amount, limit, ttlMs);
    return this.#run(key, period, ["reserve", String(amount), String(limit), String(ttlMs), String(period.endsAt)]).then((r): Reservation => {
      if (r === FAILED) return this.local.reserve(key, period, amount, limit, ttlMs);
      const id = decoder.decode(r[0]);
      return id ? { granted: true, id } : { granted: false, spent: num(r[1]), reserved: num(r[2]) };
    });
  }

  settle(key: string, period: SpendPeriod, reservationId: string, cost: number): MaybePromise<void> {
    if (!this.link.up) return this.local.settle(key, period, reservationId, cost);
    return this.#run(key, period, ["settle", reservationId, String(cost), String(period.endsAt)]).then((r) => {
      if (r === FAILED) this.local.settle(key, period, reservationId, cost);
    });
  }

  read(key: string, period: SpendPeriod): MaybePromise<{ spent: number; reserved: number }> {
    if (!this.link.up) return this.local.read(key, period);
    return this.#run(key, period, ["read"]).then((r) => (r === FAILED ? this.local.read(key, period) : { spent: num(r[0]), reserved: num(r[1]) }));
  }
}
