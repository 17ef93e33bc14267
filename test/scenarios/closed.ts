/**
 * Every Machine method on a closed machine. These may crash the process when the code is wrong
 * (guest memory is unmapped at close), so this script only ever runs as a child process: it
 * prints one JSON line per probe, *before* trying the next, and finally {"done":true}.
 */
import { libc } from "../../src/ffi/index.ts";
import { Machine } from "../../src/machine/machine.ts";
import { exampleElf, isMain, outcome } from "./common.ts";
import { flushPageTables } from "./internals.ts";

export const CLOSED_PROBES = [
  "call", "callBigInt", "load", "bytes", "read", "write", "readU64", "writeU64", "readI64", "readCString", "protect", "flushPageTables", "serviceRun",
] as const;

export function closedProbes(emit: (line: unknown) => void): void {
  const m = Machine.create({ program: exampleElf("add") });
  const a = m.userStart + 0x1000;
  m.close();
  emit({ runtime: libc.runtime, closed: m.closed });
  const probes: Record<(typeof CLOSED_PROBES)[number], () => unknown> = {
    call: () => m.call("add", 1, 2),
    callBigInt: () => m.callBigInt("add", 1n, 2n),
    load: () => m.load(exampleElf("add")),
    bytes: () => m.bytes(a, 8).length,
    read: () => m.read(a, 8).length,
    write: () => m.write(a, "abc"),
    readU64: () => m.readU64(a),
    writeU64: () => m.writeU64(a, 1),
    readI64: () => m.readI64(a),
    readCString: () => m.readCString(a),
    protect: () => m.protect(a, 4096, null),
    flushPageTables: () => flushPageTables(m),
    serviceRun: () => m.serviceRun(),
  };
  for (const name of CLOSED_PROBES) emit({ probe: name, outcome: outcome(probes[name]) });
  emit({ done: true });
}

if (isMain(import.meta)) closedProbes((line) => console.log(JSON.stringify(line)));
