/**
 * Child processes of the current runtime running inline code (`node -e`, `bun -e`, `deno eval`),
 * and the CPU load generator of `bench load`. The same on Node, Bun and Deno.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants as fsConstants } from "node:fs";
import { delimiter, join } from "node:path";
import process from "node:process";
import { libc } from "../ffi/index.ts";

// ---------------------------------------------------------------- child processes

/** argv that makes the current runtime's executable run `code`; extra args land at the end of process.argv. */
export function evalArgs(code: string, args: string[] = []): [string, string[]] {
  return [process.execPath, libc.runtime === "deno" ? ["eval", code, ...args] : ["-e", code, ...args]];
}

export function spawnInline(code: string, args: string[] = []): ChildProcess {
  const [cmd, argv] = evalArgs(code, args);
  return spawn(cmd, argv, {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
  });
}

/** Resolves when the child prints its first line on stdout; rejects if it exits first or after timeoutMs. */
export function readyLine(child: ChildProcess, what: string, timeoutMs = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${what}: no ready line after ${timeoutMs} ms`)), timeoutMs);
    const onExit = (code: number | null, signal: string | null) => fail(new Error(`${what} exited (code ${code}, signal ${signal}) before it was ready`));
    const fail = (e: Error) => {
      clearTimeout(timer);
      child.off("exit", onExit);
      reject(e);
    };
    child.once("exit", onExit);
    child.once("error", fail);
    child.stdout!.once("data", () => {
      clearTimeout(timer);
      child.off("exit", onExit);
      resolve();
    });
  });
}

export function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}

/** Load generators found on PATH (reported in the output; the default generator is busy loops). */
export function availableLoadTools(): { stressNg?: string; schbench?: string } {
  return { stressNg: onPath("stress-ng"), schbench: onPath("schbench") };
}

export type LoadTool = "busy" | "stress-ng";

export interface Load {
  count: number;
  description: string;
  stop(): Promise<void>;
}

/**
 * Starts `count` CPU hogs: busy-loop child processes of the current runtime (default), or
 * `stress-ng --cpu count` when asked for and installed. Resolves once they run.
 */
export async function startLoad(count: number, tool: LoadTool = "busy"): Promise<Load> {
  if (count === 0) return { count, description: "none", stop: async () => {} };
  if (tool === "stress-ng") {
    const exe = onPath("stress-ng");
    if (!exe) throw new Error("stress-ng is not installed");
    const child = spawn(exe, ["--cpu", String(count), "--cpu-method", "loop", "--quiet"], { stdio: "ignore" });
    await new Promise((r) => setTimeout(r, 500));
    if (child.exitCode !== null) throw new Error(`stress-ng exited with code ${child.exitCode}`);
    return {
      count,
      description: `stress-ng --cpu ${count} --cpu-method loop`,
      stop: () =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once("exit", () => resolve());
          child.kill("SIGTERM"); // stress-ng reaps its workers on SIGTERM
        }),
    };
  }
  // Busy until killed; exits by itself if the parent dies (re-parented: ppid changes) or after 30 min.
  const code = `const ppid = process.ppid, end = Date.now() + 1800000;
process.stdout.write("r\\n", () => { for (;;) { for (let i = 0; i < 5e6; i++) {} if (process.ppid !== ppid || Date.now() > end) process.exit(0); } });`;
  const children: ChildProcess[] = [];
  try {
    for (let i = 0; i < count; i++) children.push(spawnInline(code));
    await Promise.all(children.map((c, i) => readyLine(c, `busy loop ${i}`)));
  } catch (e) {
    await Promise.all(children.map(killAndWait));
    throw e;
  }
  // Let the scheduler settle on the new runnable set.
  await new Promise((r) => setTimeout(r, 200));
  const [cmd] = evalArgs("");
  return {
    count,
    description: `${count} busy-loop child process${count === 1 ? "" : "es"} (${cmd.split("/").pop()} ${libc.runtime === "deno" ? "eval" : "-e"} 'for(;;){}')`,
    stop: async () => {
      await Promise.all(children.map(killAndWait));
    },
  };
}
