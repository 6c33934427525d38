// OpenAI-shaped error bodies: {"error":{"message","type","param","code"}}.
export interface ErrorBody {
  message: string;
  type: string;
  param?: string | null;
  code?: string | null;
  [k: string]: unknown;
}

export function errorJson(e: ErrorBody): string {
  const { message, type, param = null, code = null, ...extra } = e;
  return JSON.stringify({ error: { message, type, param, code, ...extra } });
}

export function errorResponse(status: number, e: ErrorBody, headers?: Record<string, string>): Response {
  return new Response(errorJson(e), { status, headers: { "content-type": "application/json", ...headers } });
}

/** The answer to a client that went away before its answer was ready (status 499, as nginx logs it). */
export const CLIENT_CLOSED: ErrorBody = { message: "client closed request", type: "invalid_request_error", code: "client_closed_request" };
