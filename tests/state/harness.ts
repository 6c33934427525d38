// What the state contract tests (tests/state/*.ts) need from a backend. A backend under test is opened once per
// test with the test's clock, and gives handles onto its shared state as separate replicas would open them (the
// in-memory backend: the same object each time; a networked one: a new connection).
export interface Backend<S> {
  /** a handle onto the shared state, as another replica would hold it */
  replica(): S;
  /** ends the test's use of the backend (connections, keys) */
  close?(): unknown;
}

/** Opens a fresh, empty backend whose TTLs and periods follow `now` (ms). */
export type MakeBackend<S, O = undefined> = (now: () => number, options: O) => Backend<S> | Promise<Backend<S>>;

/** The test's clock: moves only with advance(). Starts at a fixed wall-clock time, since breaker openings and spend periods are epoch ms. */
export class TestClock {
  t = Date.UTC(2030, 0, 1);
  readonly now = () => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

/** Waits for `check` to hold, polling for up to `ms` of real time (deliveries a backend makes asynchronously). */
export async function eventually(check: () => boolean, ms = 1000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

/** Whether `p` settles within `ms` of real time. */
export function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    p.then(
      () => (clearTimeout(timer), resolve(true)),
      () => (clearTimeout(timer), resolve(true)),
    );
  });
}

/**
 * The store with every method answering through a promise that settles 1 ms later, and subscriptions delivered
 * later too, as a networked backend would answer: callers (and the contracts) must not rely on synchronous answers.
 */
export function answeringLater<S extends object>(store: S): S {
  return new Proxy(store, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (typeof v !== "function") return v;
      if (prop === "subscribe") {
        return (listener: (...a: unknown[]) => void) => v.call(target, (...a: unknown[]) => setTimeout(() => listener(...a), 1));
      }
      return (...args: unknown[]) => {
        const r = v.apply(target, args);
        return new Promise((resolve) => setTimeout(() => resolve(r), 1));
      };
    },
  });
}
