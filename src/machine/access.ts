/**
 * A machine's memory as its facade hands it out (docs/ARCHITECTURE.md §3): outside hostcall
 * handlers the host's own view of user memory (bounds checked, not rights checked); inside one of
 * the machine's hostcall handlers a guest pointer, resolved with the rights of the code that made
 * the hostcall (src/engine/pointers.ts).
 */
import { GuestMemoryError, MachineStateError, hex } from "../errors.ts";
import type { Cpu } from "../engine/owners.ts";
import { guestCString, guestRange } from "../engine/pointers.ts";

/** The offset of user range [address, address+length) in the machine's memory; GuestMemoryError outside. */
function userOffset(cpu: Cpu, address: number, length: number): number {
  const s = cpu.space;
  if (s.closed) throw new MachineStateError(`${s.name} is closed`);
  if (!(Number.isFinite(address) && length >= 0 && address >= s.userStart && address + length <= s.memoryEnd)) {
    throw new GuestMemoryError(address, length, `${s.name}: range ${hex(address)}+${length} is outside user memory [${hex(s.userStart)}, ${hex(s.memoryEnd)})`);
  }
  return address - s.base;
}

/** The code whose rights guest pointers have now: the hostcall's caller inside a handler, else the machine's own. */
export function rightsOf(cpu: Cpu): Cpu {
  return cpu.space.hostcallRunner ?? cpu;
}

/** A view of [address, address+length): a guest pointer inside a hostcall handler, else user memory. */
export function hostView(cpu: Cpu, address: number, length: number, write: boolean): Uint8Array {
  const runner = cpu.space.hostcallRunner;
  if (runner !== undefined) return guestRange(runner, address, length, write);
  const off = userOffset(cpu, address, length);
  return cpu.mem.u8.subarray(off, off + length);
}

/** A NUL-terminated string of at most maxLength bytes (a guest pointer inside a hostcall handler). */
export function hostCString(cpu: Cpu, address: number, maxLength: number): string {
  const runner = cpu.space.hostcallRunner;
  if (runner !== undefined) return guestCString(runner, address, maxLength);
  const mem = cpu.mem.u8;
  const off = userOffset(cpu, address, 1);
  const end = Math.min(mem.length, off + maxLength);
  let i = off;
  while (i < end && mem[i] !== 0) i++;
  return new TextDecoder().decode(mem.subarray(off, i));
}
