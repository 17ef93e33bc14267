/**
 * The process environment, read only where the runtime allows it without asking, and Deno's
 * permission errors as one line. Deno run with `--allow-ffi --allow-read` (what the README gives)
 * may not read the environment: reading it anyway throws `NotCapable` (or, on a terminal, stops
 * to prompt). ipre reads it only where it needs it, and asks Deno first (`permissions.querySync`,
 * which never prompts) where a missing variable has a default.
 */

interface DenoLike {
  env: { get(name: string): string | undefined; toObject(): Record<string, string> };
  permissions?: { querySync?(d: { name: string; variable?: string; command?: string; path?: string }): { state: string } };
}

function deno(): DenoLike | undefined {
  return (globalThis as { Deno?: DenoLike }).Deno;
}

/** Deno: whether a permission is granted right now (never prompts); elsewhere always true. */
export function permitted(name: "env" | "run" | "read" | "write" | "sys", target?: string): boolean {
  const d = deno();
  if (!d) return true;
  const key = name === "env" ? "variable" : name === "run" ? "command" : name === "read" || name === "write" ? "path" : "kind";
  try {
    const q = d.permissions?.querySync?.({ name, ...(target !== undefined ? { [key]: target } : {}) });
    return q === undefined || q.state === "granted";
  } catch {
    return false;
  }
}

/** `process.env[name]`, or undefined where the runtime does not let ipre read it (Deno without --allow-env). */
export function envGet(name: string): string | undefined {
  const d = deno();
  if (d) {
    if (!permitted("env", name)) return undefined;
    try {
      return d.env.get(name);
    } catch {
      return undefined;
    }
  }
  return (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
}

/** The whole environment, or undefined where it may not be read (Deno without --allow-env). */
export function envAll(): Record<string, string> | undefined {
  const d = deno();
  if (d) {
    if (!permitted("env")) return undefined;
    try {
      return d.env.toObject();
    } catch {
      return undefined;
    }
  }
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}

/**
 * Throw what Deno throws for a missing permission (a `NotCapable` error naming the flag) when it
 * is not granted: for checks made before Deno would ask, e.g. an existsSync that would only say
 * "no such file" without --allow-read.
 */
export function requirePermission(name: "read" | "env" | "run" | "write", target: string): void {
  if (permitted(name, target)) return;
  const e = new Error(`Requires ${name} access to "${target}", run again with the --allow-${name} flag`);
  e.name = "NotCapable";
  throw e;
}

/** Deno's permission error (`NotCapable`; `PermissionDenied` before Deno 2). */
export function isPermissionError(e: unknown): e is Error {
  const name = (e as { name?: unknown } | null)?.name;
  return e instanceof Error && (name === "NotCapable" || name === "PermissionDenied") && /--allow-\w+/.test(e.message);
}

/**
 * One line for a Deno permission error: the flag to add and what was refused, e.g.
 * `Deno needs --allow-env (it refused env access to "HOME"); run with --allow-env or --allow-all`.
 */
export function permissionLine(e: Error): string {
  const flag = /--allow-[\w-]+/.exec(e.message)?.[0] ?? "--allow-all";
  const what = /Requires (.*?), run again/.exec(e.message)?.[1] ?? e.message.split("\n")[0]!;
  return `Deno needs ${flag} (it refused ${what}); run with ${flag} or --allow-all`;
}
