// Token usage estimates for answers that came back without a usage figure (the provider reported none).
// Used off the hot path only: when usage is present, nothing here runs.
import { chatPromptText, estimateTokens, promptOf, usageOf } from "./shared.ts";
import type { ApiKind, ChatRequest, TextRequest, Usage } from "./types.ts";

/** Estimated prompt tokens of a client request. */
export function estimatePromptTokens(kind: ApiKind, req: ChatRequest | TextRequest): number {
  return estimateTokens(kind === "chat" ? chatPromptText(req as ChatRequest) : promptOf(req as TextRequest));
}

/** The text an OpenAI-shaped completion body carries (message content, tool call arguments, legacy text). */
function completionText(body: string): string {
  let json: any;
  try {
    json = JSON.parse(body);
  } catch {
    return "";
  }
  let s = "";
  for (const c of Array.isArray(json?.choices) ? json.choices : []) {
    if (typeof c?.text === "string") s += c.text;
    const m = c?.message;
    if (typeof m?.content === "string") s += m.content;
    if (Array.isArray(m?.tool_calls)) for (const t of m.tool_calls) if (typeof t?.function?.arguments === "string") s += t.function.arguments;
  }
  return s;
}

/**
 * Estimated usage (marked `estimated`) of a successful call that reported none: prompt tokens from the
 * request, completion tokens from the response body when there is one (0 for a stream whose adapter gave
 * no estimate of its own).
 */
export function estimateUsage(kind: ApiKind, req: ChatRequest | TextRequest, responseBody?: string): Usage {
  return usageOf(estimatePromptTokens(kind, req), responseBody ? estimateTokens(completionText(responseBody)) : 0, true);
}
