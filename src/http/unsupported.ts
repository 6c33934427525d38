// OpenAI endpoints the router does not serve, answered with a 404 that names the endpoint and says what to use
// instead (rather than a bare "unknown path"): clients that default to them get an actionable error.
import type { ErrorBody } from "./errors.ts";

const RESPONSES_HINT =
  "the OpenAI Responses API is not supported by this router; use POST /v1/chat/completions " +
  "(Vercel AI SDK: openai.chat(model) or @ai-sdk/openai-compatible instead of openai(model); LangChain: ChatOpenAI without useResponsesApi, or ChatOpenAICompletions)";

/** The 404 error body for a known but unsupported OpenAI endpoint, or undefined for any other path. */
export function unsupportedEndpoint(method: string, path: string): ErrorBody | undefined {
  if (path === "/v1/responses" || path.startsWith("/v1/responses/")) {
    return { message: `${method} ${path.slice(0, 200)}: ${RESPONSES_HINT}`, type: "invalid_request_error", code: "unsupported_endpoint" };
  }
  return undefined;
}
