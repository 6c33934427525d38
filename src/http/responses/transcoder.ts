// The chat chunks of a stream as the Responses event stream, chunk by chunk.
import { callItem, incompleteReason, messageItem, newIds, refusalPart, responseObject, responsesUsage, textPart, type Ids, type Item, type ResponsesUsage } from "./response-object.ts";
import type { ResponsesRequest } from "./schema.ts";

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
