// Keeps a provider's secrets out of everything the router says: some upstreams echo the API key (or a
// custom auth header) back in their error messages ("Incorrect API key provided: sk-..."), and those
// messages reach clients (4xx passthrough, the attempts of a 502, stream error events) and logs.
import type { Adapter, CallOptions, ChatRequest, StreamEvents, TextRequest, UpstreamResult } from "./types.ts";
import { UpstreamStreamError } from "./types.ts";

/** secrets shorter than this are not redacted (too likely to match ordinary text) */
const MIN_SECRET = 8;

/** The secret strings of a provider's config: its api_key and the values of its custom headers. */
export function providerSecrets(cfg: { api_key?: string; headers?: Record<string, string> }): string[] {
  const out = new Set<string>();
  if (cfg.api_key && cfg.api_key.length >= MIN_SECRET) out.add(cfg.api_key);
  for (const v of Object.values(cfg.headers ?? {})) {
    // "Bearer xyz": the token alone may be echoed too
    const token = v.slice(v.lastIndexOf(" ") + 1);
    if (v.length >= MIN_SECRET) out.add(v);
    if (token.length >= MIN_SECRET) out.add(token);
  }
  // longest first, so a value containing another is replaced whole
  return [...out].sort((a, b) => b.length - a.length);
}

export function redact(text: string, secrets: string[]): string {
  for (const s of secrets) if (text.includes(s)) text = text.split(s).join("[REDACTED]");
  return text;
}

/** The events of `events` with any error redacted: one more promise per read, no generator step. */
function redactEvents(events: StreamEvents, secrets: string[]): StreamEvents {
  const clean = (e: unknown): never => {
    if (e instanceof UpstreamStreamError) throw new UpstreamStreamError(redact(e.message, secrets), e.code, e.type);
    if (e instanceof Error) e.message = redact(e.message, secrets);
    throw e;
  };
  return {
    read: () => events.read().catch(clean),
    cancel: () => events.cancel(),
  };
}

/** Wraps an adapter so no failure message it produces can carry the provider's key. No-op without secrets. */
export function redactSecrets(adapter: Adapter): Adapter {
  const secrets = providerSecrets(adapter.config);
  if (!secrets.length) return adapter;
  const clean = (r: UpstreamResult): UpstreamResult => {
    if (!r.ok) {
      const red = (v: string | null | undefined) => (v == null ? v : redact(v, secrets));
      return { ...r, message: redact(r.message, secrets), param: red(r.param), code: red(r.code), type: red(r.type) ?? undefined };
    }
    if (r.stream) return { ...r, events: redactEvents(r.events, secrets) };
    return r;
  };
  return {
    config: adapter.config,
    chat: (req: ChatRequest, opts: CallOptions) => adapter.chat(req, opts).then(clean),
    text: (req: TextRequest, opts: CallOptions) => adapter.text(req, opts).then(clean),
  };
}
