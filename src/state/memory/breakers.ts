// The in-memory breaker store: the openings and probe permits of the breakers of one process (src/state/types.ts
// has the interface). With a single replica there is nobody else to tell, so it delivers each publication
// straight back to the process's own breaker registry.
import type { BreakerStore, ProbePermit } from "../types.ts";

type Listener = (provider: string, until: number) => void;

export class MemoryBreakerStore implements BreakerStore {
  /** provider -> open until (ms since the epoch); one entry per provider name at most */
  readonly #open = new Map<string, number>();
  /** provider -> when its probe permit lapses */
  readonly #probes = new Map<string, { expires: number }>();
  readonly #listeners = new Set<{ listener: Listener }>();

  constructor(readonly now: () => number = Date.now) {}

  publish(provider: string, until: number): void {
    const t = this.now();
    for (const [p, u] of this.#open) if (u <= t) this.#open.delete(p);
    if (until > t) this.#open.set(provider, until);
    else this.#open.delete(provider);
    for (const s of this.#listeners) deliver(s.listener, provider, until);
  }

  subscribe(listener: Listener): () => void {
    const t = this.now();
    for (const [p, u] of this.#open) if (u > t) deliver(listener, p, u);
    const s = { listener };
    this.#listeners.add(s);
    return () => void this.#listeners.delete(s);
  }

  acquireProbe(provider: string, ttlMs: number): ProbePermit | null {
    const t = this.now();
    const held = this.#probes.get(provider);
    if (held && held.expires > t) return null;
    const mine = { expires: t + ttlMs };
    this.#probes.set(provider, mine);
    return {
      release: () => {
        if (this.#probes.get(provider) === mine) this.#probes.delete(provider);
      },
    };
  }
}

/** A listener's failure stays its own: the publisher (a breaker tripping mid-request) goes on. */
function deliver(listener: Listener, provider: string, until: number): void {
  try {
    listener(provider, until);
  } catch {
    // nothing to undo
  }
}
