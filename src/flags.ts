/**
 * The command line's words: options, positionals, typed option values, usage errors. Apart from
 * src/cli.ts so that the subcommands it loads lazily (src/bench.ts, src/bench/*) can use it
 * without importing the CLI back: an import back into the CLI's entry module would wait on its
 * top-level await (Deno reports a promise that never resolves), and it would be an import cycle.
 * Every malformed option value is a UsageError (exit 2), for `ipre run` and `ipre bench` alike.
 */
import { IpreError } from "./errors.ts";

/** A malformed command line (exit 2): an unknown option, a missing argument. */
export class UsageError extends IpreError {
  override name = "UsageError";
}

export interface Flags {
  positional: string[];
  options: Map<string, string | true>;
}

/**
 * `--k=v`, `--k v` (unless k is a boolean flag or v starts with `--`), `--k`; everything else is
 * positional in order. A bare `--` ends the options: every word after it is positional.
 */
export function parseFlags(argv: string[]): Flags {
  const positional: string[] = [];
  const options = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    const next = argv[i + 1];
    if (a === "--") {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      if (eq > 0) options.set(a.slice(2, eq), a.slice(eq + 1));
      else if (next !== undefined && !next.startsWith("--") && !BOOLEAN_FLAGS.has(a.slice(2))) options.set(a.slice(2), (i++, next));
      else options.set(a.slice(2), true);
    } else positional.push(a);
  }
  return { positional, options };
}
export const BOOLEAN_FLAGS: ReadonlySet<string> = new Set(["json", "help", "quiet", "all"]);

/** Exit 2 with a one-line hint when `flags` has an option `command` does not take. */
export function checkOptions(flags: Flags, known: Iterable<string>, command: string): void {
  const ok = new Set([...known, "help"]);
  for (const k of flags.options.keys()) if (!ok.has(k)) throw new UsageError(`unknown option --${k} for "${command}"`);
}

/** A positive finite number (`--memory 32`, `--duration-limit 0.5`); `fallback` when absent. */
export function numberOption(flags: Flags, name: string, fallback: number): number {
  const v = flags.options.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v === true || !Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} needs a positive number`);
  return n;
}

/** An integer >= `min` (`--iterations 1000`); `fallback` when absent. */
export function intOption(flags: Flags, name: string, fallback: number, min = 1): number {
  const v = flags.options.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v === true || !Number.isInteger(n) || n < min) throw new UsageError(`--${name} needs an integer >= ${min}`);
  return n;
}

/** "64MiB", "64M", "1KiB", "4096", "1GiB" -> bytes. */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(s.trim());
  if (!m) throw new UsageError(`"${s}" is not a size (e.g. 64MiB, 1KiB, 4096)`);
  const unit = (m[2] ?? "b").toLowerCase().charAt(0);
  const mult = unit === "k" ? 1024 : unit === "m" ? 1024 ** 2 : unit === "g" ? 1024 ** 3 : 1;
  return Math.round(Number(m[1]) * mult);
}

/** A size in bytes (`--max-size 64MiB`, see parseSize); `fallback` when absent. */
export function sizeOption(flags: Flags, name: string, fallback: number): number {
  const v = flags.options.get(name);
  if (v === undefined) return fallback;
  if (v === true) throw new UsageError(`--${name} needs a size`);
  return parseSize(v);
}

/** "0,50,100,200" -> [0, 50, 100, 200]; `fallback` when absent. */
export function listOption(flags: Flags, name: string, fallback: number[]): number[] {
  const v = flags.options.get(name);
  if (v === undefined) return fallback;
  if (v === true) throw new UsageError(`--${name} needs a comma-separated list`);
  const out = v.split(",").map((x) => Number(x.trim()));
  if (out.some((x) => !Number.isFinite(x) || x < 0)) throw new UsageError(`--${name}: "${v}" is not a list of non-negative numbers`);
  return out;
}
