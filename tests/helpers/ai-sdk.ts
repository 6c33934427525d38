// Vercel AI SDK helpers shared by ai-sdk.test.ts and responses.test.ts: the app's weather tool, a two-step tool
// loop, the stream readers, and the checks several streamText tests share.
import assert from "node:assert/strict";
import { isStepCount, type LanguageModel, streamText, tool } from "ai";
import type { z } from "zod";
import { WEATHER_DESCRIPTION, weatherInput } from "./chains.ts";

type WeatherArgs = z.infer<typeof weatherInput>;

/** the tool the app defines; with `execute`, the SDK runs it and sends the result back to the model */
export function weatherTool(execute?: (a: WeatherArgs) => Promise<string>) {
  const description = WEATHER_DESCRIPTION;
  return execute ? tool({ description, inputSchema: weatherInput, execute }) : tool({ description, inputSchema: weatherInput });
}

/** The settings of a two-step tool loop asking for the weather in Paris: get_weather calls `onCall` with the
 * parsed arguments (where the test switches its fake to a text answer) and returns "sunny, 21 C" to the model;
 * at most 3 steps, no SDK retries. Spread into generateText / streamText next to the model. */
export function weatherLoop(onCall: (a: WeatherArgs) => void) {
  return {
    prompt: "weather in Paris?",
    tools: {
      get_weather: weatherTool(async (a) => {
        onCall(a);
        return "sunny, 21 C";
      }),
    },
    stopWhen: isStepCount(3),
    maxRetries: 0,
  };
}

/** The text deltas of a streamText result, in order, as the app's loop sees them. */
export async function deltas(s: { textStream: AsyncIterable<string> }): Promise<string[]> {
  const out: string[] = [];
  for await (const d of s.textStream) out.push(d);
  return out;
}

/** The parts of a streamText fullStream (types and the fields the tests look at). */
export async function parts(s: { fullStream: AsyncIterable<any> }): Promise<any[]> {
  const out: any[] = [];
  for await (const p of s.fullStream) out.push(p);
  return out;
}

/**
 * The checks every streamText test makes: the text arrives in several deltas that join to `text`, the stream
 * finishes with "stop", and the usage has `outputTokens` (and `inputTokens`, when given).
 */
export async function assertStreamedText(
  s: { textStream: AsyncIterable<string>; finishReason: PromiseLike<string>; usage: PromiseLike<{ inputTokens?: number; outputTokens?: number }> },
  text: string,
  usage: { inputTokens?: number; outputTokens: number },
): Promise<void> {
  const ds = await deltas(s);
  assert.ok(ds.length >= 2, `several deltas, got ${JSON.stringify(ds)}`);
  assert.equal(ds.join(""), text);
  assert.equal(await s.finishReason, "stop");
  const u = await s.usage;
  if (usage.inputTokens !== undefined) assert.equal(u.inputTokens, usage.inputTokens);
  assert.equal(u.outputTokens, usage.outputTokens);
}

/**
 * streamText with `model` while the fake provider cuts the stream after its first content: the app gets an error
 * part naming the broken stream, onError once, and finishReason "error" (not a silent success).
 */
export async function assertBrokenStream(model: LanguageModel): Promise<void> {
  const errors: unknown[] = [];
  const s = streamText({ model, prompt: "hi", maxRetries: 0, onError: ({ error }) => void errors.push(error) });
  const ps = await parts(s);
  const err = ps.find((p) => p.type === "error");
  assert.ok(err, `an error part, got ${JSON.stringify(ps.map((p) => p.type))}`);
  assert.match(String(err.error?.message ?? err.error), /upstream stream broke/);
  assert.equal(errors.length, 1);
  assert.equal(await s.finishReason, "error");
}

/**
 * streamText asking `model` for the weather with the weather tool, against a fake that answers with a get_weather
 * call: the arguments arrive in several fragments, and the SDK reports one get_weather call with `args` and
 * finishReason "tool-calls". Returns the stream's parts and the argument fragments for further checks.
 */
export async function assertStreamedWeatherCall(model: LanguageModel, args: unknown): Promise<{ ps: any[]; fragments: string[] }> {
  const s = streamText({ model, prompt: "weather in Paris?", tools: { get_weather: weatherTool() }, maxRetries: 0 });
  const ps = await parts(s);
  const fragments: string[] = ps.filter((p) => p.type === "tool-input-delta").map((p) => p.delta);
  assert.ok(fragments.length >= 2, `several argument fragments, got ${JSON.stringify(fragments)}`);
  const calls = await s.toolCalls;
  assert.equal(calls.length, 1);
  assert.equal(calls[0].toolName, "get_weather");
  assert.deepEqual(calls[0].input, args);
  assert.equal(await s.finishReason, "tool-calls");
  return { ps, fragments };
}
