// Token counts: the Usage record, and the router's one token estimate (about 4 characters a token) for whatever a
// provider does not count itself. Off the hot path: when a provider reports usage, no estimate runs.
import { promptOf } from "./openai-shapes.ts";
import type { ApiKind, ChatRequest, TextRequest, Usage } from "./types.ts";

/** A Usage from its two counts; `estimated`: the router estimated (part of) it. */
export function tokenUsage(prompt: number, completion: number, estimated?: boolean): Usage {
  const u: Usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  if (estimated) u.estimated = true;
  return u;
}

/** Estimated tokens of `chars` characters of text (callers count the characters, they need not keep the text). */
export function estimateTokens(chars: number): number {
  return chars > 0 ? Math.ceil(chars / 4) : 0;
}

/** Characters of a chat request's text: every text part of every message, each followed by a newline. */
function chatPromptChars(req: ChatRequest): number {
  let n = 0;
  for (const m of req.messages) {
    if (typeof m.content === "string") n += m.content.length + 1;
    else if (Array.isArray(m.content)) for (const p of m.content) if (p.type === "text") n += (p as { text: string }).text.length + 1;
  }
  return n;
}

/** Estimated prompt tokens of a client request. */
export function estimatePromptTokens(kind: ApiKind, req: ChatRequest | TextRequest): number {
  return estimateTokens(kind === "chat" ? chatPromptChars(req as ChatRequest) : promptOf(req as TextRequest).length);
}

/** Characters of the text an OpenAI-shaped completion body carries (message content, tool call arguments, legacy text). */
function completionChars(body: string): number {
  let json: any;
  try {
    json = JSON.parse(body);
  } catch {
    return 0;
  }
  let n = 0;
  for (const c of Array.isArray(json?.choices) ? json.choices : []) {
    if (typeof c?.text === "string") n += c.text.length;
    const m = c?.message;
    if (typeof m?.content === "string") n += m.content.length;
    if (Array.isArray(m?.tool_calls)) for (const t of m.tool_calls) if (typeof t?.function?.arguments === "string") n += t.function.arguments.length;
  }
  return n;
}

/**
 * Estimated usage (marked `estimated`) of a call that reported none: prompt tokens from the request, completion
 * tokens from `output`, the response body (a JSON answer) or the characters of generated text already counted
 * (a stream's StreamEvent.chars); none for an attempt that was sent no output.
 */
export function estimateUsage(kind: ApiKind, req: ChatRequest | TextRequest, output?: string | number): Usage {
  const chars = typeof output === "string" ? completionChars(output) : output ?? 0;
  return tokenUsage(estimatePromptTokens(kind, req), estimateTokens(chars), true);
}
