// Adapter for the Anthropic Messages API (POST {endpoint}/v1/messages). Translates OpenAI Chat Completions
// requests into Messages requests, and Messages responses / event streams back into OpenAI completions and
// chunks. Legacy text completions go through the same path as a one-message chat.
import type { ProviderConfig } from "../../config/schema.ts";
import { skipMalformed, sseEvents } from "../event-streams.ts";
import { type FinishReason, generatorEvents, OpenAIShaper, randomId, stopList, textToChat } from "../openai-shapes.ts";
import { tokenUsage } from "../tokens.ts";
import type {
  Adapter,
  CallOptions,
  ChatMessage,
  ChatRequest,
  ContentPart,
  StreamEvent,
  TextRequest,
  ToolCall,
  UpstreamFetch,
  UpstreamResult,
  Usage,
} from "../types.ts";
import { UpstreamStreamError } from "../types.ts";
import { bodyJson, failureFromResponse, globalFetch, postJson, protocolFailure, refuseLogprobs, sseBody, Untranslatable } from "../upstream.ts";

export const ANTHROPIC_VERSION = "2023-06-01";
/** max_tokens is required by the Messages API; this is sent when the client gives none. */
export const DEFAULT_MAX_TOKENS = 4096;

const JSON_OBJECT_HINT = "Respond only with a single valid JSON object, with no text before or after it.";

type Block = Record<string, unknown>;
type Kind = "chat" | "text";

/** Anthropic error bodies: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}} */
const pickError = (j: any) =>
  j && typeof j.error === "object" && j.error !== null
    ? { message: j.error.message, type: j.error.type }
    : j && typeof j.error === "string"
    ? { message: j.error }
    : undefined;

export class AnthropicAdapter implements Adapter {
  readonly #headers: Record<string, string>;
  readonly #url: string;

  constructor(readonly config: ProviderConfig, readonly send: UpstreamFetch = globalFetch) {
    this.#url = config.endpoint + "/v1/messages";
    const h: Record<string, string> = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "anthropic-version": ANTHROPIC_VERSION,
    };
    // lower-cased so that a configured "Anthropic-Version" or "anthropic-beta" replaces rather than duplicates
    for (const [k, v] of Object.entries(config.headers ?? {})) h[k.toLowerCase()] = v;
    if (config.api_key) h["x-api-key"] = config.api_key;
    this.#headers = h;
  }

  chat(req: ChatRequest, opts: CallOptions): Promise<UpstreamResult> {
    return this.#call("chat", req, opts);
  }

  text(req: TextRequest, opts: CallOptions): Promise<UpstreamResult> {
    return this.#call("text", textToChat(req), opts);
  }

  async #call(kind: Kind, req: ChatRequest, opts: CallOptions): Promise<UpstreamResult> {
    let body: Record<string, unknown>;
    try {
      refuseLogprobs(req, "anthropic");
      body = toMessagesRequest(req, opts.model, opts.stream);
      // a trailing assistant message is a prefill in the Messages API, which refuses one that ends in whitespace
      if (opts.prefill && /\s$/.test(String(req.messages[req.messages.length - 1]?.content ?? ""))) {
        throw new Untranslatable(`messages[${req.messages.length - 1}].content`, "an assistant prefill cannot end with whitespace");
      }
    } catch (e) {
      if (e instanceof Untranslatable) return e.failure();
      throw e;
    }
    const res = await postJson(this.send, this.#url, this.#headers, body, opts);
    if ("kind" in res) return res; // an UpstreamFailure
    if (!res.ok) return failureFromResponse(res, pickError);

    if (opts.stream) {
      const body = sseBody(res);
      if (!(body instanceof ReadableStream)) return body;
      return { ok: true, stream: true, model: opts.model, events: generatorEvents(streamEvents(body, kind, opts)) };
    }

    const read = await bodyJson(res, opts);
    if ("kind" in read) return read; // an UpstreamFailure
    const json = read.json;
    if (!json || typeof json !== "object" || !Array.isArray(json.content)) {
      return protocolFailure("upstream returned a body that is not an Anthropic message");
    }
    return fromMessage(json, kind, opts.model);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Request: OpenAI chat -> Anthropic Messages

interface Turn {
  role: "user" | "assistant";
  /** tool_result blocks: the API wants them before any other content of the user turn */
  results: Block[];
  blocks: Block[];
}

/** Builds the Messages request body. Throws Untranslatable for input that cannot be translated. */
export function toMessagesRequest(req: ChatRequest, model: string, stream: boolean): Record<string, unknown> {
  const system: string[] = [];
  const turns: Turn[] = [];
  const turn = (role: Turn["role"]): Turn => {
    const last = turns[turns.length - 1];
    if (last && last.role === role) return last; // consecutive same-role messages are merged
    const t: Turn = { role, results: [], blocks: [] };
    turns.push(t);
    return t;
  };

  const msgs = req.messages;
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i];
    const path = `messages[${i}]`;
    switch (m.role) {
      case "system":
      case "developer": {
        const s = plainText(m.content, `${path}.content`);
        if (s) system.push(s);
        break;
      }
      case "user": {
        const blocks = toBlocks(m.content, `${path}.content`);
        const t = turn("user");
        for (const b of blocks) t.blocks.push(b);
        break;
      }
      case "assistant": {
        const t = turn("assistant");
        for (const b of toBlocks(m.content, `${path}.content`)) t.blocks.push(b);
        if (m.tool_calls) for (let j = 0; j < m.tool_calls.length; j++) t.blocks.push(toolUse(m.tool_calls[j], `${path}.tool_calls[${j}]`));
        break;
      }
      case "tool": {
        const content = m.content;
        const result: Block = { type: "tool_result", tool_use_id: m.tool_call_id };
        if (typeof content === "string") {
          if (content) result.content = content;
        } else if (content) {
          const blocks = toBlocks(content, `${path}.content`);
          if (blocks.length) result.content = blocks;
        }
        turn("user").results.push(result);
        break;
      }
      default:
        throw new Untranslatable(`${path}.role`, `role ${(m as ChatMessage).role} is not supported`);
    }
  }

  const rf = req.response_format;
  if (rf && rf.type === "json_object") system.push(JSON_OBJECT_HINT);
  else if (rf && rf.type === "json_schema") {
    const js = rf.json_schema as { schema?: unknown } | undefined;
    system.push(`${JSON_OBJECT_HINT} The object must conform to this JSON Schema: ${JSON.stringify(js?.schema ?? js ?? {})}`);
  }

  const messages = new Array(turns.length);
  for (let i = 0; i < turns.length; i++) {
    const t = turns[i];
    const content = t.results.length ? (t.blocks.length ? t.results.concat(t.blocks) : t.results) : t.blocks;
    // a lone text block is sent as a plain string (smaller, and what most clients send)
    messages[i] = {
      role: t.role,
      content: content.length === 0 ? "" : content.length === 1 && content[0].type === "text" ? content[0].text : content,
    };
  }

  const body: Record<string, unknown> = {
    model,
    max_tokens: req.max_completion_tokens ?? req.max_tokens ?? DEFAULT_MAX_TOKENS,
    messages,
  };
  if (system.length) body.system = system.join("\n\n");
  // OpenAI accepts 0..2, Anthropic 0..1
  if (req.temperature != null) body.temperature = req.temperature > 1 ? 1 : req.temperature;
  if (req.top_p != null) body.top_p = req.top_p;
  const stops = stopList(req.stop);
  if (stops) body.stop_sequences = stops;
  if (typeof req.user === "string" && req.user) body.metadata = { user_id: req.user };
  if (req.tools && req.tools.length) {
    body.tools = req.tools.map((t) => {
      const f = t.function;
      const out: Block = { name: f.name, input_schema: f.parameters ?? { type: "object", properties: {} } };
      if (f.description) out.description = f.description;
      return out;
    });
    const choice = toolChoice(req.tool_choice);
    if (req.parallel_tool_calls === false) {
      body.tool_choice = { ...(choice ?? { type: "auto" }), disable_parallel_tool_use: true };
    } else if (choice) body.tool_choice = choice;
  }
  if (stream) body.stream = true;
  return body;
}

function toolChoice(c: unknown): Block | undefined {
  if (c == null) return undefined;
  if (c === "auto") return { type: "auto" };
  if (c === "none") return { type: "none" };
  if (c === "required") return { type: "any" };
  const name = (c as { function?: { name?: string } }).function?.name;
  if (typeof name === "string") return { type: "tool", name };
  throw new Untranslatable("tool_choice", "must be auto, none, required or a function");
}

function toolUse(tc: ToolCall, path: string): Block {
  const args = tc.function.arguments;
  let input: unknown = {};
  if (args && args.trim()) {
    try {
      input = JSON.parse(args);
    } catch {
      throw new Untranslatable(`${path}.function.arguments`, "is not valid JSON");
    }
    if (input === null || typeof input !== "object" || Array.isArray(input)) {
      throw new Untranslatable(`${path}.function.arguments`, "must be a JSON object");
    }
  }
  return { type: "tool_use", id: tc.id, name: tc.function.name, input };
}

/** The text of a system / developer message. */
function plainText(content: ChatMessage["content"], path: string): string {
  if (content == null) return "";
  if (typeof content === "string") return content;
  let s = "";
  for (let j = 0; j < content.length; j++) {
    const p = content[j];
    if (p.type !== "text") throw new Untranslatable(`${path}[${j}]`, `content part type ${p.type} is not supported in system messages`);
    s += s ? "\n" + (p as { text: string }).text : (p as { text: string }).text;
  }
  return s;
}

/** OpenAI message content -> Anthropic content blocks (empty text is dropped: the API rejects it). */
function toBlocks(content: ChatMessage["content"], path: string): Block[] {
  if (content == null) return [];
  if (typeof content === "string") return content ? [{ type: "text", text: content }] : [];
  const out: Block[] = [];
  for (let j = 0; j < content.length; j++) {
    const p = content[j] as ContentPart & Record<string, any>;
    switch (p.type) {
      case "text":
      case "refusal": {
        const text = p.type === "text" ? p.text : p.refusal;
        if (typeof text === "string" && text) out.push({ type: "text", text });
        break;
      }
      case "image_url":
        out.push({ type: "image", source: mediaSource(p.image_url?.url, `${path}[${j}].image_url.url`) });
        break;
      case "file": {
        const data = p.file?.file_data;
        if (typeof data !== "string") throw new Untranslatable(`${path}[${j}].file.file_data`, "is required (a base64 data URL); file_id is not supported by this provider");
        out.push({ type: "document", source: mediaSource(data, `${path}[${j}].file.file_data`) });
        break;
      }
      default:
        throw new Untranslatable(`${path}[${j}].type`, `content part type ${p.type} is not supported by the anthropic provider`);
    }
  }
  return out;
}

/** A data URL -> base64 source; an http(s) URL -> url source. */
function mediaSource(url: unknown, param: string): Block {
  if (typeof url !== "string") throw new Untranslatable(param, "must be a string");
  if (url.startsWith("data:")) {
    const comma = url.indexOf(",");
    const meta = comma > 0 ? url.slice(5, comma) : "";
    if (comma < 0 || !meta.endsWith(";base64")) throw new Untranslatable(param, "data URLs must be base64-encoded (data:<media type>;base64,...)");
    const semi = meta.indexOf(";");
    return { type: "base64", media_type: meta.slice(0, semi), data: url.slice(comma + 1) };
  }
  if (url.startsWith("https://") || url.startsWith("http://")) return { type: "url", url };
  throw new Untranslatable(param, "must be a data URL or an http(s) URL");
}

// ---------------------------------------------------------------------------------------------------------
// Response: Anthropic message -> OpenAI completion

/** An Anthropic stop_reason as an OpenAI finish_reason. */
function finishFromStopReason(stop: unknown): FinishReason {
  switch (stop) {
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length";
    case "tool_use":
      return "tool_calls";
    case "refusal":
      return "content_filter";
    default: // end_turn, stop_sequence, pause_turn
      return "stop";
  }
}

/** Running token counts; message_start and message_delta may each carry part of them. */
class TokenCount {
  input = 0;
  output = 0;
  add(u: any): void {
    if (!u || typeof u !== "object") return;
    // the OpenAI prompt count includes cached tokens; Anthropic reports them apart
    if (typeof u.input_tokens === "number") {
      this.input = u.input_tokens + (Number(u.cache_creation_input_tokens) || 0) + (Number(u.cache_read_input_tokens) || 0);
    }
    if (typeof u.output_tokens === "number") this.output = u.output_tokens;
  }
  get usage(): Usage {
    return tokenUsage(this.input, this.output);
  }
}

function fromMessage(json: any, kind: Kind, fallbackModel: string): UpstreamResult {
  let text = "";
  let hasText = false;
  const calls: ToolCall[] = [];
  for (const b of json.content) {
    if (!b || typeof b !== "object") continue;
    if (b.type === "text" && typeof b.text === "string") {
      text += b.text;
      hasText = true;
    } else if (b.type === "tool_use" && kind === "chat") {
      calls.push({ id: String(b.id), type: "function", function: { name: String(b.name), arguments: JSON.stringify(b.input ?? {}) } });
    }
  }
  const tokens = new TokenCount();
  tokens.add(json.usage);
  const usage = tokens.usage;
  const model = typeof json.model === "string" && json.model ? json.model : fallbackModel;
  const id = typeof json.id === "string" && json.id ? json.id : randomId(kind === "chat" ? "chatcmpl-" : "cmpl-");
  const shaper = new OpenAIShaper(kind, id, model);
  const content = !hasText && calls.length ? null : text;
  return { ok: true, stream: false, body: shaper.response(content, finishFromStopReason(json.stop_reason), usage, calls), usage, model };
}

// ---------------------------------------------------------------------------------------------------------
// Stream: Anthropic event stream -> OpenAI chunks, yielded as each event arrives

async function* streamEvents(body: ReadableStream<Uint8Array>, kind: Kind, opts: CallOptions): AsyncGenerator<StreamEvent, void, undefined> {
  let shaper: OpenAIShaper | undefined;
  const sh = () => (shaper ??= new OpenAIShaper(kind, randomId(kind === "chat" ? "chatcmpl-" : "cmpl-"), opts.model, opts.includeUsage));
  const tokens = new TokenCount();
  let finish: FinishReason = null;
  /** content block index -> OpenAI tool call index */
  const toolIndex = new Map<number, number>();
  /** content block indexes of tool_use blocks whose input JSON has not started yet */
  const noArgs = new Set<number>();

  for await (const ev of sseEvents(body, opts.maxEventBytes)) {
    let msg: any;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      skipMalformed(opts.malformedEvent, "upstream sent an event that is not JSON");
      continue;
    }
    switch (msg?.type ?? ev.event) {
      case "message_start": {
        const m = msg.message ?? {};
        shaper = new OpenAIShaper(
          kind,
          typeof m.id === "string" && m.id ? m.id : randomId(kind === "chat" ? "chatcmpl-" : "cmpl-"),
          typeof m.model === "string" && m.model ? m.model : opts.model,
          opts.includeUsage,
        );
        tokens.add(m.usage);
        if (kind === "chat") yield { data: shaper.chunk({ role: "assistant", content: "" }), content: false };
        break;
      }
      case "content_block_start": {
        const cb = msg.content_block;
        if (!cb) break;
        if (cb.type === "text") {
          if (typeof cb.text === "string" && cb.text) yield { data: sh().chunk({ content: cb.text }), content: true, chars: cb.text.length };
        } else if (cb.type === "tool_use" && kind === "chat") {
          const index = toolIndex.size;
          toolIndex.set(msg.index, index);
          noArgs.add(msg.index);
          yield {
            data: sh().chunk({ tool_calls: [{ index, id: String(cb.id), type: "function", function: { name: String(cb.name), arguments: "" } }] }),
            content: true,
          };
        }
        break;
      }
      case "content_block_delta": {
        const d = msg.delta;
        if (!d) break;
        if (d.type === "text_delta") {
          if (typeof d.text === "string" && d.text) yield { data: sh().chunk({ content: d.text }), content: true, chars: d.text.length };
        } else if (d.type === "input_json_delta") {
          const index = toolIndex.get(msg.index);
          if (index !== undefined && typeof d.partial_json === "string" && d.partial_json) {
            noArgs.delete(msg.index);
            yield { data: sh().chunk({ tool_calls: [{ index, function: { arguments: d.partial_json } }] }), content: true, chars: d.partial_json.length };
          }
        } else if (d.type === "thinking_delta" && typeof d.thinking === "string" && d.thinking) {
          // not forwarded, but billed as output: counted for a stream that ends early
          yield { data: null, content: false, chars: d.thinking.length };
        } // signature_delta, citations_delta: not forwarded
        break;
      }
      case "content_block_stop": {
        // a tool without parameters gets no input JSON at all; OpenAI clients parse the arguments, so "{}" as
        // OpenAI sends it (and as the non-streamed answer has it)
        const index = toolIndex.get(msg.index);
        if (index !== undefined && noArgs.delete(msg.index)) {
          yield { data: sh().chunk({ tool_calls: [{ index, function: { arguments: "{}" } }] }), content: true, chars: 2 };
        }
        break;
      }
      case "message_delta":
        if (msg.delta?.stop_reason) finish = finishFromStopReason(msg.delta.stop_reason);
        tokens.add(msg.usage);
        break;
      case "message_stop":
        yield* sh().finish(finish ?? "stop", tokens.usage, opts.includeUsage);
        return;
      case "error": {
        const e = msg.error ?? {};
        throw new UpstreamStreamError(
          typeof e.message === "string" && e.message ? e.message : "upstream stream error",
          typeof e.type === "string" && e.type ? e.type : "upstream_stream_error",
        );
      }
      default: // ping, and event types added later
        break;
    }
  }
  throw new UpstreamStreamError("upstream stream ended before message_stop");
}
