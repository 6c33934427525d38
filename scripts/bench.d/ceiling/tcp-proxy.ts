// Throughput ceiling reference (docs/benchmarks.md, "Throughput ceilings"): a TCP pass-through on Bun sockets. Each
// client connection is paired with one upstream connection and the bytes are copied both ways without looking at
// them: no HTTP at all, so it is the floor of any JavaScript proxy. Not a gateway.
// Usage: bun tcp-proxy.ts LISTEN_PORT UPSTREAM_PORT
const [listenPort, upPort] = Bun.argv.slice(2).map(Number);

interface Pair {
  peer: Bun.Socket<Pair> | null;
  early: Uint8Array[]; // client bytes that came before the upstream connection was open
}

Bun.listen<Pair>({
  hostname: "127.0.0.1",
  port: listenPort,
  socket: {
    open(client) {
      client.data = { peer: null, early: [] };
      Bun.connect<Pair>({
        hostname: "127.0.0.1",
        port: upPort,
        data: { peer: client, early: [] },
        socket: {
          open(up) {
            client.data.peer = up;
            for (const b of client.data.early) up.write(b);
            client.data.early.length = 0;
          },
          data: (up, bytes) => void up.data.peer!.write(bytes),
          close: (up) => void up.data.peer!.end(),
          error() {},
        },
      }).catch(() => client.end());
    },
    data(client, bytes) {
      if (client.data.peer) client.data.peer.write(bytes);
      else client.data.early.push(new Uint8Array(bytes));
    },
    close: (client) => void client.data.peer?.end(),
    error() {},
  },
});
console.log(`listening ${listenPort}`);

export {};
