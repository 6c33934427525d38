// The built-in `mock` provider: answers without any network, so failover and breakers can be tried with no
// API key. Options: reply (text), latency_ms (delay before answering), fail_rate (0..1 chance of a 503).
import type { ProviderConfig } from "../config/schema.ts";
import { chatPromptText, estimateTokens, generatorEvents, OpenAIShaper, promptOf, randomId, usageOf, textToChat } from "./shared.ts";
import type { Adapter, CallOptions, ChatRequest, StreamEvent, TextRequest, UpstreamResult } from "./types.ts";

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

export class MockAdapter implements Adapter {
  constructor(readonly config: ProviderConfig) {}

  chat(req: ChatRequest, opts: CallOptions): Promise<UpstreamResult> {
    return this.#answer("chat", chatPromptText(req), opts);
  }

  text(req: TextRequest, opts: CallOptions): Promise<UpstreamResult> {
    return this.#answer("text", promptOf(req) || chatPromptText(textToChat(req)), opts);
  }

  async #answer(kind: "chat" | "text", prompt: string, opts: CallOptions): Promise<UpstreamResult> {
    const { latency_ms = 0, fail_rate = 0 } = this.config;
    if (latency_ms > 0) {
      try {
        await sleep(latency_ms, opts.signal);
      } catch (e) {
        const timeout = (e as Error)?.name === "TimeoutError";
        return { ok: false, status: timeout ? 504 : 499, kind: timeout ? "timeout" : "aborted", message: timeout ? "upstream timed out" : "request aborted" };
      }
    }
    if (fail_rate > 0 && Math.random() < fail_rate) {
      return { ok: false, status: 503, kind: "http", message: `mock provider ${this.config.name} failed (fail_rate ${fail_rate})`, type: "server_error" };
    }
    const reply = this.config.reply ?? `Hello from ${this.config.name}, the mock provider.`;
    const usage = usageOf(estimateTokens(prompt), estimateTokens(reply));
    const shaper = new OpenAIShaper(kind, randomId(kind === "chat" ? "chatcmpl-" : "cmpl-"), opts.model);
    if (!opts.stream) return { ok: true, stream: false, body: shaper.response(reply, "stop", usage), usage, model: opts.model };
    async function* events(): AsyncGenerator<StreamEvent, void, undefined> {
      if (kind === "chat") yield { data: shaper.chunk({ role: "assistant", content: "" }), content: false };
      for (const word of reply.split(/(?<= )/)) yield { data: shaper.chunk({ content: word }), content: true };
      yield* shaper.finish("stop", usage, opts.includeUsage);
    }
    return { ok: true, stream: true, model: opts.model, events: generatorEvents(events()) };
  }
}
