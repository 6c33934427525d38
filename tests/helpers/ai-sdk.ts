// Vercel AI SDK helpers shared by ai-sdk.test.ts and responses.test.ts: the app's weather tool, a two-step tool
// loop, and the stream readers.
import { isStepCount, tool } from "ai";
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
