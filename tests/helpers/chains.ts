// The fallback chains the SDK tests (sdk, ai-sdk, langchain, responses) run against: a first provider that
// always answers 503, then the provider that answers (an OpenAI-compatible fake, or the Anthropic fake), with the
// breaker threshold high enough that the failing provider is tried, and failed over, on every request.
// Plus the weather tool arguments they share and lastBody().
import { z } from "zod";
import { startAnthropicFake, type AnthropicFake } from "../fakes/anthropic.ts";
import { startOpenAIFake, type OpenAIFakeOptions } from "../fakes/openai.ts";
import type { FakeServer } from "../fakes/common.ts";
import { startRouter, type RunningRouter } from "./router.ts";

export interface OpenAIChain {
  /** the first provider (`down`, type openai, default_model gpt-x): answers every request with a 503 */
  down: FakeServer;
  /** the second provider (`up`, type openai_compatible, default_model up-model) */
  up: FakeServer;
  /** the options `up` reads per request: set `toolCall` / `refusal` in a test, delete them after */
  upOpts: OpenAIFakeOptions;
  r: RunningRouter;
  stop(): Promise<void>;
}

export interface AnthropicChain {
  /** the first provider (`down`, type openai, default_model gpt-x): answers every request with a 503 */
  down: FakeServer;
  /** the second provider (`claude`, type anthropic, default_model claude-test, key sk-ant-key); change
   * `claude.options` in a test and `claude.reset()` after */
  claude: AnthropicFake;
  r: RunningRouter;
  stop(): Promise<void>;
}

/** A provider that answers every request with 503 (an OpenAI fake with a standing fault). */
async function startDown(): Promise<FakeServer> {
  const down = await startOpenAIFake();
  down.fault = { status: 503 };
  return down;
}

function chainYaml(down: FakeServer, second: string): string {
  return `
circuit_breaker: { failure_threshold: 1000 }
providers:
  - { name: down, type: openai, endpoint: ${down.url}/v1, api_key: sk-down, default_model: gpt-x }
  - ${second}
`;
}

/** down (503) -> up (OpenAI-compatible, replying "Hello from upstream!" in 5 chunks, usage 11 + 7). */
export async function startOpenAIChain(): Promise<OpenAIChain> {
  const upOpts: OpenAIFakeOptions = { reply: "Hello from upstream!", chunks: 5 };
  const down = await startDown();
  const up = await startOpenAIFake(upOpts);
  const r = await startRouter(chainYaml(down, `{ name: up, type: openai_compatible, endpoint: ${up.url}/v1, default_model: up-model }`));
  return {
    down, up, upOpts, r,
    async stop() {
      await r.stop();
      await up.stop();
      await down.stop();
    },
  };
}

/** down (503) -> claude (Anthropic, replying "Bonjour from Claude." in 4 chunks, usage 21 + 8). */
export async function startAnthropicChain(): Promise<AnthropicChain> {
  const down = await startDown();
  const claude = await startAnthropicFake({ apiKey: "sk-ant-key", reply: "Bonjour from Claude.", chunks: 4, usage: { input_tokens: 21, output_tokens: 8 } });
  const r = await startRouter(chainYaml(down, `{ name: claude, type: anthropic, endpoint: ${claude.url}, api_key: sk-ant-key, default_model: claude-test }`));
  return {
    down, claude, r,
    async stop() {
      await r.stop();
      await claude.stop();
      await down.stop();
    },
  };
}

/** The body of the last request a fake received (parsed JSON). */
export const lastBody = (f: FakeServer) => f.requests.at(-1)!.body;

/** The arguments of the get_weather tool call the fakes answer with, and the tool's input schema. */
export const WEATHER_ARGS = { city: "Paris", unit: "c" as const };
export const weatherInput = z.object({ city: z.string(), unit: z.enum(["c", "f"]) });
export const WEATHER_DESCRIPTION = "Current weather for a city";
