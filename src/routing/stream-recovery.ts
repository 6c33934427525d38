// Stream recovery (routing.stream_recovery): a chat stream cut or stalled mid-answer is continued instead of
// ending with an error event. Its first leg is watched for the text the client is sent; when it breaks, one
// recovery leg goes to a provider that continues a trailing assistant message holding that text (prefill,
// supports_prefill), or restarts the request on the next provider and forwards its output only past the text
// the client already has, once it has reproduced it exactly. The client sees one stream: its chunks keep the
// first leg's id, created and model. See docs/routing.md, "Stream recovery", and
// docs/decisions/0025-stream-recovery.md.
import type { ChatRequest, StreamEvent, StreamEvents } from "../providers/types.ts";
import { UpstreamStreamError } from "../providers/types.ts";
import { attempt, type AttemptEnv } from "./attempt.ts";
import type { Started } from "./hedge.ts";
import type { Candidate } from "./plan.ts";
import type { RequestRun } from "./records.ts";
import { DIVERGED, type Recover, type StreamLeg } from "./stream-pipe.ts";

/** How a recovery leg went, for failover_router_stream_recoveries_total. */
export type RecoveryOutcome = "prefill" | "restart" | "diverged" | "rejected" | "failed";

/** Text sent past this many characters is not kept: such a stream is not recovered. */
export const MAX_RECOVERED_CHARS = 1 << 20;
/** Upstream calls one recovery may make: a prefill and, when it is rejected or fails before its first token, a restart. */
export const MAX_RECOVERY_CALLS = 2;

/** The request's candidates, and how one of them is taken for a recovery leg (the Router's). */
export interface RecoveryPlan {
  /** the request's candidates in the order it tries them */
  readonly cands: readonly Candidate[];
  /**
   * `cand` admitted (cost ceiling, budgets) with a permit of its breaker, or undefined when it cannot go;
   * `another`: a provider other than the one that broke (it counts against routing.max_attempts)
   */
  take(cand: Candidate, another: boolean): Promise<Started | undefined>;
}

/** Whether a request's stream may be recovered at all: a chat stream of one choice. */
export function recoverable(run: RequestRun): boolean {
  const n = (run.body as ChatRequest).n;
  return run.kind === "chat" && run.stream && (n == null || n === 1);
}

/** What identifies the client's stream: its first chunk's id, created and model. */
interface Head {
  id: unknown;
  created: unknown;
  model: unknown;
}

/** The recovery of one request's stream: set on its RequestRun by the Router. */
export class StreamRecovery {
  constructor(readonly env: AttemptEnv, readonly run: RequestRun, readonly plan: RecoveryPlan) {}

  /** The events of the leg the stream commits to, watched for the text sent; and how to continue them. */
  watch(served: Candidate, events: StreamEvents): { events: StreamEvents; recover: Recover } {
    const sent = new SentText(events);
    return { events: sent, recover: (signal) => this.#recover(served, sent, signal) };
  }

  /** The leg the stream goes on with, or undefined: nothing to continue from, or no provider could. */
  async #recover(served: Candidate, sent: SentText, signal: AbortSignal): Promise<StreamLeg | undefined> {
    const { text, head } = sent;
    if (text === undefined || !head) return undefined;
    const { env, run, plan } = this;
    const hooks = run.hooks;
    const from = plan.cands.indexOf(served);
    // the provider that broke continues first if it can, then the ones after it in the request's order
    const order = served.provider.supports_prefill ? [served, ...plan.cands.slice(from + 1)] : plan.cands.slice(from + 1);
    let prefillOk = true, calls = 0;
    for (const cand of order) {
      if (calls >= MAX_RECOVERY_CALLS || signal.aborted) break;
      const prefill = prefillOk && cand.provider.supports_prefill;
      if (!prefill && cand === served) continue;
      const s = await plan.take(cand, cand !== served);
      if (!s) continue;
      calls++;
      const body = run.body as ChatRequest;
      const leg = await attempt(env, run, cand, s.breaker, s.permit, undefined, {
        body: prefill ? { ...body, messages: [...body.messages, { role: "assistant", content: text }] } : body,
        prefill,
        signal,
      });
      if ("cls" in leg) {
        if (leg.cls === "aborted") return undefined;
        // a provider that refuses the prefill is not asked again; the next one restarts
        const rejected = prefill && (leg.cls === "client" || leg.cls === "unsupported");
        if (rejected) prefillOk = false;
        hooks.onStreamRecovery?.(cand.provider.name, rejected ? "rejected" : "failed");
        continue;
      }
      const { leg: started, pending, ended, usage } = leg;
      if (usage) pending.push({ data: null, content: false, usage });
      const mode: RecoveryOutcome = prefill ? "prefill" : "restart";
      return {
        ac: started.ac,
        detach: started.detach,
        finish: started.finish,
        events: new Continuation(started.events, pending, ended, head, prefill ? "" : text),
        end: (end, u, chars, reason) => {
          started.end(end, u, chars, reason);
          if (end !== "aborted") hooks.onStreamRecovery?.(cand.provider.name, end === "ok" ? mode : end === "diverged" ? "diverged" : "failed");
        },
      };
    }
    return undefined;
  }
}

/**
 * A leg's events on their way to the client, watched: the text content sent, and the stream's head. Anything a
 * recovery cannot reproduce (a tool call, reasoning, a refusal, a second choice, a finish, more than
 * MAX_RECOVERED_CHARS of text) ends the watch: `text` is undefined from then on.
 */
class SentText implements StreamEvents {
  text: string | undefined = "";
  head: Head | undefined;

  constructor(readonly events: StreamEvents) {}

  read(): Promise<StreamEvent[] | null> {
    return this.events.read().then(this.#see);
  }

  cancel(): void {
    this.events.cancel();
  }

  readonly #see = (batch: StreamEvent[] | null): StreamEvent[] | null => {
    if (batch) for (let i = 0; i < batch.length && this.text !== undefined; i++) {
      const data = batch[i].data;
      if (data !== null) this.#chunk(data);
    }
    return batch;
  };

  #chunk(data: string): void {
    let c: any;
    try {
      c = JSON.parse(data);
    } catch {
      return this.#stop();
    }
    this.head ??= { id: c?.id, created: c?.created, model: c?.model };
    const choices = c?.choices;
    if (Array.isArray(choices) && choices.length === 0 && !c.usage) return; // nothing in it
    if (!Array.isArray(choices) || choices.length !== 1) return this.#stop();
    const ch = choices[0];
    if (ch?.index !== 0 || ch.finish_reason != null) return this.#stop();
    const d = ch.delta ?? {};
    for (const k in d) if (k !== "role" && k !== "content" && d[k] != null && d[k] !== "") return this.#stop();
    if (typeof d.content !== "string") return;
    if (this.text!.length + d.content.length > MAX_RECOVERED_CHARS) return this.#stop();
    this.text += d.content;
  }

  #stop(): void {
    this.text = undefined;
  }
}

/**
 * A recovery leg's events as the client's stream goes on: each chunk in the stream's id, created and model, with
 * its text content only (a role, reasoning: dropped). A restart's text is first checked against `sent`, the text
 * the client already has, and only what comes past it is forwarded; a restart that answers otherwise (other
 * text, a tool call, an end before it has reproduced `sent`) fails with DIVERGED. Nothing of it is kept: each
 * piece is compared with `sent` as it arrives.
 */
class Continuation implements StreamEvents {
  #pending: StreamEvent[] | null;
  /** characters of `sent` the leg has reproduced */
  #matched = 0;
  readonly #out: StreamEvent[] = [];

  constructor(readonly events: StreamEvents, pending: StreamEvent[], readonly ended: boolean, readonly head: Head, readonly sent: string) {
    this.#pending = pending;
  }

  read(): Promise<StreamEvent[] | null> {
    const pending = this.#pending;
    this.#pending = null;
    // the read-ahead's text was counted by its attempt (StreamEvent.chars): the pipe must not count it again
    if (pending) return Promise.resolve(pending).then((b) => this.#map(b, false));
    return (this.ended ? Promise.resolve(null) : this.events.read()).then(this.#mapRead);
  }

  readonly #mapRead = (batch: StreamEvent[] | null) => this.#map(batch, true);

  cancel(): void {
    this.events.cancel();
  }

  /** `count`: the events keep their StreamEvent.chars (the text the provider sent, billed whether forwarded or not) */
  #map(batch: StreamEvent[] | null, count: boolean): StreamEvent[] | null {
    if (batch === null) {
      if (this.#matched < this.sent.length) this.#diverged("it ended before");
      return null;
    }
    const out = this.#out;
    out.length = 0;
    for (let i = 0; i < batch.length; i++) {
      const ev = batch[i];
      const e = ev.data === null ? { ...ev } : this.#chunk(ev.data, ev);
      e.chars = count ? ev.chars : undefined;
      out.push(e);
    }
    return out;
  }

  #chunk(data: string, ev: StreamEvent): StreamEvent {
    let c: any;
    try {
      c = JSON.parse(data);
    } catch {
      return this.#diverged("it sent an event that is not JSON");
    }
    const { id, created, model } = this.head;
    const choices = c?.choices;
    if (!Array.isArray(choices) || choices.length === 0) return { data: JSON.stringify({ ...c, id, created, model }), content: false, usage: ev.usage };
    const ch = choices[0];
    if (choices.length > 1 || ch?.index !== 0) return this.#diverged("it sent more than one choice");
    const d = ch.delta ?? {};
    if (d.tool_calls != null || d.function_call != null || (d.refusal != null && d.refusal !== "")) return this.#diverged("it sent something other than text");
    let text = typeof d.content === "string" ? d.content : "";
    const need = this.sent.length - this.#matched;
    const overlap = need > 0 && text.length > 0;
    if (overlap) {
      const n = Math.min(need, text.length);
      if (!this.sent.startsWith(text.slice(0, n), this.#matched)) return this.#diverged("its text differs");
      this.#matched += n;
      text = text.slice(n);
    }
    if (ch.finish_reason != null && this.#matched < this.sent.length) return this.#diverged("it ended before");
    // nothing new for the client; text it already has is progress all the same (stream_idle_timeout_seconds)
    if (!text && ch.finish_reason == null) return { data: null, content: overlap, usage: ev.usage };
    const choice = { ...ch, delta: text ? { content: text } : {} };
    if (overlap && choice.logprobs) choice.logprobs = null; // they would cover text sent before
    return { data: JSON.stringify({ ...c, id, created, model, choices: [choice] }), content: true, usage: ev.usage };
  }

  #diverged(why: string): never {
    this.events.cancel();
    // past the text sent, the restart did reproduce it (and is what the client sees): the message says what came next
    const what = this.#matched < this.sent.length ? "did not reproduce the text already sent" : "reproduced the text already sent, then went on with what one stream cannot carry";
    throw new UpstreamStreamError(`the restarted request ${what}: ${why}`, DIVERGED);
  }
}
