// The request side of the socket client (http1.ts): where a URL goes (parsed once per URL and CA) and the bytes of
// one request, head and body in one buffer.
import type { UpstreamInit } from "../providers/types.ts";

/** Where one upstream URL goes: parsed once per URL string (and CA), then reused for every request to it. */
export interface Endpoint {
  /** the connection pool's key: scheme, host, port and, for https, the CA certificates the connection trusts */
  readonly key: string;
  readonly hostname: string; // without IPv6 brackets
  readonly port: number;
  readonly path: string; // path and query
  /** https: the connection is TLS, verified against the default trust store plus `ca` (UpstreamInit.ca) */
  readonly tls: boolean;
  readonly ca: string | undefined;
  /** "POST <path> HTTP/1.1\r\nhost: ...\r\n": the fixed start of every request head */
  readonly start: string;
}

/** Endpoints by CA text (undefined: none), then URL. */
const endpoints = new Map<string | undefined, Map<string, Endpoint>>();
let endpointCount = 0;

/** The endpoint of an http or https URL (callers check the scheme) whose connections trust `ca` besides the default roots. */
export function endpointOf(url: string, ca: string | undefined): Endpoint {
  return endpoints.get(ca)?.get(url) ?? newEndpoint(url, ca);
}

function newEndpoint(url: string, ca: string | undefined): Endpoint {
  // URLs and CA files come from config: this only bounds a pathological reload loop
  if (endpointCount++ > 1000) endpoints.clear(), endpointCount = 1;
  const u = new URL(url);
  const tls = u.protocol === "https:";
  const port = u.port ? Number(u.port) : tls ? 443 : 80;
  const hostname = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  const path = u.pathname + u.search;
  // a connection verified with one provider's CA file must never carry the request of a provider without it
  const key = `${u.protocol}//${hostname}:${port}${tls && ca ? `\n${ca}` : ""}`;
  const e = { key, hostname, port, path, tls, ca: tls ? ca : undefined, start: `POST ${path} HTTP/1.1\r\nhost: ${u.host}\r\n` };
  let byUrl = endpoints.get(ca);
  if (!byUrl) endpoints.set(ca, byUrl = new Map());
  byUrl.set(url, e);
  return e;
}

const encoder = new TextEncoder();

/**
 * The bytes of one request: head and body in one buffer, so one write sends both. No accept-encoding: the
 * upstream should answer uncompressed (one that compresses anyway is decoded, see CODINGS). Throws a TypeError
 * for a header value that would split the head (as fetch).
 */
export function requestBytes(e: Endpoint, init: UpstreamInit): Uint8Array {
  const body = encoder.encode(init.body);
  let head = e.start;
  const headers = init.headers;
  for (const name in headers) head += `${name}: ${headerValue(name, headers[name])}\r\n`;
  head += `content-length: ${body.length}\r\n\r\n`;
  // head is ASCII unless a header value is not; encode it on its own for the exact byte length
  const h = encoder.encode(head);
  const out = new Uint8Array(h.length + body.length);
  out.set(h);
  out.set(body, h.length);
  return out;
}

/**
 * A header value as fetch sends it: leading and trailing whitespace removed (a key read from a file with its
 * newline); a line break or NUL inside is a TypeError.
 */
function headerValue(name: string, value: string): string {
  if (value.charCodeAt(0) <= 32 || value.charCodeAt(value.length - 1) <= 32) value = value.trim();
  if (value.includes("\n") || value.includes("\r") || value.includes("\0")) throw new TypeError(`invalid value for header ${name}`);
  return value;
}
