// A fake Anthropic Messages API: POST /v1/messages, JSON and the SSE event stream (`event:` + `data:` lines,
// message_start / content_block_* / ping / message_delta / message_stop), answering with text and/or tool_use
// blocks, with usage. It checks x-api-key and anthropic-version and rejects requests the real API would reject
// (system role inside messages, tool_result without a matching tool_use, ...), so mapping bugs show up as 400s.
// Fault injection comes from FakeServer (status, delay, hang, cutAfter, ...); `options` may be changed per test.
import type http from "node:http";
import { FakeServer, type RecordedRequest } from "./common.ts";
import { splitText } from "./openai.ts";

export interface AnthropicToolUse {
  id?: string;
  name: string;
  input: Record<string, unknown>;
}

export interface AnthropicFakeOptions {
  /** the text block of the answer ("" for none); split into `chunks` text deltas when streaming */
  reply?: string;
  chunks?: number;
  /** tool_use blocks appended after the text block */
  toolUses?: AnthropicToolUse[];
  usage?: { input_tokens: number; output_tokens: number };
  /** force this stop_reason (default: tool_use with tools, stop_sequence when a stop sequence hit, else end_turn) */
  stopReason?: string;
  /** the x-api-key every request must carry (unset: any) */
  apiKey?: string;
  /** streams: send an `error` event (overloaded_error) after this many content deltas, then end */
  streamErrorAfter?: number;
  /** the `error` object of that event (default { type: "overloaded_error", message: "Overloaded" }) */
  streamError?: unknown;
  /** streams: end cleanly after message_delta without sending message_stop */
  omitMessageStop?: boolean;
  /**
   * continue a trailing assistant message (a prefill) as the real API does: the answer is the rest of the reply
   * after its text, and one that ends in whitespace is refused
   */
  prefill?: boolean;
}

/** `options` may be replaced or changed between requests; reset() also restores the options given at start. */
export type AnthropicFake = FakeServer & { options: AnthropicFakeOptions };

const DEFAULTS: AnthropicFakeOptions = { reply: "Hello from the fake Anthropic provider.", chunks: 4, usage: { input_tokens: 13, output_tokens: 9 } };

function sendError(res: http.ServerResponse, status: number, type: string, message: string): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ type: "error", error: { type, message } }));
}

const BLOCK_TYPES: Record<string, string[]> = {
  user: ["text", "image", "document", "tool_result"],
  assistant: ["text", "tool_use"],
};

/** The checks of the real API that a translation bug would trip. Returns an error message or null. */
export function validateRequest(body: any): string | null {
  if (!body || typeof body !== "object") return "body: must be a JSON object";
  if (typeof body.model !== "string" || !body.model) return "model: Field required";
  if (!Number.isInteger(body.max_tokens) || body.max_tokens < 1) return "max_tokens: Field required";
  if (!Array.isArray(body.messages) || body.messages.length === 0) return "messages: at least one message is required";
  if (body.system !== undefined && typeof body.system !== "string" && !Array.isArray(body.system)) return "system: Input should be a valid string or list";
  if (body.temperature !== undefined && (body.temperature < 0 || body.temperature > 1)) return "temperature: must be between 0 and 1";
  let prevToolUses = new Set<string>();
  for (let i = 0; i < body.messages.length; i++) {
    const m = body.messages[i];
    if (m.role !== "user" && m.role !== "assistant") return `messages.${i}.role: Unexpected role "${m.role}"`;
    const content = typeof m.content === "string" ? [] : m.content;
    if (!Array.isArray(content)) return `messages.${i}.content: Input should be a valid string or list`;
    const toolUses = new Set<string>();
    let seenOther = false;
    for (let j = 0; j < content.length; j++) {
      const b = content[j];
      if (!BLOCK_TYPES[m.role].includes(b?.type)) return `messages.${i}.content.${j}.type: unexpected block type ${b?.type} for role ${m.role}`;
      if (b.type === "text" && (typeof b.text !== "string" || !b.text)) return `messages.${i}.content.${j}.text: text content blocks must be non-empty`;
      if (b.type === "image" || b.type === "document") {
        const s = b.source;
        if (!(s?.type === "base64" && s.media_type && s.data) && !(s?.type === "url" && s.url)) return `messages.${i}.content.${j}.source: invalid`;
      }
      if (b.type === "tool_use") {
        if (typeof b.id !== "string" || typeof b.name !== "string" || !b.input || typeof b.input !== "object") return `messages.${i}.content.${j}: invalid tool_use`;
        toolUses.add(b.id);
      }
      if (b.type === "tool_result") {
        if (seenOther) return `messages.${i}.content.${j}: tool_result blocks must come first`;
        if (!prevToolUses.has(b.tool_use_id)) return `messages.${i}.content.${j}: unexpected tool_use_id ${b.tool_use_id}`;
      } else seenOther = true;
    }
    prevToolUses = toolUses;
  }
  if (body.tools !== undefined) {
    if (!Array.isArray(body.tools)) return "tools: Input should be a valid list";
    for (const t of body.tools) if (typeof t.name !== "string" || t.input_schema?.type !== "object") return "tools: invalid tool";
  } else if (body.tool_choice !== undefined) return "tool_choice: may only be specified while providing tools";
  return null;
}

interface Answer {
  text: string;
  tools: Required<AnthropicToolUse>[];
  stopReason: string;
  stopSequence: string | null;
}

function answer(req: RecordedRequest, o: AnthropicFakeOptions): Answer {
  let text = o.reply ?? "";
  const last = req.body.messages.at(-1);
  if (o.prefill && last.role === "assistant" && typeof last.content === "string" && text.startsWith(last.content)) text = text.slice(last.content.length);
  let stopReason = o.toolUses?.length ? "tool_use" : "end_turn";
  let stopSequence: string | null = null;
  for (const s of (req.body.stop_sequences ?? []) as string[]) {
    const at = text.indexOf(s);
    if (at >= 0) {
      text = text.slice(0, at);
      stopReason = "stop_sequence";
      stopSequence = s;
    }
  }
  const tools = stopSequence ? [] : (o.toolUses ?? []).map((t, i) => ({ id: t.id ?? `toolu_fake${i}`, name: t.name, input: t.input }));
  return { text, tools, stopReason: o.stopReason ?? stopReason, stopSequence };
}

export async function startAnthropicFake(opts: AnthropicFakeOptions = {}): Promise<AnthropicFake> {
  let self: AnthropicFake | undefined;
  const fake = new FakeServer(async (req, res, stream) => {
    if (req.method !== "POST" || req.path !== "/v1/messages") return sendError(res, 404, "not_found_error", `Not found: ${req.method} ${req.path}`);
    const o = self!.options;
    if (o.apiKey !== undefined && req.headers["x-api-key"] !== o.apiKey) return sendError(res, 401, "authentication_error", "invalid x-api-key");
    if (req.headers["anthropic-version"] !== "2023-06-01") return sendError(res, 400, "invalid_request_error", "anthropic-version: header is required and must be 2023-06-01");
    if (!String(req.headers["content-type"] ?? "").startsWith("application/json")) return sendError(res, 400, "invalid_request_error", "content-type must be application/json");
    const last = req.body?.messages?.at?.(-1);
    if (o.prefill && last?.role === "assistant" && /\s$/.test(typeof last.content === "string" ? last.content : "")) {
      return sendError(res, 400, "invalid_request_error", "messages: final assistant content cannot end with trailing whitespace");
    }
    const invalid = validateRequest(req.body);
    if (invalid) return sendError(res, 400, "invalid_request_error", invalid);

    const a = answer(req, o);
    const usage = o.usage ?? DEFAULTS.usage!;
    const model = req.body.model;
    const id = "msg_fake01";
    const content: unknown[] = [];
    if (a.text) content.push({ type: "text", text: a.text });
    for (const t of a.tools) content.push({ type: "tool_use", ...t });

    if (!req.body.stream) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({
        id, type: "message", role: "assistant", model, content,
        stop_reason: a.stopReason, stop_sequence: a.stopSequence,
        usage: { input_tokens: usage.input_tokens, output_tokens: usage.output_tokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
      }));
      return;
    }

    const w = stream("text/event-stream; charset=utf-8");
    const send = (type: string, data: Record<string, unknown>) => w.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
    let deltas = 0;
    /** sends one content delta, or the injected error event in its place; false when the stream is over */
    const delta = async (index: number, d: Record<string, unknown>): Promise<boolean> => {
      if (o.streamErrorAfter !== undefined && deltas >= o.streamErrorAfter) {
        await send("error", { error: o.streamError ?? { type: "overloaded_error", message: "Overloaded" } });
        w.end();
        return false;
      }
      deltas++;
      return send("content_block_delta", { index, delta: d });
    };

    if (!(await send("message_start", {
      message: { id, type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: usage.input_tokens, output_tokens: 1 } },
    }))) return;
    let index = 0;
    if (a.text) {
      if (!(await send("content_block_start", { index, content_block: { type: "text", text: "" } }))) return;
      if (!(await send("ping", {}))) return;
      for (const piece of splitText(a.text, o.chunks ?? 4)) if (!(await delta(index, { type: "text_delta", text: piece }))) return;
      if (!(await send("content_block_stop", { index }))) return;
      index++;
    }
    for (const t of a.tools) {
      if (!(await send("content_block_start", { index, content_block: { type: "tool_use", id: t.id, name: t.name, input: {} } }))) return;
      // like the real API: an empty fragment first, then the JSON in pieces that split tokens mid-way
      const json = JSON.stringify(t.input);
      const pieces = json === "{}" ? [""] : ["", ...splitText(json, 3)];
      for (const p of pieces) if (!(await delta(index, { type: "input_json_delta", partial_json: p }))) return;
      if (!(await send("content_block_stop", { index }))) return;
      index++;
    }
    if (!(await send("message_delta", { delta: { stop_reason: a.stopReason, stop_sequence: a.stopSequence }, usage: { output_tokens: usage.output_tokens } }))) return;
    if (!o.omitMessageStop && !(await send("message_stop", {}))) return;
    w.end();
  });
  self = Object.assign(fake, { options: { ...DEFAULTS, ...opts } });
  const baseReset = fake.reset.bind(fake);
  self.reset = () => {
    baseReset();
    self!.options = { ...DEFAULTS, ...opts };
  };
  await fake.start();
  return self;
}
