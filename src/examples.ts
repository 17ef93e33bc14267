/**
 * The example guests shipped (prebuilt) under guests/examples/ (freestanding ipre guests) and
 * guests/linux/ (static Linux programs), found relative to this module: from src/ or dist/, in
 * the repository or in an installed package (node_modules, Deno's npm: cache).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { IpreError } from "./errors.ts";

/**
 * The package's guests/ directory as a path (with a trailing slash). Computed on first use: a
 * module loaded from a URL that is no file (a remote import) cannot name one, and must still load.
 */
export function guestsDir(): string {
  const url = new URL("../guests/", import.meta.url);
  if (url.protocol !== "file:") throw new IpreError(`ipre's guests/ directory is not a local file (${url.href}): compiling C and example names need ipre installed locally (npm or node_modules)`);
  return fileURLToPath(url);
}

/** Bytes of `guests/examples/<name>.elf` from the installed package. */
export function exampleElf(name: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(`../guests/examples/${name}.elf`, import.meta.url)));
}

/** Bytes of `guests/linux/<name>.elf` (static Linux programs) from the installed package. */
export function linuxElf(name: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(`../guests/linux/${name}.elf`, import.meta.url)));
}

export type ExampleKind = "examples" | "linux";

/** The names of the package's example ELFs of a kind (`add`, `kvstore`, …; `hello`, `counter`, …), sorted. */
export function exampleNames(kind: ExampleKind): string[] {
  try {
    return readdirSync(`${guestsDir()}${kind}`).filter((f) => f.endsWith(".elf")).map((f) => f.slice(0, -4)).sort();
  } catch {
    return [];
  }
}

/**
 * The path of the example ELF called `name` (no directory, no extension), looked up in the
 * kinds in order, or undefined.
 */
export function examplePath(name: string, kinds: readonly ExampleKind[] = ["examples", "linux"]): string | undefined {
  if (!/^[A-Za-z0-9_][\w-]*$/.test(name)) return undefined;
  for (const kind of kinds) {
    const path = `${guestsDir()}${kind}/${name}.elf`;
    if (existsSync(path)) return path;
  }
  return undefined;
}
