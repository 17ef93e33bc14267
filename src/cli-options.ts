/** The option values of the `ipre` command line (cli.ts): integers, memory, timeouts, and exec's own argument parsing and file mounts. */
import { resolve as resolvePath } from "node:path";
import { MAX_MEMORY, MiB } from "./guest/layout.ts";
import type { FilesOption } from "./linux/vfs.ts";
import { type Flags, numberOption, UsageError } from "./flags.ts";

/** The range of an integer argument: a 64-bit register, read as signed or unsigned (-2^63 .. 2^64-1). */
const INT_ARG_MIN = -(2n ** 63n);
const INT_ARG_MAX = 2n ** 64n - 1n;

/**
 * An integer argument of `ipre run` (decimal or 0x hex, optionally negative): a number when it is
 * safe, else a bigint. Not an integer, or outside a 64-bit register, is a UsageError (exit 2).
 */
export function parseIntArg(s: string): number | bigint {
  if (!/^-?(0x[0-9a-f]+|\d+)$/i.test(s)) throw new UsageError(`argument "${s}" is not an integer`);
  const b = BigInt(s.startsWith("-") ? -BigInt(s.slice(1)) : BigInt(s));
  if (b < INT_ARG_MIN || b > INT_ARG_MAX) throw new UsageError(`argument "${s}" does not fit in a 64-bit register (-2^63 to 2^64-1)`);
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

export function stringOption(flags: Flags, name: string): string | undefined {
  const v = flags.options.get(name);
  if (v === true) throw new UsageError(`--${name} needs a value`);
  return v;
}

export function intArgOption(flags: Flags, name: string, min: number, max: number): number | undefined {
  const v = stringOption(flags, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} needs an integer from ${min} to ${max}`);
  return n;
}


/** `--memory MiB` as bytes: what Machine.create accepts (4 to MAX_MEMORY MiB), else a usage error. */
export function memoryOption(flags: Flags, fallbackMiB: number): number {
  const mib = numberOption(flags, "memory", fallbackMiB);
  if (mib < 4 || mib > MAX_MEMORY / MiB) throw new UsageError(`--memory needs a number of MiB from 4 to ${MAX_MEMORY / MiB}`);
  return mib * MiB;
}

/** A timeout in ms (0: none), at most what a timer takes (about 24.8 days); absent: 0. */
export function timeoutOption(flags: Flags, name: string): number {
  if (!flags.options.has(name)) return 0;
  const v = stringOption(flags, name) ?? "";
  const ms = Number(v);
  if (v.trim() === "" || !Number.isFinite(ms) || ms < 0 || ms > 2 ** 31 - 1) throw new UsageError(`--${name} needs a number of milliseconds from 0 (none) to ${2 ** 31 - 1}`);
  return ms;
}

/** A usage error when a command got more than `max` positional words. */
export function noMoreWords(flags: Flags, command: string, max: number): void {
  if (flags.positional.length > max) throw new UsageError(`${command} takes ${max === 0 ? "no arguments" : `at most ${max} argument${max === 1 ? "" : "s"}`} (got "${flags.positional[max]}")`);
}

/** The options `ipre exec` takes before the program; every word after the program is its argument. */
export const EXEC_OPTIONS = ["memory", "timeout", "allow-read", "mount"];
/** Options that may be given more than once: every value is in `lists`. */
const EXEC_LISTS = new Set(["allow-read", "mount"]);

/**
 * `ipre exec [options] <program> [args...]` splits its words itself: options end at the program
 * path (or a bare `--`), so the program's own `--flags` are never read as ipre's.
 */
export function parseExecArgs(words: string[]): Flags & { lists: Map<string, string[]> } {
  const options = new Map<string, string | true>();
  const lists = new Map<string, string[]>();
  const set = (name: string, value: string | true) => {
    options.set(name, value);
    if (EXEC_LISTS.has(name) && value !== true) lists.set(name, [...(lists.get(name) ?? []), value]);
  };
  for (let i = 0; i < words.length; i++) {
    const w = words[i] ?? "";
    if (w === "--") return { positional: words.slice(i + 1), options, lists };
    if (w === "-h") {
      options.set("help", true);
      continue;
    }
    if (!w.startsWith("--")) return { positional: words.slice(i), options, lists };
    const eq = w.indexOf("=");
    const name = eq > 0 ? w.slice(2, eq) : w.slice(2);
    if (eq > 0) set(name, w.slice(eq + 1));
    else if (EXEC_OPTIONS.includes(name) && i + 1 < words.length) set(name, words[++i] ?? "");
    else set(name, true); // --help, or an option checkOptions refuses, or a missing value
  }
  return { positional: [], options, lists };
}

/** The files option of `ipre exec`: --allow-read PATH (same path, read-only) and --mount HOST:GUEST[:rw]. */
export function execFiles(flags: Flags & { lists?: Map<string, string[]> }): FilesOption {
  const files: FilesOption = {};
  for (const o of EXEC_LISTS) if (flags.options.get(o) === true) throw new UsageError(`--${o} needs a value`);
  for (const p of flags.lists?.get("allow-read") ?? []) files[resolvePath(p)] = resolvePath(p);
  for (const m of flags.lists?.get("mount") ?? []) {
    const parts = m.split(":");
    const mode = parts.length > 2 && (parts.at(-1) === "rw" || parts.at(-1) === "ro") ? parts.pop() : "ro";
    const guest = parts.pop();
    const host = parts.join(":");
    if (!host || !guest?.startsWith("/")) throw new UsageError(`--mount needs HOST:GUEST[:rw] with an absolute GUEST path (got "${m}")`);
    files[guest] = { host: resolvePath(host), write: mode === "rw" };
  }
  return files;
}

