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

/**
 * Where a chat message came from in the Responses request: its path ("instructions", "input", "input[3]"), what
 * kind of item it was, and for an assistant turn the path of the function_call item behind each tool call.
 */
interface Origin {
  path: string;
  kind: "text" | "message" | "output";
  calls?: string[];
}

/** A chat request's top-level fields that have another name in the Responses request. */
const TOP_LEVEL: [RegExp, string][] = [
  [/^tools\[(\d+)\]\.function(?=\.|$)/, "tools[$1]"],
  [/^tool_choice\.function\.name$/, "tool_choice.name"],
  [/^(max_tokens|max_completion_tokens)$/, "max_output_tokens"],
  [/^response_format(?:\.json_schema)?/, "text.format"],
  [/^reasoning_effort$/, "reasoning.effort"],
];

const CALL_FIELDS: Record<string, string> = { ".function.arguments": ".arguments", ".function.name": ".name", ".id": ".call_id" };

/** A `param` of an error about the chat request (a provider's, or a translation's) as the Responses request's field. */
function responsesParam(param: string, origins: Origin[]): string {
  const m = /^messages\[(\d+)\](.*)$/.exec(param);
  if (!m) {
    for (const [re, to] of TOP_LEVEL) if (re.test(param)) return param.replace(re, to);
    return param;
  }
  const o = origins[Number(m[1])];
  if (!o) return param;
  const rest = m[2];
  const call = /^\.tool_calls\[(\d+)\](.*)$/.exec(rest);
  if (call) {
    const path = o.calls?.[Number(call[1])];
    return path ? path + (CALL_FIELDS[call[2]] ?? "") : o.path;
  }
  if (o.kind === "text") return o.path;
  // a function_call_output's `output` is the tool message's content; an image part's URL is its image_url
  if (o.kind === "output") return o.path + rest.replace(/^\.content/, ".output").replace(/^\.tool_call_id/, ".call_id");
  return o.path + rest.replace(/\.image_url\.url$/, ".image_url");
}

/** The chat request for a Responses request, and `param` to name a field of it in the client's own terms. */
export interface ChatTranslation {
  chat: ChatRequest;
  param(chatParam: string): string;
}

/** The chat completions request that serves a (validated) Responses API request. */
export function toChatRequest(req: ResponsesRequest): ChatTranslation {
  const messages: ChatMessage[] = [];
  const origins: Origin[] = [];
  const push = (m: ChatMessage, o: Origin) => (messages.push(m), origins.push(o));
  if (req.instructions) push({ role: "system", content: req.instructions }, { path: "instructions", kind: "text" });
  if (typeof req.input === "string") push({ role: "user", content: req.input }, { path: "input", kind: "text" });
  else {
    for (let i = 0; i < req.input.length; i++) {
      const it = req.input[i];
      const path = `input[${i}]`;
      switch (it.type ?? "message") {
        case "message":
          push(messageOf(it), { path, kind: "message" });
          break;
        case "function_call": {
          const call: ToolCall = { id: it.call_id!, type: "function", function: { name: it.name!, arguments: it.arguments! } };
          // consecutive calls (and the text before them) form one assistant turn, as chat completions has it
          const last = messages[messages.length - 1];
          if (last?.role === "assistant") {
            (last.tool_calls ??= []).push(call);
            (origins[origins.length - 1].calls ??= []).push(path);
          } else push({ role: "assistant", content: null, tool_calls: [call] }, { path, kind: "message", calls: [path] });
          break;
        }
        case "function_call_output":
          push({ role: "tool", tool_call_id: it.call_id!, content: typeof it.output === "string" ? it.output : partsText(it.output!) }, { path, kind: "output" });
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
  return { chat: out, param: (p) => responsesParam(p, origins) };
}
