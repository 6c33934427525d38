// A committed stream on its way to the client: the adapter's events, read one upstream read per pull, handed to
// the sink that renders them (src/http/), with the stream's limits and its verdict for the breaker and records.
import type { ErrorBody } from "../errors.ts";
import type { StreamEvent, StreamEvents, Usage } from "../providers/types.ts";
import { UpstreamStreamError } from "../providers/types.ts";
import { streamFailure, timeoutReason } from "./failures.ts";

/**
 * How a committed stream ended, with its usage (when the upstream reported one) and the characters of generated
 * text read (StreamEvent.chars, read-ahead included), for the attempt record, the breaker and the observers.
 */
export type StreamDone = (end: "ok" | "failed" | "aborted", usage: Usage | undefined, chars: number, reason?: string) => void;

/** Where a stream's events go: the renderer of the client's body. */
export interface EventSink {
  /**
   * The events of one read (or of the read-ahead before the commit point), some of them with data for the client.
   * True when something went to the client; false makes the pipe read on within the same pull.
   */
  events(batch: readonly StreamEvent[]): boolean;
  /**
   * The stream is over: it completed (`ok`), it failed and `error` is the client's last event, or (neither) the
   * client went away. Called once, and nothing else follows.
   */
  end(ok: boolean, error?: ErrorBody): void;
}

/**
 * The events of a committed stream: each pull is one read of the adapter's events (one promise per upstream read,
 * callbacks made once per stream), and the events of that read go to the sink at once. Two limits end it with an
 * error event: no event for the client within `idleMs` of asking for one, and `maxSeconds` since the commit point.
 * The renderer drives it: start(sink) once, then pull() whenever the client wants more, cancel() if it goes away.
 */
export class EventPipe {
  #sink: EventSink | null = null;
  // One timer per stream, not one per chunk: it re-arms itself for the rest of the current wait.
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #maxTimer: ReturnType<typeof setTimeout> | undefined;
  // when the current wait for an event to forward began; 0 while not waiting. Reads that bring nothing for the
  // client (SSE comments, pings, part of an event) do not restart it: an upstream cannot hold a stream open
  // with keep-alives alone.
  #waitingSince = 0;
  #closed = false;
  // Dropped when the stream ends: a finished pipe that the GC has promoted would otherwise keep what they point
  // to alive through the next young-generation collections (docs/decisions/0014-finished-streams-let-go.md).
  #pending: StreamEvent[] | null;
  #usage: Usage | undefined;
  // generated text read so far: the adapters' own count per event, so the pipe adds numbers and parses nothing
  #chars: number;
  #detach: (() => void) | null;
  #done: StreamDone | null;

  constructor(
    readonly events: StreamEvents,
    /** the events read ahead up to the commit point, those with data */
    pending: StreamEvent[],
    /** the upstream stream ended during the read-ahead */
    readonly ended: boolean,
    usage: Usage | undefined,
    /** characters of generated text in the read-ahead */
    chars: number,
    readonly ac: AbortController,
    detach: () => void,
    done: StreamDone,
    readonly idleMs: number,
    readonly maxSeconds: number,
  ) {
    this.#pending = pending;
    this.#usage = usage;
    this.#chars = chars;
    this.#detach = detach;
    this.#done = done;
  }

  /** Hands the read-ahead to `sink`, which gets everything from here on. */
  start(sink: EventSink): void {
    this.#sink = sink;
    const pending = this.#pending!;
    this.#pending = null;
    if (pending.length) sink.events(pending);
    if (this.ended) this.#close("ok");
    else this.#maxTimer = setTimeout(this.#onMaxDuration, this.maxSeconds * 1000);
  }

  pull(): Promise<void> {
    this.#waitingSince = performance.now();
    if (!this.#idleTimer) this.#idleTimer = setTimeout(this.#onIdleTimer, this.idleMs);
    return this.#read();
  }

  #read(): Promise<void> {
    return this.events.read().then(this.#forward, this.#broke);
  }

  cancel(): void {
    if (this.#closed) return;
    this.ac.abort(new DOMException("client disconnected", "AbortError"));
    this.events.cancel();
    this.#close("aborted", "client disconnected");
  }

  /**
   * One read's events to the sink; a read that carries nothing to forward (comments, a dropped usage chunk) reads
   * on within the same idle wait, and one the sink sends nothing for reads on in a new one.
   */
  readonly #forward = (batch: StreamEvent[] | null): Promise<void> | void => {
    if (this.#closed) return; // ended meanwhile (stream_max_duration_seconds, the client went away)
    if (batch === null) {
      this.#waitingSince = 0;
      this.#close("ok");
      return;
    }
    let data = false;
    for (let i = 0; i < batch.length; i++) {
      const ev = batch[i];
      if (ev.usage) this.#usage = ev.usage;
      if (ev.chars) this.#chars += ev.chars;
      if (ev.data !== null) data = true;
    }
    if (!data) return this.#read();
    if (this.#sink!.events(batch) || this.#closed) {
      this.#waitingSince = 0;
      return;
    }
    this.#waitingSince = performance.now();
    return this.#read();
  };

  readonly #broke = (e: unknown): void => {
    if (this.#closed) return;
    this.#waitingSince = 0;
    const f = streamFailure(e, this.ac.signal);
    const msg = f.kind === "timeout" ? `upstream stream stalled for more than ${this.idleMs / 1000}s` : f.message;
    if (f.kind === "aborted") return this.#close("aborted", msg);
    const code = f.kind === "timeout" ? "stream_timeout" : (e as UpstreamStreamError).code ?? "upstream_stream_error";
    this.#close("failed", msg, { message: msg, type: "upstream_error", code });
  };

  readonly #onIdleTimer = (): void => {
    this.#idleTimer = undefined;
    if (this.#closed) return;
    const waited = this.#waitingSince ? performance.now() - this.#waitingSince : 0;
    if (this.#waitingSince && waited >= this.idleMs) this.ac.abort(timeoutReason());
    else this.#idleTimer = setTimeout(this.#onIdleTimer, this.idleMs - waited);
  };

  /** Ends the stream here, whether a read is pending or the client is slow to take what was sent. */
  readonly #onMaxDuration = (): void => {
    this.#maxTimer = undefined;
    if (this.#closed) return;
    const msg = `the stream ran longer than routing.stream_max_duration_seconds (${this.maxSeconds}s)`;
    this.ac.abort(new DOMException("stream_max_duration_seconds reached", "AbortError"));
    this.events.cancel();
    this.#close("failed", msg, { message: msg, type: "upstream_error", code: "stream_max_duration" });
  };

  #close(end: "ok" | "failed" | "aborted", reason?: string, error?: ErrorBody): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    if (this.#maxTimer) clearTimeout(this.#maxTimer);
    this.#idleTimer = this.#maxTimer = undefined;
    const detach = this.#detach!, done = this.#done!, usage = this.#usage, sink = this.#sink!;
    this.#detach = this.#done = this.#sink = null;
    this.#usage = undefined;
    sink.end(end === "ok", error);
    detach();
    done(end, usage, this.#chars, reason);
  }
}
