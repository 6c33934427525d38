// A chat completion as a Responses `response` object, and the pieces the event stream builds it from.
import { randomId } from "../../providers/openai-shapes.ts";
import type { ResponsesRequest } from "./schema.ts";

export interface Ids {
  id: string;
  createdAt: number;
  /** a fresh output item id with this prefix ("msg", "fc") */
  item(prefix: string): string;
}

export function newIds(): Ids {
  const hex = randomId("");
  let n = 0;
  return { id: `resp_${hex}`, createdAt: Math.floor(Date.now() / 1000), item: (prefix) => `${prefix}_${hex}${(n++).toString(36)}` };
}

export interface ResponsesUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

export function responsesUsage(u: any): ResponsesUsage | null {
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
export function incompleteReason(finish: unknown): string | null {
  if (finish === "length") return "max_output_tokens";
  if (finish === "content_filter") return "content_filter";
  return null;
}

export type Item = Record<string, unknown>;

/** The response object with the request's settings echoed, as OpenAI returns it. */
export function responseObject(req: ResponsesRequest, ids: Ids, model: string, status: string, output: Item[], usage: ResponsesUsage | null, extra?: Record<string, unknown>) {
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

export const textPart = (text: string) => ({ type: "output_text", text, annotations: [], logprobs: [] });
export const refusalPart = (refusal: string) => ({ type: "refusal", refusal });
export const messageItem = (id: string, status: string, parts: unknown[]) => ({ id, type: "message", status, role: "assistant", content: parts });
export const callItem = (id: string, status: string, callId: string, name: string, args: string) =>
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
