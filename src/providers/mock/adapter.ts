// The built-in `mock` provider: answers without any network, so failover and breakers can be tried with no
// API key. Options (index.ts): reply (text), latency_ms (delay before answering), fail_rate (0..1 chance of a 503).
import { sleep } from "../../sleep.ts";
import { generatorEvents, OpenAIShaper, randomId } from "../openai-shapes.ts";
import { estimatePromptTokens, estimateTokens, tokenUsage } from "../tokens.ts";
import type { Adapter, ApiKind, CallOptions, ChatRequest, StreamEvent, TextRequest, UpstreamResult } from "../types.ts";
import type { MockConfig } from "./index.ts";

export class MockAdapter implements Adapter {
  constructor(readonly config: MockConfig) {}

  chat(req: ChatRequest, opts: CallOptions): Promise<UpstreamResult> {
    return this.#answer("chat", req, opts);
  }

  text(req: TextRequest, opts: CallOptions): Promise<UpstreamResult> {
    return this.#answer("text", req, opts);
  }

  async #answer(kind: ApiKind, req: ChatRequest | TextRequest, opts: CallOptions): Promise<UpstreamResult> {
    const { latency_ms = 0, fail_rate = 0 } = this.config;
    if (latency_ms > 0 && !(await sleep(latency_ms, opts.signal))) {
      const timeout = (opts.signal.reason as Error | undefined)?.name === "TimeoutError";
      return { ok: false, status: timeout ? 504 : 499, kind: timeout ? "timeout" : "aborted", message: timeout ? "upstream timed out" : "request aborted" };
    }
    if (fail_rate > 0 && Math.random() < fail_rate) {
      return { ok: false, status: 503, kind: "http", message: `mock provider ${this.config.name} failed (fail_rate ${fail_rate})`, type: "server_error" };
    }
    const reply = this.config.reply ?? `Hello from ${this.config.name}, the mock provider.`;
    const usage = tokenUsage(estimatePromptTokens(kind, req), estimateTokens(reply.length));
    const shaper = new OpenAIShaper(kind, randomId(kind === "chat" ? "chatcmpl-" : "cmpl-"), opts.model, opts.includeUsage);
    if (!opts.stream) return { ok: true, stream: false, body: shaper.response(reply, "stop", usage), usage, model: opts.model };
    async function* events(): AsyncGenerator<StreamEvent, void, undefined> {
      if (kind === "chat") yield { data: shaper.chunk({ role: "assistant", content: "" }), content: false };
      for (const word of reply.split(/(?<= )/)) yield { data: shaper.chunk({ content: word }), content: true, chars: word.length };
      yield* shaper.finish("stop", usage, opts.includeUsage);
    }
    return { ok: true, stream: true, model: opts.model, events: generatorEvents(events()) };
  }
}
