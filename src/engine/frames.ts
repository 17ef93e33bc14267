/**
 * The IPRE frame stack of one vCPU: entering an allowed remote function (merge: CR3 := merged
 * root), the return trap (unmerge), callbacks from remote code into caller code and their
 * return, and aborting all of it when a call ends with an error. Frames come from a preallocated
 * pool: a call or return allocates nothing. docs/ARCHITECTURE.md §3.
 */
import { GuestFault, GuestMemoryError, MachineStateError, RemoteAccessError, RemoteFault, type FaultInfo } from "../errors.ts";
import { USER_OFFSET } from "../guest/layout.ts";
import { type Core, type IpreFrame, MAX_IPRE_DEPTH, type RemoteLink } from "./core.ts";
import { FRAME_AT, MB, resumeWithCr3, setFsBase, setMailbox } from "./parked.ts";
import { VECTOR } from "../x86/descriptors.ts";

/** The u64 at a guest stack address (the stack is the caller's own memory). */
export function stackU64(core: Core, rsp: number): number {
  const off = rsp - core.base;
  if (off < USER_OFFSET || off + 8 > core.memorySize) throw new GuestMemoryError(rsp, 8, `${core.name}: guest stack pointer 0x${rsp.toString(16)} is outside its memory`);
  if (off % 8 !== 0) throw new GuestMemoryError(rsp, 8, `${core.name}: guest stack pointer 0x${rsp.toString(16)} is not 8-byte aligned`);
  return core.mem.getU64At(off >> 2);
}

/** The return address at [rsp] for messages, or 0. */
export function callerOf(core: Core, rsp: number): number {
  try {
    return stackU64(core, rsp);
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
function checkTrapSlot(core: Core, rsp: number, remote: Core | undefined): void {
  const lo = core.mem.u32[(core.tables.pteAddress(rsp) - core.base) >> 2]!;
  if ((lo & 7) === 7) return; // present, writable, user
  const info: FaultInfo = { vector: VECTOR.PF, rip: core.mem.getI64At(FRAME_AT.rip), cr2: rsp, errorCode: (lo & 1) | 2 | 4, rsp };
  throw remote !== undefined ? new RemoteFault(info, remote.name) : new GuestFault(info, core.name);
}

function pushFrame(core: Core, kind: IpreFrame["kind"], link: RemoteLink, returnAddress: number, rsp: number): IpreFrame {
  const frame = core.framePool[core.frames.length]!; // depth < MAX_IPRE_DEPTH: checked on entry
  frame.kind = kind;
  frame.link = link;
  frame.returnAddress = returnAddress;
  frame.rsp = rsp;
  core.frames.push(frame);
  return frame;
}

/**
 * Load the address space of `frame` (the innermost): the merged root of a call, or the normal
 * root for a callback or for no IPRE at all; FSBASE follows whose code runs.
 */
function switchTo(core: Core, frame: IpreFrame | undefined): void {
  const call = frame?.kind === "call";
  resumeWithCr3(core.mem, core.vcpu!, core.base, call ? frame.link.mergedRoot : core.normalRoot, call ? frame.link.remote.fsBase : core.fsBase);
}

/** Caller code jumped to `entry` in a connected remote: check it, install the return trap, merge. */
export function enterRemote(core: Core, link: RemoteLink, entry: number, rsp: number, from: RemoteLink | undefined): void {
  const remote = link.remote;
  if (from !== undefined) {
    throw new RemoteAccessError(entry, `${from.remote.name}: call to 0x${entry.toString(16)} in ${remote.name} from remote code: nested remote calls are not supported from inside a remote (call it from a callback into the caller instead)`);
  }
  if (core.frames.length >= MAX_IPRE_DEPTH) throw new RemoteAccessError(entry, `${core.name}: more than ${MAX_IPRE_DEPTH} nested IPRE calls and callbacks`);
  if (!link.allow.has(entry)) {
    const syms = [...(remote.program?.symbols.values() ?? [])].filter((s) => s.value === entry);
    const sym = (syms.find((s) => s.type === "func") ?? syms[0])?.name;
    throw new RemoteAccessError(entry, `${core.name}: 0x${entry.toString(16)}${sym ? ` (${sym})` : ""} is not an allowed entry point of ${remote.name}`);
  }
  if (remote.busyWith !== undefined && remote.busyWith !== core) throw new RemoteAccessError(entry, `${remote.name} is busy with a call from ${remote.busyWith.name}`);
  if (remote.closed) throw new MachineStateError(`${remote.name} is closed`);
  if (remote.mustReset !== undefined) throw new MachineStateError(`${remote.name} must be reset before it serves calls again (${remote.mustReset})`);
  const returnAddress = stackU64(core, rsp);
  checkTrapSlot(core, rsp, undefined);
  core.mem.setU64At((rsp - core.base) >> 2, core.returnTrap);
  remote.busyWith = core;
  switchTo(core, pushFrame(core, "call", link, returnAddress, rsp));
  core.onRemoteEntry?.(entry);
}

/**
 * The remote returned from a call, or caller code from a callback (a fetch of the return or
 * callback trap with the stack where the frame left it): restore the real return address and
 * the address space of the frame below. False when it is not that (a genuine fault).
 */
export function returnFrom(core: Core, top: IpreFrame, rsp: number): boolean {
  if (rsp !== top.rsp + 8) return false;
  core.frames.pop();
  core.mem.setU64At(FRAME_AT.rip, top.returnAddress);
  switchTo(core, core.frames[core.frames.length - 1]);
  if (top.kind === "call" && !core.inFrames(top.link.remote)) top.link.remote.busyWith = undefined;
  return true;
}

/** A callback: remote code called caller code (a fetch fault: caller code is no-execute while merged). */
export function callback(core: Core, link: RemoteLink, rsp: number): void {
  const returnAddress = stackU64(core, rsp);
  checkTrapSlot(core, rsp, link.remote);
  core.mem.setU64At((rsp - core.base) >> 2, core.callbackTrap);
  switchTo(core, pushFrame(core, "callback", link, returnAddress, rsp)); // RIP stays at the target: it retries unmerged
}

/** A call ended by an exception: undo the merge so that the next resume runs unmerged. */
export function abortRemoteCall(core: Core): void {
  if (core.frames.length === 0) return;
  setMailbox(core.mem, MB.cr3, core.normalRoot);
  setFsBase(core.mem, core.fsBase);
  for (const f of core.frames) if (f.link.remote.busyWith === core) f.link.remote.busyWith = undefined;
  core.frames.length = 0;
}
