// The tiny interface the runtime entrypoints (main.bun.ts, main.deno.ts) implement, so the core never
// touches Bun.*, Deno.* or node:* itself.
import type { UpstreamFetch } from "./providers/types.ts";
import type { ConnectRedis } from "./state/redis/link.ts";

export type Handler = (req: Request, info: { remoteAddr?: string }) => Response | Promise<Response>;

export type Signal = "SIGHUP" | "SIGTERM" | "SIGINT";

export interface ServerHandle {
  port: number;
  hostname: string;
  /**
   * Stops accepting new connections (idle keep-alive connections are closed too). graceful: resolves once
   * every in-flight request, including a streaming response body, has finished. Not graceful: closes
   * every connection at once.
   */
  stop(graceful: boolean): Promise<void>;
}

export interface ServeOptions {
  hostname: string;
  port: number;
  /**
   * A connection is closed when it has not completed a request head within this many seconds of opening, or of
   * its previous response (server.header_timeout_seconds). Bun enforces its own fixed 10 s on a connection's
   * first request head (docs/security.md, "Slow and oversized clients").
   */
  headerTimeoutSeconds: number;
}

export interface FileStat {
  /** modification time, milliseconds since the epoch */
  mtimeMs: number;
  size: number;
}

export interface Platform {
  runtime: "bun" | "deno";
  runtimeVersion: string;
  /** the machine's host name (the default replica id is <hostname>:<port>) */
  hostname: string;
  args: string[];
  env: Record<string, string | undefined>;
  setEnv(key: string, value: string): void;
  /** null when the file does not exist */
  readTextFile(path: string): Promise<string | null>;
  /** null when the file does not exist (follows symlinks, so a swapped ConfigMap link counts as a change) */
  stat(path: string): Promise<FileStat | null>;
  serve(handler: Handler, opts: ServeOptions): ServerHandle;
  onSignal(signal: Signal, fn: () => void): void;
  exit(code: number): never;
  stdout(line: string): void;
  stderr(line: string): void;
  /** the client the provider adapters send upstream requests with (default: the global fetch) */
  upstreamFetch?: UpstreamFetch;
  /** opens a connection to Redis for the `redis` state backend (src/runtime/redis.ts) */
  connectRedis?: ConnectRedis;
  /** runtime limits the entrypoint could not lift, logged at warn when serving starts */
  startupWarnings?: string[];
  /** the open-files limit the process runs with (undefined where unknown), logged when serving starts */
  openFilesLimit?: number;
}
