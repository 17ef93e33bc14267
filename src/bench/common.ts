/** Shared plumbing of the benchmarks: progress on stderr, the results directory (option values: src/flags.ts). */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import process from "node:process";
import { libc } from "../ffi/index.ts";
import type { Flags } from "../flags.ts";

export interface Reporter {
  json: boolean;
  quiet: boolean;
  /** A progress line on stderr (suppressed by --quiet); on a terminal, the status of the live line. */
  progress(line: string): void;
  /** How many `step()`s the run has: the live line's count and ETA. */
  plan(steps: number): void;
  /** Begin the next of the planned steps (a progress line that counts). */
  step(line: string): void;
  /** Clear the live line (before the results are printed); later progress is line by line. */
  done(): void;
  /** Human output on stdout (suppressed by --json). */
  say(line: string): void;
}

/**
 * Progress on a terminal: one line, rewritten in place (`\r`, erase to end of line), with the
 * step count, the elapsed time and an ETA from the steps done so far. Hand-written rather than
 * a library: it is forty lines, and a dependency would have to work on Node, Bun and Deno alike.
 * The clock, the writer and the width are parameters so that tests need no terminal.
 */
export class ProgressLine {
  #total = 0;
  #index = 0;
  #started = 0;
  #status = "";
  #shown = false;
  #timer: ReturnType<typeof setInterval> | undefined;
  constructor(
    private readonly write: (text: string) => void,
    private readonly now: () => number = () => performance.now(),
    private readonly columns: () => number = () => 80,
  ) {}
  plan(steps: number): void {
    this.#total = steps;
    this.#index = 0;
    this.#started = this.now();
    // Redraws the elapsed time while a step awaits (a synchronous KVM loop blocks it anyway).
    this.#timer ??= setInterval(() => this.render(), 1000);
    (this.#timer as { unref?: () => void }).unref?.();
  }
  status(line: string): void {
    this.#status = line;
    this.render();
  }
  step(line: string): void {
    this.#index++;
    this.status(line);
  }
  /** The text of the live line, without the control characters. */
  text(): string {
    const elapsed = this.#total ? (this.now() - this.#started) / 1000 : 0;
    const done = Math.max(0, this.#index - 1); // the current step is still running
    const count = this.#total ? ` ${Math.min(this.#index, this.#total)}/${this.#total}` : "";
    const eta = this.#total && done > 0 ? `, ETA ${clock((elapsed / done) * (this.#total - done))}` : "";
    const time = this.#total ? ` (${clock(elapsed)} elapsed${eta})` : "";
    const line = `[bench]${count} ${this.#status}${time}`;
    const width = Math.max(20, this.columns() - 1);
    return line.length > width ? line.slice(0, width - 1) + "…" : line;
  }
  render(): void {
    this.write(`\r${this.text()}\x1b[K`);
    this.#shown = true;
  }
  done(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#shown) this.write("\r\x1b[K");
    this.#shown = false;
  }
}

/** Seconds as m:ss (h:mm:ss from an hour). */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  return `${hh ? `${hh}:${String(mm).padStart(2, "0")}` : mm}:${String(ss).padStart(2, "0")}`;
}

/**
 * The live line when both stdout and stderr are terminals and neither --json nor --quiet is
 * given; otherwise a `[bench] …` line per phase on stderr (nothing with --quiet).
 */
export function reporter(flags: Flags, tty: boolean = Boolean(process.stderr.isTTY && process.stdout.isTTY)): Reporter {
  const json = flags.options.has("json");
  const quiet = flags.options.has("quiet");
  const stderr = (text: string) => void process.stderr.write(text);
  let live = tty && !json && !quiet ? new ProgressLine(stderr, undefined, () => process.stderr.columns ?? 80) : undefined;
  const line = (text: string) => {
    if (quiet) return;
    if (live) live.status(text);
    else stderr(`[bench] ${text}\n`);
  };
  return {
    json,
    quiet,
    progress: line,
    plan: (steps) => live?.plan(steps),
    step: (text) => {
      if (live) live.step(text);
      else line(text);
    },
    done: () => {
      live?.done();
      live = undefined;
    },
    say: (line) => {
      if (!json) process.stdout.write(line + "\n");
    },
  };
}

function timestamp(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z").replace(/:/g, "-");
}

/**
 * Creates `results/<timestamp>-<subcommand>-<runtime>/` (or the --out directory) and writes the
 * given files into it; returns the directory.
 */
export function writeResults(flags: Flags, subcommand: string, files: Record<string, string>): string {
  const out = flags.options.get("out");
  const dir = typeof out === "string" ? resolve(out) : join(resolve("results"), `${timestamp()}-${subcommand}-${libc.runtime}`);
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** Yield to the event loop (lets worker/socket callbacks and timers run). */
export function tick(ms = 0): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
