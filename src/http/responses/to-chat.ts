// A Responses request as the ChatRequest the Router serves.
import type { ChatMessage, ChatRequest, ChatTool, ContentPart, ToolCall } from "../../providers/types.ts";
import type { InputItem, Part, ResponsesRequest } from "./schema.ts";

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
