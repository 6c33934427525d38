// A committed stream on its way to the client: the adapter's events, read one upstream read per pull, handed to
// the sink that renders them (src/http/), with the stream's limits and its verdict for the breaker and records.
import type { ErrorBody } from "../errors.ts";
import type { StreamEvent, StreamEvents, Usage } from "../providers/types.ts";
import { UpstreamStreamError } from "../providers/types.ts";
import { streamFailure, timeoutReason } from "./failures.ts";

/** How a committed stream (or one leg of it) ended: `diverged`, a recovery leg that did not reproduce the text sent. */
export type StreamEnd = "ok" | "failed" | "aborted" | "diverged";

/**
 * One upstream stream feeding a client's stream: the one it committed to, or the leg a recovery continues it on
 * (src/routing/stream-recovery.ts).
 */
export interface StreamLeg {
  readonly events: StreamEvents;
  /** aborts the leg's upstream request */
  readonly ac: AbortController;
  /** stops listening to the client's signal */
  detach(): void;
  /**
   * the leg ended: its attempt record, and the breaker and health verdict on its provider. `usage` when the
   * upstream reported one; `chars`: the characters of generated text the pipe read from it (StreamEvent.chars;
   * the leg counted its own read-ahead), what a stream cut short is billed for.
   */
  end(end: StreamEnd, usage: Usage | undefined, chars: number, reason?: string): void;
  /** the client's stream ended with this leg (after its end()): the request's record for the observers */
  finish(end: StreamEnd): void;
}

/**
 * Continues a stream whose leg broke (routing.stream_recovery): resolves with the leg it goes on with, or with
 * undefined when none could take it. `signal` aborts it (the client went away, the stream ran out of time).
 */
export type Recover = (signal: AbortSignal) => Promise<StreamLeg | undefined>;

/** The code a recovery leg fails with when it does not reproduce the text the client already has. */
export const DIVERGED = "stream_recovery_diverged";

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
 * With `recover`, a leg that breaks (or stalls) is continued once on the leg it gives; until that leg has sent the
 * client something, an end names the failure the client's stream broke on.
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
  // generated text the current leg has sent past its read-ahead: the adapters count it per event, so the pipe adds
  // numbers and parses nothing
  #chars = 0;
  #leg: StreamLeg | null;
  /** the current leg has had its end() (it broke and a recovery is under way) */
  #legEnded = false;
  #recover: Recover | null;
  /** the recovery under way: `ac` aborts it, `settled` once its leg has its record */
  #recovering: { ac: AbortController; settled: Promise<void> } | null = null;
  /** the error the client's stream broke on, while a recovery has sent it nothing */
  #original: ErrorBody | null = null;

  constructor(
    leg: StreamLeg,
    /** the events read ahead up to the commit point, those with data */
    pending: StreamEvent[],
    /** the upstream stream ended during the read-ahead */
    readonly ended: boolean,
    usage: Usage | undefined,
    readonly idleMs: number,
    readonly maxSeconds: number,
    recover?: Recover,
  ) {
    this.#leg = leg;
    this.#pending = pending;
    this.#usage = usage;
    this.#recover = recover ?? null;
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
    this.#armIdle();
    return this.#read();
  }

  #armIdle(): void {
    if (!this.#idleTimer) this.#idleTimer = setTimeout(this.#onIdleTimer, this.idleMs);
  }

  #read(): Promise<void> {
    return this.#leg!.events.read().then(this.#forward, this.#broke);
  }

  cancel(): void {
    if (this.#closed) return;
    this.#stopLeg(new DOMException("client disconnected", "AbortError"));
    this.#close("aborted", "client disconnected");
  }

  #stopLeg(reason: unknown): void {
    const leg = this.#leg!;
    leg.ac.abort(reason);
    leg.events.cancel();
  }

  /**
   * One read's events to the sink; a read that carries nothing to forward (comments, a dropped usage chunk) reads
   * on within the same idle wait, and one the sink sends nothing for reads on in a new one. Content the client
   * already has (a recovery's restart reproducing it) is progress too: it starts a new wait.
   */
  readonly #forward = (batch: StreamEvent[] | null): Promise<void> | void => {
    if (this.#closed) return; // ended meanwhile (stream_max_duration_seconds, the client went away)
    if (batch === null) {
      this.#waitingSince = 0;
      this.#close("ok");
      return;
    }
    let data = false, progress = false;
    for (let i = 0; i < batch.length; i++) {
      const ev = batch[i];
      if (ev.usage) this.#usage = ev.usage;
      if (ev.chars) this.#chars += ev.chars;
      if (ev.data !== null) data = true;
      else if (ev.content) progress = true;
    }
    if (!data) {
      if (progress) this.#waitingSince = performance.now();
      return this.#read();
    }
    if (this.#sink!.events(batch) || this.#closed) {
      this.#original = null;
      this.#waitingSince = 0;
      return;
    }
    this.#waitingSince = performance.now();
    return this.#read();
  };

  readonly #broke = (e: unknown): Promise<void> | void => {
    if (this.#closed) return;
    const f = streamFailure(e, this.#leg!.ac.signal);
    const msg = f.kind === "timeout" ? `upstream stream stalled for more than ${this.idleMs / 1000}s` : f.message;
    if (f.kind === "aborted") {
      this.#waitingSince = 0;
      return this.#close("aborted", msg);
    }
    const code = f.kind === "timeout" ? "stream_timeout" : (e as UpstreamStreamError).code ?? "upstream_stream_error";
    const error: ErrorBody = { message: msg, type: "upstream_error", code };
    if (this.#recover) return this.#recoverFrom(msg, error);
    this.#waitingSince = 0;
    this.#close(code === DIVERGED ? "diverged" : "failed", msg, this.#original ?? error);
  };

  /** The leg broke: it ends, and the stream goes on with the leg the recovery gives, or ends with `error`. */
  #recoverFrom(reason: string, error: ErrorBody): Promise<void> {
    const recover = this.#recover!, broken = this.#leg!;
    this.#recover = null; // once per stream
    this.#original = error;
    broken.detach();
    broken.end("failed", this.#usage, this.#chars, reason);
    this.#legEnded = true;
    this.#usage = undefined;
    this.#chars = 0;
    const ac = new AbortController();
    const fail = () => this.#close("failed", reason, error);
    const settled = recover(ac.signal).then((leg) => {
      this.#recovering = null;
      if (this.#closed) {
        // the stream ended while the leg was starting (the client went away, stream_max_duration_seconds)
        if (leg) {
          leg.ac.abort(ac.signal.reason);
          leg.events.cancel();
          leg.detach();
          leg.end("aborted", undefined, 0, "the stream ended before its recovery");
        }
        return;
      }
      if (!leg) return fail();
      this.#leg = leg;
      this.#legEnded = false;
      this.#waitingSince = performance.now();
      this.#armIdle();
      return this.#read();
    }, () => void (this.#closed || fail()));
    this.#recovering = { ac, settled };
    return settled;
  }

  readonly #onIdleTimer = (): void => {
    this.#idleTimer = undefined;
    if (this.#closed) return;
    const waited = this.#waitingSince ? performance.now() - this.#waitingSince : 0;
    if (this.#waitingSince && waited >= this.idleMs) this.#leg!.ac.abort(timeoutReason());
    else this.#idleTimer = setTimeout(this.#onIdleTimer, this.idleMs - waited);
  };

  /** Ends the stream here, whether a read is pending or the client is slow to take what was sent. */
  readonly #onMaxDuration = (): void => {
    this.#maxTimer = undefined;
    if (this.#closed) return;
    const msg = `the stream ran longer than routing.stream_max_duration_seconds (${this.maxSeconds}s)`;
    this.#stopLeg(new DOMException("stream_max_duration_seconds reached", "AbortError"));
    this.#close("failed", msg, this.#original ?? { message: msg, type: "upstream_error", code: "stream_max_duration" });
  };

  #close(end: StreamEnd, reason?: string, error?: ErrorBody): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    if (this.#maxTimer) clearTimeout(this.#maxTimer);
    this.#idleTimer = this.#maxTimer = undefined;
    // a recovery leg cut short here is recorded once its attempt settles (at once: it is aborted); the request's
    // record waits for it, so that it lists the leg that /stats and /metrics count
    const recovery = this.#recovering;
    recovery?.ac.abort(new DOMException("the stream ended", "AbortError"));
    const leg = this.#leg!, sink = this.#sink!, usage = this.#usage, ended = this.#legEnded;
    this.#leg = this.#sink = this.#recover = this.#recovering = this.#original = null;
    this.#usage = undefined;
    sink.end(end === "ok", error);
    leg.detach();
    if (!ended) leg.end(end, usage, this.#chars, reason);
    if (recovery) void recovery.settled.then(() => leg.finish(end));
    else leg.finish(end);
  }
}
