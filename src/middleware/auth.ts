// API-key authentication: `Authorization: Bearer <key>` or `x-api-key: <key>`, checked against auth.api_keys
// (plain keys or their sha256) and auth.admin_api_key. Keys are compared as sha256 digests in constant time;
// only the key's name ever leaves this module (c.get("keyName")), never the key.
import type { MiddlewareHandler } from "hono";
import type { Config } from "../config/schema.ts";
import { errorResponse } from "../http/errors.ts";
import type { AppEnv } from "./env.ts";

type AuthConfig = Config["auth"];

/** The name given to the admin key in logs and stats. */
export const ADMIN_KEY_NAME = "admin";

interface KeyEntry {
  digest: Uint8Array;
  /** the configured name, or `api_keys[i]` */
  name: string;
  /** a stable internal id (rate-limit buckets and idempotency scopes); unique per entry even when names repeat */
  id: string;
}

interface KeyTable {
  keys: KeyEntry[];
  admin: KeyEntry | null;
}

const encoder = new TextEncoder();

export async function sha256(data: Uint8Array | string): Promise<Uint8Array> {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}

export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
  return s;
}

function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/**
 * Constant-time equality of two byte strings: the time depends on the length only, never on the contents.
 * (Keys are compared as sha256 digests, so the length is always 32 and reveals nothing.)
 */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

async function buildTable(auth: AuthConfig): Promise<KeyTable> {
  const keys: KeyEntry[] = [];
  for (let i = 0; i < auth.api_keys.length; i++) {
    const e = auth.api_keys[i];
    const id = `key${i}`;
    if (typeof e === "string") {
      if (e) keys.push({ digest: await sha256(e), name: `api_keys[${i}]`, id });
    } else if ("key" in e) {
      keys.push({ digest: await sha256(e.key), name: e.name ?? `api_keys[${i}]`, id });
    } else {
      keys.push({ digest: fromHex(e.key_sha256.toLowerCase()), name: e.name ?? `api_keys[${i}]`, id });
    }
  }
  const admin = auth.admin_api_key ? { digest: await sha256(auth.admin_api_key), name: ADMIN_KEY_NAME, id: "admin" } : null;
  return { keys, admin };
}

// one table per auth config object: a config reload brings a new object and so a new table
const tables = new WeakMap<AuthConfig, Promise<KeyTable>>();
function tableFor(auth: AuthConfig): Promise<KeyTable> {
  let t = tables.get(auth);
  if (!t) tables.set(auth, (t = buildTable(auth)));
  return t;
}

/**
 * True for /admin and everything under it, matched loosely (any case, repeated leading slashes) so that
 * no spelling of an admin route the HTTP router might accept slips past the guard.
 */
export function isAdminPath(path: string): boolean {
  let i = 0;
  while (i < path.length && path.charCodeAt(i) === 47) i++;
  if (path.length - i < 5) return false;
  const seg = path.slice(i, i + 5).toLowerCase();
  return seg === "admin" && (path.length === i + 5 || path.charCodeAt(i + 5) === 47);
}

/** auth.public_paths: exact paths, or a prefix written `/path/*`. */
export function isPublicPath(path: string, auth: AuthConfig): boolean {
  if (auth.public_paths.includes(path)) return true;
  for (const p of auth.public_paths) if (p.endsWith("/*") && path.startsWith(p.slice(0, -1))) return true;
  return false;
}

/** The key a client presented: `Authorization: Bearer <key>` first, then `x-api-key`. Empty means none. */
export function presentedKey(headers: Headers): string {
  const authz = headers.get("authorization");
  if (authz) {
    const sp = authz.indexOf(" ");
    if (sp > 0 && authz.slice(0, sp).toLowerCase() === "bearer") {
      const k = authz.slice(sp + 1).trim();
      if (k) return k;
    }
  }
  return headers.get("x-api-key")?.trim() ?? "";
}

/** Finds the entry whose digest equals `digest`, comparing against every entry (no early exit). */
function match(digest: Uint8Array, entries: KeyEntry[]): KeyEntry | null {
  let found: KeyEntry | null = null;
  for (const e of entries) if (timingSafeEqual(digest, e.digest) && !found) found = e;
  return found;
}

const unauthorized = (message: string, code: string) =>
  errorResponse(401, { message, type: "authentication_error", code }, { "www-authenticate": 'Bearer realm="failover-router"' });

/**
 * The auth middleware. With auth.enabled, every path except auth.public_paths needs a client key or the
 * admin key; /admin/* needs the admin key whenever auth is enabled or an admin_api_key is set.
 * Sets c.get("keyName") / c.get("keyId") for the downstream middleware, logs and stats.
 */
export function auth(config: () => Config): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const cfg = config().auth;
    const path = c.req.path;
    const admin = isAdminPath(path);
    if (!admin && (!cfg.enabled || isPublicPath(path, cfg))) return next();
    if (admin && !cfg.enabled && !cfg.admin_api_key) return next();

    const key = presentedKey(c.req.raw.headers);
    if (!key) {
      return unauthorized(
        "missing API key: send it as 'Authorization: Bearer <key>' or in the 'x-api-key' header",
        "missing_api_key",
      );
    }
    const table = await tableFor(cfg);
    const digest = await sha256(key);
    const isAdmin = table.admin !== null && timingSafeEqual(digest, table.admin.digest);
    if (admin) {
      if (isAdmin) {
        c.set("keyName", ADMIN_KEY_NAME);
        c.set("keyId", "admin");
        return next();
      }
      if (match(digest, table.keys)) {
        return errorResponse(403, {
          message: table.admin ? "this path needs the admin API key" : "the admin API is disabled: set auth.admin_api_key",
          type: "permission_error",
          code: "admin_key_required",
        });
      }
      return unauthorized("invalid API key", "invalid_api_key");
    }
    const entry = isAdmin ? table.admin : match(digest, table.keys);
    if (!entry) return unauthorized("invalid API key", "invalid_api_key");
    c.set("keyName", entry.name);
    c.set("keyId", entry.id);
    return next();
  };
}
