// The Router's outcomes as Responses: a JSON answer, an SSE stream of chat (or text) completion chunks, or an
// OpenAI-shaped error. Each feeds the idempotency transcript (ResponseTap) as it answers.
import { encoder } from "../bytes.ts";
import { errorJson, errorResponse, type ErrorBody } from "../errors.ts";
import type { StreamEvent } from "../providers/types.ts";
import type { Outcome, Served } from "../routing/outcome.ts";
import type { EventPipe, EventSink } from "../routing/stream-pipe.ts";
import type { ResponseTap } from "./context.ts";

export const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" };
/** The last event of a completed OpenAI stream. */
export const DONE = encoder.encode("data: [DONE]\n\n");

/** The headers of a successful answer: its content type and which provider served it after how many attempts. */
export function servedHeaders(o: Served, stream: boolean): Record<string, string> {
  const served = { "x-router-provider": o.provider, "x-router-attempts": String(o.attempts) };
  return stream ? { ...SSE_HEADERS, ...served } : { "content-type": "application/json", ...served };
}

/** `tap`: the idempotency transcript, if any. */
export function render(o: Outcome, tap?: ResponseTap): Response {
  if (o.type === "error") return errorResponse(o.status, o.error, o.headers);
  if (o.type === "json") {
    tap?.body(o.body);
    return new Response(o.body, { status: 200, headers: servedHeaders(o, false) });
  }
  const body = new ReadableStream<Uint8Array>(new SseBody(o.events, tap), { highWaterMark: 0 });
  return new Response(body, { status: 200, headers: servedHeaders(o, true) });
}

/**
 * A client's body fed by a committed stream: the pipe drives it (start, pull, cancel) and calls back with the
 * events, which a subclass renders. The tap (the idempotency transcript) sees every chunk sent and the end.
 */
export abstract class PipedBody implements UnderlyingDefaultSource<Uint8Array>, EventSink {
  protected controller!: ReadableStreamDefaultController<Uint8Array>;
  // dropped at the end, like the pipe's own references (docs/decisions/0014-finished-streams-let-go.md)
  #tap: ResponseTap | null;

  constructor(readonly pipe: EventPipe, tap: ResponseTap | undefined) {
    this.#tap = tap ?? null;
    if (tap) tap.attached = true;
  }

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.controller = controller;
    this.pipe.start(this);
  }

  pull(): Promise<void> {
    return this.pipe.pull();
  }

  cancel(): void {
    this.pipe.cancel();
  }

  /** one chunk to the client (and to the tap) */
  protected send(bytes: Uint8Array): void {
    this.controller.enqueue(bytes);
    this.#tap?.chunk(bytes);
  }

  /** the client's body is over: complete (`ok`) or not; the tap hears it once */
  protected finish(ok: boolean): void {
    const tap = this.#tap;
    this.#tap = null;
    tap?.end(ok);
  }

  abstract events(batch: readonly StreamEvent[]): boolean;
  abstract end(ok: boolean, error?: ErrorBody): void;
}

/** The client's SSE body of a stream: each read's events in one chunk, [DONE] or an error event at the end. */
class SseBody extends PipedBody {
  constructor(pipe: EventPipe, tap: ResponseTap | undefined) {
    super(pipe, tap);
  }

  events(batch: readonly StreamEvent[]): boolean {
    let text = "";
    for (let i = 0; i < batch.length; i++) {
      const data = batch[i].data;
      if (data !== null) text += `data: ${data}\n\n`;
    }
    if (!text) return false;
    this.send(encoder.encode(text));
    return true;
  }

  end(ok: boolean, error?: ErrorBody): void {
    if (ok) {
      this.send(DONE);
      this.controller.close();
    } else if (error) {
      try {
        this.send(encoder.encode(`data: ${errorJson(error)}\n\n`));
        this.controller.close();
      } catch { /* client gone */ }
    }
    this.finish(ok);
  }
}
