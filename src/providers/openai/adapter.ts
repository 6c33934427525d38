// Adapter for the OpenAI wire protocol: types openai, deepseek and openai_compatible (vLLM, Groq,
// Together, LM Studio, ...). Bodies pass through with the model swapped; SSE is forwarded chunk by chunk,
// parsing each chunk only to learn whether it carries content and usage.
import type { ProviderConfig } from "../../config/schema.ts";
import { type SseEvent, SseReader, skipMalformed } from "../event-streams.ts";
import { estimatePromptTokens, estimateTokens, tokenUsage } from "../tokens.ts";
import type { Adapter, CallOptions, ChatRequest, StreamEvent, StreamEvents, TextRequest, UpstreamFetch, UpstreamResult, Usage } from "../types.ts";
import { UpstreamStreamError } from "../types.ts";
import { bearerHeaders, bodyJson, failureFromResponse, globalFetch, postJson, protocolFailure, sseBody } from "../upstream.ts";

const pickError = (j: any) => (j && typeof j.error === "object" ? j.error : j && typeof j.error === "string" ? { message: j.error } : j);

export class OpenAIAdapter implements Adapter {
  readonly #headers: Record<string, string>;
  constructor(readonly config: ProviderConfig, readonly send: UpstreamFetch = globalFetch) {
    this.#headers = bearerHeaders(config, "application/json, text/event-stream");
  }

  chat(req: ChatRequest, opts: CallOptions): Promise<UpstreamResult> {
    return this.#call("/chat/completions", "chat", req, opts);
  }

  text(req: TextRequest, opts: CallOptions): Promise<UpstreamResult> {
    return this.#call("/completions", "text", req, opts);
  }

  async #call(path: string, kind: "chat" | "text", req: Record<string, unknown>, opts: CallOptions): Promise<UpstreamResult> {
    const body: Record<string, unknown> = { ...req, model: opts.model };
    // OpenAI's reasoning models (o-series, gpt-5) reject the deprecated max_tokens; every current OpenAI chat model
    // takes max_completion_tokens. Other OpenAI-protocol servers get the field the client sent.
    if (this.config.type === "openai" && kind === "chat" && body.max_tokens != null && body.max_completion_tokens == null) {
      body.max_completion_tokens = body.max_tokens;
      delete body.max_tokens;
    }
    if (opts.stream) body.stream_options = { ...(req.stream_options as object | undefined), include_usage: true };
    if (opts.prefill && kind === "chat") prefill(this.config.type, body);
    const res = await postJson(this.send, this.config.endpoint + path, this.#headers, body, opts);
    if ("kind" in res) return res; // an UpstreamFailure
    if (!res.ok) return failureFromResponse(res, pickError);
    if (opts.stream) {
      const sse = sseBody(res);
      if (!(sse instanceof ReadableStream)) return sse;
      return { ok: true, stream: true, model: opts.model, events: new Passthrough(sse, kind, opts.includeUsage, opts.maxEventBytes, () => estimatePromptTokens(kind, req as ChatRequest), opts.malformedEvent) };
    }
    const read = await bodyJson(res, opts);
    if ("kind" in read) return read; // an UpstreamFailure
    const { text, json } = read;
    if (!json || typeof json !== "object" || !Array.isArray(json.choices)) {
      return protocolFailure("upstream returned a body that is not an OpenAI completion");
    }
    return { ok: true, stream: false, body: text, usage: readUsage(json.usage), model: typeof json.model === "string" ? json.model : opts.model };
  }
}

/**
 * Asks the upstream to continue the request's trailing assistant message instead of answering after it:
 * DeepSeek's chat prefix completion (`prefix: true` on that message, served under its /beta endpoint), vLLM's
 * `continue_final_message`. OpenAI itself has no such mode: it gets the message as it is.
 */
function prefill(type: ProviderConfig["type"], body: Record<string, unknown>): void {
  if (type === "deepseek") {
    const messages = body.messages as Record<string, unknown>[];
    body.messages = [...messages.slice(0, -1), { ...messages[messages.length - 1], prefix: true }];
  } else if (type === "openai_compatible") {
    body.continue_final_message = true;
    body.add_generation_prompt = false;
  }
}

function readUsage(u: any): Usage | undefined {
  if (!u || typeof u !== "object") return undefined;
  const p = Number(u.prompt_tokens) || 0, c = Number(u.completion_tokens) || 0;
  return { prompt_tokens: p, completion_tokens: c, total_tokens: Number(u.total_tokens) || p + c };
}

/**
 * The upstream SSE body as StreamEvents: each read() is one upstream read (SseReader), one JSON.parse per
 * event learns content/usage/error, and the event's own text is forwarded (never re-serialised). No generator
 * or async function per layer: one promise per upstream read. For an upstream that sends no usage chunk, the
 * characters generated are counted and an estimated usage is reported at [DONE].
 */
class Passthrough implements StreamEvents {
  // dropped at the end: a finished stream holds nothing of the upstream's
  // (docs/decisions/0014-finished-streams-let-go.md)
  #sse: SseReader | null;
  readonly #out: StreamEvent[] = [];
  readonly #seen: Seen = { usage: false, chars: 0, finished: false };

  constructor(
    body: ReadableStream<Uint8Array>,
    readonly kind: "chat" | "text",
    readonly includeUsage: boolean,
    maxEventBytes: number,
    readonly promptTokens: () => number,
    readonly malformedEvent: (() => void) | undefined,
  ) {
    this.#sse = new SseReader(body, maxEventBytes);
  }

  read(): Promise<StreamEvent[] | null> {
    if (this.#sse === null) return Promise.resolve(null);
    return this.#sse.read().then(this.#map, this.#broke);
  }

  cancel(): void {
    this.#release();
    this.#out.length = 0;
  }

  /**
   * Stops reading the upstream and lets go of it (the events of the last read stay for the caller). `finished`:
   * at [DONE], so the client may keep the connection if the body ends right after (ChunkReader.done).
   */
  #release(finished = false): void {
    if (finished) this.#sse?.done();
    else this.#sse?.cancel();
    this.#sse = null;
  }

  readonly #map = (events: SseEvent[] | null): StreamEvent[] => {
    const out = this.#out;
    out.length = 0;
    try {
      if (events === null) {
        // a body that closes cleanly after the finish_reason (and the usage) is complete without its [DONE];
        // one that closes before is a broken stream
        if (!this.#seen.finished) throw new UpstreamStreamError("upstream stream ended before [DONE]");
        this.#end(out);
        return out;
      }
      for (let i = 0; i < events.length; i++) {
        const data = events[i].data;
        if (data === "[DONE]") {
          this.#end(out);
          return out;
        }
        const ev = toEvent(data, this.kind, this.includeUsage, this.#seen);
        if (ev) out.push(ev);
        else skipMalformed(this.malformedEvent, "upstream sent an SSE event that is not JSON");
      }
    } catch (e) {
      this.#release();
      throw e;
    }
    return out;
  };

  /** The end of the stream: the estimated usage when the upstream reported none, and the upstream let go. */
  #end(out: StreamEvent[]): void {
    const seen = this.#seen;
    if (!seen.usage) {
      // an upstream that ignores stream_options (older vLLM, llama.cpp, LM Studio) sends no usage chunk: the
      // client that asked for one gets it with the estimate
      const usage = tokenUsage(this.promptTokens(), estimateTokens(seen.chars), true);
      out.push({ data: this.includeUsage ? usageChunk(seen, this.kind, usage) : null, content: false, usage });
    }
    this.#release(true); // anything after [DONE] is not read
  }

  readonly #broke = (e: unknown): never => {
    this.#release();
    throw e;
  };
}

/** What a stream has shown so far: a usage report, the characters generated, a finish_reason, its first chunk. */
interface Seen {
  usage: boolean;
  chars: number;
  finished: boolean;
  /** the first chunk's id, created and model, for a usage chunk of the router's own */
  head?: { id: unknown; created: unknown; model: unknown };
}

/** The usage chunk the OpenAI spec ends a stream with (`choices: []`), in the stream's own id and model. */
function usageChunk(seen: Seen, kind: "chat" | "text", usage: Usage): string {
  const { estimated: _e, ...u } = usage;
  const h = seen.head;
  return JSON.stringify({
    id: h?.id ?? "", object: kind === "chat" ? "chat.completion.chunk" : "text_completion",
    created: h?.created ?? Math.floor(Date.now() / 1000), model: h?.model ?? "", choices: [], usage: u,
  });
}

const USAGE_NULL = ',"usage":null}';

/** One upstream event as a StreamEvent; null when it is not a JSON object. */
function toEvent(data: string, kind: "chat" | "text", includeUsage: boolean, seen: Seen): StreamEvent | null {
  let chunk: any;
  try {
    chunk = JSON.parse(data);
  } catch {
    return null;
  }
  if (!chunk || typeof chunk !== "object") return null;
  if (chunk.error) {
    const e = chunk.error;
    // strings only: anything else (an object, say) would reach the client's error event without being redacted
    const str = (v: unknown, otherwise: string) => (typeof v === "string" && v ? v : otherwise);
    throw new UpstreamStreamError(typeof e === "string" ? e : str(e.message, "upstream stream error"), str(e.code, "upstream_stream_error"), str(e.type, "upstream_error"));
  }
  seen.head ??= { id: chunk.id, created: chunk.created, model: chunk.model };
  const usage = chunk.usage ? readUsage(chunk.usage) : undefined;
  if (usage) seen.usage = true;
  else if (chunk.usage === undefined && includeUsage && data.endsWith("}")) data = data.slice(0, -1) + USAGE_NULL;
  else if (chunk.usage === null && !includeUsage) {
    // the spec's `"usage": null` on every chunk but the usage chunk is for a client that asked for usage (an
    // upstream that ignores stream_options leaves it out); the router always asks upstream, so for a client that
    // did not, it is cut out as written when it is the last key of compact JSON (OpenAI's), else re-serialised
    if (data.endsWith(USAGE_NULL)) data = data.slice(0, -USAGE_NULL.length) + "}";
    else {
      delete chunk.usage;
      data = JSON.stringify(chunk);
    }
  }
  const choice = chunk.choices?.[0];
  const before = seen.chars;
  let content = false;
  if (choice) {
    if (choice.finish_reason) seen.finished = true;
    if (kind === "text") {
      if (typeof choice.text === "string") seen.chars += choice.text.length;
      content = !!choice.finish_reason || (typeof choice.text === "string" && choice.text.length > 0);
    } else {
      const d = choice.delta;
      if (d) {
        if (typeof d.content === "string") seen.chars += d.content.length;
        if (typeof d.reasoning_content === "string") seen.chars += d.reasoning_content.length;
        if (Array.isArray(d.tool_calls)) for (const t of d.tool_calls) if (typeof t?.function?.arguments === "string") seen.chars += t.function.arguments.length;
      }
      content = !!choice.finish_reason || (!!d && ((typeof d.content === "string" && d.content.length > 0) || !!d.tool_calls || !!d.refusal ||
        (typeof d.reasoning_content === "string" && d.reasoning_content.length > 0)));
    }
  }
  // the router asked for usage upstream: a usage-only chunk goes to the client only if it asked too
  const drop = usage && !includeUsage && (!chunk.choices || chunk.choices.length === 0);
  return { data: drop ? null : data, content, usage, chars: seen.chars - before };
}
