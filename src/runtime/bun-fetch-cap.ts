// Why: a bare binary must carry more than Bun's 256 concurrent fetches with no variable set (docs/decisions/0003).
// Lifts Bun's cap on concurrent fetch() calls before the router starts.
//
// Bun's fetch holds at most 256 upstream requests at once unless BUN_CONFIG_MAX_HTTP_REQUESTS is set, and it reads
// that variable only from the environment the process was started with (setting process.env later has no effect).
// Streams go over the socket client (bun-upstream.ts), but every non-streaming request holds one fetch request
// for as long as the provider takes to answer, so with the default the 257th would wait for a free slot. When
// the variable is unset, `serve` re-executes the same program in place with it set (execve on
// /proc/self/exe: same PID, same arguments, same file descriptors, so systemd, Docker and signals see no change).
// A value the user sets, including 256, is kept as is. Where re-executing is not possible (not Linux, no libc to
// load), the router starts with the cap and server.ts logs a warning.
import { dlopen, FFIType, type Pointer, ptr } from "bun:ffi";
import { readFileSync } from "node:fs";

export const FETCH_CAP_VAR = "BUN_CONFIG_MAX_HTTP_REQUESTS";
export const LIFTED_FETCH_CAP = "16384";
/** set in the re-executed image when the cap could not be lifted, for the startup warning */
export let fetchCapProblem: string | undefined;

const NOT_SERVING = new Set(["check", "healthcheck", "help", "--help", "-h", "version", "--version", "-v"]);
const EXECVE = { execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 } } as const;
const LIBC = ["libc.so.6", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1", "libc.so"];

function cString(s: string, keep: Uint8Array[]): Pointer {
  const b = new TextEncoder().encode(s + "\0");
  keep.push(b);
  return ptr(b);
}

function cStringArray(list: string[], keep: Uint8Array[]): BigUint64Array {
  const a = new BigUint64Array(list.length + 1); // NULL-terminated
  list.forEach((s, i) => (a[i] = BigInt(cString(s, keep))));
  return a;
}

function reexecWithCap(): string {
  if (process.platform !== "linux") return `re-executing is implemented for Linux only (${process.platform})`;
  let lib: ReturnType<typeof dlopen<typeof EXECVE>> | undefined;
  for (const name of LIBC) {
    try {
      lib = dlopen(name, EXECVE);
      break;
    } catch {
      // try the next name
    }
  }
  if (!lib) return "could not load libc to re-execute";
  // the exact argv this process was started with (bun flags, script path or compiled binary name, arguments)
  const argv = readFileSync("/proc/self/cmdline", "utf8").split("\0");
  argv.pop();
  const env = Object.entries({ ...process.env, [FETCH_CAP_VAR]: LIFTED_FETCH_CAP }).map(([k, v]) => `${k}=${v}`);
  const keep: Uint8Array[] = [];
  const exe = cString("/proc/self/exe", keep);
  const argvp = cStringArray(argv, keep);
  const envp = cStringArray(env, keep);
  lib.symbols.execve(exe, ptr(argvp), ptr(envp)); // returns only on failure
  lib.close();
  return "execve failed";
}

const command = process.argv[2];
if (process.env[FETCH_CAP_VAR] === undefined && !(command !== undefined && NOT_SERVING.has(command))) {
  fetchCapProblem = reexecWithCap();
}
