/**
 * Runs a scenario script under Bun or Deno from a vitest test (which itself runs on Node).
 * Scenario scripts print their result as one JSON line on stdout (the last line).
 */
import { spawn } from "node:child_process";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";
import { beforeAll, describe } from "vitest";
import { describeKvm, upperMs } from "./kvm.ts";
import { Machine } from "../src/mod.ts";
import type { CallPath } from "../src/mod.ts";

/**
 * The two paths of IPRE calls (ConnectOptions.path): the IPRE suites run once per path. A
 * scenario child learns its path from IPRE_TEST_CALL_PATH (test/scenarios/common.ts sets
 * Machine.callPath from it); the in-process Node report runs under inCallPath().
 */
export const CALL_PATHS: readonly CallPath[] = ["fast", "trap"];
export const callPathEnv = (path: CallPath): Record<string, string> => ({ IPRE_TEST_CALL_PATH: path });
/** Run `fn` in this process with Machine.callPath = `path`. */
export function inCallPath<R>(path: CallPath, fn: () => R): R {
  const old = Machine.callPath;
  Machine.callPath = path;
  try {
    return fn();
  } finally {
    Machine.callPath = old;
  }
}

export const repoRoot = fileURLToPath(new URL("..", import.meta.url));

export type ScenarioRuntime = "bun" | "deno" | "node";

export interface ScenarioResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The last non-empty stdout line parsed as JSON, or undefined. A killed child gets code 128 + signal. */
  json: any;
}

export function runtimeCommand(runtime: ScenarioRuntime, script: string, args: string[] = []): [string, string[]] {
  if (runtime === "node") return [process.execPath, ["--import", `${repoRoot}test/node-ts.mjs`, script, ...args]];
  return runtime === "bun"
    ? [`${repoRoot}node_modules/.bin/bun`, [script, ...args]]
    : [`${repoRoot}node_modules/.bin/deno`, ["run", "--allow-all", script, ...args]];
}

export function runScenario(
  runtime: ScenarioRuntime,
  script: string,
  args: string[] = [],
  options: { timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<ScenarioResult> {
  const [command, argv] = runtimeCommand(runtime, script, args);
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, {
      cwd: repoRoot,
      env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", DENO_NO_PROMPT: "1", ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), upperMs(options.timeoutMs ?? 55_000));
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const last = stdout.trimEnd().split("\n").pop() ?? "";
      let json: unknown;
      try {
        json = last ? JSON.parse(last) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code: code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : -1), stdout, stderr, json });
    });
  });
}

export const RUNTIMES = ["node", "bun", "deno"] as const;
export type Runtime = (typeof RUNTIMES)[number];

/** The reports of one scenario on all three runtimes (an Error where a runtime failed). */
export class ReportSet<R> {
  readonly #reports = new Map<Runtime, R | Error>();
  readonly #stderr = new Map<Runtime, string>();
  set(rt: Runtime, report: R | Error, stderr: string): void {
    this.#reports.set(rt, report);
    this.#stderr.set(rt, stderr);
  }
  /** The report of `rt`; throws the runtime's failure. */
  report(rt: Runtime): R {
    const r = this.#reports.get(rt);
    if (r instanceof Error || r === undefined) throw r ?? new Error(`no ${rt} report`);
    return r;
  }
  stderr(rt: Runtime): string | undefined {
    return this.#stderr.get(rt);
  }
  /** "node 12 ms, bun failed, …" from a per-report summary. */
  summary(describe: (r: R) => string): string {
    return RUNTIMES.map((rt) => {
      const r = this.#reports.get(rt);
      return `${rt} ${r === undefined || r instanceof Error ? "failed" : describe(r)}`;
    }).join(", ");
  }
}

/**
 * Run a scenario in-process on Node (`inProcess`) and as a child under Bun and Deno (`script`
 * with `args(rt)`), concurrently, collecting the three JSON reports.
 */
export async function collectReports<R>(
  script: string,
  args: (rt: Runtime) => string[],
  inProcess: () => R,
  timeoutMs: number,
  env: Record<string, string> = {},
): Promise<ReportSet<R>> {
  const set = new ReportSet<R>();
  const children = (["bun", "deno"] as const).map(async (rt) => {
    const res = await runScenario(rt, script, args(rt), { timeoutMs, env });
    set.set(rt, res.code === 0 && res.json ? (res.json as R) : new Error(`${rt} scenario exited ${res.code}:\n${res.stderr}\n${res.stdout.slice(-3000)}`), res.stderr);
  });
  try {
    set.set("node", inProcess(), "");
  } catch (e) {
    set.set("node", e as Error, "");
  }
  await Promise.all(children);
  return set;
}

/** One scenario script checked on all three runtimes (test/scenarios/*.ts). */
export interface Scenario<R> {
  script: string;
  /** The scenario's report function, run in this (Node) process. */
  report: () => R;
  /** Arguments of the Bun and Deno children. */
  args?: (rt: Runtime) => string[];
  /** How long a child may run (scaled in the nested harness). */
  timeoutMs: number;
}

/**
 * The opening of a KVM suite that checks one scenario on Node, Bun and Deno: a describeKvm whose
 * beforeAll collects the three reports (Node in process, Bun and Deno as children at once), then
 * one describe per runtime, where `get()` is that runtime's report (its failure is thrown there).
 */
export function describeScenario<R>(name: string, scenario: Scenario<R>, body: (rt: Runtime, get: () => R) => void): void {
  describeKvm(name, () => {
    let set = new ReportSet<R>();
    beforeAll(async () => {
      set = await collectReports(scenario.script, scenario.args ?? (() => []), scenario.report, scenario.timeoutMs);
    }, upperMs(2 * scenario.timeoutMs));
    describe.each(RUNTIMES)("%s", (rt) => body(rt, () => set.report(rt)));
  });
}
