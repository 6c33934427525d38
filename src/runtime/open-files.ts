// The open-files limit the process runs with, for the start-up log. Every open stream holds two file descriptors
// (the client's connection and the upstream's), so the limit bounds how many the router can carry. Bun and Deno
// raise the soft RLIMIT_NOFILE to the hard limit themselves when they start on Linux, so there is nothing to
// raise here; the hard limit is the operator's (LimitNOFILE=, ulimit -Hn, docker --ulimit).
import { readFileSync } from "node:fs";

/** The soft open-files limit (Infinity when unlimited), or undefined where /proc/self/limits cannot tell (not Linux). */
export function openFilesLimit(): number | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
    if (soft === "unlimited") return Infinity;
    return soft && /^\d+$/.test(soft) ? Number(soft) : undefined;
  } catch {
    return undefined;
  }
}
