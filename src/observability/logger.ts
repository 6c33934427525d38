// Structured logging: one JSON object per line (or a readable line with format: pretty).
export type Level = "debug" | "info" | "warn" | "error" | "silent";
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

export interface Logger {
  level: Level;
  log(level: Exclude<Level, "silent">, msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(write: (line: string) => void, level: Level = "info", format: "json" | "pretty" = "json"): Logger {
  return {
    level,
    log(lvl, msg, fields) {
      if (RANK[lvl] < RANK[this.level]) return;
      const time = new Date().toISOString();
      if (format === "json") {
        write(JSON.stringify({ time, level: lvl, msg, ...fields }));
      } else {
        let s = `${time} ${lvl.toUpperCase().padEnd(5)} ${msg}`;
        if (fields) for (const [k, v] of Object.entries(fields)) s += ` ${k}=${typeof v === "string" ? v : JSON.stringify(v)}`;
        write(s);
      }
    },
  };
}
