// A small, hand-written Prometheus registry rendering the text exposition format 0.0.4: counters, gauges and
// histograms with labels. Recording is a Map lookup per label plus a few additions; label sets must be bounded by the
// caller (provider names and models come from config; anything else is labelled "other").

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Latency buckets (seconds) for LLM calls: tens of milliseconds (cached / small models) to minutes (long generations). */
export const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600];

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabel(v: string): string {
  if (!/[\\"\n]/.test(v)) return v;
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Escapes HELP text: backslash and line feed. */
export function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** A sample value as Prometheus reads it (Go ParseFloat syntax). */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function renderLabels(names: readonly string[], values: readonly string[], extra?: string): string {
  const parts: string[] = [];
  for (let i = 0; i < names.length; i++) parts.push(`${names[i]}="${escapeLabel(values[i])}"`);
  if (extra) parts.push(extra);
  return parts.length ? `{${parts.join(",")}}` : "";
}

interface Series<S> {
  labels: string[];
  data: S;
}

abstract class Family<S> {
  /** every series, in the order they were created (for rendering) */
  protected readonly series: Series<S>[] = [];
  /**
   * Series by label values, one Map level per label: a lookup hashes the values the caller already holds (names
   * from the config, mostly the same strings every time) instead of a key joined from them per call.
   */
  readonly #index = new Map<string, unknown>();
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[]) {}
  abstract readonly type: "counter" | "gauge" | "histogram";
  protected abstract init(): S;

  protected get(values: readonly string[]): S {
    const n = values.length;
    if (n !== this.labelNames.length) throw new Error(`${this.name}: expected ${this.labelNames.length} label values`);
    let m = this.#index;
    for (let i = 0; i < n - 1; i++) {
      let next = m.get(values[i]) as Map<string, unknown> | undefined;
      if (!next) m.set(values[i], next = new Map());
      m = next;
    }
    const last = n ? values[n - 1] : "";
    let s = m.get(last) as Series<S> | undefined;
    if (!s) {
      s = { labels: [...values], data: this.init() };
      m.set(last, s);
      this.series.push(s);
    }
    return s.data;
  }

  /** Number of label sets (time series) of this family. */
  get size(): number {
    return this.series.length;
  }

  protected header(): string {
    return `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
  }

  abstract render(): string;
}

export class Counter extends Family<{ v: number }> {
  readonly type = "counter";
  protected init() {
    return { v: 0 };
  }
  inc(values: readonly string[], by = 1): void {
    this.get(values).v += by;
  }
  /** Creates the series at 0 so that rate() works from the first scrape. */
  touch(values: readonly string[]): void {
    this.get(values);
  }
  render(): string {
    let s = this.header();
    for (const { labels, data } of this.series) s += `${this.name}${renderLabels(this.labelNames, labels)} ${formatValue(data.v)}\n`;
    return s;
  }
}

/** A gauge whose series are computed when scraped. */
export class Gauge {
  readonly type = "gauge";
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[], readonly collect: () => Iterable<[string[], number]>) {}
  render(): string {
    let s = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} gauge\n`;
    for (const [labels, v] of this.collect()) s += `${this.name}${renderLabels(this.labelNames, labels)} ${formatValue(v)}\n`;
    return s;
  }
}

interface HistogramData {
  counts: Float64Array; // per bucket (not cumulative); the last slot is +Inf
  sum: number;
  count: number;
}

export class Histogram extends Family<HistogramData> {
  readonly type = "histogram";
  readonly #bounds: number[];
  readonly #le: string[];
  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[] = LATENCY_BUCKETS) {
    super(name, help, labelNames);
    this.#bounds = [...buckets].sort((a, b) => a - b);
    this.#le = [...this.#bounds.map(formatValue), "+Inf"].map((b) => `le="${b}"`);
  }
  protected init(): HistogramData {
    return { counts: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 };
  }
  observe(values: readonly string[], v: number): void {
    const d = this.get(values);
    const b = this.#bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    d.counts[i]++;
    d.sum += v;
    d.count++;
  }
  render(): string {
    let s = this.header();
    for (const { labels, data } of this.series) {
      let cum = 0;
      for (let i = 0; i < data.counts.length; i++) {
        cum += data.counts[i];
        s += `${this.name}_bucket${renderLabels(this.labelNames, labels, this.#le[i])} ${formatValue(cum)}\n`;
      }
      const l = renderLabels(this.labelNames, labels);
      s += `${this.name}_sum${l} ${formatValue(data.sum)}\n${this.name}_count${l} ${formatValue(data.count)}\n`;
    }
    return s;
  }
}

export interface Renderable {
  render(): string;
}

export class Registry {
  readonly #families: Renderable[] = [];
  add<T extends Renderable>(f: T): T {
    this.#families.push(f);
    return f;
  }
  render(): string {
    let s = "";
    for (const f of this.#families) s += f.render();
    return s;
  }
}
