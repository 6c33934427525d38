// Structured logging: one JSON object per line (or a readable line with format: pretty).
export type Level = "debug" | "info" | "warn" | "error" | "silent";
export type Format = "json" | "pretty";
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

export interface Logger {
  /** mutable, so a config reload can change it in place */
  level: Level;
  format: Format;
  /** whether a line at `level` would be written (to skip building fields that would be dropped) */
  enabled(level: Exclude<Level, "silent">): boolean;
  log(level: Exclude<Level, "silent">, msg: string, fields?: Record<string, unknown>): void;
}

/** A pretty-format value: plain when it is a simple word, JSON (quoted, escaped, one line) otherwise. */
function prettyValue(v: unknown): string {
  if (typeof v === "string") return v !== "" && !/[\s"=\\]|[^\x20-\x7e]/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

export function createLogger(write: (line: string) => void, level: Level = "info", format: Format = "json"): Logger {
  return {
    level,
    format,
    enabled(lvl) {
      return RANK[lvl] >= RANK[this.level];
    },
    log(lvl, msg, fields) {
      if (RANK[lvl] < RANK[this.level]) return;
      const time = new Date().toISOString();
      if (this.format === "json") {
        write(JSON.stringify({ time, level: lvl, msg, ...fields }));
      } else {
        let s = `${time} ${lvl.toUpperCase().padEnd(5)} ${msg}`;
        if (fields) for (const [k, v] of Object.entries(fields)) if (v !== undefined) s += ` ${k}=${prettyValue(v)}`;
        write(s);
      }
    },
  };
}
