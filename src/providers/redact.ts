// The router's one redaction. Upstreams echo credentials back, in an error's message ("Incorrect API key
// provided: sk-..."), or in its code, type or param; those strings reach clients (4xx passthrough, the attempts
// of a 502, stream error events), the request log and /health. Every such string goes through redact() with the
// secrets of the config in force: at the adapter boundary (redactSecrets, so nothing an adapter reports is
// seen unredacted by the router, its breakers or its observers) and again in the request log's free-text fields.
import type { Config } from "../config/schema.ts";
import type { Adapter, CallOptions, ChatRequest, StreamEvents, TextRequest, UpstreamFailure, UpstreamResult } from "./types.ts";
import { UpstreamStreamError } from "./types.ts";

/**
 * Configured values shorter than this are not treated as secrets. Real keys are 20 to 100+ characters; a
 * shorter value is a placeholder or a test value, and replacing it wherever it occurs would garble ordinary
 * text (a word, a number, a model name) while showing, by where [REDACTED] appears, what the value is.
 */
const MIN_SECRET = 8;

const REDACTED = "[REDACTED]";
const CREDENTIAL_PARAM = /key|token|secret|sig|pass/i;

type SecretSource = Pick<Config, "providers"> & Partial<Pick<Config, "auth">>;

/**
 * Every secret of a config, longest first (so a secret containing another is replaced whole): the providers'
 * api_key, custom header values (and the token of a "Bearer xyz" value), credentials in an endpoint URL (user,
 * password, query values named like a credential), the client keys and the admin key.
 */
export function configSecrets(config: SecretSource): string[] {
  const out = new Set<string>();
  const add = (v: string | undefined) => {
    if (v && v.length >= MIN_SECRET) out.add(v);
  };
  for (const p of config.providers) {
    add(p.api_key);
    for (const v of Object.values(p.headers ?? {})) {
      add(v);
      add(v.slice(v.lastIndexOf(" ") + 1));
    }
    if (p.endpoint) {
      try {
        const u = new URL(p.endpoint);
        add(decodeURIComponent(u.username));
        add(decodeURIComponent(u.password));
        // by name: other query values (an api-version date, say) are not secret and would garble messages
        for (const [k, v] of u.searchParams) if (CREDENTIAL_PARAM.test(k)) add(v);
      } catch { /* a malformed %-escape in the credentials: they cannot be matched as written */ }
    }
  }
  for (const k of config.auth?.api_keys ?? []) add(typeof k === "string" ? k : "key" in k ? k.key : undefined);
  add(config.auth?.admin_api_key);
  return [...out].sort((a, b) => b.length - a.length);
}

/** `text` with every one of `secrets` (from configSecrets) replaced by [REDACTED]. */
export function redact(text: string, secrets: readonly string[]): string {
  for (const s of secrets) if (text.includes(s)) text = text.split(s).join(REDACTED);
  return text;
}

/** A failure with its message, type, code and param redacted. */
function redactFailure(f: UpstreamFailure, secrets: readonly string[]): UpstreamFailure {
  const red = (v: string | null | undefined) => (v == null ? v : redact(v, secrets));
  return { ...f, message: redact(f.message, secrets), param: red(f.param), code: red(f.code), type: red(f.type) ?? undefined };
}

/** The events of `events` with any error redacted: one more promise per read, no generator step. */
function redactEvents(events: StreamEvents, secrets: readonly string[]): StreamEvents {
  const clean = (e: unknown): never => {
    if (e instanceof UpstreamStreamError) throw new UpstreamStreamError(redact(e.message, secrets), redact(e.code, secrets), redact(e.type, secrets));
    if (e instanceof Error) e.message = redact(e.message, secrets);
    throw e;
  };
  return {
    read: () => events.read().catch(clean),
    cancel: () => events.cancel(),
  };
}

/** Wraps an adapter so no failure it reports (result or stream error) carries a secret. No-op without secrets. */
export function redactSecrets(adapter: Adapter, secrets: readonly string[]): Adapter {
  if (!secrets.length) return adapter;
  const clean = (r: UpstreamResult): UpstreamResult => {
    if (!r.ok) return redactFailure(r, secrets);
    if (r.stream) return { ...r, events: redactEvents(r.events, secrets) };
    return r;
  };
  return {
    config: adapter.config,
    chat: (req: ChatRequest, opts: CallOptions) => adapter.chat(req, opts).then(clean),
    text: (req: TextRequest, opts: CallOptions) => adapter.text(req, opts).then(clean),
  };
}
