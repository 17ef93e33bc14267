/**
 * A tiny hand-written SVG line plot (no dependencies): linear or log-10 axes, one polyline with
 * point markers per series, a legend. Enough for the paper's Fig. 2 (p99 vs load, log y) and
 * the payload plots (log-log). A plot stands on its own (the README embeds some): a title, a
 * subtitle for the machine it was measured on, labelled axes with units, a legend sized to its
 * names, and a white background (legible in dark themes too).
 */

export interface Series {
  name: string;
  /** A point whose x or y is not finite (or not positive on a log axis) is left out and breaks the line. */
  points: [number, number][];
  color?: string;
  dashed?: boolean;
}

export interface PlotOptions {
  title: string;
  /** A second, smaller line under the title: what the numbers were measured on. */
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  logX?: boolean;
  logY?: boolean;
  /** Explicit x ticks (value, label); default: decades on a log axis, 5 steps on a linear one. */
  xTicks?: [number, string][];
  /** Formats a y tick value (default: the number). */
  yFormat?: (v: number) => string;
  xFormat?: (v: number) => string;
  width?: number;
  height?: number;
}

const PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"];

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function niceLinearTicks(lo: number, hi: number, count = 5): number[] {
  if (hi <= lo) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.round(v / step) * step);
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
  return out;
}

export function linePlot(series: Series[], o: PlotOptions): string {
  const W = o.width ?? 720;
  const H = o.height ?? 440;
  // The legend's column fits its longest name (~6.5 px a character at 12 px).
  const legend = Math.max(170, 56 + Math.ceil(6.5 * Math.max(0, ...series.map((s) => s.name.length))));
  const m = { l: 78, r: legend, t: o.subtitle ? 58 : 40, b: 56 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const valid = ([x, y]: [number, number]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logX || x > 0) && (!o.logY || y > 0);
  const all = series.flatMap((s) => s.points).filter(valid);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  let [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  let [y0, y1] = ys.length ? [Math.min(...ys), Math.max(...ys)] : [1, 10];
  if (o.logY) {
    y0 = 10 ** Math.floor(Math.log10(y0));
    y1 = 10 ** Math.ceil(Math.log10(y1));
    if (y1 === y0) y1 = y0 * 10;
  } else {
    y0 = Math.min(0, y0);
    y1 = y1 === y0 ? y0 + 1 : y1 * 1.05;
    // Up to the next tick, so that the top of the axis is labelled.
    const t = niceLinearTicks(y0, y1);
    if (t.length > 1) y1 = Math.max(y1, Math.ceil(y1 / ((t[1] ?? 0) - (t[0] ?? 0)) - 1e-9) * ((t[1] ?? 0) - (t[0] ?? 0)));
  }
  if (o.logX) {
    if (!o.xTicks) {
      // Whole decades, so that the decade ticks frame the data.
      x0 = 10 ** Math.floor(Math.log10(x0));
      x1 = 10 ** Math.ceil(Math.log10(x1));
    }
    if (x1 === x0) x1 = x0 * 10;
  } else if (x1 === x0) x1 = x0 + 1;
  const tx = (x: number) => m.l + (o.logX ? (Math.log10(x) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0)) : (x - x0) / (x1 - x0)) * pw;
  const ty = (y: number) => m.t + ph - (o.logY ? (Math.log10(y) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0)) : (y - y0) / (y1 - y0)) * ph;
  const yFmt = o.yFormat ?? ((v: number) => String(v));
  const xFmt = o.xFormat ?? ((v: number) => String(v));

  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${esc(o.title)}</text>`);
  if (o.subtitle) parts.push(`<text x="${W / 2}" y="40" text-anchor="middle" font-size="11" fill="#555">${esc(o.subtitle)}</text>`);
  // Grid and ticks.
  const yTicks = o.logY ? logTicks(y0, y1) : niceLinearTicks(y0, y1);
  for (const v of yTicks) {
    const y = ty(v);
    if (y < m.t - 0.5 || y > m.t + ph + 0.5) continue;
    parts.push(`<line x1="${m.l}" y1="${y.toFixed(1)}" x2="${m.l + pw}" y2="${y.toFixed(1)}" stroke="#ddd"/>`);
    parts.push(`<text x="${m.l - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end">${esc(yFmt(v))}</text>`);
  }
  const xTicks = o.xTicks ?? (o.logX ? logTicks(x0, x1).map((v) => [v, xFmt(v)] as [number, string]) : niceLinearTicks(x0, x1).map((v) => [v, xFmt(v)] as [number, string]));
  for (const [v, label] of xTicks) {
    const x = tx(v);
    if (x < m.l - 0.5 || x > m.l + pw + 0.5) continue;
    parts.push(`<line x1="${x.toFixed(1)}" y1="${m.t}" x2="${x.toFixed(1)}" y2="${m.t + ph}" stroke="#eee"/>`);
    parts.push(`<text x="${x.toFixed(1)}" y="${m.t + ph + 16}" text-anchor="middle">${esc(label)}</text>`);
  }
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${m.l + pw / 2}" y="${H - 14}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(18 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}${o.logY ? " (log scale)" : ""}</text>`);
  // Series.
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length] ?? "black";
    const pts = s.points.filter(valid);
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
    // One polyline per run of valid points: a left-out point is a gap, not a straight line across it.
    const runs: [number, number][][] = [];
    let current: [number, number][] = [];
    for (const p of s.points) {
      if (valid(p)) current.push(p);
      else if (current.length) (runs.push(current), (current = []));
    }
    runs.push(current);
    for (const run of runs) if (run.length > 1) parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${run.map(([x, y]) => `${tx(x).toFixed(1)},${ty(y).toFixed(1)}`).join(" ")}"/>`);
    for (const [x, y] of pts) parts.push(`<circle cx="${tx(x).toFixed(1)}" cy="${ty(y).toFixed(1)}" r="3" fill="${color}"><title>${esc(`${s.name}: ${xFmt(x)} -> ${yFmt(y)}`)}</title></circle>`);
    const ly = m.t + 10 + i * 18;
    parts.push(`<line x1="${m.l + pw + 12}" y1="${ly}" x2="${m.l + pw + 36}" y2="${ly}" stroke="${color}" stroke-width="2"${dash}/>`);
    parts.push(`<text x="${m.l + pw + 42}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  parts.push(`</svg>`);
  return parts.join("\n") + "\n";
}

/** Axis label formatters. */
export const formatNsAxis = (ns: number): string => (ns >= 1e6 ? `${ns / 1e6} ms` : ns >= 1e3 ? `${ns / 1e3} µs` : `${ns} ns`);
export const formatBytesAxis = (b: number): string => (b >= 1 << 20 ? `${b / (1 << 20)}M` : b >= 1 << 10 ? `${b / (1 << 10)}K` : `${b}`);
