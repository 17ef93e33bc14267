/** The example guests shipped (prebuilt) under guests/examples/. */
import { readFileSync } from "node:fs";

/** Bytes of `guests/examples/<name>.elf` from the installed package. */
export function exampleElf(name: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(`../guests/examples/${name}.elf`, import.meta.url)));
}

/** Bytes of `guests/linux/<name>.elf` (static Linux programs) from the installed package. */
export function linuxElf(name: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(`../guests/linux/${name}.elf`, import.meta.url)));
}
