// Idempotency: a request with an `Idempotency-Key` header is served once; its final response (status,
// headers, body, or for a stream the whole SSE transcript) is stored, and a repeat with the same key and
// the same body is answered from the store (header `idempotent-replayed: true`) without calling a provider.
// Keys are scoped per API key. The store sits behind the IdempotencyStore interface (src/state/types.ts).
import type { Context, MiddlewareHandler, Next } from "hono";
import type { Config } from "../config/schema.ts";
import { CLIENT_CLOSED, errorResponse } from "../errors.ts";
import { concatBytes, encoder } from "../bytes.ts";
import type { AppEnv, ResponseTap } from "../http/context.ts";
import { DONE } from "../http/render.ts";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { detach, isPromise, type IdempotencyStore, type LockResult, type MaybePromise, type StoredResponse } from "../state/types.ts";

export const REPLAYED_HEADER = "idempotent-replayed";

/** 1 to 255 printable ASCII characters (what Stripe and the IETF draft allow in practice). */
export function validIdempotencyKey(k: string): boolean {
  if (k.length < 1 || k.length > 255) return false;
  for (let i = 0; i < k.length; i++) {
    const ch = k.charCodeAt(i);
    if (ch < 0x20 || ch > 0x7e) return false;
  }
  return true;
}

/** Statuses worth replaying: the request's own final answer, not a transient failure a retry could fix. */
function storable(status: number): boolean {
  return status < 500 && status !== 408 && status !== 425 && status !== 429 && status !== 499;
}

/** Headers that belong to one delivery, not to the stored answer. */
function keepHeader(name: string): boolean {
  return name !== "x-request-id" && name !== "set-cookie" && name !== "retry-after" && name !== REPLAYED_HEADER && !name.startsWith("x-ratelimit-");
}

function endsWithDone(chunks: Uint8Array[]): boolean {
  let need = DONE.length;
  for (let c = chunks.length - 1; c >= 0 && need > 0; c--) {
    const ch = chunks[c];
    for (let i = ch.length - 1; i >= 0 && need > 0; i--) if (ch[i] !== DONE[--need]) return false;
  }
  return need === 0;
}

function replay(hit: StoredResponse): Response {
  const headers = new Headers(hit.headers);
  headers.set(REPLAYED_HEADER, "true");
  if (!hit.stream) {
    return new Response((hit.chunks.length === 1 ? hit.chunks[0].slice() : concatBytes(hit.chunks)) as Uint8Array<ArrayBuffer>, { status: hit.status, headers });
  }
  let i = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < hit.chunks.length) controller.enqueue(hit.chunks[i++].slice());
      else controller.close();
    },
  }, { highWaterMark: 0 });
  return new Response(body, { status: hit.status, headers });
}

const reused = () =>
  errorResponse(422, {
    message: "this Idempotency-Key was already used with a different request; use a new key for a new request",
    type: "invalid_request_error",
    param: "Idempotency-Key",
    code: "idempotency_key_reused",
  });

/** What a lock outlives its request by: the holder's store and release round trips. */
const LOCK_GRACE_SECONDS = 5;

/**
 * How long an in-flight lock lives: as long as the request it guards can run (routing.request_timeout_seconds, and
 * for a stream its stream_max_duration_seconds too) plus a few seconds. A holder that never releases (a replica that
 * died) blocks its key no longer than that, and that bounds a duplicate's wait.
 */
export function lockTtlMs(config: Config, stream: boolean): number {
  const r = config.routing;
  return (r.request_timeout_seconds + (stream ? r.stream_max_duration_seconds : 0) + LOCK_GRACE_SECONDS) * 1000;
}

/** setTimeout's largest delay (a longer one fires at once) */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Resolves true once `released` settles or `maxMs` passes (the holder's lock has lapsed by then: the caller tries
 * again), false if the client goes away first.
 */
function waitFor(released: Promise<void>, signal: AbortSignal, maxMs: number): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (v: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve(v);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), Math.min(maxMs, MAX_TIMER_MS));
    signal.addEventListener("abort", onAbort, { once: true });
    released.then(() => done(true), () => done(true));
  });
}

/**
 * The transcript of an answer: the chunks the client is sent (up to `max` bytes; over it the transcript is dropped,
 * not stored) and whether the answer completed. The renderer of the router's outcome feeds it as it
 * answers (ResponseTap: a JSON body at once, a stream chunk by chunk); an answer nobody feeds (an error) is read
 * back from the Response instead. The chunks are kept as they are, not copied: each is a fresh array that nothing
 * writes to afterwards, and the store copies them into its own buffers.
 */
class Transcript implements ResponseTap {
  attached = false;
  #chunks: Uint8Array[] | null = [];
  #size = 0;
  /** null while the stream runs */
  #ok: boolean | null = null;
  #then: ((chunks: Uint8Array[] | null) => void) | null = null;

  constructor(readonly max: number) {}

  body(text: string): void {
    this.attached = true;
    this.chunk(encoder.encode(text));
    this.end(true);
  }

  chunk(bytes: Uint8Array): void {
    const chunks = this.#chunks;
    if (!chunks || this.#ok !== null) return;
    this.#size += bytes.byteLength;
    if (this.#size > this.max) this.#chunks = null;
    else chunks.push(bytes);
  }

  end(ok: boolean): void {
    if (this.#ok !== null) return;
    this.#ok = ok;
    this.#fire();
  }

  /** `then` gets the chunks of a completed stream, or null; at once if it has already ended (a stream can end before its Response is returned) */
  whenEnded(then: (chunks: Uint8Array[] | null) => void): void {
    this.#then = then;
    this.#fire();
  }

  #fire(): void {
    const then = this.#then;
    if (this.#ok === null || !then) return;
    this.#then = null;
    const chunks = this.#ok ? this.#chunks : null;
    this.#chunks = null;
    then(chunks);
  }
}

async function serveAndStore(
  c: Context<AppEnv>,
  next: Next,
  fingerprint: string,
  cfg: Config["idempotency"],
  lock: Extract<LockResult, { acquired: true }>,
): Promise<void> {
  const release = () => detach(lock.release);
  // offered to the renderer through the context (src/http/render.ts), which feeds it what it sends the client
  const transcript = new Transcript(cfg.max_response_bytes);
  c.set("responseTap", transcript);
  try {
    await next();
  } catch (e) {
    release();
    throw e;
  }
  const res = c.res;
  if (!storable(res.status) || !res.body) {
    release();
    return;
  }
  const headers: [string, string][] = [];
  res.headers.forEach((v, k) => {
    if (keepHeader(k)) headers.push([k, v]);
  });
  const ttlMs = cfg.ttl_seconds * 1000;
  /** stores the response and releases the lock (on failure, releases it) */
  const put = (stream: boolean, chunks: Uint8Array[]): void => {
    let p: MaybePromise<void>;
    try {
      p = lock.putAndRelease({ fingerprint, status: res.status, headers, stream, chunks }, ttlMs);
    } catch {
      release();
      return;
    }
    if (isPromise(p)) p.catch(release);
  };

  const stream = (res.headers.get("content-type") ?? "").startsWith("text/event-stream");
  if (transcript.attached) {
    // a stream is stored only when it completed with [DONE], a broken or abandoned one is not. The answer does
    // not wait for a networked store's write: the lock is held until putAndRelease lands, so a retry that
    // arrives meanwhile (on any replica) waits for the record and replays it.
    transcript.whenEnded((chunks) => {
      if (chunks && (!stream || endsWithDone(chunks))) put(stream, chunks);
      else release();
    });
    return;
  }
  if (stream) {
    // every stream the routes behind this middleware answer with feeds the transcript; one that did not is not stored
    release();
    return;
  }
  let buf: Uint8Array;
  try {
    buf = new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    release();
    throw e;
  }
  if (buf.byteLength <= cfg.max_response_bytes) put(false, [buf]);
  else release();
  // the same bytes: the store copies what it keeps (or, per the interface, keeps them unmodified)
  c.res = new Response(buf as Uint8Array<ArrayBuffer>, res);
}

/**
 * The idempotency middleware, for POST routes after validJson (so only valid requests are stored). Reads the
 * request's config snapshot: a reload that lands while the body arrives does not change the request's settings.
 */
export function idempotency(store: IdempotencyStore): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const all = c.get("router").config;
    const cfg = all.idempotency;
    if (!cfg.enabled) return next();
    const idemKey = c.req.raw.headers.get("idempotency-key");
    if (idemKey === null) return next();
    if (!validIdempotencyKey(idemKey)) {
      return errorResponse(400, {
        message: "Idempotency-Key must be 1 to 255 printable ASCII characters",
        type: "invalid_request_error",
        param: "Idempotency-Key",
        code: "invalid_idempotency_key",
      });
    }
    const fingerprint = `${c.req.path} ${bytesToHex(sha256(c.get("rawBody") ?? new Uint8Array(0)))}`;
    // scoped per API key: one client can never read another's stored response
    const key = `${c.get("keyId") ?? "-"}\n${idemKey}`;
    const body = c.req.valid("json" as never) as { stream?: unknown } | undefined;
    const lockMs = lockTtlMs(all, body?.stream === true);
    while (true) {
      // the in-memory store answers synchronously: no await (and no trip through the microtask queue) then
      // one call: the stored response, or else the key's lock
      let found = store.begin(key, fingerprint, lockMs);
      if (isPromise(found)) found = await found;
      if (found.stored) return found.stored.fingerprint === fingerprint ? replay(found.stored) : reused();
      if (found.acquired) return serveAndStore(c, next, fingerprint, cfg, found);
      if (found.fingerprint !== fingerprint) return reused();
      // the same request is in flight: wait for it, then replay what it stored (or, if it failed, run)
      if (!(await waitFor(found.released, c.req.raw.signal, lockMs))) {
        return errorResponse(499, CLIENT_CLOSED);
      }
    }
  };
}
