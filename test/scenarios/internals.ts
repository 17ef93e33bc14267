/**
 * What tests look at behind the public API: the queued page-table memory, the flush that applies
 * it, and the IPRE bookkeeping of a machine (its Space and Cpu, src/engine/owners.ts).
 */
import type { Machine } from "../../src/machine/machine.ts";
import { cpuOf, spaceOf } from "../../src/engine/facade.ts";
import { flushPageTables as flush } from "../../src/engine/service.ts";
import type { PtMemory } from "../../src/x86/paging.ts";

/** Page-table memory of a machine: direct before boot, queued for the runtime after. */
export function pt(m: Machine): PtMemory {
  return cpuOf(m).ptq.pt;
}
/** Apply the queued page-table writes through the runtime (a service run). */
export function flushPageTables(m: Machine): void {
  flush(cpuOf(m));
}
/** Name of the caller whose remote call runs into `m`, if any. */
export function busyWith(m: Machine): string | undefined {
  return spaceOf(m).busyWith?.name;
}
/** Connected remotes of a caller, and callers of a remote. */
export function linkCount(m: Machine): number {
  return cpuOf(m).links.size;
}
export function callerCount(m: Machine): number {
  return spaceOf(m).callers.size;
}
