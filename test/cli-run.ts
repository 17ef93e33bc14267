/**
 * Running the `ipre` command line from a test on Node (the compiled bin), Bun and Deno (the
 * TypeScript sources), and keeping `dist/` fresh for Node. Shared by the CLI test files.
 */
import { type ChildProcessByStdio, spawn, spawnSync } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { repoRoot, type Runtime } from "./harness.ts";
import { upperMs } from "./kvm.ts";

/** The command that runs `ipre args…` on `rt`: Node runs bin/ipre.js (dist/), Bun and Deno src/cli.ts. */
export function cliCommand(rt: Runtime, args: string[]): [string, string[]] {
  if (rt === "node") return [process.execPath, ["bin/ipre.js", ...args]];
  if (rt === "bun") return [`${repoRoot}node_modules/.bin/bun`, ["src/cli.ts", ...args]];
  return [`${repoRoot}node_modules/.bin/deno`, ["run", "--allow-all", "src/cli.ts", ...args]];
}

export interface CliResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** The last line of stdout (where `ipre run` prints its result). */
  lastLine: string;
  /** Bytes on stdout (with `countStdout`, all that is kept of it). */
  stdoutBytes: number;
}

export interface CliOptions {
  /** Extra environment (over this process's, with colours and Deno's prompts off). */
  env?: NodeJS.ProcessEnv;
  /** Feeds the child's stdin through `write` (back-pressure respected), then it is closed; default: no stdin. */
  input?: (write: (b: Uint8Array) => Promise<void>) => Promise<void>;
  /** The child is killed after this many ms (scaled in the nested harness); default 90 s. */
  timeoutMs?: number;
  /** Count stdout's bytes without keeping them (`stdout` stays ""): a program that prints 64 MiB. */
  countStdout?: boolean;
}

/** Run `ipre args…` on `rt` in the repository and collect its exit and output. */
export function runCli(rt: Runtime, args: string[], options: CliOptions = {}): Promise<CliResult> {
  const [cmd, argv] = cliCommand(rt, args);
  return runCommand(cmd, argv, options);
}

/** Run `cmd argv…` in the repository (a runtime with flags of its own) and collect its exit and output. */
export function runCommand(cmd: string, argv: string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, {
      cwd: repoRoot,
      env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", DENO_NO_PROMPT: "1", ...options.env },
      stdio: [options.input ? "pipe" : "ignore", "pipe", "pipe"],
    }) as ChildProcessByStdio<Writable | null, Readable, Readable>;
    let stdout = "", stderr = "", stdoutBytes = 0;
    if (options.countStdout) child.stdout.on("data", (d: Buffer) => (stdoutBytes += d.length));
    else child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), upperMs(options.timeoutMs ?? 90_000));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (!options.countStdout) stdoutBytes = Buffer.byteLength(stdout);
      resolve({ code, signal, stdout, stderr, lastLine: stdout.trimEnd().split("\n").pop() ?? "", stdoutBytes });
    });
    const stdin = child.stdin;
    if (options.input && stdin) {
      stdin.on("error", () => {}); // the program may end before reading it all
      const write = (b: Uint8Array) => new Promise<void>((res) => (stdin.write(b) ? res() : stdin.once("drain", res)));
      options.input(write).then(() => stdin.end(), () => stdin.end());
    }
  });
}

/** Newest modification time under a directory (recursive). */
export function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Node runs the compiled CLI: build dist/ unless it has every file named and is newer than every source. */
export function ensureDist(required: readonly string[] = ["cli.js", "mod.js"]): void {
  if (required.every((f) => existsSync(`${repoRoot}dist/${f}`)) && newest(`${repoRoot}dist`) >= newest(`${repoRoot}src`)) return;
  const r = spawnSync(process.execPath, [`${repoRoot}node_modules/typescript/bin/tsc`, "-p", "tsconfig.json"], { cwd: repoRoot, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tsc -p tsconfig.json failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
}
