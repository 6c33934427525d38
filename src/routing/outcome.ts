// What the Router answers with: data, not a Response. src/http/ renders it (src/http/render.ts, and the
// Responses API's own rendering in src/http/responses/).
import type { ErrorBody } from "../errors.ts";
import type { EventPipe } from "./stream-pipe.ts";

/** Which provider answered, after how many upstream attempts (the x-router-* headers). */
export interface Served {
  provider: string;
  attempts: number;
}

/** A JSON answer: the body as the provider's adapter wrote it. */
export interface JsonOutcome extends Served {
  type: "json";
  body: string;
}

/** A stream committed to a provider (its first content event has come): the events, pulled by the renderer. */
export interface StreamOutcome extends Served {
  type: "stream";
  events: EventPipe;
}

/** An error answer: the status, the OpenAI-shaped error body, and headers of its own (Retry-After, x-router-*). */
export interface ErrorOutcome {
  type: "error";
  status: number;
  error: ErrorBody;
  headers?: Record<string, string>;
}

export type Outcome = JsonOutcome | StreamOutcome | ErrorOutcome;

export function errorOutcome(status: number, error: ErrorBody, headers?: Record<string, string>): ErrorOutcome {
  return { type: "error", status, error, headers };
}
