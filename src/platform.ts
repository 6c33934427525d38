// The tiny interface the runtime entrypoints (main.bun.ts, main.deno.ts) implement, so the core never
// touches Bun.*, Deno.* or node:* itself.
export type Handler = (req: Request, info: { remoteAddr?: string }) => Response | Promise<Response>;

export interface ServerHandle {
  port: number;
  hostname: string;
  /** stop accepting connections; resolves when in-flight requests have finished (graceful) or at once */
  stop(graceful: boolean): Promise<void>;
}

export interface Platform {
  runtime: "bun" | "deno";
  runtimeVersion: string;
  args: string[];
  env: Record<string, string | undefined>;
  setEnv(key: string, value: string): void;
  /** null when the file does not exist */
  readTextFile(path: string): Promise<string | null>;
  serve(handler: Handler, opts: { hostname: string; port: number }): ServerHandle;
  onSignal(signal: "SIGHUP" | "SIGTERM" | "SIGINT", fn: () => void): void;
  exit(code: number): never;
  stdout(line: string): void;
  stderr(line: string): void;
}
