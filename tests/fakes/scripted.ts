// A fake upstream that answers every request with a script the test sets, for the stream misbehaviour the
// protocol fakes do not model: a line that never ends, keep-alive comments and nothing else, content forever.
// FakeServer counts the requests whose client went away (`aborted`).
import type http from "node:http";
import { FakeServer, sleep, type RecordedRequest } from "./common.ts";

export type Script = (res: http.ServerResponse, req: RecordedRequest) => Promise<void> | void;
/** `script` may be replaced between requests. */
export type ScriptedFake = FakeServer & { script: Script };

/** `tls`: serve https (see FakeServer). */
export async function startScriptedFake(script: Script, tls?: { key: string; cert: string }): Promise<ScriptedFake> {
  const fake = new FakeServer((req, res) => fake.script(res, req), tls) as ScriptedFake;
  fake.script = script;
  return fake.start();
}

/** Sends the status line and headers of a 200 stream at once. */
export function streamHead(res: http.ServerResponse, contentType = "text/event-stream"): void {
  res.writeHead(200, { "content-type": contentType, "cache-control": "no-cache" });
  res.flushHeaders();
}

/** Resolves once the response can take more (or the client has gone away). */
function drained(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/**
 * Writes `piece` over and over, as fast as the client reads, until the client goes away; after `maxBytes` it
 * ends the body instead (so that a router without a bound does not take the test machine's memory).
 */
export async function pour(res: http.ServerResponse, piece: string, maxBytes: number): Promise<void> {
  const bytes = Buffer.from(piece);
  for (let sent = 0; !res.destroyed && sent < maxBytes; sent += bytes.length) {
    if (!res.write(bytes)) await drained(res);
  }
  if (!res.destroyed) res.end();
}

/** Writes `piece(i)` every `ms` until the client goes away. */
export async function every(res: http.ServerResponse, ms: number, piece: (i: number) => string): Promise<void> {
  for (let i = 0; !res.destroyed; i++) {
    res.write(piece(i));
    await sleep(ms);
  }
}

/** One OpenAI chat chunk as an SSE event. */
export const openaiChunk = (content: string) => `data: ${JSON.stringify({ id: "chatcmpl-s", object: "chat.completion.chunk", created: 1700000000, model: "m", choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
