// A stateless subset of the OpenAI Responses API (POST /v1/responses), served by translation onto the chat
// completions path: the request becomes a ChatRequest for Router.handle("chat", ...) (so routing, failover,
// breakers, usage accounting and every provider apply unchanged), and the Router's outcome (a chat completion,
// or the events of a stream of chat chunks) is rendered as a `response` object or the Responses event stream,
// event by event. Nothing is stored: previous_response_id, conversations, background mode and built-in tools
// are refused with a 400 naming the field.
import { encoder } from "../../bytes.ts";
import { errorResponse, type ErrorBody } from "../../errors.ts";
import type { StreamEvent } from "../../providers/types.ts";
import type { Outcome } from "../../routing/outcome.ts";
import type { EventPipe } from "../../routing/stream-pipe.ts";
import type { ResponseTap } from "../context.ts";
import { PipedBody, servedHeaders } from "../render.ts";
import { chatToResponse } from "./response-object.ts";
import type { ResponsesRequest } from "./schema.ts";
import { ResponsesTranscoder } from "./transcoder.ts";

export { ResponsesRequestSchema, type ResponsesRequest } from "./schema.ts";
export { toChatRequest } from "./to-chat.ts";

/** The Responses event stream of a committed chat stream: the pipe's events go through the transcoder. */
class ResponsesBody extends PipedBody {
  readonly #t: ResponsesTranscoder;

  constructor(pipe: EventPipe, req: ResponsesRequest, tap: ResponseTap | undefined) {
    super(pipe, tap);
    this.#t = new ResponsesTranscoder(req);
  }

  #sendText(text: string): void {
    this.send(encoder.encode(text));
  }

  events(batch: readonly StreamEvent[]): boolean {
    const t = this.#t;
    let out = "";
    for (let i = 0; i < batch.length && !t.ended; i++) {
      const data = batch[i].data;
      if (data !== null) out += t.push(data);
    }
    if (out) this.#sendText(out);
    if (t.ended) {
      // a chunk the transcoder cannot read ended the response (response.failed, so it is not stored): the
      // upstream is of no more use
      this.controller.close();
      this.finish(true);
      this.pipe.cancel();
      return true;
    }
    return out !== "";
  }

  end(ok: boolean, error?: ErrorBody): void {
    const t = this.#t;
    if (t.ended) return;
    if (ok) {
      this.#sendText(t.complete());
      this.controller.close();
    } else if (error) {
      try {
        this.#sendText(t.fail(typeof error.code === "string" ? error.code : "upstream_stream_error", error.message));
        this.controller.close();
      } catch { /* client gone */ }
    }
    this.finish(ok);
  }
}

/**
 * An error about the chat request naming, in its `param` and at the start of its message, the field of the
 * Responses request the client sent (`param`: toChatRequest's mapping).
 */
function inResponsesTerms(e: ErrorBody, param: (chatParam: string) => string): ErrorBody {
  if (typeof e.param !== "string") return e;
  const p = param(e.param);
  if (p === e.param) return e;
  return { ...e, param: p, message: e.message.startsWith(`${e.param}: `) ? p + e.message.slice(e.param.length) : e.message };
}

/**
 * The Router's outcome for a translated request: a response object, an event stream, or the error (its `param`
 * named as in the Responses request, by `param`). `tap` (the idempotency transcript) is fed the rendered answer;
 * an error passes through without it.
 */
export function toResponsesApi(o: Outcome, req: ResponsesRequest, param: (chatParam: string) => string, tap?: ResponseTap): Response {
  if (o.type === "error") return errorResponse(o.status, inResponsesTerms(o.error, param), o.headers);
  if (o.type === "stream") {
    return new Response(new ReadableStream<Uint8Array>(new ResponsesBody(o.events, req, tap), { highWaterMark: 0 }), { status: 200, headers: servedHeaders(o, true) });
  }
  const text = JSON.stringify(chatToResponse(JSON.parse(o.body), req));
  tap?.body(text);
  return new Response(text, { status: 200, headers: servedHeaders(o, false) });
}
