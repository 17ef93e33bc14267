/**
 * The IPRE frame stack of one vCPU: entering an allowed remote function (merge: CR3 := merged
 * root), the return trap (unmerge), callbacks from remote code into caller code and their
 * return, a direct call from JS and its end at the exit trap, and aborting all of it when a
 * call ends with an error. The stack itself, a preallocated pool (a call or return allocates
 * nothing), is the Cpu's FrameStack (stack.ts). docs/ARCHITECTURE.md §3.
 */
import { GuestFault, GuestMemoryError, IpreError, MachineStateError, RemoteAccessError, RemoteFault, type FaultInfo } from "../errors.ts";
import { PORT, USER_OFFSET, WINDOW_SIZE } from "../guest/layout.ts";
import type { Cpu, IpreFrame, RemoteLink, Space } from "./owners.ts";
import { MAX_IPRE_DEPTH } from "./stack.ts";
import { FRAME_AT, MB, resumeWithCr3, loadFsBase, setMailbox } from "./parked.ts";
import { VECTOR } from "../x86/descriptors.ts";

/** The u64 at a guest stack address (the stack is the caller's own memory). */
export function stackU64(cpu: Cpu, rsp: number): number {
  const space = cpu.space;
  const off = rsp - space.base;
  if (off < USER_OFFSET || off + 8 > space.memorySize) throw new GuestMemoryError(rsp, 8, `${space.name}: guest stack pointer 0x${rsp.toString(16)} is outside its memory`);
  if (off % 8 !== 0) throw new GuestMemoryError(rsp, 8, `${space.name}: guest stack pointer 0x${rsp.toString(16)} is not 8-byte aligned`);
  return cpu.mem.getU64At(off >> 2);
}

/** The return address at [rsp] for messages, or 0. */
export function callerOf(cpu: Cpu, rsp: number): number {
  try {
    return stackU64(cpu, rsp);
  } catch {
    return 0;
  }
}

/**
 * The VMM replaces the return address at [rsp] with a trap: only where the guest code itself
 * could write (a user-writable page; checked on the leaf entry, the upper levels of a window's
 * own tables are always user-writable), else this is the #PF a `push` there would have raised,
 * blamed on `remote` when remote code set up that stack.
 */
function checkTrapSlot(cpu: Cpu, rsp: number, remote: Space | undefined): void {
  const space = cpu.space;
  const lo = cpu.mem.u32[(space.tables.pteAddress(rsp) - space.base) >> 2] ?? 0;
  if ((lo & 7) === 7) return; // present, writable, user
  const info: FaultInfo = { vector: VECTOR.PF, rip: cpu.mem.getI64At(FRAME_AT.rip), cr2: rsp, errorCode: (lo & 1) | 2 | 4, rsp };
  throw remote !== undefined ? new RemoteFault(info, remote.name) : new GuestFault(info, space.name);
}

/** Replace the return address at [rsp] by `trap`. */
function setTrap(cpu: Cpu, rsp: number, trap: number): void {
  cpu.mem.setU64At((rsp - cpu.space.base) >> 2, trap);
}

/**
 * Load the address space of `frame` (the innermost): the merged root of a call, or the normal
 * root for a callback or for no IPRE at all; FSBASE follows whose code runs.
 */
function switchTo(cpu: Cpu, frame: IpreFrame | undefined): void {
  const call = frame?.kind === "call";
  resumeWithCr3(cpu.mem, cpu.vcpu, cpu.space.base, call ? frame.link.mergedRoot : cpu.normalRoot, call ? frame.link.remote.fsBase : cpu.space.fsBase);
}

/**
 * Whether `entry` of the remote behind `link` may be entered now from `cpu` (a guest-made call,
 * `from` the remote link whose code made it if any, or a direct call from JS): not from remote
 * code, the depth limit, the allow-list, the busy rule, an open remote that needs no reset.
 */
export function checkEntry(cpu: Cpu, link: RemoteLink, entry: number, from: RemoteLink | undefined): void {
  const remote = link.remote;
  if (from !== undefined) {
    throw new RemoteAccessError(entry, `${from.remote.name}: call to 0x${entry.toString(16)} in ${remote.name} from remote code: nested remote calls are not supported from inside a remote (call it from a callback into the caller instead)`);
  }
  if (cpu.stack.depth >= MAX_IPRE_DEPTH) throw new RemoteAccessError(entry, `${cpu.name}: more than ${MAX_IPRE_DEPTH} nested IPRE calls and callbacks`);
  if (!link.allow.has(entry)) {
    const syms = [...(remote.program?.symbols.values() ?? [])].filter((s) => s.value === entry);
    const sym = (syms.find((s) => s.type === "func") ?? syms[0])?.name;
    throw new RemoteAccessError(entry, `${cpu.name}: 0x${entry.toString(16)}${sym ? ` (${sym})` : ""} is not an allowed entry point of ${remote.name}`);
  }
  const busyWith = remote.busyWith;
  if (busyWith !== undefined && busyWith !== cpu) throw new RemoteAccessError(entry, `${remote.name} is busy with a call from ${busyWith.name}`);
  if (remote.closed) throw new MachineStateError(`${remote.name} is closed`);
  if (remote.mustReset !== undefined) throw new MachineStateError(`${remote.name} must be reset before it serves calls again (${remote.mustReset})`);
}

/** Caller code jumped to `entry` in a connected remote: check it, install the return trap, merge. */
export function enterRemote(cpu: Cpu, link: RemoteLink, entry: number, rsp: number, from: RemoteLink | undefined): void {
  checkEntry(cpu, link, entry, from);
  const returnAddress = stackU64(cpu, rsp);
  checkTrapSlot(cpu, rsp, undefined);
  setTrap(cpu, rsp, cpu.space.returnTrap);
  link.remote.occupy(cpu);
  switchTo(cpu, cpu.stack.push("call", link, returnAddress, rsp));
  cpu.onRemoteEntry?.(entry);
}

/**
 * A direct call from JS (checkEntry passed; the frame at the entry with [rsp] = the exit trap is
 * written): occupy the remote, push the call's frame, whose return address is the exit trap (no
 * return trap: the remote's `ret` ends the call, see returnDirect), and merge.
 */
export function enterDirect(cpu: Cpu, link: RemoteLink, entry: number, rsp: number): void {
  link.remote.occupy(cpu);
  switchTo(cpu, cpu.stack.push("call", link, cpu.space.exitTrap, rsp));
  cpu.onRemoteEntry?.(entry);
}

/**
 * The exit trap with frames open: the end of a direct call when its remote returned (only the
 * direct frame left, RSP = entry RSP + 8). The vCPU stays parked with the merged root loaded, so
 * the mailbox gets the normal root and the caller's FSBASE: whatever runs next on this vCPU
 * loads them first (`resume`), or replaces them with its own switch (resumeWithCr3). False when
 * it is not that (a genuine fault).
 */
export function returnDirect(cpu: Cpu, rsp: number): boolean {
  const top = cpu.stack.top();
  if (!cpu.atDirectBase() || top === undefined || rsp !== top.rsp + 8) return false;
  cpu.stack.pop(); // frees the remote
  setMailbox(cpu.mem, MB.cr3, cpu.normalRoot);
  loadFsBase(cpu.mem, cpu.space.fsBase);
  return true;
}

/**
 * The remote returned from a call, or caller code from a callback (a fetch of the return or
 * callback trap with the stack where the frame left it): restore the real return address and
 * the address space of the frame below. False when it is not that (a genuine fault).
 */
export function returnFrom(cpu: Cpu, top: IpreFrame, rsp: number): boolean {
  if (rsp !== top.rsp + 8) return false;
  cpu.stack.pop(); // frees a remote that is no longer on the stack
  cpu.mem.setU64At(FRAME_AT.rip, top.returnAddress);
  switchTo(cpu, cpu.stack.top());
  return true;
}

/** #PF error code bits: a ring-3 access (U/S), an instruction fetch (I/D). Intel SDM Vol. 3A §4.7. */
const PF_USER_FETCH = 0x4 | 0x10;

/**
 * An exit came while the fast path's frame was live (runtime.S `fast_pf`, src/engine/fastpath.ts):
 * the host takes the call over. `atOut`: the exit is a stub's or a gate's `out` (the call goes on
 * after it), not a timeout or a crash (the call ends, and only which remote ran matters). The
 * merged root in CR3 (KVM_GET_SREGS: one ioctl per adopted call) names the remote.
 *
 * The handler takes only a return whose fetch is a no-execute fault. Another fetch fault at the
 * return address still on the stack, in the caller's window, with RSP = entry RSP + 8 (the exit
 * trap of a vmcall made at the remote's address, an unmapped return address) is the remote's
 * return too: the host finishes it (the normal root and the caller's FSBASE go in the mailbox,
 * for whatever runs next) and the fetch is then the caller's, as on the host's path after its
 * return trap. At that address with
 * another RSP it is a forged return, which the host's path sees at its return trap: the frame's
 * RIP becomes the return trap, so that it is reported the same. Anything else inside the call
 * becomes a host-path call as if enterRemote had made it: the frame is pushed, the remote
 * occupied, and the return trap replaces the return address. Only a stack the caller itself
 * could not have written there (it entered with `jmp` and a crafted RSP) is refused, as
 * enterRemote refuses it, though the remote ran: it must be reset.
 */
export function adoptFastFrame(cpu: Cpu, atOut: boolean): void {
  const mem = cpu.mem;
  const rip = mem.getU64At(FRAME_AT.rip);
  const link = liveLink(cpu, rip);
  const rsp = cpu.fast.liveRsp(); // where the entry left the return address
  if (!atOut) {
    // The call ends here (a timeout, a crash), maybe with the vCPU inside the handler: the frame
    // only says which remote was running; nothing returns to it.
    link.remote.occupy(cpu);
    cpu.stack.push("call", link, 0, rsp);
    return;
  }
  const returnAddress = stackU64(cpu, rsp);
  const space = cpu.space;
  const fetch = cpu.vcpu.ioPort === PORT.VECTOR_BASE + VECTOR.PF && (mem.getU64At(FRAME_AT.error) & PF_USER_FETCH) === PF_USER_FETCH;
  if (fetch && rip === returnAddress && Math.floor(rip / WINDOW_SIZE) === space.window) {
    if (mem.getU64At(FRAME_AT.rsp) === rsp + 8) {
      cpu.fast.clearLive();
      setMailbox(mem, MB.cr3, cpu.normalRoot);
      loadFsBase(mem, space.fsBase);
      return;
    }
    mem.setU64At(FRAME_AT.rip, space.returnTrap);
  }
  link.remote.occupy(cpu);
  cpu.stack.push("call", link, returnAddress, rsp);
  try {
    checkTrapSlot(cpu, rsp, undefined);
  } catch (e) {
    link.remote.requireReset(`a call from ${cpu.name} that entered with a stack it cannot write`);
    throw e;
  }
  setTrap(cpu, rsp, space.returnTrap);
}

/**
 * The connection of the fast path's live frame: the one whose merged root is in CR3, or, when the
 * vCPU stopped inside the handler before loading it, the one whose entry is still in the frame.
 */
function liveLink(cpu: Cpu, rip: number): RemoteLink {
  const cr3 = cpu.vcpu.cr3();
  for (const link of cpu.links.values()) if (link.mergedRoot === cr3) return link;
  const window = cpu.fast.listedWindow(rip);
  const link = window === undefined ? undefined : cpu.links.get(window);
  if (link === undefined) throw new IpreError(`${cpu.name}: the fast path's frame is live, but CR3 0x${cr3.toString(16)} is no connection's merged root and RIP 0x${rip.toString(16)} no listed entry`);
  return link;
}

/** A callback: remote code called caller code (a fetch fault: caller code is no-execute while merged). */
export function callback(cpu: Cpu, link: RemoteLink, rsp: number): void {
  const returnAddress = stackU64(cpu, rsp);
  checkTrapSlot(cpu, rsp, link.remote);
  setTrap(cpu, rsp, cpu.space.callbackTrap);
  switchTo(cpu, cpu.stack.push("callback", link, returnAddress, rsp)); // RIP stays at the target: it retries unmerged
}

/** A call ended by an exception: undo the merge so that the next resume runs unmerged. */
export function abortRemoteCall(cpu: Cpu): void {
  if (cpu.stack.depth === 0) return;
  setMailbox(cpu.mem, MB.cr3, cpu.normalRoot);
  loadFsBase(cpu.mem, cpu.space.fsBase);
  cpu.stack.drop();
}
