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

/**
 * Views taken before close() and used after it (src/engine/memory.ts, SAFETY): detached (length
 * 0) where the runtime can detach, else a zero-filled placeholder; never unmapped memory.
 */
export interface HeldViews {
  /** m.bytes(a, 8) after close: its length, what reading [0] gave, and [0] after writing 0x5a. */
  bytes: { length: number; read: number | null; afterWrite: number | null };
  /** m.rawMemory() after close. */
  raw: { length: number; read: number | null };
  /** Nonzero bytes left in the views (guest data must not survive behind a stale view). */
  nonzero: number;
}

export function closedProbes(emit: (line: unknown) => void): void {
  const m = Machine.create({ program: exampleElf("add") });
  const a = m.userStart + 0x1000;
  const held = m.bytes(a, 8);
  const raw = m.rawMemory();
  held.set([1, 2, 3, 4, 5, 6, 7, 8]);
  m.close();
  emit({ runtime: libc.runtime, closed: m.closed });
  // Each line is printed before the next access, so a crash names the access that caused it.
  const views: HeldViews = { bytes: { length: held.length, read: null, afterWrite: null }, raw: { length: raw.length, read: null }, nonzero: -1 };
  emit({ step: "bytes.read" });
  views.bytes.read = held[0] ?? null;
  emit({ step: "raw.read" });
  views.raw.read = raw[a - m.base] ?? null;
  emit({ step: "bytes.write" });
  held[0] = 0x5a;
  views.bytes.afterWrite = held[0] ?? null;
  emit({ step: "scan" });
  // Indexing only: a detached typed array's methods throw, its elements read undefined.
  let nonzero = 0;
  for (let i = 1; i < held.length; i++) if (held[i] !== 0) nonzero++;
  for (let i = 0; i < raw.length; i++) if (raw[i] !== 0 && i !== a - m.base) nonzero++;
  views.nonzero = nonzero;
  emit({ views });
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
