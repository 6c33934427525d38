// Deno's HTTP server with a clock on every connection: Deno.serve has no header or idle timeout at all (a
// connection that never finishes its request head stays open for good), so the Deno entrypoint accepts the
// connections itself and hands each to Deno's own HTTP server for one connection, which it can then close.
// Why this way and not another: docs/security.md, "Slow and oversized clients".
import type { Handler, ServeOptions, ServerHandle } from "../platform.ts";

type ConnServer = { finished: Promise<void>; shutdown(): Promise<void> };
type ServeOnConnection = (
  conn: Deno.Conn,
  signal: AbortSignal,
  handler: (req: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>,
  onError: (error: unknown) => Response,
  onListen: () => void,
) => ConnServer;

// Deno.serve's own machinery for one accepted connection (the same native request path, per connection); Deno
// exports it only internally, hence the lookup and the check at start-up
const serveOnConnection: ServeOnConnection | undefined = (Deno as unknown as Record<symbol, { serveHttpOnConnection?: ServeOnConnection }>)[
  (Deno as unknown as { internal: symbol }).internal
]?.serveHttpOnConnection;

/** Why connections cannot be timed on this Deno, or undefined when they can. */
export const connectionTimeoutProblem = serveOnConnection
  ? undefined
  : "this Deno has no per-connection HTTP serving: connections are not closed on server.header_timeout_seconds";

const onError = (e: unknown) => {
  console.error(e);
  return new Response("Internal Server Error", { status: 500 });
};

interface Watched {
  server: ConnServer;
  abort: AbortController;
}

/**
 * Serves `handler` on hostname:port. A connection with no request in progress (just opened, between requests, or
 * with a request head still arriving) is closed after `headerTimeoutSeconds`.
 */
export function serveWithTimeouts(handler: Handler, { hostname, port, headerTimeoutSeconds }: ServeOptions): ServerHandle {
  if (!serveOnConnection) {
    const server = Deno.serve({ hostname, port, onListen() {} }, (req, info) => handler(req, { remoteAddr: (info.remoteAddr as Deno.NetAddr).hostname }));
    return { port: server.addr.port, hostname: server.addr.hostname, stop: () => server.shutdown() };
  }
  const serve = serveOnConnection;
  const listener = Deno.listen({ hostname, port });
  const open = new Set<Watched>();
  const idleMs = headerTimeoutSeconds * 1000;
  let stopping = false;

  const watch = (conn: Deno.TcpConn) => {
    conn.setNoDelay(true);
    const remoteAddr = (conn.remoteAddr as Deno.NetAddr).hostname;
    const abort = new AbortController();
    let active = 0;
    let timer = setTimeout(() => abort.abort(), idleMs);
    // after its response, a request whose body was not read to the end (a 408) leaves hyper reading that body:
    // the same clock then closes the connection
    const sent = () => {
      if (--active === 0) timer = setTimeout(() => abort.abort(), idleMs);
    };
    const server = serve(conn, abort.signal, (req, info) => {
      if (active++ === 0) clearTimeout(timer);
      info.completed.then(sent, sent);
      return handler(req, { remoteAddr });
    }, onError, () => {});
    const w = { server, abort };
    open.add(w);
    server.finished.catch(() => {}).finally(() => {
      clearTimeout(timer);
      open.delete(w);
    });
  };

  void (async () => {
    while (!stopping) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (stopping || e instanceof Deno.errors.BadResource) return;
        // out of file descriptors and the like: accept again after a pause rather than spin
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      watch(conn);
    }
  })();

  const addr = listener.addr as Deno.NetAddr;
  return {
    port: addr.port,
    hostname: addr.hostname,
    async stop(graceful) {
      stopping = true;
      listener.close();
      const all = [...open];
      // a graceful shutdown closes idle connections (and those still sending a head) at once, the others after
      // their response
      if (graceful) await Promise.all(all.map((w) => w.server.shutdown().catch(() => {})));
      else for (const w of all) w.abort.abort();
      await Promise.all(all.map((w) => w.server.finished.catch(() => {})));
    },
  };
}
