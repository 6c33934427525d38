// OpenAI endpoints the router does not serve, answered with a 404 that names the endpoint and says what to use
// instead (rather than a bare "unknown path"): clients that default to them get an actionable error.
import type { ErrorBody } from "../errors.ts";

const RESPONSES_HINT =
  "this router serves POST /v1/responses statelessly and stores no responses, so stored responses cannot be " +
  "retrieved, cancelled, deleted or listed; keep the response the POST returned, and send the whole conversation in `input`";

/** The 404 error body for a known but unsupported OpenAI endpoint, or undefined for any other path. */
export function unsupportedEndpoint(method: string, path: string): ErrorBody | undefined {
  // POST /v1/responses itself is served (src/http/responses/); everything under it needs stored responses
  if (path.startsWith("/v1/responses/")) {
    return { message: `${method} ${path.slice(0, 200)}: ${RESPONSES_HINT}`, type: "invalid_request_error", code: "unsupported_endpoint" };
  }
  return undefined;
}
