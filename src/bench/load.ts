/**
 * `ipre bench load`: the paper's Table II / Fig. 2 on this machine. Latency percentiles of
 *
 *   ipre         remote call round trips (caller guest -> remote guest -> caller), on the caller's thread
 *   atomics      two worker threads ping-ponging through Atomics.wait/notify (scheduler wake-ups)
 *   unix_socket  a round trip of a 16-byte message to a child process over a Unix domain socket
 *
 * at load levels of level% x cores CPU hogs (busy-loop child processes by default).
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import type { Flags } from "../flags.ts";
import { IpreError } from "../errors.ts";
import { reporter, writeResults } from "./common.ts";
import { intOption, listOption, numberOption } from "../flags.ts";
import { coreCount, describeMachine, machineLine, plotSubtitle } from "./machine-info.ts";
import { createPair, remoteCallPacedSamples, remoteCallSamples } from "./ipre.ts";
import { atomicsPingPong, SocketChild, workerApi } from "./ipc.ts";
import { availableLoadTools, startLoad, type LoadTool } from "./procs.ts";
import { fmtNs, summarize, table } from "./stats.ts";
import { formatNsAxis, linePlot } from "./svg.ts";

export const LOAD_SYSTEMS = ["ipre", "atomics", "unix_socket", "ipre_paced"] as const;
export type LoadSystem = (typeof LOAD_SYSTEMS)[number];

export interface LoadRow {
  system: LoadSystem;
  /** Load level in percent of the cores. */
  load: number;
  /** CPU hogs running during the measurement. */
  busy_processes: number;
  n: number;
  p50_ns: number;
  p90_ns: number;
  p99_ns: number;
  max_ns: number;
  mean_ns: number;
  /** p99 at this level / p99 at the lowest level measured. */
  p99_degradation: number;
  /** True when the duration limit stopped the measurement before --iterations samples. */
  truncated: boolean;
}

const COLORS: Record<LoadSystem, string> = { ipre: "#d62728", atomics: "#1f77b4", unix_socket: "#2ca02c", ipre_paced: "#ff7f0e" };

function loadSvg(rows: LoadRow[], levels: number[], title: string, subtitle: string): string {
  const series = LOAD_SYSTEMS.flatMap((sys) => {
    const rs = rows.filter((r) => r.system === sys);
    return [
      { name: `${sys} p99`, color: COLORS[sys], points: rs.map((r) => [r.load, r.p99_ns] as [number, number]) },
      { name: `${sys} p50`, color: COLORS[sys], dashed: true, points: rs.map((r) => [r.load, r.p50_ns] as [number, number]) },
    ];
  });
  return linePlot(series, {
    title,
    subtitle,
    xLabel: "CPU load (busy processes as % of cores)",
    yLabel: "round-trip latency",
    logY: true,
    xTicks: levels.map((l) => [l, `${l}%`]),
    yFormat: formatNsAxis,
    xFormat: (v) => `${v}%`,
  });
}

function ambientLoad(): string {
  try {
    return readFileSync("/proc/loadavg", "utf8").trim().split(/\s+/).slice(0, 4).join(" ");
  } catch {
    return "unknown";
  }
}

export async function loadCommand(flags: Flags): Promise<number> {
  const rep = reporter(flags);
  const iterations = intOption(flags, "iterations", 10_000);
  const warmup = intOption(flags, "warmup", 100, 0);
  const levels = listOption(flags, "levels", [0, 50, 100, 200]);
  if (levels.length === 0) throw new IpreError("--levels needs at least one level");
  const limitS = numberOption(flags, "duration-limit", 20);
  const paceUs = intOption(flags, "pace-us", 200, 0);
  const toolOpt = flags.options.get("load-tool") ?? "busy";
  if (toolOpt !== "busy" && toolOpt !== "stress-ng") throw new IpreError(`--load-tool must be busy or stress-ng`);
  const tool = toolOpt as LoadTool;
  const tools = availableLoadTools();
  if (tool === "stress-ng" && !tools.stressNg) throw new IpreError("--load-tool stress-ng: stress-ng is not on PATH");
  const cores = coreCount();
  const machine = describeMachine();
  rep.progress(`load on ${machineLine(machine)}`);
  rep.progress(`load tools on PATH: stress-ng ${tools.stressNg ?? "no"}, schbench ${tools.schbench ?? "no"}; using ${tool === "busy" ? "busy-loop child processes" : "stress-ng"}`);

  const rows: LoadRow[] = [];
  const loadDescriptions: Record<string, string> = {};
  /** /proc/loadavg just before each level's hogs start: other work on the machine. */
  const ambient: Record<string, string> = {};
  rep.plan(levels.length * (paceUs > 0 ? 4 : 3));
  const pair = createPair();
  const sock = await SocketChild.start();
  try {
    for (const level of levels) {
      const count = Math.round((level / 100) * cores);
      ambient[String(level)] = ambientLoad();
      rep.progress(`level ${level}%: starting ${count} CPU hog${count === 1 ? "" : "s"}`);
      const load = await startLoad(count, tool);
      loadDescriptions[String(level)] = load.description;
      try {
        const measure = async (system: LoadSystem, run: () => Float64Array | Promise<Float64Array>) => {
          rep.step(`level ${level}%: ${system}, ${iterations} round trips after ${warmup} warm-up (limit ${limitS} s)`);
          const samples = await run();
          if (samples.length === 0) throw new IpreError(`${system} produced no samples at load ${level}% (duration limit too short?)`);
          const s = summarize(samples);
          rows.push({
            system,
            load: level,
            busy_processes: count,
            n: s.n,
            p50_ns: s.p50_ns,
            p90_ns: s.p90_ns,
            p99_ns: s.p99_ns,
            max_ns: s.max_ns,
            mean_ns: s.mean_ns,
            p99_degradation: 1,
            truncated: s.n < iterations,
          });
        };
        await measure("ipre", () => remoteCallSamples(pair.caller, iterations, warmup, limitS * 1000).samples);
        await measure("atomics", () => atomicsPingPong(iterations, warmup, limitS * 1000));
        await measure("unix_socket", () => sock.pingPong(iterations, warmup, limitS * 1000));
        if (paceUs > 0) await measure("ipre_paced", () => remoteCallPacedSamples(pair.caller, iterations, warmup, limitS * 1000, paceUs));
      } finally {
        await load.stop();
      }
    }
  } finally {
    rep.done();
    await sock.close();
    pair.close();
  }
  for (const sys of LOAD_SYSTEMS) {
    const rs = rows.filter((r) => r.system === sys);
    const base = rs[0]?.p99_ns;
    if (base === undefined) continue;
    for (const r of rs) r.p99_degradation = Math.round((r.p99_ns / base) * 100) / 100;
  }

  const result = {
    runtime: machine.runtime,
    machine,
    config: { iterations, warmup, levels, cores, worker_api: workerApi(), load_tool: tool, load: loadDescriptions, ambient_loadavg: ambient, pace_us: paceUs, duration_limit_s: limitS, tools_on_path: tools },
    results: rows,
  };

  const lines: string[] = [];
  lines.push(`ipre bench load: round-trip latency under CPU load (${iterations} round trips after ${warmup} warm-up per cell)`);
  lines.push(machineLine(machine));
  lines.push(`load: level% x ${cores} cores = CPU hogs (${tool === "busy" ? "busy-loop child processes" : "stress-ng --cpu"}); stress-ng ${tools.stressNg ? "installed" : "not installed"}, schbench ${tools.schbench ? "installed" : "not installed"}`);
  lines.push("");
  const systems = LOAD_SYSTEMS.filter((sys) => rows.some((r) => r.system === sys));
  const cell = (sys: LoadSystem, level: number, f: (r: LoadRow) => string) => {
    const r = rows.find((x) => x.system === sys && x.load === level);
    return r ? f(r) : "-";
  };
  const hdr = ["", ...levels.map((l) => `${l}%`)];
  const tableRows: string[][] = [hdr];
  for (const [label, key] of [["p50", "p50_ns"], ["p90", "p90_ns"], ["p99", "p99_ns"]] as const) {
    tableRows.push([`${label}:`, ...levels.map(() => "")]);
    for (const sys of systems) tableRows.push([`  ${sys}`, ...levels.map((l) => cell(sys, l, (r) => fmtNs(r[key]) + (r.truncated ? "*" : "")))]);
  }
  tableRows.push(["p99 degradation:", ...levels.map(() => "")]);
  for (const sys of systems) tableRows.push([`  ${sys}`, ...levels.map((l) => cell(sys, l, (r) => `${r.p99_degradation.toFixed(2)}x`))]);
  lines.push(table(tableRows));
  lines.push(`atomics: two ${workerApi()} workers; unix_socket: a child process (${machine.runtime}) echoing over a Unix domain socket`);
  lines.push(`ipre_paced: the caller thread sleeps ${paceUs} us (Atomics.wait) before each remote call, like a request-driven service; ipre: back-to-back calls`);
  lines.push(`ambient /proc/loadavg before each level (other processes on this machine): ${levels.map((l) => `${l}%: ${ambient[String(l)]}`).join("; ")}`);
  if (rows.some((r) => r.truncated)) lines.push(`* stopped by the duration limit (${limitS} s) before ${iterations} samples`);
  const text = lines.join("\n") + "\n";

  const dir = writeResults(flags, "load", {
    "results.json": JSON.stringify(result, null, 2) + "\n",
    "machine.json": JSON.stringify(machine, null, 2) + "\n",
    "summary.txt": text,
    "load.svg": loadSvg(rows, levels, "Round-trip latency under CPU load (p50 dashed, p99 solid)", plotSubtitle(machine)),
  });
  rep.progress(`results written to ${dir}`);
  if (rep.json) process.stdout.write(JSON.stringify(result) + "\n");
  else rep.say(text.trimEnd());
  return 0;
}
