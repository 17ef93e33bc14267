/** Shared plumbing of the benchmarks: option parsing, progress on stderr, the results directory. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import process from "node:process";
import { IpreError } from "../errors.ts";
import { libc } from "../ffi/index.ts";
import type { Flags } from "../cli.ts";

export function intOption(flags: Flags, name: string, fallback: number, min = 1): number {
  const v = flags.options.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v === true || !Number.isInteger(n) || n < min) throw new IpreError(`--${name} needs an integer >= ${min}`);
  return n;
}

export function numberOption(flags: Flags, name: string, fallback: number): number {
  const v = flags.options.get(name);
  if (v === undefined || v === true) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new IpreError(`--${name} needs a positive number`);
  return n;
}

/** "64MiB", "64M", "1KiB", "4096", "1GiB" -> bytes. */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(s.trim());
  if (!m) throw new IpreError(`"${s}" is not a size (e.g. 64MiB, 1KiB, 4096)`);
  const unit = (m[2] ?? "b").toLowerCase()[0]!;
  const mult = unit === "k" ? 1024 : unit === "m" ? 1024 ** 2 : unit === "g" ? 1024 ** 3 : 1;
  return Math.round(Number(m[1]) * mult);
}

export function sizeOption(flags: Flags, name: string, fallback: number): number {
  const v = flags.options.get(name);
  if (v === undefined) return fallback;
  if (v === true) throw new IpreError(`--${name} needs a size`);
  return parseSize(v);
}

/** "0,50,100,200" -> [0, 50, 100, 200]. */
export function listOption(flags: Flags, name: string, fallback: number[]): number[] {
  const v = flags.options.get(name);
  if (v === undefined) return fallback;
  if (v === true) throw new IpreError(`--${name} needs a comma-separated list`);
  const out = v.split(",").map((x) => Number(x.trim()));
  if (out.some((x) => !Number.isFinite(x) || x < 0)) throw new IpreError(`--${name}: "${v}" is not a list of non-negative numbers`);
  return out;
}

export interface Reporter {
  json: boolean;
  quiet: boolean;
  /** A progress line on stderr (suppressed by --quiet). */
  progress(line: string): void;
  /** Human output on stdout (suppressed by --json). */
  say(line: string): void;
}

export function reporter(flags: Flags): Reporter {
  const json = flags.options.has("json");
  const quiet = flags.options.has("quiet");
  return {
    json,
    quiet,
    progress: (line) => {
      if (!quiet) process.stderr.write(`[bench] ${line}\n`);
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
