// API-key authentication: `Authorization: Bearer <key>` or `x-api-key: <key>`, checked against auth.api_keys
// (plain keys or their sha256) and auth.admin_api_key. Every configured key is compared, each in constant
// time; only the key's name (c.get("keyName")) and its SHA-256 (c.get("keyId"), the identity per-client state is
// keyed by) leave this module, never the key.
import { sha256 as sha256Bytes } from "@noble/hashes/sha2.js";
import { bytesToHex, hexToBytes } from "@noble/hashes/utils.js";
import type { MiddlewareHandler } from "hono";
import type { Config } from "../config/schema.ts";
import { errorResponse } from "../errors.ts";
import type { AppEnv } from "../http/context.ts";

type AuthConfig = Config["auth"];

/** The name given to the admin key in logs and stats. */
export const ADMIN_KEY_NAME = "admin";

interface KeyEntry {
  /** the key's bytes (plain entries) */
  bytes?: Uint8Array;
  /** the key's sha256 (key_sha256 entries) */
  digest?: Uint8Array;
  /** the configured name, or `api_keys[i]`: for logs and stats only, since it moves with the list */
  name: string;
  /**
   * The key's identity, its SHA-256 in lowercase hex: every per-client state (rate-limit buckets, idempotency
   * scope) is keyed by it. It comes from the key itself, so reordering, inserting or removing keys moves no
   * state between clients, and a plain key and a key_sha256 entry for the same key are the same client.
   */
  id: string;
}

interface KeyTable {
  keys: KeyEntry[];
  admin: KeyEntry | null;
  /** some entries are key_sha256: the presented key must be hashed */
  hashed: boolean;
}

const encoder = new TextEncoder();

export function sha256(data: Uint8Array | string): Uint8Array {
  return sha256Bytes(typeof data === "string" ? encoder.encode(data) : data);
}

/**
 * Constant-time equality of `given` (attacker-controlled) and `secret`: the loop always runs over the
 * secret's full length and never exits early, so the time reveals neither how much of the secret matched
 * nor its content (only the length of `given`, which the caller already knows).
 */
export function timingSafeEqual(given: Uint8Array, secret: Uint8Array): boolean {
  const n = given.length;
  let diff = n ^ secret.length;
  for (let i = 0; i < secret.length; i++) diff |= secret[i] ^ (i < n ? given[i] : 0);
  return diff === 0;
}

function plainEntry(key: string, name: string): KeyEntry {
  const bytes = encoder.encode(key);
  return { bytes, name, id: bytesToHex(sha256Bytes(bytes)) };
}

function buildTable(auth: AuthConfig): KeyTable {
  const keys: KeyEntry[] = [];
  for (let i = 0; i < auth.api_keys.length; i++) {
    const e = auth.api_keys[i];
    if (typeof e === "string") {
      if (e) keys.push(plainEntry(e, `api_keys[${i}]`));
    } else if ("key" in e) {
      keys.push(plainEntry(e.key, e.name ?? `api_keys[${i}]`));
    } else {
      const hex = e.key_sha256.toLowerCase();
      keys.push({ digest: hexToBytes(hex), name: e.name ?? `api_keys[${i}]`, id: hex });
    }
  }
  const admin = auth.admin_api_key ? plainEntry(auth.admin_api_key, ADMIN_KEY_NAME) : null;
  return { keys, admin, hashed: keys.some((k) => k.digest) };
}

// one table per auth config object: a config reload brings a new object and so a new table
const tables = new WeakMap<AuthConfig, KeyTable>();
function tableFor(auth: AuthConfig): KeyTable {
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

/** Finds the entry the presented key matches, comparing against every entry (no early exit). */
function match(key: Uint8Array, digest: Uint8Array | null, entries: KeyEntry[]): KeyEntry | null {
  let found: KeyEntry | null = null;
  for (const e of entries) {
    const ok = e.bytes ? timingSafeEqual(key, e.bytes) : digest !== null && timingSafeEqual(digest, e.digest!);
    if (ok && !found) found = e;
  }
  return found;
}

const unauthorized = (message: string, code: string) =>
  errorResponse(401, { message, type: "authentication_error", code }, { "www-authenticate": 'Bearer realm="failover-router"' });

/**
 * The auth middleware. With auth.enabled, every path except auth.public_paths needs a client key or the
 * admin key; /admin/* needs the admin key whenever auth is enabled or an admin_api_key is set.
 * Sets c.get("keyName") / c.get("keyId") for the downstream middleware, logs and stats. Reads the request's config
 * snapshot (c.get("router").config).
 */
export function auth(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const cfg = c.get("router").config.auth;
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
    const table = tableFor(cfg);
    const bytes = encoder.encode(key);
    // hash only when some keys are configured as key_sha256
    const digest = table.hashed ? sha256(bytes) : null;
    const isAdmin = table.admin !== null && timingSafeEqual(bytes, table.admin.bytes!);
    if (admin) {
      if (isAdmin) {
        c.set("keyName", ADMIN_KEY_NAME);
        c.set("keyId", table.admin!.id);
        return next();
      }
      if (match(bytes, digest, table.keys)) {
        return errorResponse(403, {
          message: table.admin ? "this path needs the admin API key" : "the admin API is disabled: set auth.admin_api_key",
          type: "permission_error",
          code: "admin_key_required",
        });
      }
      return unauthorized("invalid API key", "invalid_api_key");
    }
    const entry = isAdmin ? table.admin : match(bytes, digest, table.keys);
    if (!entry) return unauthorized("invalid API key", "invalid_api_key");
    c.set("keyName", entry.name);
    c.set("keyId", entry.id);
    return next();
  };
}
