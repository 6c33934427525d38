// The contract between the failover loop and the provider adapters (one adapter module per wire protocol), and
// between the provider types and the registry (registry.ts).
import type { z } from "zod";
import type { ProviderConfig } from "../config/schema.ts";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** true when the provider reported no usage and the router estimated it */
  estimated?: boolean;
}

/** The two client-facing APIs: Chat Completions and legacy (text) Completions. */
export type ApiKind = "chat" | "text";

/** A validated client request body (OpenAI shape). Unknown fields are kept for passthrough providers. */
export type ChatRequest = Record<string, unknown> & {
  model: string;
  messages: ChatMessage[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean } | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  stop?: string | string[] | null;
  seed?: number | null;
  tools?: ChatTool[];
  tool_choice?: unknown;
  response_format?: { type: string; json_schema?: unknown } | null;
  user?: string;
};
export type TextRequest = Record<string, unknown> & {
  model: string;
  prompt: string | string[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean } | null;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  stop?: string | string[] | null;
  seed?: number | null;
};

export type ContentPart =
  | { type: "text"; text: string }
  | { type: "image_url"; image_url: { url: string; detail?: string } }
  | { type: string; [k: string]: unknown };

export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}
export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant" | "tool";
  content?: string | ContentPart[] | null;
  name?: string;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
}
export interface ChatTool {
  type: "function";
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
}

/** How one upstream attempt failed. `kind` drives failover and breaker accounting. */
export interface UpstreamFailure {
  ok: false;
  /** HTTP status from upstream, or 0 for connect errors, 504 for timeouts */
  status: number;
  kind: "connect" | "timeout" | "http" | "protocol" | "aborted";
  message: string;
  type?: string;
  code?: string | null;
  param?: string | null;
  /** seconds from a Retry-After header */
  retryAfter?: number;
  /** the upstream said the prompt is larger than its context window */
  contextExceeded?: boolean;
  /** the adapter cannot express this request in its provider's protocol; nothing was sent upstream */
  unsupported?: boolean;
}

/** One event of an OpenAI-shaped stream: `data` is the JSON text of one chunk (no "data: " prefix). */
export interface StreamEvent {
  /** null when there is nothing to forward (e.g. a usage-only chunk the client did not ask for) */
  data: string | null;
  /** true when the chunk carries content, a tool call or a finish reason (commits the stream to this provider) */
  content: boolean;
  usage?: Usage;
  /**
   * Characters of generated text the event carries (content, reasoning, tool-call arguments), counted where the
   * adapter reads them anyway: a stream that ends early is billed for the output so far (routing/budgets.ts).
   */
  chars?: number;
}

export interface JsonSuccess {
  ok: true;
  stream: false;
  /** the OpenAI-shaped response body, already serialised */
  body: string;
  usage?: Usage;
  model: string;
}
/**
 * The OpenAI-shaped events of a stream, one upstream read at a time: one promise per read through every layer
 * (adapter, redaction, the router's pipe), not one per event and layer.
 */
export interface StreamEvents {
  /**
   * The events of the next upstream read: possibly none, and the array may be reused, so consume it before the
   * next call; null once the stream has ended. Rejects (UpstreamStreamError, a network error) when the upstream
   * breaks mid-way; the source has then released the upstream body itself.
   */
  read(): Promise<StreamEvent[] | null>;
  /** Stops reading early and releases the upstream body. */
  cancel(): void;
}

export interface StreamSuccess {
  ok: true;
  stream: true;
  events: StreamEvents;
  model: string;
}
export type UpstreamResult = JsonSuccess | StreamSuccess | UpstreamFailure;

export class UpstreamStreamError extends Error {
  constructor(message: string, public code = "upstream_stream_error", public type = "upstream_error") {
    super(message);
  }
}

export interface CallOptions {
  /** the model this provider should run */
  model: string;
  stream: boolean;
  /** the client asked for a usage chunk (stream_options.include_usage) */
  includeUsage: boolean;
  signal: AbortSignal;
  /** the largest stream event (SSE) or line (NDJSON) read from the upstream: routing.stream_max_event_bytes */
  maxEventBytes: number;
  /** the largest non-streamed answer body read (server.max_upstream_body_bytes) */
  maxBodyBytes: number;
  /**
   * A stream event (SSE data, NDJSON line) that is not valid JSON is skipped and reported here; it throws
   * (UpstreamStreamError) once the stream has had too many (routing.max_malformed_events). Without it, such an
   * event fails the stream.
   */
  malformedEvent?(): void;
  /**
   * The request's last message is an assistant message with text the client already has: the provider is to
   * continue it (a prefill, in the provider's own terms) and stream only the continuation (stream recovery,
   * src/routing/stream-recovery.ts; only for a provider whose config says supports_prefill).
   */
  prefill?: boolean;
}

export interface Adapter {
  readonly config: ProviderConfig;
  chat(req: ChatRequest, opts: CallOptions): Promise<UpstreamResult>;
  text(req: TextRequest, opts: CallOptions): Promise<UpstreamResult>;
}

/**
 * One provider type: what `type:` in config.yaml names (registry.ts). The config schema adds `fields` to every
 * provider's keys for a provider of this type, and rejects them on any other type.
 */
export interface ProviderKind {
  /** the config keys only this type takes (its adapter finds them on its config) */
  readonly fields: z.ZodRawShape;
  /** the endpoint when the config names none; a type without one needs `endpoint` (unless it is `offline`) */
  readonly defaultEndpoint?: string;
  /** answers without any upstream (the mock): needs neither an endpoint nor a model */
  readonly offline?: boolean;
  /** The adapter for one configured provider of this type; `send`: the upstream client (default: the global fetch). */
  create(config: ProviderConfig, send?: UpstreamFetch): Adapter;
}

/** One upstream request as the adapters send it. */
export interface UpstreamInit {
  method: "POST";
  headers: Record<string, string>;
  body: string;
  signal: AbortSignal;
  /**
   * The largest body of a non-streamed answer a client may hold (it fails with UpstreamBodyTooLarge past it);
   * a client that hands the body out as a stream leaves the bound to its reader (readBody).
   */
  maxBodyBytes: number;
  /**
   * PEM CA certificates (the provider's tls.ca_file) an https upstream's certificate may chain to, besides the
   * runtime's default trust store. A client that cannot apply them (the global fetch) verifies against the
   * default store alone, so the request fails rather than going unverified.
   */
  ca?: string;
}

/**
 * What the adapters read of an upstream answer: a fetch Response, or an object of the runtime's own client
 * with the same members (the socket clients of src/runtime/http1.ts answer a non-streaming request with one
 * whose body is already read: `body` null, `text()` and `json()` from memory; and a stream with a body that
 * also hands out its chunks directly, see DIRECT_CHUNKS).
 */
export interface UpstreamResponse {
  readonly ok: boolean;
  readonly status: number;
  readonly headers: { get(name: string): string | null };
  readonly body: ReadableStream<Uint8Array> | null;
  text(): Promise<string>;
  json(): Promise<unknown>;
}

/**
 * Sends one request upstream and resolves with its response, rejecting like fetch (TypeError on a network
 * failure, the signal's reason on abort). `stream`: the body will be read as a stream, so the answer must have
 * one. Never follows a redirect: a 3xx is the response. The body comes decoded (content-encoding). The global
 * fetch unless the runtime entrypoint supplies its own client (Platform.upstreamFetch).
 */
export type UpstreamFetch = (url: string, init: UpstreamInit, stream: boolean) => Promise<UpstreamResponse>;
