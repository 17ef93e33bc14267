/**
 * Summary statistics of latency samples (nanoseconds): nearest-rank percentiles, mean, max and a
 * log-spaced histogram (10 buckets per decade) for plots and JSON.
 */

export interface HistogramBucket {
  /** Bucket bounds in ns: [lo_ns, hi_ns). */
  lo_ns: number;
  hi_ns: number;
  count: number;
}

export interface Summary {
  n: number;
  min_ns: number;
  p50_ns: number;
  p90_ns: number;
  p99_ns: number;
  max_ns: number;
  mean_ns: number;
  histogram: HistogramBucket[];
}

/** Nearest-rank percentile of ascending `sorted` (p in 0..100). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const rank = Math.ceil((p / 100) * n);
  return sorted[Math.min(n - 1, Math.max(0, rank - 1))] ?? NaN;
}

const BUCKETS_PER_DECADE = 10;

/** Log-spaced histogram: bucket k covers [10^(k/10), 10^((k+1)/10)) ns; empty buckets between the extremes are kept. */
export function histogram(sorted: ArrayLike<number>): HistogramBucket[] {
  const n = sorted.length;
  if (n === 0) return [];
  const index = (v: number) => Math.floor(Math.log10(Math.max(v, 1)) * BUCKETS_PER_DECADE + 1e-9);
  const first = index(sorted[0] ?? 0);
  const last = index(sorted[n - 1] ?? 0);
  const counts = new Array<number>(last - first + 1).fill(0);
  for (let i = 0; i < n; i++) {
    const k = index(sorted[i] ?? 0) - first;
    counts[k] = (counts[k] ?? 0) + 1;
  }
  const bound = (k: number) => round3(10 ** (k / BUCKETS_PER_DECADE));
  return counts.map((count, i) => ({ lo_ns: bound(first + i), hi_ns: bound(first + i + 1), count }));
}

function round3(v: number): number {
  return Math.round(v * 1000) / 1000;
}

/** Summarise samples in ns (the array is sorted in place). */
export function summarize(samples: Float64Array): Summary {
  samples.sort();
  const n = samples.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += (samples[i] ?? 0);
  return {
    n,
    min_ns: round1(samples[0] ?? NaN),
    p50_ns: round1(percentile(samples, 50)),
    p90_ns: round1(percentile(samples, 90)),
    p99_ns: round1(percentile(samples, 99)),
    max_ns: round1(samples[n - 1] ?? NaN),
    mean_ns: round1(n ? sum / n : NaN),
    histogram: histogram(samples),
  };
}

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}

/** Consecutive differences of timestamps in ms, converted to ns, skipping the first `skip` gaps. */
export function gapsNs(stamps: Float64Array, count: number, skip: number): Float64Array {
  const out = new Float64Array(Math.max(0, count - 1 - skip));
  for (let i = 0; i < out.length; i++) out[i] = ((stamps[i + skip + 1] ?? 0) - (stamps[i + skip] ?? 0)) * 1e6;
  return out;
}

/** Human formatting of a duration in ns: "812 ns", "95.1 us", "4.10 ms". */
export function fmtNs(ns: number): string {
  if (!Number.isFinite(ns)) return "-";
  if (ns < 1000) return `${ns.toFixed(0)} ns`;
  if (ns < 1e6) return `${(ns / 1000).toFixed(ns < 1e4 ? 2 : 1)} us`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(2)} ms`;
  return `${(ns / 1e9).toFixed(2)} s`;
}

/** Bytes as "64 B", "4 KiB", "64 MiB". */
export function fmtBytes(b: number): string {
  if (b >= 1 << 30 && b % (1 << 30) === 0) return `${b / (1 << 30)} GiB`;
  if (b >= 1 << 20 && b % (1 << 20) === 0) return `${b / (1 << 20)} MiB`;
  if (b >= 1 << 10 && b % (1 << 10) === 0) return `${b / (1 << 10)} KiB`;
  return `${b} B`;
}

/** A fixed-width text table: first row is the header; columns after the first are right-aligned. */
export function table(rows: string[][]): string {
  const [head = [], ...body] = rows;
  const widths = head.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd((widths[c] ?? 0)) : cell.padStart((widths[c] ?? 0)))).join("  ");
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n");
}
