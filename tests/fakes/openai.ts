// A fake OpenAI-protocol provider: /v1/chat/completions and /v1/completions, JSON and SSE (with the usage
// chunk when stream_options.include_usage is set), plus the fault injection of FakeServer.
import { FakeServer } from "./common.ts";

export interface OpenAIFakeOptions {
  /** the reply text (split into `chunks` SSE chunks when streaming) */
  reply?: string;
  chunks?: number;
  /** null: report no usage at all (neither in the JSON body nor as a usage chunk) */
  usage?: { prompt_tokens: number; completion_tokens: number } | null;
  /** answer chat requests with this tool call instead of text (read per request: may be changed or removed
   * between requests); streamed as OpenAI does, id and name first, then the arguments in `chunks` fragments */
  toolCall?: { name: string; arguments: string };
  /** answer chat requests with this refusal (message.refusal, streamed as `refusal` deltas) instead of text */
  refusal?: string;
  /** streams: send `data: {"error": streamError}` in place of the content chunk after this many, then end */
  streamErrorAfter?: number;
  streamError?: unknown;
  /**
   * a chat request that ends with an assistant message (a prefill): `continue` answers, as vLLM's
   * continue_final_message does, with only the rest of the reply after that message's text (the whole reply when
   * it does not begin with it); `reject` answers 400
   */
  prefill?: "continue" | "reject";
  /** number the completion ids (chatcmpl-fake-1, -2, ...), so two answers can be told apart */
  idPerRequest?: boolean;
  /** serve https with this key and certificate (tests/helpers/tls.ts) */
  tls?: { key: string; cert: string };
}

export function splitText(s: string, n: number): string[] {
  const size = Math.max(1, Math.ceil(s.length / n));
  const out: string[] = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out;
}

export async function startOpenAIFake(opts: OpenAIFakeOptions = {}): Promise<FakeServer> {
  const usage = opts.usage === undefined ? { prompt_tokens: 11, completion_tokens: 7 } : opts.usage;
  const u = usage ? { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } : undefined;
  const fake = new FakeServer(async (req, res, stream) => {
    const chat = req.path.endsWith("/chat/completions");
    if (req.method !== "POST" || (!chat && !req.path.endsWith("/completions"))) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: `no route ${req.path}`, type: "invalid_request_error" } }));
      return;
    }
    const model = req.body?.model ?? "unknown";
    const prefilled = chat && opts.prefill ? req.body?.messages?.at(-1) : undefined;
    let reply = opts.reply ?? "Hello from the fake OpenAI provider.";
    if (prefilled?.role === "assistant") {
      if (opts.prefill === "reject") {
        res.writeHead(400, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: "this fake does not continue assistant messages", type: "invalid_request_error" } }));
        return;
      }
      if (reply.startsWith(prefilled.content)) reply = reply.slice(prefilled.content.length);
    }
    const id = (chat ? "chatcmpl-fake" : "cmpl-fake") + (opts.idPerRequest ? `-${fake.requests.length}` : "");
    const object = chat ? "chat.completion" : "text_completion";
    if (!req.body?.stream) {
      const choice = chat
        ? {
          index: 0,
          message: opts.toolCall
            ? { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: opts.toolCall }] }
            : opts.refusal !== undefined
            ? { role: "assistant", content: null, refusal: opts.refusal }
            : { role: "assistant", content: reply },
          finish_reason: opts.toolCall ? "tool_calls" : "stop",
        }
        : { index: 0, text: reply, finish_reason: "stop" };
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id, object, created: 1700000000, model, choices: [choice], usage: u }));
      return;
    }
    const w = stream("text/event-stream");
    const chunkObj = chat ? "chat.completion.chunk" : "text_completion";
    const send = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      w.write(`data: ${JSON.stringify({ id, object: chunkObj, created: 1700000000, model, choices, ...extra })}\n\n`);
    if (chat && !(await send([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }]))) return;
    const tc = chat ? opts.toolCall : undefined;
    if (tc) {
      // like the real API: id, type and name in the first delta with empty arguments, then argument fragments
      const first = { index: 0, id: "call_1", type: "function", function: { name: tc.name, arguments: "" } };
      if (!(await send([{ index: 0, delta: { tool_calls: [first] }, finish_reason: null }]))) return;
      for (const piece of splitText(tc.arguments, opts.chunks ?? 4)) {
        if (!(await send([{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: piece } }] }, finish_reason: null }]))) return;
      }
    } else if (chat && opts.refusal !== undefined) {
      for (const piece of splitText(opts.refusal, opts.chunks ?? 4)) {
        if (!(await send([{ index: 0, delta: { refusal: piece }, finish_reason: null }]))) return;
      }
    } else {
      const pieces = splitText(reply, opts.chunks ?? 4);
      for (let i = 0; i < pieces.length; i++) {
        if (i === opts.streamErrorAfter) {
          await w.write(`data: ${JSON.stringify({ error: opts.streamError })}\n\n`);
          return w.end();
        }
        const piece = pieces[i];
        const choice = chat ? { index: 0, delta: { content: piece }, finish_reason: null } : { index: 0, text: piece, finish_reason: null };
        if (!(await send([choice]))) return;
      }
    }
    const last = chat ? { index: 0, delta: {}, finish_reason: tc ? "tool_calls" : "stop" } : { index: 0, text: "", finish_reason: "stop" };
    if (!(await send([last]))) return;
    if (u && req.body?.stream_options?.include_usage && !(await send([], { usage: u }))) return;
    if (!(await w.write("data: [DONE]\n\n"))) return;
    w.end();
  }, opts.tls);
  return fake.start();
}
