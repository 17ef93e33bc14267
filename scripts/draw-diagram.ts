/**
 * Draws docs/ipre-call.svg, the README's picture of one IPRE call: the caller's and the remote's
 * 1 GiB windows of the guest-virtual address space, the two page-table roots (the caller's
 * normal root maps only its own window; the merged root maps both), and the call as numbered
 * steps between caller code, the VMM and remote code (docs/ARCHITECTURE.md §3 and §4).
 *
 *   node_modules/.bin/bun scripts/draw-diagram.ts           writes docs/ipre-call.svg
 *   node_modules/.bin/bun scripts/draw-diagram.ts --check   exit 1 if the committed file differs
 *
 * (Node: `node --import ./test/node-ts.mjs scripts/draw-diagram.ts`.) test/diagram.test.ts runs
 * the check, so the committed picture cannot go stale. Plain SVG, no dependencies, system fonts
 * only, and a white background so that it reads the same in light and dark themes.
 */
import { readFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";

export const DIAGRAM_PATH = fileURLToPath(new URL("../docs/ipre-call.svg", import.meta.url));

const SANS = "Helvetica, Arial, sans-serif";
const MONO = "ui-monospace, Menlo, Consolas, 'DejaVu Sans Mono', monospace";

const C = {
  ink: "#1f2328",
  muted: "#57606a",
  caller: "#0969da",
  callerFill: "#ddf4ff",
  remote: "#bc4c00",
  remoteFill: "#fff1e5",
  vmm: "#424a53",
  vmmFill: "#eaeef2",
  merged: "#8250df",
  mergedFill: "#f3eefe",
  trap: "#cf222e",
  absent: "#8c959f",
};

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

interface TextOpts {
  size?: number;
  anchor?: "start" | "middle" | "end";
  weight?: "bold" | "normal";
  color?: string;
  mono?: boolean;
  italic?: boolean;
}

/** One or more lines of text, the first baseline at y; `code` spans are set in monospace. */
function text(x: number, y: number, lines: string | string[], o: TextOpts = {}): string {
  const size = o.size ?? 13;
  const attrs = [
    `x="${x}"`,
    `y="${y}"`,
    `font-size="${size}"`,
    o.anchor && o.anchor !== "start" ? `text-anchor="${o.anchor}"` : "",
    o.weight === "bold" ? `font-weight="bold"` : "",
    o.italic ? `font-style="italic"` : "",
    `fill="${o.color ?? C.ink}"`,
    o.mono ? `font-family="${MONO}"` : "",
  ].filter(Boolean);
  const spans = (line: string) =>
    line
      .split(/(`[^`]*`)/)
      .filter((s) => s !== "")
      .map((s) => (s.startsWith("`") ? `<tspan font-family="${MONO}">${esc(s.slice(1, -1))}</tspan>` : esc(s)))
      .join("");
  const ls = Array.isArray(lines) ? lines : [lines];
  if (ls.length === 1) return `<text ${attrs.join(" ")}>${spans(ls[0]!)}</text>`;
  const lh = Math.round(size * 1.35);
  return `<text ${attrs.join(" ")}>${ls.map((l, i) => `<tspan x="${x}" dy="${i === 0 ? 0 : lh}">${spans(l)}</tspan>`).join("")}</text>`;
}

function rect(x: number, y: number, w: number, h: number, fill: string, stroke: string, extra = ""): string {
  return `<rect x="${x}" y="${y}" width="${w}" height="${h}" rx="6" fill="${fill}" stroke="${stroke}" stroke-width="1.5"${extra ? " " + extra : ""}/>`;
}

/** A horizontal arrow from x1 to x2 at y. */
function arrow(x1: number, x2: number, y: number, color: string, dashed = false): string {
  const id = `head-${color.slice(1)}`;
  return `<line x1="${x1}" y1="${y}" x2="${x2}" y2="${y}" stroke="${color}" stroke-width="2"${dashed ? ` stroke-dasharray="5 4"` : ""} marker-end="url(#${id})"/>`;
}

/** A numbered step marker. */
function step(n: number, x: number, y: number): string {
  return `<circle cx="${x}" cy="${y}" r="11" fill="${C.ink}"/>` + text(x, y + 4.5, String(n), { size: 13, anchor: "middle", weight: "bold", color: "#ffffff" });
}

export function drawDiagram(): string {
  const W = 1000;
  const H = 760;
  const out: string[] = [];
  const markers = [C.caller, C.remote, C.vmm, C.trap, C.muted]
    .map((c) => `<marker id="head-${c.slice(1)}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="${c}"/></marker>`)
    .join("");
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="${SANS}">`);
  out.push(`<title>One IPRE call: caller code calls a function in a remote VM</title>`);
  out.push(`<defs>${markers}<pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="8" stroke="${C.absent}" stroke-width="1.2" stroke-opacity="0.45"/></pattern></defs>`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(text(W / 2, 30, "One IPRE call: caller code calls kv_lookup(), a function in another VM", { size: 17, anchor: "middle", weight: "bold" }));

  // ---- The address space: two windows, two roots.
  const LX = 24; // label column
  const X0 = 250; // window 0
  const X1 = 575; // window 1
  const WW = 310; // window width
  out.push(text(LX, 68, "guest-virtual address space", { size: 13, weight: "bold" }));
  out.push(text(LX, 86, "1 GiB window per machine", { size: 13, color: C.muted }));
  out.push(text(LX, 101, "(window k = [k GiB, k+1 GiB))", { size: 13, color: C.muted }));
  out.push(rect(X0, 54, WW, 56, C.callerFill, C.caller));
  out.push(text(X0 + WW / 2, 76, "window 0: the caller VM", { size: 14, anchor: "middle", weight: "bold", color: C.caller }));
  out.push(text(X0 + WW / 2, 97, "code (serve), buffers, stack, return trap", { size: 13, anchor: "middle" }));
  out.push(rect(X1, 54, WW, 56, C.remoteFill, C.remote));
  out.push(text(X1 + WW / 2, 76, "window 1: the remote VM", { size: 14, anchor: "middle", weight: "bold", color: C.remote }));
  out.push(text(X1 + WW / 2, 97, "code (kv_lookup, other exports), its data", { size: 13, anchor: "middle" }));
  for (const [x, l] of [[X0, "0"], [X1 - 10, "1 GiB"], [X1 + WW, "2 GiB"]] as [number, string][]) out.push(text(x, 126, l, { size: 12, anchor: x === X0 ? "start" : x === X1 - 10 ? "middle" : "end", color: C.muted }));
  out.push(text(X1 + WW + 12, 87, "… up to", { size: 12, color: C.muted }));
  out.push(text(X1 + WW + 12, 101, "window 511", { size: 12, color: C.muted }));

  // Roots: one row each, aligned with the windows.
  const root = (y: number, label: string, sub: string, color: string, cells: [string, string, string, string?][]) => {
    out.push(text(LX, y + 19, label, { size: 13, weight: "bold", color }));
    out.push(text(LX, y + 36, sub, { size: 13, color: C.muted }));
    cells.forEach(([fill, stroke, line1, line2], i) => {
      const x = i === 0 ? X0 : X1;
      const absent = fill === "none";
      out.push(rect(x, y, WW, 46, absent ? "url(#hatch)" : fill, stroke, absent ? `stroke-dasharray="5 4"` : ""));
      out.push(text(x + WW / 2, y + (line2 ? 19 : 28), line2 ? [line1, line2] : line1, { size: 13, anchor: "middle", color: absent ? C.muted : C.ink }));
    });
  };
  root(140, "caller's normal root", "in CR3 outside calls", C.caller, [
    [C.callerFill, C.caller, "mapped: caller code runs here"],
    ["none", C.absent, "not mapped: fetching an instruction", "here page-faults, and the VMM gets an exit"],
  ]);
  root(200, "merged root", "in CR3 during a call", C.merged, [
    [C.mergedFill, C.merged, "mapped, no-execute: the remote reads", "and writes the caller's buffers in place"],
    [C.remoteFill, C.remote, "mapped: the remote's code runs here", "(the remote's own page-table entry)"],
  ]);

  // ---- The call, top to bottom.
  const TOP = 282;
  const LANE = { caller: 340, vmm: 590, remote: 840 };
  out.push(`<line x1="${LX}" y1="${TOP - 20}" x2="${W - LX}" y2="${TOP - 20}" stroke="#d0d7de"/>`);
  out.push(text(LX, TOP + 8, "one call, in time order", { size: 13, weight: "bold" }));
  out.push(text(LANE.caller, TOP + 8, "caller code (window 0)", { size: 13, anchor: "middle", weight: "bold", color: C.caller }));
  out.push(text(LANE.vmm, TOP + 8, "VMM (TypeScript, host)", { size: 13, anchor: "middle", weight: "bold", color: C.vmm }));
  out.push(text(LANE.remote, TOP + 8, "remote code (window 1)", { size: 13, anchor: "middle", weight: "bold", color: C.remote }));
  const END = 716;
  for (const [x, c] of [[LANE.caller, C.caller], [LANE.vmm, C.vmm], [LANE.remote, C.remote]] as [number, string][]) {
    out.push(`<line x1="${x}" y1="${TOP + 18}" x2="${x}" y2="${END}" stroke="${c}" stroke-opacity="0.35" stroke-width="1.5" stroke-dasharray="4 4"/>`);
  }

  // CR3 band on the left: which root the caller's vCPU runs on.
  const MERGE = 442; // step 2 loads the merged root
  const UNMERGE = 654; // step 5 loads the normal root
  const BX = 150;
  const BW = 70;
  out.push(text(LX, TOP + 40, "the caller's vCPU", { size: 13, color: C.muted }));
  out.push(text(LX, TOP + 55, "runs on, in CR3:", { size: 13, color: C.muted }));
  const band = (y0: number, y1: number, fill: string, stroke: string, label: string[]) => {
    out.push(`<rect x="${BX}" y="${y0}" width="${BW}" height="${y1 - y0}" fill="${fill}" stroke="${stroke}" stroke-width="1.5"/>`);
    out.push(text(BX + BW / 2, (y0 + y1) / 2 - (label.length - 1) * 7 + 4, label, { size: 12, anchor: "middle", color: stroke }));
  };
  band(TOP + 22, MERGE, C.callerFill, C.caller, ["normal", "root"]);
  band(MERGE, UNMERGE, C.mergedFill, C.merged, ["merged", "root"]);
  band(UNMERGE, END, C.callerFill, C.caller, ["normal", "root"]);

  // 1: the jump faults.
  let y = 322;
  out.push(step(1, LANE.caller, y));
  out.push(text(LANE.caller + 18, y + 5, ["`call kv_lookup`: the fetch from", "window 1 page-faults"], { size: 13 }));
  out.push(arrow(LANE.caller, LANE.vmm - 4, y + 36, C.trap));
  out.push(text((LANE.caller + LANE.vmm) / 2, y + 52, "#PF exit (KVM_RUN returns)", { size: 13, anchor: "middle", color: C.trap }));

  // 2: the VMM merges.
  y = 392;
  const x2 = LANE.vmm - 132; // a little left of the lane, to leave room for the arrow's label
  out.push(rect(x2, y, 244, 66, C.vmmFill, C.vmm));
  out.push(step(2, x2, y));
  out.push(text(x2 + 14, y + 18, ["kv_lookup on the allow-list? yes", "return address := return trap", "CR3 := merged root"], { size: 13 }));
  out.push(arrow(x2 + 244, LANE.remote - 4, y + 50, C.vmm));
  out.push(text((x2 + 244 + LANE.remote) / 2, y + 43, "resume at kv_lookup", { size: 12, anchor: "middle", color: C.vmm }));

  // 3: the remote runs on the caller's vCPU.
  y = 472;
  out.push(rect(LANE.remote - 135, y, 270, 66, C.remoteFill, C.remote));
  out.push(step(3, LANE.remote - 135, y));
  out.push(text(LANE.remote - 121, y + 18, ["kv_lookup runs on the caller's vCPU:", "no copy, no scheduling; it reads", "the caller's buffers in place"], { size: 13 }));
  out.push(arrow(LANE.remote - 135, LANE.caller + 4, y + 40, C.muted, true));
  out.push(text((LANE.caller + LANE.vmm) / 2, y + 33, "loads from caller memory", { size: 12, anchor: "middle", color: C.muted }));

  // 4: ret hits the return trap.
  y = 560;
  out.push(step(4, LANE.remote, y));
  out.push(text(LANE.remote - 18, y + 5, ["`ret` goes to the return trap", "(swapped in at step 2): page fault"], { size: 13, anchor: "end" }));
  out.push(arrow(LANE.remote, LANE.vmm + 4, y + 36, C.trap));
  out.push(text((LANE.vmm + LANE.remote) / 2, y + 52, "#PF exit", { size: 13, anchor: "middle", color: C.trap }));

  // 5: the VMM unmerges and the caller resumes.
  y = 630;
  out.push(rect(LANE.vmm - 122, y, 244, 50, C.vmmFill, C.vmm));
  out.push(step(5, LANE.vmm - 122, y));
  out.push(text(LANE.vmm - 108, y + 19, ["CR3 := normal root (TLB flush)", "rip := the real return address"], { size: 13 }));
  out.push(arrow(LANE.vmm, LANE.caller + 4, y + 72, C.caller));
  out.push(text((LANE.caller + LANE.vmm) / 2, y + 65, "caller resumes; RAX = result", { size: 13, anchor: "middle", color: C.caller }));

  out.push(text(W / 2, H - 14, "Two exits per call (steps 1 and 4), two CR3 loads, no page-table write, no copy; the remote is never scheduled.", { size: 13, anchor: "middle", color: C.muted, italic: true }));
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

function main(argv: string[]): number {
  const svg = drawDiagram();
  if (argv.includes("--check")) {
    let committed = "";
    try {
      committed = readFileSync(DIAGRAM_PATH, "utf8");
    } catch {
      // missing: differs
    }
    if (committed === svg) return 0;
    process.stderr.write("docs/ipre-call.svg differs from what scripts/draw-diagram.ts draws: run it and commit the result\n");
    return 1;
  }
  writeFileSync(DIAGRAM_PATH, svg);
  process.stdout.write(`wrote docs/ipre-call.svg (${svg.length} bytes)\n`);
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.slice(2));
