/**
 * The command line's words: options, positionals, usage errors. Apart from src/cli.ts so that
 * the subcommands it loads lazily (src/bench.ts) can use it: an import back into the CLI's entry
 * module would wait on its top-level await (Deno reports a promise that never resolves).
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
    const a = argv[i]!;
    if (a === "--") {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      if (eq > 0) options.set(a.slice(2, eq), a.slice(eq + 1));
      else if (i + 1 < argv.length && !argv[i + 1]!.startsWith("--") && !BOOLEAN_FLAGS.has(a.slice(2))) options.set(a.slice(2), argv[++i]!);
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
