// Adapter for Ollama's native API: POST {endpoint}/api/chat for chat completions, POST {endpoint}/api/generate
// for legacy completions. Requests are translated from the OpenAI shape; answers (JSON, or NDJSON streams: one
// JSON object per line, the last with done:true and the token counts) are translated back into OpenAI responses
// and chunks as they arrive.
import type { ProviderConfig } from "../../config/schema.ts";
import { lines, skipMalformed } from "../event-streams.ts";
import { type FinishReason, generatorEvents, OpenAIShaper, promptOf, randomId, stopList } from "../openai-shapes.ts";
import { estimatePromptTokens, estimateTokens, tokenUsage } from "../tokens.ts";
import type { Adapter, CallOptions, ChatMessage, ChatRequest, StreamEvent, TextRequest, UpstreamFailure, UpstreamFetch, UpstreamResponse, UpstreamResult, Usage } from "../types.ts";
import { UpstreamStreamError } from "../types.ts";
import { bearerHeaders, bodyJson, failureFromResponse, globalFetch, postJson, protocolFailure, refuseLogprobs, Untranslatable } from "../upstream.ts";

/** Ollama error bodies are `{"error": "message"}`. */
const pickError = (j: any) =>
  j && typeof j.error === "string" ? { message: j.error } : j && typeof j.error === "object" && j.error ? j.error : undefined;

/** Ollama phrasings for a prompt larger than the model's context window (it usually truncates silently). */
const OLLAMA_CONTEXT_RE = /context length|context window|exceeds (?:the )?(?:maximum )?context|prompt is too long|too many tokens/i;

/** Ollama's 404 for a model that is not pulled: `model "x" not found, try pulling it first`. */
const MODEL_NOT_FOUND_RE = /model .*not found/i;

interface OllamaToolCall {
  id?: string;
  function: { index?: number; name: string; arguments: Record<string, unknown> };
}
interface OllamaMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  images?: string[];
  tool_calls?: OllamaToolCall[];
  tool_name?: string;
}

export class OllamaAdapter implements Adapter {
  readonly #headers: Record<string, string>;

  constructor(readonly config: ProviderConfig, readonly send: UpstreamFetch = globalFetch) {
    this.#headers = bearerHeaders(config, "application/json, application/x-ndjson");
  }

  chat(req: ChatRequest, opts: CallOptions): Promise<UpstreamResult> {
    let messages: OllamaMessage[];
    try {
      refuseLogprobs(req, "ollama");
      messages = toOllamaMessages(req.messages);
    } catch (e) {
      if (e instanceof Untranslatable) return Promise.resolve(e.failure());
      throw e;
    }
    const body: Record<string, unknown> = { model: opts.model, messages, stream: opts.stream, options: toOptions(req) };
    if (req.tools?.length && req.tool_choice !== "none") body.tools = req.tools;
    const rf = req.response_format;
    if (rf?.type === "json_object") body.format = "json";
    else if (rf?.type === "json_schema") {
      const schema = (rf.json_schema as { schema?: unknown } | undefined)?.schema;
      body.format = schema && typeof schema === "object" ? schema : "json";
    }
    copyOllamaExtras(req, body);
    return this.#call("/api/chat", "chat", body, opts, () => estimatePromptTokens("chat", req));
  }

  text(req: TextRequest, opts: CallOptions): Promise<UpstreamResult> {
    try {
      refuseLogprobs(req, "ollama");
    } catch (e) {
      return Promise.resolve((e as Untranslatable).failure());
    }
    const prompt = promptOf(req);
    const body: Record<string, unknown> = { model: opts.model, prompt, stream: opts.stream, options: toOptions(req) };
    if (typeof req.suffix === "string" && req.suffix) body.suffix = req.suffix;
    copyOllamaExtras(req, body);
    return this.#call("/api/generate", "text", body, opts, () => estimatePromptTokens("text", req));
  }

  async #call(
    path: string,
    kind: "chat" | "text",
    body: Record<string, unknown>,
    opts: CallOptions,
    promptTokens: () => number,
  ): Promise<UpstreamResult> {
    const res = await postJson(this.send, this.config.endpoint + path, this.#headers, body, opts);
    if ("kind" in res) return res; // an UpstreamFailure
    if (!res.ok) return ollamaFailure(res);
    const ctype = res.headers.get("content-type") ?? "";
    if (!ctype.includes("json")) {
      res.body?.cancel().catch(() => {});
      return protocolFailure(`ollama answered with ${ctype || "no content type"}, not JSON`);
    }
    const shaper = new OpenAIShaper(kind, randomId(kind === "chat" ? "chatcmpl-" : "cmpl-"), opts.model, opts.includeUsage);
    if (opts.stream) {
      if (!res.body) return protocolFailure("ollama answered a stream request with an empty body");
      return { ok: true, stream: true, model: opts.model, events: generatorEvents(translateStream(res.body, kind, shaper, opts, promptTokens)) };
    }
    const read = await bodyJson(res, opts);
    if ("kind" in read) return read; // an UpstreamFailure
    const json = read.json;
    if (!json || typeof json !== "object") return protocolFailure("ollama returned a body that is not JSON");
    if (typeof json.error === "string") return protocolFailure(`ollama error: ${json.error}`);
    let content: string;
    let toolCalls: unknown[] | undefined;
    let reasoning = "";
    if (kind === "chat") {
      const m = json.message;
      if (!m || typeof m !== "object") return protocolFailure("ollama returned a chat response without a message");
      content = typeof m.content === "string" ? m.content : "";
      if (typeof m.thinking === "string") reasoning = m.thinking;
      if (Array.isArray(m.tool_calls) && m.tool_calls.length) toolCalls = m.tool_calls.map((tc: any) => openAIToolCall(tc));
    } else {
      if (typeof json.response !== "string") return protocolFailure("ollama returned a generate response without a response");
      content = json.response;
    }
    const usage = readUsage(json, promptTokens, content.length + reasoning.length);
    const finish = finishFromDoneReason(json.done_reason, !!toolCalls);
    const model = typeof json.model === "string" && json.model ? json.model : opts.model;
    const out = model === opts.model ? shaper : new OpenAIShaper(kind, shaper.id, model);
    let payload = out.response(toolCalls && !content ? null : content, finish, usage, toolCalls);
    if (reasoning) {
      // keep the model's thinking, as DeepSeek-style reasoning_content next to the content
      const parsed = JSON.parse(payload);
      parsed.choices[0].message.reasoning_content = reasoning;
      payload = JSON.stringify(parsed);
    }
    return { ok: true, stream: false, body: payload, usage, model };
  }
}

async function ollamaFailure(res: UpstreamResponse): Promise<UpstreamFailure> {
  const f = await failureFromResponse(res, pickError);
  if (res.status === 404 && !f.code && MODEL_NOT_FOUND_RE.test(f.message)) f.code = "model_not_found";
  if (!f.contextExceeded && res.status >= 400 && res.status !== 404 && OLLAMA_CONTEXT_RE.test(f.message)) f.contextExceeded = true;
  return f;
}

/** OpenAI sampling fields -> Ollama `options`. */
function toOptions(req: ChatRequest | TextRequest): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (req.temperature != null) o.temperature = req.temperature;
  if (req.top_p != null) o.top_p = req.top_p;
  if (req.seed != null) o.seed = req.seed;
  const stop = stopList(req.stop);
  if (stop) o.stop = stop;
  const max = (req as ChatRequest).max_completion_tokens ?? req.max_tokens;
  if (max != null) o.num_predict = max;
  if (typeof req.frequency_penalty === "number") o.frequency_penalty = req.frequency_penalty;
  if (typeof req.presence_penalty === "number") o.presence_penalty = req.presence_penalty;
  return o;
}

/** Ollama-only request fields a client may send through the OpenAI endpoint. */
function copyOllamaExtras(req: Record<string, unknown>, body: Record<string, unknown>): void {
  if (req.keep_alive !== undefined) body.keep_alive = req.keep_alive;
  if (req.think !== undefined) body.think = req.think;
}

const DATA_URL_BASE64 = ";base64,";

function toOllamaMessages(messages: ChatMessage[]): OllamaMessage[] {
  const out: OllamaMessage[] = new Array(messages.length);
  let toolNames: Map<string, string> | undefined; // tool_call_id -> function name, for tool results
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    const role = m.role === "developer" ? "system" : m.role;
    const om: OllamaMessage = { role, content: "" };
    if (typeof m.content === "string") om.content = m.content;
    else if (Array.isArray(m.content)) {
      let text = "";
      for (let j = 0; j < m.content.length; j++) {
        const p = m.content[j];
        if (p.type === "text") text += (text ? "\n" : "") + (p as { text: string }).text;
        else if (p.type === "image_url") {
          const url = (p as { image_url: { url: string } }).image_url.url;
          const k = url.startsWith("data:") ? url.indexOf(DATA_URL_BASE64) : -1;
          if (k < 0) {
            throw new Untranslatable(`messages[${i}].content[${j}].image_url.url`, "ollama accepts images only as base64 data: URLs (data:image/png;base64,...)");
          }
          (om.images ??= []).push(url.slice(k + DATA_URL_BASE64.length));
        } else {
          throw new Untranslatable(`messages[${i}].content[${j}].type`, `content part type "${p.type}" is not supported by ollama`);
        }
      }
      om.content = text;
    }
    if (m.role === "assistant" && m.tool_calls?.length) {
      om.tool_calls = m.tool_calls.map((tc, j) => {
        (toolNames ??= new Map()).set(tc.id, tc.function.name);
        return { function: { name: tc.function.name, arguments: parseArguments(tc.function.arguments, `messages[${i}].tool_calls[${j}].function.arguments`) } };
      });
    } else if (m.role === "tool") {
      const name = m.tool_call_id ? toolNames?.get(m.tool_call_id) : undefined;
      if (name) om.tool_name = name;
    }
    out[i] = om;
  }
  return out;
}

function parseArguments(s: string, param: string): Record<string, unknown> {
  if (!s) return {};
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch {
    throw new Untranslatable(param, "tool call arguments must be a JSON object");
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new Untranslatable(param, "tool call arguments must be a JSON object");
  return v as Record<string, unknown>;
}

function openAIToolCall(tc: any, index?: number): Record<string, unknown> {
  const f = tc?.function ?? {};
  const args = f.arguments;
  const call: Record<string, unknown> = {
    id: typeof tc?.id === "string" && tc.id ? tc.id : randomId("call_"),
    type: "function",
    function: { name: typeof f.name === "string" ? f.name : "", arguments: typeof args === "string" ? args : JSON.stringify(args ?? {}) },
  };
  return index === undefined ? call : { index, ...call };
}

/** Ollama's done_reason (and whether the answer called tools) as an OpenAI finish_reason. */
function finishFromDoneReason(doneReason: unknown, toolCalls: boolean): FinishReason {
  if (doneReason === "length") return "length";
  return toolCalls ? "tool_calls" : "stop";
}

/** Usage from Ollama's counts; estimated (and marked so) for whatever count is missing. */
function readUsage(json: any, promptTokens: () => number, completionChars: number): Usage {
  const p = json.prompt_eval_count, c = json.eval_count;
  const hasP = typeof p === "number" && p >= 0, hasC = typeof c === "number" && c >= 0;
  return tokenUsage(
    hasP ? p : promptTokens(),
    hasC ? c : estimateTokens(completionChars),
    !(hasP && hasC),
  );
}

/** Ollama NDJSON -> OpenAI chunks, one line at a time. */
async function* translateStream(
  body: ReadableStream<Uint8Array>,
  kind: "chat" | "text",
  shaper: OpenAIShaper,
  opts: CallOptions,
  promptTokens: () => number,
): AsyncGenerator<StreamEvent, void, undefined> {
  if (kind === "chat") yield { data: shaper.chunk({ role: "assistant", content: "" }), content: false };
  let chars = 0;
  let tools = 0;
  for await (const line of lines(body, opts.maxEventBytes)) {
    if (!line) continue;
    let obj: any;
    try {
      obj = JSON.parse(line);
    } catch {
      skipMalformed(opts.malformedEvent, "ollama sent a stream line that is not JSON");
      continue;
    }
    if (!obj || typeof obj !== "object") throw new UpstreamStreamError("ollama sent a stream line that is not a JSON object");
    if (obj.error !== undefined) {
      throw new UpstreamStreamError(typeof obj.error === "string" ? obj.error : obj.error?.message ?? "ollama stream error");
    }
    if (kind === "chat") {
      const m = obj.message;
      if (m) {
        if (typeof m.thinking === "string" && m.thinking) {
          chars += m.thinking.length;
          yield { data: shaper.chunk({ reasoning_content: m.thinking }), content: true, chars: m.thinking.length };
        }
        if (typeof m.content === "string" && m.content) {
          chars += m.content.length;
          yield { data: shaper.chunk({ content: m.content }), content: true, chars: m.content.length };
        }
        if (Array.isArray(m.tool_calls) && m.tool_calls.length) {
          const calls = m.tool_calls.map((tc: any) => openAIToolCall(tc, tools++));
          yield { data: shaper.chunk({ tool_calls: calls }), content: true };
        }
      }
    } else if (typeof obj.response === "string" && obj.response) {
      chars += obj.response.length;
      yield { data: shaper.chunk({ content: obj.response }), content: true, chars: obj.response.length };
    }
    if (obj.done === true) {
      yield* shaper.finish(finishFromDoneReason(obj.done_reason, tools > 0), readUsage(obj, promptTokens, chars), opts.includeUsage);
      return;
    }
  }
  throw new UpstreamStreamError("ollama stream ended before its final (done) line");
}
