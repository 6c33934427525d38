// The in-memory spend counters for budgets (src/state/types.ts has the interface).
import type { Reservation, SpendPeriod, SpendStore } from "../types.ts";

interface Counter {
  spent: number;
  /** the sum of `holds` */
  reserved: number;
  /** the period's end: the counter is dropped after it */
  endsAt: number;
  /** reservation id -> amount and when it lapses; one per request in flight */
  holds: Map<string, { amount: number; expires: number }>;
}

/**
 * Counters keyed by budget key and period. A counter goes once its period has ended; past `maxCounters` the
 * oldest counter is dropped too, so memory stays bounded whatever keys a caller uses.
 */
export class MemorySpendStore implements SpendStore {
  readonly #counters = new Map<string, Counter>();
  #seq = 0;

  constructor(readonly now: () => number = Date.now, readonly maxCounters = 100_000) {}

  get size(): number {
    return this.#counters.size;
  }

  /** The counter of `key` and `period` with lapsed reservations let go, or undefined when there is none and `create` is false. */
  #counter(key: string, period: SpendPeriod, t: number, create: boolean): Counter | undefined {
    const k = `${key}\n${period.id}`;
    let c = this.#counters.get(k);
    if (c && c.endsAt <= t) {
      this.#counters.delete(k);
      c = undefined;
    }
    if (c) {
      for (const [id, h] of c.holds) if (h.expires <= t) unhold(c, id);
      return c;
    }
    if (!create) return undefined;
    if (this.#counters.size >= this.maxCounters) {
      for (const [ok, oc] of this.#counters) if (oc.endsAt <= t) this.#counters.delete(ok);
      for (const ok of this.#counters.keys()) {
        if (this.#counters.size < this.maxCounters) break;
        this.#counters.delete(ok);
      }
    }
    c = { spent: 0, reserved: 0, endsAt: period.endsAt, holds: new Map() };
    this.#counters.set(k, c);
    return c;
  }

  reserve(key: string, period: SpendPeriod, amount: number, limit: number, ttlMs: number): Reservation {
    const t = this.now();
    const c = this.#counter(key, period, t, true)!;
    if (c.spent + c.reserved + amount > limit) return { granted: false, spent: c.spent, reserved: c.reserved };
    const id = String(++this.#seq);
    c.holds.set(id, { amount, expires: t + ttlMs });
    c.reserved += amount;
    return { granted: true, id };
  }

  settle(key: string, period: SpendPeriod, reservationId: string, cost: number): void {
    const c = this.#counter(key, period, this.now(), true)!;
    unhold(c, reservationId);
    c.spent += cost;
  }

  read(key: string, period: SpendPeriod): { spent: number; reserved: number } {
    const c = this.#counter(key, period, this.now(), false);
    return c ? { spent: c.spent, reserved: c.reserved } : { spent: 0, reserved: 0 };
  }
}

function unhold(c: Counter, id: string): void {
  const h = c.holds.get(id);
  if (!h) return;
  c.holds.delete(id);
  // recomputed when none is left, so rounding errors of the float sum do not pile up
  c.reserved = c.holds.size ? c.reserved - h.amount : 0;
}
