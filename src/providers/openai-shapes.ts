// The OpenAI request and response shapes the translating adapters share: legacy completions as chat, stop lists,
// ids, and the builder of OpenAI-shaped responses, chunks and event streams.
import type { ChatRequest, StreamEvent, StreamEvents, TextRequest, Usage } from "./types.ts";

/**
 * An adapter's event generator as StreamEvents, one event per read (for the adapters that translate another
 * protocol event by event; the OpenAI passthrough implements StreamEvents itself, one upstream read per read).
 */
export function generatorEvents(gen: AsyncGenerator<StreamEvent, void, undefined>): StreamEvents {
  const one: StreamEvent[] = [];
  const step = (r: IteratorResult<StreamEvent, void>): StreamEvent[] | null => {
    if (r.done) return null;
    one[0] = r.value;
    return one;
  };
  return {
    read: () => gen.next().then(step),
    cancel: () => void gen.return(undefined).catch(() => {}),
  };
}

export function randomId(prefix: string): string {
  return prefix + crypto.randomUUID().replace(/-/g, "").slice(0, 24);
}

export function stopList(stop: string | string[] | null | undefined): string[] | undefined {
  if (stop == null) return undefined;
  return typeof stop === "string" ? [stop] : stop.length ? stop : undefined;
}

/** The text prompt of a legacy completions request as one string. */
export function promptOf(req: TextRequest): string {
  return Array.isArray(req.prompt) ? req.prompt.join("") : req.prompt;
}

/** A legacy completions request turned into a one-message chat request, for chat-only providers. */
export function textToChat(req: TextRequest): ChatRequest {
  const { prompt: _p, ...rest } = req;
  return { ...rest, messages: [{ role: "user", content: promptOf(req) }] } as ChatRequest;
}

export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter" | null;

/**
 * Builds OpenAI-shaped responses and chunks for adapters that translate another protocol, in either the
 * chat (chat.completion[.chunk]) or the legacy text (text_completion) shape.
 */
export class OpenAIShaper {
  readonly created = Math.floor(Date.now() / 1000);
  /** `includeUsage`: the client asked for the usage chunk, so (per the OpenAI spec) every other chunk says `"usage": null` */
  constructor(readonly kind: "chat" | "text", readonly id: string, readonly model: string, readonly includeUsage = false) {}

  chunk(delta: Record<string, unknown>, finish: FinishReason = null): string {
    const usage = this.includeUsage ? null : undefined;
    if (this.kind === "text") {
      return JSON.stringify({
        id: this.id, object: "text_completion", created: this.created, model: this.model,
        choices: [{ index: 0, text: typeof delta.content === "string" ? delta.content : "", logprobs: null, finish_reason: finish }], usage,
      });
    }
    return JSON.stringify({
      id: this.id, object: "chat.completion.chunk", created: this.created, model: this.model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], usage,
    });
  }

  usageChunk(usage: Usage): string {
    const { estimated: _e, ...u } = usage;
    return JSON.stringify({
      id: this.id, object: this.kind === "text" ? "text_completion" : "chat.completion.chunk",
      created: this.created, model: this.model, choices: [], usage: u,
    });
  }

  /** A complete (non-streamed) response. */
  response(content: string | null, finish: FinishReason, usage: Usage, toolCalls?: unknown[]): string {
    const { estimated: _e, ...u } = usage;
    if (this.kind === "text") {
      return JSON.stringify({
        id: this.id, object: "text_completion", created: this.created, model: this.model,
        choices: [{ index: 0, text: content ?? "", logprobs: null, finish_reason: finish }], usage: u,
      });
    }
    const message: Record<string, unknown> = { role: "assistant", content, refusal: null };
    if (toolCalls && toolCalls.length) message.tool_calls = toolCalls;
    return JSON.stringify({
      id: this.id, object: "chat.completion", created: this.created, model: this.model,
      choices: [{ index: 0, message, logprobs: null, finish_reason: finish }], usage: u,
    });
  }

  /** Events for the end of a stream: the finish chunk and, if asked, the usage chunk. */
  *finish(finish: FinishReason, usage: Usage, includeUsage: boolean): Generator<StreamEvent> {
    yield { data: this.chunk({}, finish), content: true };
    yield { data: includeUsage ? this.usageChunk(usage) : null, content: false, usage };
  }
}
