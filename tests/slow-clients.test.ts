// The client-facing edge with the router as a process under the runtime running the tests (src/main.bun.ts or
// src/main.deno.ts, each through its own server): tests/helpers/edge.ts has the checks and says what they cover.
import { after, before, describe } from "node:test";
import { join } from "node:path";
import { EDGE_CONFIG, edgeChecks } from "./helpers/edge.ts";
import { rmTemp, runtime, startProcess, tempDir, writeFile, type RouterProcess } from "./helpers/process.ts";

describe(`slow and oversized clients (the router as a ${runtime} process)`, () => {
  let dir: string, r: RouterProcess;
  before(async () => {
    dir = tempDir("fr-edge-");
    writeFile(join(dir, "config.yaml"), EDGE_CONFIG);
    r = await startProcess(["--config", join(dir, "config.yaml")], { cwd: dir });
  });
  after(async () => {
    await r?.stop();
    if (dir) rmTemp(dir);
  });

  edgeChecks(() => r);
});
