// The config.yaml schema. Everything the router reads from config is declared here, validated with zod
// before serving; unknown keys are errors so that typos never silently fall back to defaults.
import { z } from "zod";
import { PROVIDER_TYPES, type ProviderType } from "../providers/registry.ts";

/** server.max_upstream_body_bytes when the config does not set it */
export const DEFAULT_MAX_UPSTREAM_BODY_BYTES = 32 * 1024 * 1024;

const httpUrl = z
  .string()
  .refine((s) => {
    try {
      const u = new URL(s);
      return u.protocol === "http:" || u.protocol === "https:";
    } catch {
      return false;
    }
  }, "invalid URL");

/** A Redis URL: redis:// or rediss:// (TLS). The message never repeats the value: it may hold a password. */
const redisUrl = z
  .string()
  .refine((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === "redis:" || u.protocol === "rediss:") && u.hostname !== "";
    } catch {
      return false;
    }
  }, "must be a redis:// or rediss:// URL (redis://[user:password@]host[:port][/db])");

const price = z.strictObject({ input: z.number().nonnegative(), output: z.number().nonnegative() });

const breakerFields = {
  failure_threshold: z.number().int().min(1),
  cooldown_seconds: z.number().positive(),
  half_open_max_requests: z.number().int().min(1),
};
export const CircuitBreakerSchema = z.strictObject({
  failure_threshold: breakerFields.failure_threshold.default(5),
  cooldown_seconds: breakerFields.cooldown_seconds.default(60),
  half_open_max_requests: breakerFields.half_open_max_requests.default(1),
});

const providerName = z.string().regex(/^[A-Za-z0-9_.-]+$/, "must be letters, digits, '_', '-' or '.' (no '/')");

/** The keys every provider takes besides name and type, whatever its type; each type adds its own (ProviderKind.fields). */
const providerFields = {
  endpoint: httpUrl.optional(),
  api_key: z.string().optional(),
  default_model: z.string().min(1).optional(),
  models: z.array(z.string().min(1)).optional(),
  model_map: z.record(z.string(), z.string().min(1)).optional(),
  timeout_seconds: z.number().positive().default(30),
  // streams: the longest wait from the request to the first content token (default: timeout_seconds)
  first_token_timeout_seconds: z.number().positive().optional(),
  headers: z.record(z.string(), z.string().refine((v) => !/[\r\n\0]/.test(v), "a header value cannot contain line breaks or NUL"))
    .superRefine((headers, ctx) => {
      for (const name of Object.keys(headers)) {
        if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) ctx.addIssue({ code: "custom", path: [name], message: "header names are letters, digits and !#$%&'*+-.^_`|~" });
      }
    })
    .optional(),
  pricing: z.record(z.string(), price).optional(),
  // the most one request may cost on this provider (worst case, before the call), as one figure or by model like pricing
  max_cost_per_request_usd: z.union([z.number().nonnegative(), z.record(z.string(), z.number().nonnegative())]).optional(),
  max_retries: z.number().int().min(0).max(10).default(0),
  circuit_breaker: z.strictObject(breakerFields).partial().optional(),
  // it continues a trailing assistant message (routing.stream_recovery continues a broken stream there; docs/routing.md)
  supports_prefill: z.boolean().default(false),
  // a PEM file of CA certificates trusted for this provider besides the runtime's default store; read at config
  // load and reload (loadTlsFiles). Verification itself cannot be turned off.
  tls: z.strictObject({ ca_file: z.string().min(1) }).optional(),
};

const typeNames = Object.keys(PROVIDER_TYPES) as ProviderType[];

/** A provider as validated: every provider's keys, and its type's own (not in this static type; its adapter reads them). */
export type RawProvider = { name: string; type: ProviderType } & z.output<z.ZodObject<typeof providerFields>>;

/** One shape per type (its own keys rejected on any other type), told apart by `type`. */
const typeShapes = typeNames.map((type) => z.strictObject({ name: providerName, type: z.literal(type), ...providerFields, ...PROVIDER_TYPES[type].fields }));
const ProviderSchema: z.ZodType<RawProvider> = z.discriminatedUnion("type", typeShapes as [(typeof typeShapes)[number], ...typeof typeShapes], {
  // an unknown or missing type, worded as for any other enum (config/load.ts)
  error: (iss) => (iss.code === "invalid_union" ? `must be one of ${typeNames.map((t) => JSON.stringify(t)).join(", ")}` : undefined),
});

const apiKeyEntry = z.union([
  z.string(),
  z.strictObject({ key: z.string().min(1), name: z.string().optional() }),
  z.strictObject({ key_sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex digits"), name: z.string().optional() }),
]);

export const ConfigSchema = z
  .strictObject({
    server: z
      .strictObject({
        host: z.string().min(1).default("0.0.0.0"),
        port: z.number().int().min(0).max(65535).default(8000),
        max_body_bytes: z.number().int().positive().default(10 * 1024 * 1024),
        // a non-streamed upstream answer larger than this is cut off and fails over (docs/security.md)
        max_upstream_body_bytes: z.number().int().positive().default(DEFAULT_MAX_UPSTREAM_BODY_BYTES),
        // client-side limits (docs/security.md, "Slow and oversized clients"): a connection's request head, and an
        // idle keep-alive connection, within header_timeout_seconds; a request body within body_timeout_seconds
        header_timeout_seconds: z.number().positive().max(255).default(10),
        body_timeout_seconds: z.number().positive().default(30),
        // keys + array items in one JSON request body, counted before it is parsed
        max_json_items: z.number().int().positive().default(100_000),
        // client requests served at once (a stream until its last chunk); past it a new one gets 503 server_busy
        max_connections: z.number().int().positive().default(10_000),
        trust_proxy: z.boolean().default(false),
        shutdown_timeout_seconds: z.number().min(0).default(30),
        watch_config: z.boolean().default(false),
        // this replica's name in /stats and failover_router_build_info (default <hostname>:<port>)
        replica_id: z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, "printable ASCII without spaces").optional(),
      })
      .prefault({}),
    providers: z.array(ProviderSchema).min(1, "at least one provider is required"),
    routing: z
      .strictObject({
        strategy: z.enum(["priority", "cost", "latency", "health"]).default("priority"),
        fallback_chain: z.array(z.string()).min(1).optional(),
        max_attempts: z.number().int().min(1).optional(),
        request_timeout_seconds: z.number().positive().default(120),
        stream_idle_timeout_seconds: z.number().positive().default(60),
        // the longest a stream may run once committed, however steadily the upstream sends (docs/security.md);
        // at most a day, well inside what a timer can wait
        stream_max_duration_seconds: z.number().positive().max(86400).default(600),
        // one SSE event's data (or one line of it, or one NDJSON line) read from an upstream stream (docs/security.md)
        stream_max_event_bytes: z.number().int().positive().default(1024 * 1024),
        // events of one stream that are not valid JSON, each skipped; one more fails the stream (docs/security.md)
        max_malformed_events: z.number().int().min(0).default(3),
        // hedged requests: a second provider starts when the first is slow to its first token (docs/routing.md)
        hedge: z
          .strictObject({
            enabled: z.boolean().default(false),
            // "auto": the provider's rolling p95 time to first token (at least 500 ms; 2000 ms until 20 samples)
            after_ms: z.union([z.literal("auto"), z.number().int().positive()]).default("auto"),
            // hedges at most this percentage of the requests of a rolling minute
            max_extra_percent: z.number().min(0).max(100).default(5),
            // a request with tools may act twice (two tool calls): hedged only when allowed
            with_tools: z.boolean().default(false),
          })
          .prefault({}),
        // a chat stream cut or stalled mid-answer is continued on a provider (prefill, or a verified restart) instead
        // of ending with an error event (docs/routing.md, "Stream recovery")
        stream_recovery: z.boolean().default(false),
        // a Retry-After longer than this is not waited for (max_retries): the request moves to the next provider
        max_retry_after_seconds: z.number().min(0).default(10),
        // a provider whose worst-case estimate for a request is over this is skipped (docs/routing.md)
        max_cost_per_request_usd: z.number().nonnegative().optional(),
        // output tokens the cost estimates assume when a request sets no max_tokens / max_completion_tokens
        default_max_output_tokens: z.number().int().positive().default(512),
        // strategy cost: providers meeting this on their recent window first, cheapest first (docs/routing.md)
        sla: z.strictObject({
          max_p95_latency_ms: z.number().positive().optional(),
          min_success_rate: z.number().min(0).max(1).optional(),
        }).optional(),
      })
      .prefault({}),
    circuit_breaker: CircuitBreakerSchema.prefault({}),
    auth: z
      .strictObject({
        enabled: z.boolean().default(false),
        api_keys: z.array(apiKeyEntry).default([]),
        admin_api_key: z.string().optional(),
        public_paths: z.array(z.string()).default(["/health", "/metrics"]),
      })
      .prefault({}),
    rate_limit: z
      .strictObject({
        enabled: z.boolean().default(false),
        requests_per_minute: z.number().positive().default(600),
        burst: z.number().int().positive().default(60),
        tokens_per_minute: z.number().positive().nullable().default(null),
      })
      .prefault({}),
    idempotency: z
      .strictObject({
        enabled: z.boolean().default(true),
        ttl_seconds: z.number().positive().default(3600),
        max_entries: z.number().int().positive().default(10000),
        // a response (or stream transcript) larger than this is served but not stored
        max_response_bytes: z.number().int().positive().default(16 * 1024 * 1024),
        // all stored responses together (least recently used evicted first); see docs/security.md
        max_total_bytes: z.number().int().positive().default(256 * 1024 * 1024),
      })
      .prefault({}),
    // where the state replicas could share lives (src/state/); read at start-up only
    state: z
      .strictObject({
        backend: z.enum(["memory", "redis"]).default("memory"),
        // backend: redis (src/state/redis/): shared by every replica on the same URL and key_prefix
        redis: z
          .strictObject({
            url: redisUrl.default("redis://127.0.0.1:6379/0"),
            // two fleets on one Redis keep apart by their prefixes
            key_prefix: z.string().max(200).default("failover-router:"),
            // no request waits longer on Redis than this; past it the replica serves from its local state
            command_timeout_ms: z.number().int().min(1).max(10_000).default(100),
          })
          .prefault({}),
      })
      .prefault({}),
    // spend limits per period (src/routing/budgets.ts, docs/routing.md)
    budgets: z
      .strictObject({
        // with the Redis backend unreachable: serve on this replica's own counters (open) or answer 503 (closed)
        on_backend_failure: z.enum(["open", "closed"]).default("open"),
        list: z.array(z.strictObject({
          name: z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, "1 to 100 letters, digits, '_', '-' or '.'"),
          // {} is everything; the keys that are set must all match
          scope: z.strictObject({ key: z.string().min(1).optional(), provider: z.string().min(1).optional(), model: z.string().min(1).optional() }).default({}),
          limit_usd: z.number().nonnegative(),
          period: z.enum(["minute", "hour", "day", "week", "month", "total"]),
          soft_limit_percent: z.number().gt(0).max(100).optional(),
          max_reservation_usd: z.number().positive().optional(),
        })).default([]),
      })
      .prefault({}),
    logging: z
      .strictObject({
        level: z.enum(["debug", "info", "warn", "error", "silent"]).default("info"),
        format: z.enum(["json", "pretty"]).default("json"),
      })
      .prefault({}),
  })
  .superRefine((cfg, ctx) => {
    const seen = new Map<string, number>();
    cfg.providers.forEach((p, i) => {
      if (seen.has(p.name)) {
        ctx.addIssue({ code: "custom", path: ["providers", i, "name"], message: `duplicate provider name "${p.name}" (also providers[${seen.get(p.name)}])` });
      } else seen.set(p.name, i);
      const kind = PROVIDER_TYPES[p.type];
      if (!kind.offline && !p.default_model && !(p.models && p.models.length)) {
        ctx.addIssue({ code: "custom", path: ["providers", i, "default_model"], message: "required (or list models)" });
      }
      if (!kind.offline && !kind.defaultEndpoint && !p.endpoint) {
        ctx.addIssue({ code: "custom", path: ["providers", i, "endpoint"], message: `required for type ${p.type}` });
      }
    });
    cfg.routing.fallback_chain?.forEach((name, i) => {
      if (!seen.has(name)) {
        ctx.addIssue({ code: "custom", path: ["routing", "fallback_chain", i], message: `unknown provider "${name}"` });
      }
    });
    const chain = cfg.routing.fallback_chain ?? [];
    const dup = chain.find((n, i) => chain.indexOf(n) !== i);
    if (dup) ctx.addIssue({ code: "custom", path: ["routing", "fallback_chain"], message: `provider "${dup}" listed twice` });
    const budgetNames = new Set<string>();
    // the names requests carry (as src/middleware/auth.ts gives them): a key's budget naming none would never apply
    const keyNames = cfg.auth.api_keys.flatMap((e, i) => (e === "" ? [] : [typeof e === "string" ? `api_keys[${i}]` : e.name ?? `api_keys[${i}]`]));
    if (cfg.auth.admin_api_key) keyNames.push("admin");
    cfg.budgets.list.forEach((b, i) => {
      if (budgetNames.has(b.name)) ctx.addIssue({ code: "custom", path: ["budgets", "list", i, "name"], message: `duplicate budget name "${b.name}"` });
      budgetNames.add(b.name);
      if (b.scope.provider !== undefined && !seen.has(b.scope.provider)) {
        ctx.addIssue({ code: "custom", path: ["budgets", "list", i, "scope", "provider"], message: `unknown provider "${b.scope.provider}"` });
      }
      if (b.scope.key !== undefined && !(cfg.auth.enabled && keyNames.includes(b.scope.key))) {
        const message = cfg.auth.enabled ? `no API key is named "${b.scope.key}" (names: ${keyNames.join(", ")})` : "auth is not enabled, so no request has a key name";
        ctx.addIssue({ code: "custom", path: ["budgets", "list", i, "scope", "key"], message });
      }
    });
    if (cfg.auth.enabled && cfg.auth.api_keys.length === 0) {
      ctx.addIssue({ code: "custom", path: ["auth", "api_keys"], message: "auth is enabled but no api_keys are set" });
    }
  });

export type RawConfig = z.infer<typeof ConfigSchema>;
export type CircuitBreakerConfig = z.infer<typeof CircuitBreakerSchema>;

/** A provider with every default resolved. */
export interface ProviderConfig extends Omit<RawProvider, "circuit_breaker" | "default_model" | "endpoint"> {
  endpoint: string;
  default_model: string;
  circuit_breaker: CircuitBreakerConfig;
  /** the PEM text of tls.ca_file, read by loadTlsFiles (absent when parseConfig alone built the config) */
  ca?: string;
}

export interface Config extends Omit<RawConfig, "providers" | "routing"> {
  providers: ProviderConfig[];
  routing: RawConfig["routing"] & { fallback_chain: string[] };
}
