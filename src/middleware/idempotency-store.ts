// The idempotency store's interface now lives in src/state/types.ts and its in-memory backend in
// src/state/memory/idempotency.ts; this module keeps the names the idempotency unit tests import.
export type { IdempotencyStore, LockResult, StoredResponse } from "../state/types.ts";
export { MemoryIdempotencyStore } from "../state/memory/idempotency.ts";
