// The request body of a POST route: read within its limits (size, time, item count, depth), parsed as JSON and
// validated against the route's zod schema, each failure an OpenAI-shaped error naming what is wrong.
import type { Context, MiddlewareHandler } from "hono";
import type { z } from "zod";
import { formatPath } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { concatBytes } from "../bytes.ts";
import { errorResponse } from "../errors.ts";
import type { AppEnv } from "./context.ts";

/** JSON nested deeper than this is refused: deep nesting overflows the stack of JSON.stringify and friends. */
export const MAX_JSON_DEPTH = 128;

/** True when a parsed JSON value nests arrays/objects deeper than `limit` (walks nodes, not bytes: cheap for long strings). */
function tooDeep(v: unknown, limit: number): boolean {
  if (v === null || typeof v !== "object") return false;
  if (limit === 0) return true;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (tooDeep(v[i], limit - 1)) return true;
  } else {
    for (const k in v) if (tooDeep((v as Record<string, unknown>)[k], limit - 1)) return true;
  }
  return false;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

const QUOTE = 0x22, BACKSLASH = 0x5c, COLON = 0x3a, COMMA = 0x2c, OPEN_ARRAY = 0x5b, CLOSE_ARRAY = 0x5d, OPEN_OBJECT = 0x7b, CLOSE_OBJECT = 0x7d;
const isSpace = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

/**
 * The keys and array items of a JSON text, counted on its bytes without parsing it (a parse of a body with
 * half a million keys holds the event loop for most of a second): one per ':' and one per array element, outside
 * strings, which are skipped with indexOf. Stops counting past `max`. -1 when arrays and objects nest deeper than
 * MAX_JSON_DEPTH. Malformed JSON gets some count; JSON.parse then refuses it.
 */
export function countJsonItems(b: Uint8Array, max: number): number {
  const inArray = new Uint8Array(MAX_JSON_DEPTH + 1);
  let depth = 0, items = 0;
  for (let i = 0; i < b.length && items <= max; i++) {
    const c = b[i];
    if (c === QUOTE) {
      // to the closing quote: the next one not escaped by an odd run of backslashes
      let j = i;
      while (true) {
        j = b.indexOf(QUOTE, j + 1);
        if (j < 0) return items;
        let k = j;
        while (b[k - 1] === BACKSLASH) k--;
        if ((j - k) % 2 === 0) break;
      }
      i = j;
    } else if (c === COLON) items++;
    else if (c === COMMA) items += inArray[depth];
    else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > MAX_JSON_DEPTH) return -1;
      inArray[depth] = c === OPEN_ARRAY ? 1 : 0;
      if (c === OPEN_ARRAY) {
        // the first element has no comma before it
        let j = i + 1;
        while (j < b.length && isSpace(b[j])) j++;
        if (j < b.length && b[j] !== CLOSE_ARRAY) items++;
      }
    } else if ((c === CLOSE_ARRAY || c === CLOSE_OBJECT) && depth > 0) depth--;
  }
  return items;
}

const TIMED_OUT = Symbol("timed out");

const tooDeepError = () =>
  errorResponse(400, { message: `request body JSON nests deeper than ${MAX_JSON_DEPTH} levels`, type: "invalid_request_error", code: "json_too_deep" });

/** application/json or application/<anything>+json, any parameters. */
function isJsonType(ct: string): boolean {
  const semi = ct.indexOf(";");
  const t = (semi >= 0 ? ct.slice(0, semi) : ct).trim().toLowerCase();
  return t === "application/json" || (t.startsWith("application/") && t.endsWith("+json"));
}

/** The limits readJson applies, from the `server` block of the request's config. */
type BodyLimits = Pick<Config["server"], "max_body_bytes" | "body_timeout_seconds" | "max_json_items">;

/**
 * The request body, read as JSON and validated against `schema` in one step, for `c.req.valid("json")`: 415 for a
 * non-JSON content type, 413 past max_body_bytes (before reading it all), 408 when it has not all arrived within
 * body_timeout_seconds, 400 for bad UTF-8 or JSON, past max_json_items, or naming the first invalid field. One middleware and one
 * synchronous `safeParse` (none for a body `plain` vouches for):
 * a validator middleware with async hooks behind a body reader (as @hono/zod-validator is) costs CPU on every
 * request (docs/decisions/0005-validjson-without-zod-validator.md).
 */
export function validJson<T extends z.ZodType>(
  schema: T,
  plain?: (body: unknown) => boolean,
): MiddlewareHandler<AppEnv, string, { in: { json: z.input<T> }; out: { json: z.output<T> } }> {
  return async (c, next) => {
    const json = await readJson(c, c.get("router").config.server);
    if (json instanceof Response) return json;
    // a plain body (src/http/schemas.ts) is one the schema accepts as it is
    if (plain?.(json)) {
      c.req.addValidatedData("json", json as object);
      return next();
    }
    // reportInput: without it zod 4 omits issue.input, and every wrong type would read "is required"
    const result = schema.safeParse(json, { reportInput: true });
    if (!result.success) {
      const issue = result.error.issues[0];
      const param = formatPath(issue.path);
      const missing = issue.input === undefined && (issue.code === "invalid_type" || issue.code === "invalid_value");
      const msg = missing ? "is required" : issue.message;
      return errorResponse(400, { message: `${param}: ${msg}`, type: "invalid_request_error", param, code: "invalid_value" });
    }
    c.req.addValidatedData("json", result.data as object);
    await next();
  };
}

/** The body, read within body_timeout_seconds and parsed (parseJson), or the error response to answer with. */
async function readJson(c: Context<AppEnv>, limits: BodyLimits): Promise<unknown> {
  const max = limits.max_body_bytes;
  const ct = c.req.header("content-type");
  if (ct && !isJsonType(ct)) {
    return errorResponse(415, { message: `Content-Type must be application/json, got ${ct.slice(0, 100)}`, type: "invalid_request_error", code: "unsupported_media_type" });
  }
  const tooLarge = () =>
    errorResponse(413, { message: `request body exceeds ${max} bytes`, type: "invalid_request_error", code: "request_too_large" });
  const cl = c.req.header("content-length");
  const declared = cl === undefined ? NaN : Number(cl);
  if (declared > max) return tooLarge();
  // The whole body within body_timeout_seconds: the runtimes' idle timers restart on every byte, or do not run
  // while a request is handled, so a body sent a byte a second would hold the request (and its connection) forever.
  // `Connection: close`: the rest of the body is not read, so the connection cannot carry another request.
  const timeoutS = limits.body_timeout_seconds;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(resolve, timeoutS * 1000, TIMED_OUT)));
  const timedOut = () =>
    errorResponse(408, { message: `request body not received within ${timeoutS} seconds`, type: "invalid_request_error", code: "request_timeout" }, { connection: "close" });
  try {
    const bytes = await readBody(c, declared, max, expired);
    if (bytes === TIMED_OUT) return timedOut();
    if (bytes === null) return tooLarge();
    return parseJson(c, bytes, limits.max_json_items);
  } finally {
    clearTimeout(timer);
  }
}

/** The body's bytes; null past `max` bytes, TIMED_OUT when `expired` settles first (the rest is then not read). */
async function readBody(c: Context<AppEnv>, declared: number, max: number, expired: Promise<typeof TIMED_OUT>): Promise<Uint8Array | null | typeof TIMED_OUT> {
  let bytes: Uint8Array;
  // Content-Length declared: the server reads exactly that many bytes, already checked against the limit, so
  // one arrayBuffer() call, and `body` is not touched: on Deno that getter wraps a body the server has already
  // read in a new ReadableStream and files it in two global WeakMaps, whose tables then grow and are copied by
  // every minor GC (docs/decisions/0013-request-body-arraybuffer.md).
  const body = declared >= 0 ? null : c.req.raw.body;
  if (declared >= 0) {
    const buf = await Promise.race([c.req.raw.arrayBuffer(), expired]);
    if (buf === TIMED_OUT) return TIMED_OUT;
    bytes = new Uint8Array(buf);
  } else if (!body) bytes = new Uint8Array(0);
  else {
    // chunked or unknown length: count as it arrives and stop at the limit
    const chunks: Uint8Array[] = [];
    let size = 0;
    const reader = body.getReader();
    while (true) {
      const r = await Promise.race([reader.read(), expired]);
      if (r === TIMED_OUT) {
        reader.cancel().catch(() => {});
        return TIMED_OUT;
      }
      if (r.done) break;
      size += r.value.byteLength;
      if (size > max) {
        reader.cancel().catch(() => {});
        return null;
      }
      chunks.push(r.value);
    }
    bytes = chunks.length === 1 ? chunks[0] : concatBytes(chunks);
  }
  return bytes;
}

/** The body as a JSON object (its bytes kept as `rawBody`), or the error response to answer with. */
function parseJson(c: Context<AppEnv>, bytes: Uint8Array, maxItems: number): unknown {
  // every key or item takes at least two bytes (`[0,0]`, `{"":0}`): a shorter body cannot pass the limit, and is not scanned
  if (bytes.length > 2 * maxItems) {
    const items = countJsonItems(bytes, maxItems);
    if (items < 0) return tooDeepError();
    if (items > maxItems) {
      return errorResponse(400, { message: `request body JSON has more than ${maxItems} keys and array items (server.max_json_items)`, type: "invalid_request_error", code: "json_too_large" });
    }
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return errorResponse(400, { message: "request body is not valid UTF-8", type: "invalid_request_error", code: "invalid_encoding" });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    if (e instanceof RangeError) return tooDeepError();
    // the parser's message quotes the body: keep only the position, so no client text is echoed (or logged)
    const pos = /position (\d+)/.exec((e as Error).message)?.[1];
    return errorResponse(400, { message: `request body is not valid JSON${pos ? ` (at position ${pos})` : ""}`, type: "invalid_request_error", code: "invalid_json" });
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return errorResponse(400, { message: "request body must be a JSON object", type: "invalid_request_error", code: "invalid_json" });
  }
  if (tooDeep(json, MAX_JSON_DEPTH)) return tooDeepError();
  c.set("rawBody", bytes);
  return json;
}
