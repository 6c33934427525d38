// A stateless subset of the OpenAI Responses API (POST /v1/responses), served by translation onto the chat
// completions path: the request becomes a ChatRequest for Router.handle("chat", ...) (so routing, failover,
// breakers, usage accounting and every provider apply unchanged), and the Router's outcome (a chat completion,
// or the events of a stream of chat chunks) is rendered as a `response` object or the Responses event stream,
// event by event. Nothing is stored: previous_response_id, conversations, background mode and built-in tools
// are refused with a 400 naming the field.
import { z } from "zod";
import { encoder } from "../bytes.ts";
import { errorResponse, type ErrorBody } from "../errors.ts";
import { randomId } from "../providers/openai-shapes.ts";
import type { ChatMessage, ChatRequest, ChatTool, ContentPart, StreamEvent, ToolCall } from "../providers/types.ts";
import type { Outcome } from "../routing/outcome.ts";
import type { EventPipe } from "../routing/stream-pipe.ts";
import type { ResponseTap } from "./context.ts";
import { PipedBody, servedHeaders } from "./render.ts";
import { nullish } from "./schemas.ts";

// ---------------------------------------------------------------------------------------------------------
// Request schema
// ---------------------------------------------------------------------------------------------------------

const STATELESS = "this router is stateless and stores no responses; send the whole conversation in `input`";

/** A field the router refuses when set (null and absent are fine). */
const refused = (why: string) => z.any().refine((v) => v == null, { message: `is not supported: ${why}` }).optional();

const contentPart = z
  .looseObject({
    type: z.string(),
    text: z.string().optional(),
    refusal: z.string().optional(),
    image_url: nullish(z.string().min(1)),
    file_id: nullish(z.string()),
    detail: nullish(z.string()),
  })
  .superRefine((p, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: "custom", path: [path], message });
    switch (p.type) {
      case "input_text":
      case "output_text":
        if (p.text === undefined) issue("text", "is required");
        break;
      case "refusal":
        if (p.refusal === undefined) issue("refusal", "is required");
        break;
      case "input_image":
        if (p.image_url == null) {
          if (p.file_id != null) issue("file_id", "is not supported (this router stores no files): send image_url, a URL or a data: URL");
          else issue("image_url", "is required");
        }
        break;
      case "input_file":
      case "input_audio":
        issue("type", `${p.type} content parts are not supported by this router (only input_text and input_image)`);
        break;
      default:
        issue("type", `unknown content part type '${String(p.type).slice(0, 64)}' (expected input_text, input_image, output_text or refusal)`);
    }
  });

const content = z.union([z.string(), z.array(contentPart)], { error: "must be a string or an array of content parts" });

const MESSAGE_ROLES = new Set(["user", "system", "developer", "assistant"]);

const inputItem = z
  .looseObject({
    type: z.string().optional(),
    role: z.string().optional(),
    content: content.optional(),
    call_id: z.string().min(1).optional(),
    name: z.string().min(1).optional(),
    arguments: z.string().optional(),
    output: z.union([z.string(), z.array(contentPart)], { error: "must be a string or an array of content parts" }).optional(),
  })
  .superRefine((it, ctx) => {
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
    const type = it.type ?? "message";
    switch (type) {
      case "message": {
        if (it.role === undefined) return issue(["role"], "is required");
        if (!MESSAGE_ROLES.has(it.role)) return issue(["role"], "must be user, system, developer or assistant");
        if (it.content === undefined) return issue(["content"], "is required");
        if (typeof it.content === "string") return;
        for (let i = 0; i < it.content.length; i++) {
          const t = it.content[i].type;
          if (it.role === "assistant" ? t !== "output_text" && t !== "input_text" && t !== "refusal" : t === "refusal") {
            issue(["content", i, "type"], `${t} content is not allowed in a ${it.role} message`);
          }
        }
        return;
      }
      case "function_call":
        if (it.call_id === undefined) issue(["call_id"], "is required");
        if (it.name === undefined) issue(["name"], "is required");
        if (it.arguments === undefined) issue(["arguments"], "is required");
        return;
      case "function_call_output":
        if (it.call_id === undefined) issue(["call_id"], "is required");
        if (it.output === undefined) issue(["output"], "is required");
        else if (typeof it.output !== "string") {
          for (let i = 0; i < it.output.length; i++) {
            if (it.output[i].type !== "input_text" && it.output[i].type !== "output_text") issue(["output", i, "type"], "only text output is supported");
          }
        }
        return;
      case "reasoning":
        return; // the model's private reasoning from an earlier turn: dropped (chat completions has no place for it)
      case "item_reference":
        return issue(["type"], `item_reference is not supported: ${STATELESS} (Vercel AI SDK: providerOptions: { openai: { store: false } })`);
      default:
        return issue(["type"], `input items of type '${type.slice(0, 64)}' are not supported (expected message, function_call, function_call_output)`);
    }
  });

const tool = z
  .looseObject({
    type: z.string(),
    name: z.string().min(1).max(64).optional(),
    description: nullish(z.string()),
    parameters: nullish(z.record(z.string(), z.unknown())),
    strict: nullish(z.boolean()),
  })
  .superRefine((t, ctx) => {
    if (t.type !== "function") {
      ctx.addIssue({ code: "custom", path: ["type"], message: `'${t.type.slice(0, 64)}' tools are not supported by this router: only type "function" (built-in OpenAI tools need OpenAI's own Responses API)` });
    } else if (t.name === undefined) ctx.addIssue({ code: "custom", path: ["name"], message: "is required" });
  });

const toolChoice = z.any().superRefine((c, ctx) => {
  if (c == null || c === "auto" || c === "none" || c === "required") return;
  if (typeof c === "object" && !Array.isArray(c) && c.type === "function") {
    if (typeof c.name !== "string" || !c.name) ctx.addIssue({ code: "custom", path: ["name"], message: "is required" });
    return;
  }
  ctx.addIssue({ code: "custom", message: 'must be "auto", "none", "required" or {"type":"function","name":...}' });
}).optional();

const textFormat = z
  .looseObject({
    type: z.enum(["text", "json_object", "json_schema"]),
    name: z.string().min(1).optional(),
    schema: z.record(z.string(), z.unknown()).optional(),
    description: z.string().optional(),
    strict: nullish(z.boolean()),
  })
  .superRefine((f, ctx) => {
    if (f.type !== "json_schema") return;
    if (f.name === undefined) ctx.addIssue({ code: "custom", path: ["name"], message: "is required for json_schema" });
    if (f.schema === undefined) ctx.addIssue({ code: "custom", path: ["schema"], message: "is required for json_schema" });
  });

export const ResponsesRequestSchema = z.looseObject({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(inputItem).min(1, "must contain at least one item")], { error: "must be a string or an array of input items" }),
  instructions: nullish(z.string()),
  stream: nullish(z.boolean()),
  temperature: nullish(z.number().min(0).max(2)),
  top_p: nullish(z.number().min(0).max(1)),
  max_output_tokens: nullish(z.number().int().positive()),
  tools: nullish(z.array(tool)),
  tool_choice: toolChoice,
  parallel_tool_calls: nullish(z.boolean()),
  text: nullish(z.looseObject({ format: nullish(textFormat) })),
  reasoning: nullish(z.looseObject({ effort: nullish(z.string()) })),
  user: nullish(z.string()),
  metadata: nullish(z.record(z.string(), z.string())),
  store: nullish(z.boolean()),
  previous_response_id: refused(STATELESS),
  conversation: refused(STATELESS),
  prompt: refused("stored prompt templates need OpenAI's own Responses API; send instructions and input"),
  background: z.any().refine((v) => v == null || v === false, { message: `is not supported: ${STATELESS}; use stream: true for long responses` }).optional(),
});

export type ResponsesRequest = z.infer<typeof ResponsesRequestSchema>;
type InputItem = z.infer<typeof inputItem>;
type Part = z.infer<typeof contentPart>;

// ---------------------------------------------------------------------------------------------------------
// Request -> chat completions
// ---------------------------------------------------------------------------------------------------------

function partsText(parts: Part[]): string {
  let s = "";
  for (const p of parts) s += p.type === "refusal" ? p.refusal ?? "" : p.text ?? "";
  return s;
}

function messageOf(it: InputItem): ChatMessage {
  const role = it.role as ChatMessage["role"];
  const c = it.content!;
  if (typeof c === "string") return { role, content: c };
  if (role !== "user") return { role, content: partsText(c) };
  const parts: ContentPart[] = c.map((p): ContentPart =>
    p.type === "input_image"
      ? { type: "image_url", image_url: p.detail && p.detail !== "auto" ? { url: p.image_url!, detail: p.detail } : { url: p.image_url! } }
      : { type: "text", text: p.text ?? "" }
  );
  return { role, content: parts };
}

/** The chat completions request that serves a (validated) Responses API request. */
export function toChatRequest(req: ResponsesRequest): ChatRequest {
  const messages: ChatMessage[] = [];
  if (req.instructions) messages.push({ role: "system", content: req.instructions });
  if (typeof req.input === "string") messages.push({ role: "user", content: req.input });
  else {
    for (const it of req.input) {
      switch (it.type ?? "message") {
        case "message":
          messages.push(messageOf(it));
          break;
        case "function_call": {
          const call: ToolCall = { id: it.call_id!, type: "function", function: { name: it.name!, arguments: it.arguments! } };
          // consecutive calls (and the text before them) form one assistant turn, as chat completions has it
          const last = messages[messages.length - 1];
          if (last?.role === "assistant") (last.tool_calls ??= []).push(call);
          else messages.push({ role: "assistant", content: null, tool_calls: [call] });
          break;
        }
        case "function_call_output":
          messages.push({ role: "tool", tool_call_id: it.call_id!, content: typeof it.output === "string" ? it.output : partsText(it.output!) });
          break;
        // "reasoning": dropped
      }
    }
  }
  const out: ChatRequest = { model: req.model, messages };
  if (req.stream) {
    out.stream = true;
    out.stream_options = { include_usage: true };
  }
  if (req.temperature != null) out.temperature = req.temperature;
  if (req.top_p != null) out.top_p = req.top_p;
  if (req.max_output_tokens != null) out.max_tokens = req.max_output_tokens;
  if (req.user) out.user = req.user;
  if (req.reasoning?.effort) out.reasoning_effort = req.reasoning.effort;
  if (req.tools?.length) {
    out.tools = req.tools.map((t): ChatTool => {
      const f: ChatTool["function"] = { name: t.name! };
      if (t.description) f.description = t.description;
      if (t.parameters) f.parameters = t.parameters;
      if (t.strict != null) f.strict = t.strict;
      return { type: "function", function: f };
    });
    const c = req.tool_choice;
    if (c != null) out.tool_choice = typeof c === "string" ? c : { type: "function", function: { name: c.name } };
    if (req.parallel_tool_calls != null) out.parallel_tool_calls = req.parallel_tool_calls;
  }
  const f = req.text?.format;
  if (f?.type === "json_object") out.response_format = { type: "json_object" };
  else if (f?.type === "json_schema") {
    const js: Record<string, unknown> = { name: f.name, schema: f.schema };
    if (f.description) js.description = f.description;
    if (f.strict != null) js.strict = f.strict;
    out.response_format = { type: "json_schema", json_schema: js };
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Chat completion -> response object
// ---------------------------------------------------------------------------------------------------------

interface Ids {
  id: string;
  createdAt: number;
  /** a fresh output item id with this prefix ("msg", "fc") */
  item(prefix: string): string;
}

function newIds(): Ids {
  const hex = randomId("");
  let n = 0;
  return { id: `resp_${hex}`, createdAt: Math.floor(Date.now() / 1000), item: (prefix) => `${prefix}_${hex}${(n++).toString(36)}` };
}

interface ResponsesUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

function responsesUsage(u: any): ResponsesUsage | null {
  if (!u || typeof u !== "object") return null;
  const input = Number(u.prompt_tokens) || 0, output = Number(u.completion_tokens) || 0;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: Number(u.prompt_tokens_details?.cached_tokens) || 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: Number(u.completion_tokens_details?.reasoning_tokens) || 0 },
    total_tokens: Number(u.total_tokens) || input + output,
  };
}

/** Why a response stopped early, from a chat finish_reason (null: it completed). */
function incompleteReason(finish: unknown): string | null {
  if (finish === "length") return "max_output_tokens";
  if (finish === "content_filter") return "content_filter";
  return null;
}

type Item = Record<string, unknown>;

/** The response object with the request's settings echoed, as OpenAI returns it. */
function responseObject(req: ResponsesRequest, ids: Ids, model: string, status: string, output: Item[], usage: ResponsesUsage | null, extra?: Record<string, unknown>) {
  return {
    id: ids.id,
    object: "response",
    created_at: ids.createdAt,
    status,
    background: false,
    error: null,
    incomplete_details: null,
    instructions: req.instructions ?? null,
    max_output_tokens: req.max_output_tokens ?? null,
    model,
    output,
    parallel_tool_calls: req.parallel_tool_calls ?? true,
    previous_response_id: null,
    reasoning: { effort: req.reasoning?.effort ?? null, summary: null },
    store: false,
    temperature: req.temperature ?? 1,
    text: { format: req.text?.format ?? { type: "text" } },
    tool_choice: req.tool_choice ?? "auto",
    tools: req.tools ?? [],
    top_p: req.top_p ?? 1,
    truncation: "disabled",
    usage,
    user: req.user ?? null,
    metadata: req.metadata ?? {},
    ...extra,
  };
}

const textPart = (text: string) => ({ type: "output_text", text, annotations: [], logprobs: [] });
const refusalPart = (refusal: string) => ({ type: "refusal", refusal });
const messageItem = (id: string, status: string, parts: unknown[]) => ({ id, type: "message", status, role: "assistant", content: parts });
const callItem = (id: string, status: string, callId: string, name: string, args: string) =>
  ({ id, type: "function_call", status, arguments: args, call_id: callId, name });

/** The response object for a chat completion body. */
export function chatToResponse(chat: any, req: ResponsesRequest, ids: Ids = newIds()) {
  const choice = chat?.choices?.[0];
  const msg = choice?.message ?? {};
  const reason = incompleteReason(choice?.finish_reason);
  const itemStatus = reason ? "incomplete" : "completed";
  const output: Item[] = [];
  const calls: any[] = Array.isArray(msg.tool_calls) ? msg.tool_calls : [];
  const parts: unknown[] = [];
  if (typeof msg.content === "string" && (msg.content || !calls.length)) parts.push(textPart(msg.content));
  else if (msg.content == null && !calls.length && !msg.refusal) parts.push(textPart(""));
  if (typeof msg.refusal === "string" && msg.refusal) parts.push(refusalPart(msg.refusal));
  if (parts.length) output.push(messageItem(ids.item("msg"), itemStatus, parts));
  for (const tc of calls) {
    output.push(callItem(ids.item("fc"), "completed", String(tc?.id ?? ids.item("call")), String(tc?.function?.name ?? ""), String(tc?.function?.arguments ?? "")));
  }
  const model = typeof chat?.model === "string" ? chat.model : req.model;
  return responseObject(req, ids, model, reason ? "incomplete" : "completed", output, responsesUsage(chat?.usage), reason ? { incomplete_details: { reason } } : undefined);
}

// ---------------------------------------------------------------------------------------------------------
// Chat chunk stream -> Responses event stream
// ---------------------------------------------------------------------------------------------------------

interface CallState {
  outputIndex: number;
  id: string;
  callId: string;
  name: string;
  args: string;
}

/**
 * Turns the router's chat chunks (one `data:` payload at a time) into Responses API SSE events. Output items
 * are numbered in the order they start; text goes into a message item, each tool call into a function_call
 * item (closed when the stream finishes, so interleaved argument fragments are fine).
 */
export class ResponsesTranscoder {
  #seq = 0;
  #model: string;
  #started = false;
  /** the transcript has its terminal event (completed, incomplete or failed) */
  ended = false;
  #output: Item[] = [];
  /** the open message item: its one content part is output_text, or a refusal */
  #msg: { outputIndex: number; id: string; text: string; refusal: boolean } | null = null;
  #calls = new Map<number, CallState>();
  #finish: unknown = null;
  #usage: ResponsesUsage | null = null;

  constructor(readonly req: ResponsesRequest, readonly ids: Ids = newIds()) {
    this.#model = req.model;
  }

  #event(type: string, fields: Record<string, unknown>): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: this.#seq++, ...fields })}\n\n`;
  }

  #start(model: unknown): string {
    this.#started = true;
    if (typeof model === "string" && model) this.#model = model;
    const r = responseObject(this.req, this.ids, this.#model, "in_progress", [], null);
    return this.#event("response.created", { response: r }) + this.#event("response.in_progress", { response: r });
  }

  #closeMessage(status: string): string {
    const m = this.#msg;
    if (!m) return "";
    this.#msg = null;
    const base = { item_id: m.id, output_index: m.outputIndex, content_index: 0 };
    const part = m.refusal ? refusalPart(m.text) : textPart(m.text);
    const item = messageItem(m.id, status, [part]);
    this.#output[m.outputIndex] = item;
    return (m.refusal
      ? this.#event("response.refusal.done", { ...base, refusal: m.text })
      : this.#event("response.output_text.done", { ...base, text: m.text, logprobs: [] })) +
      this.#event("response.content_part.done", { ...base, part }) +
      this.#event("response.output_item.done", { output_index: m.outputIndex, item });
  }

  /** A text (or refusal) delta, opening a message item for it if needed. */
  #text(delta: string, refusal: boolean): string {
    let out = "";
    let m = this.#msg;
    if (m && m.refusal !== refusal) out += this.#closeMessage("completed");
    if (!this.#msg) {
      m = this.#msg = { outputIndex: this.#output.length, id: this.ids.item("msg"), text: "", refusal };
      const item = messageItem(m.id, "in_progress", []);
      this.#output.push(item);
      out += this.#event("response.output_item.added", { output_index: m.outputIndex, item });
      out += this.#event("response.content_part.added", { item_id: m.id, output_index: m.outputIndex, content_index: 0, part: refusal ? refusalPart("") : textPart("") });
    }
    m!.text += delta;
    const base = { item_id: m!.id, output_index: m!.outputIndex, content_index: 0, delta };
    return out + (refusal ? this.#event("response.refusal.delta", base) : this.#event("response.output_text.delta", { ...base, logprobs: [] }));
  }

  #toolCall(tc: any): string {
    const index = typeof tc?.index === "number" ? tc.index : 0;
    const args = typeof tc?.function?.arguments === "string" ? tc.function.arguments : "";
    let out = "";
    let c = this.#calls.get(index);
    if (!c) {
      // a tool call starts: the text before it is one finished message item
      out += this.#closeMessage("completed");
      c = {
        outputIndex: this.#output.length,
        id: this.ids.item("fc"),
        callId: typeof tc?.id === "string" && tc.id ? tc.id : this.ids.item("call"),
        name: typeof tc?.function?.name === "string" ? tc.function.name : "",
        args: "",
      };
      this.#calls.set(index, c);
      const item = callItem(c.id, "in_progress", c.callId, c.name, "");
      this.#output.push(item);
      out += this.#event("response.output_item.added", { output_index: c.outputIndex, item });
    }
    if (args) {
      c.args += args;
      out += this.#event("response.function_call_arguments.delta", { item_id: c.id, output_index: c.outputIndex, delta: args });
    }
    return out;
  }

  /** Events for one `data:` payload of the chat stream. */
  push(data: string): string {
    if (this.ended) return "";
    let chunk: any;
    try {
      chunk = JSON.parse(data);
    } catch {
      return this.fail("upstream_stream_error", "the upstream stream sent a chunk that is not JSON");
    }
    if (chunk?.error) {
      const e = chunk.error;
      return this.fail(typeof e.code === "string" ? e.code : "upstream_stream_error", typeof e.message === "string" ? e.message : "upstream stream error");
    }
    let out = this.#started ? "" : this.#start(chunk?.model);
    if (chunk?.usage) this.#usage = responsesUsage(chunk.usage);
    const choice = chunk?.choices?.[0];
    if (!choice) return out;
    const d = choice.delta;
    if (d) {
      if (typeof d.content === "string" && d.content) out += this.#text(d.content, false);
      if (typeof d.refusal === "string" && d.refusal) out += this.#text(d.refusal, true);
      if (Array.isArray(d.tool_calls)) for (const tc of d.tool_calls) out += this.#toolCall(tc);
    }
    if (choice.finish_reason) this.#finish = choice.finish_reason;
    return out;
  }

  /** The terminal events of a stream that completed. */
  complete(): string {
    if (this.ended) return "";
    let out = this.#started ? "" : this.#start(undefined);
    const reason = incompleteReason(this.#finish);
    out += this.#closeMessage(reason ? "incomplete" : "completed");
    for (const c of this.#calls.values()) {
      const item = callItem(c.id, "completed", c.callId, c.name, c.args);
      this.#output[c.outputIndex] = item;
      out += this.#event("response.function_call_arguments.done", { item_id: c.id, output_index: c.outputIndex, name: c.name, arguments: c.args });
      out += this.#event("response.output_item.done", { output_index: c.outputIndex, item });
    }
    this.ended = true;
    const r = responseObject(this.req, this.ids, this.#model, reason ? "incomplete" : "completed", this.#output, this.#usage, reason ? { incomplete_details: { reason } } : undefined);
    return out + this.#event(reason ? "response.incomplete" : "response.completed", { response: r }) + "data: [DONE]\n\n";
  }

  /** The terminal `response.failed` event (the stream broke); no [DONE] follows. */
  fail(code: string, message: string): string {
    if (this.ended) return "";
    let out = this.#started ? "" : this.#start(undefined);
    this.ended = true;
    const r = responseObject(this.req, this.ids, this.#model, "failed", this.#output, this.#usage, { error: { code, message } });
    return out + this.#event("response.failed", { response: r });
  }
}

/** The Responses event stream of a committed chat stream: the pipe's events go through the transcoder. */
class ResponsesBody extends PipedBody {
  readonly #t: ResponsesTranscoder;

  constructor(pipe: EventPipe, req: ResponsesRequest, tap: ResponseTap | undefined) {
    super(pipe, tap);
    this.#t = new ResponsesTranscoder(req);
  }

  #sendText(text: string): void {
    this.send(encoder.encode(text));
  }

  events(batch: readonly StreamEvent[]): boolean {
    const t = this.#t;
    let out = "";
    for (let i = 0; i < batch.length && !t.ended; i++) {
      const data = batch[i].data;
      if (data !== null) out += t.push(data);
    }
    if (out) this.#sendText(out);
    if (t.ended) {
      // a chunk the transcoder cannot read ended the response (response.failed, so it is not stored): the
      // upstream is of no more use
      this.controller.close();
      this.finish(true);
      this.pipe.cancel();
      return true;
    }
    return out !== "";
  }

  end(ok: boolean, error?: ErrorBody): void {
    const t = this.#t;
    if (t.ended) return;
    if (ok) {
      this.#sendText(t.complete());
      this.controller.close();
    } else if (error) {
      try {
        this.#sendText(t.fail(typeof error.code === "string" ? error.code : "upstream_stream_error", error.message));
        this.controller.close();
      } catch { /* client gone */ }
    }
    this.finish(ok);
  }
}

/**
 * The Router's outcome for a translated request: a response object, an event stream, or the error as is. `tap`
 * (the idempotency transcript) is fed the rendered answer; an error passes through without it.
 */
export function toResponsesApi(o: Outcome, req: ResponsesRequest, tap?: ResponseTap): Response {
  if (o.type === "error") return errorResponse(o.status, o.error, o.headers);
  if (o.type === "stream") {
    return new Response(new ReadableStream<Uint8Array>(new ResponsesBody(o.events, req, tap), { highWaterMark: 0 }), { status: 200, headers: servedHeaders(o, true) });
  }
  const text = JSON.stringify(chatToResponse(JSON.parse(o.body), req));
  tap?.body(text);
  return new Response(text, { status: 200, headers: servedHeaders(o, false) });
}
