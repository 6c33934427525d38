// The names the idempotency unit tests import: the store's interface is in src/state/types.ts, its in-memory
// backend in src/state/memory/idempotency.ts.
export type { IdempotencyStore, LockResult, StoredResponse } from "../state/types.ts";
export { MemoryIdempotencyStore } from "../state/memory/idempotency.ts";
