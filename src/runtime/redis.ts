// The Redis connection of the `redis` state backend (src/state/redis/), on both runtimes and in the compiled
// binary: node-redis (@redis/client), the client Redis itself maintains, which runs unchanged on Bun and on
// Deno through their Node compatibility (docs/decisions/0023-redis-client.md). The core sees only the
// RedisConnection interface and bounds every call itself; what the client is told here keeps it from
// buffering or storming while Redis is away.
import { Buffer } from "node:buffer";
import type { ConnectRedis } from "../state/redis/link.ts";

/** The longest wait between two reconnection attempts while Redis is away. */
const MAX_RECONNECT_DELAY_MS = 1000;

export const connectRedis: ConnectRedis = (url, opts) => {
  const report = (e: unknown) => opts.onError?.((e as Error)?.message ?? String(e));
  let closed = false;
  // why the connection is down (refused, TLS, WRONGPASS, ...): a command refused while offline says only that
  // the client is offline, so its rejection carries this reason to /health and the log
  let reason: string | undefined;
  // loaded on first use: a router on the memory backend never parses the client
  const client = import("@redis/client").then(({ createClient, RESP_TYPES, ClientOfflineError }) => {
    const c = createClient({
      url,
      // a command sent while disconnected fails at once instead of waiting in an unbounded queue
      disableOfflineQueue: true,
      socket: {
        connectTimeout: opts.connectTimeoutMs,
        // backs off to one attempt a second, for as long as it takes: never a storm, never giving up
        reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 10), MAX_RECONNECT_DELAY_MS),
      },
    }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }); // replies as bytes (a Buffer is a Uint8Array)
    // without a listener an "error" event would end the process; the core learns of failures from its calls
    c.on("error", (e: unknown) => {
      reason = (e as Error)?.message ?? String(e);
      report(e);
    });
    c.on("ready", () => (reason = undefined));
    // the first attempt may fail too: the reconnect strategy keeps trying
    if (!closed) c.connect().catch(report);
    return { c, ClientOfflineError };
  });
  return {
    send: (args) =>
      client.then(({ c, ClientOfflineError }) =>
        c.sendCommand(args.map((a) => (typeof a === "string" ? a : Buffer.from(a.buffer, a.byteOffset, a.byteLength)))).catch((e: unknown) => {
          throw e instanceof ClientOfflineError && reason ? new Error(`${e.message}: ${reason}`) : e;
        })
      ),
    close() {
      closed = true;
      client.then(({ c }) => c.destroy()).catch(() => {});
    },
  };
};
