/**
 * What a Machine runs and what it returns to: booting its Cpu, loading a program, starting a
 * Linux program, snapshots, reset, and the teardown of close(). `Lifecycle` owns the machine's
 * snapshots and its Linux process; the facade (machine.ts) delegates to it.
 * docs/ARCHITECTURE.md §2, §7.
 */
import { GuestMemoryError, MachineStateError, hex } from "../errors.ts";
import { parseElf, type ElfImage } from "../guest/elf.ts";
import { ELF_LINK_OFFSET, PAGE_SIZE, USER_OFFSET, WINDOW_SIZE } from "../guest/layout.ts";
import { PERM, type PagePerm } from "../x86/paging.ts";
import { setSpecialRegisters, writeRuntimeArea } from "../engine/boot.ts";
import { disconnectCallers } from "../engine/facade.ts";
import { abortRemoteCall } from "../engine/frames.ts";
import { requireUsable } from "../engine/calls.ts";
import type { Cpu } from "../engine/owners.ts";
import { boot, flushPageTables, recover } from "../engine/service.ts";
import { clearMailbox } from "../engine/parked.ts";
import { closeShared, refuseWhileAttached } from "../ipre/share.ts";
import { runLinux } from "../linux/loader.ts";
import { LinuxProcess, type LinuxOptions } from "../linux/syscalls.ts";
import { Snapshot } from "./snapshot.ts";

/** A new Cpu's first boot: the runtime area and tables written straight into memory (fresh memory only), special registers, boot. */
export function bootCpu(cpu: Cpu, fresh: boolean): void {
  const { space, vcpu, mem } = cpu;
  if (fresh) {
    writeRuntimeArea(mem, space.base);
    space.tables.init(mem.direct);
    space.tables.setPages(mem.direct, space.stackGuard, PAGE_SIZE, null); // a stack overflow faults
  } else clearMailbox(mem); // a fork's copy may hold its parent's pending work
  setSpecialRegisters(vcpu, mem, space.base, cpu.normalRoot);
  boot(cpu);
}

/** `M`: the facade (Machine) that user syscall handlers receive. */
export class Lifecycle<M> {
  /** The state reset() returns to (a fork's or the last snapshot), and the snapshots this machine owns. */
  #snapshot: Snapshot | undefined;
  #snapshots: Snapshot[] = [];
  /** The Linux program this machine runs (exec, or create with a Linux program). */
  #linux: LinuxProcess<M> | undefined;

  constructor(readonly cpu: Cpu, readonly machine: M) {}

  get linux(): LinuxProcess<M> | undefined {
    return this.#linux;
  }

  /** A fork: reset() returns to `snapshot`; a Linux program gets its own syscall layer in the snapshot's state. */
  forkedFrom(snapshot: Snapshot, options: LinuxOptions<M> | undefined): void {
    const space = this.cpu.space;
    space.useProgram(snapshot.program);
    this.#snapshot = snapshot;
    const state = snapshot.linux;
    if (state === undefined) return;
    const proc = new LinuxProcess<M>(space, this.cpu, this.machine, state.programEnd, { ...options, path: state.path });
    proc.restore(state);
    space.useSyscalls(proc.dispatch);
    this.#linux = proc;
  }

  /** Load a static ELF64 executable linked for this machine's window. */
  load(image: Uint8Array | ElfImage): ElfImage {
    const { cpu } = this;
    const space = cpu.space;
    const { tables } = space;
    const pt = cpu.ptq.pt;
    requireUsable(cpu);
    if (space.callers.size > 0) throw new MachineStateError(`${space.name} is connected as a remote; disconnect its callers before loading a program (their VMs cache its page tables)`);
    refuseWhileAttached(space, "load a program into");
    const elf = image instanceof Uint8Array ? parseElf(image) : image;
    for (const seg of elf.segments) {
      const end = seg.vaddr + seg.memsz;
      if (seg.vaddr < space.userStart || end > space.stackGuard) {
        const w = Math.floor(seg.vaddr / WINDOW_SIZE);
        const hint = w !== space.window ? ` (the program is linked for window ${w}; this machine is window ${space.window})` : ` (user memory is [${hex(space.userStart)}, ${hex(space.stackGuard)}) below the stack)`;
        throw new GuestMemoryError(seg.vaddr, seg.memsz, `ELF segment ${hex(seg.vaddr)}+0x${seg.memsz.toString(16)} does not fit this machine${hint}`);
      }
    }
    // Pages of a previous program go back to the default (RW, no-exec) first.
    for (const seg of space.program?.segments ?? []) tables.setPages(pt, seg.vaddr, seg.memsz, PERM.RW);
    const place = (mem: Uint8Array) => {
      for (const seg of elf.segments) {
        const off = seg.vaddr - space.base;
        mem.set(seg.data, off);
        mem.fill(0, off + seg.filesz, off + seg.memsz);
      }
    };
    space.mem.withBaseline(place); // what reset() returns to when there is no snapshot
    place(space.mem.u8);
    for (const seg of elf.segments) {
      const perm: PagePerm = seg.executable ? PERM.RX : seg.writable ? PERM.RW : PERM.R;
      if (perm !== PERM.RW) tables.setPages(pt, seg.vaddr, seg.memsz, perm);
    }
    flushPageTables(cpu);
    space.useProgram(elf);
    return elf;
  }

  /** Load and start a static Linux program (Machine.exec, create with a Linux program); a waiting one is snapshotted. */
  start(program: Uint8Array, options: LinuxOptions<M>, timeoutMs: number): LinuxProcess<M> {
    const { cpu } = this;
    const space = cpu.space;
    requireUsable(cpu);
    if (space.busyWith) throw new MachineStateError(`${space.name} is inside a remote call from ${space.busyWith.name}`);
    if (cpu.inCall) throw new MachineStateError(`${space.name} is already running a call`);
    const parsed = parseElf(program, { linux: true, base: space.base + ELF_LINK_OFFSET }); // a static-PIE goes to this window
    refuseWhileAttached(space, "load a program into");
    this.#linux?.memory.restore(undefined); // pages a previous program protected go back to their defaults
    this.#linux?.close(); // its host fds
    const elf = this.load(parsed);
    this.#linux = undefined;
    const proc = runLinux<M>(cpu, this.machine, program, elf, options, timeoutMs);
    this.#linux = proc;
    // Initialised and waiting: that is the state reset() returns to (and fork() starts from).
    if (proc.phase === "waiting") this.snapshot();
    return proc;
  }

  /** Freeze the current state into a new memfd that this machine continues on, copy-on-write. */
  snapshot(): Snapshot {
    const { cpu } = this;
    const space = cpu.space;
    requireUsable(cpu);
    if (cpu.stack.depth > 0 || space.busyWith) throw new MachineStateError(`${space.name} is inside a remote call`);
    const fd = space.mem.freeze(`snapshot-${space.name}`);
    const snap = new Snapshot(fd, space.window, space.memorySize, space.stackSize, space.program, space.name, this.#linux?.state());
    this.#snapshots.push(snap);
    this.#snapshot = snap;
    return snap;
  }

  /** Return user memory (and a Linux program's state) to the last snapshot, or to the baseline. */
  reset(): void {
    const { cpu } = this;
    const space = cpu.space;
    cpu.requireOpen();
    const busyWith = space.busyWith;
    if (cpu.inCall || (busyWith !== undefined && busyWith.inCall)) throw new MachineStateError(`cannot reset ${space.name} while ${busyWith?.name ?? space.name} is running a call into it; reset it after the call`);
    if (!this.#snapshot && space.mem.memfd < 0) throw new MachineStateError(`${space.name} has no snapshot or baseline to reset to`);
    refuseWhileAttached(space, "reset");
    abortRemoteCall(cpu);
    space.mem.discard(USER_OFFSET);
    if (this.#snapshot) space.useProgram(this.#snapshot.program);
    // A Linux program goes back to the snapshot's state of it, or is gone with the memory it ran in.
    const state = this.#snapshot?.linux;
    if (this.#linux !== undefined && state !== undefined) this.#linux.restore(state);
    else if (this.#linux !== undefined || space.syscall !== undefined) {
      this.#linux?.memory.restore(undefined); // the pages it protected go back to their defaults
      this.#linux?.close(); // its host fds
      this.#linux = undefined;
      space.useSyscalls(undefined);
      space.setCallStackTop(0);
    }
    space.clearMustReset();
    space.release();
    if (cpu.broken !== undefined) recover(cpu);
  }

  /** Release the vCPU, VM, memory and fds, and disconnect every IPRE connection. Idempotent. */
  close(): void {
    const { cpu } = this;
    const space = cpu.space;
    if (space.closed) return;
    // Not from inside a call that runs on this vCPU or uses this memory (a hostcall handler).
    const running = cpu.inCall ? cpu : [...space.callers].find((k) => k.inCall);
    if (running) throw new MachineStateError(`cannot close ${space.name} while ${running.name} is running a call${running === cpu ? "" : " (it maps this machine's memory)"}; close it after the call`);
    closeShared(space); // refused while other threads' Remotes map this memory
    // From here on nothing runs this vCPU: its own links go without a page-table service run.
    space.close();
    // Callers map this memory: unmap it from their VMs before it goes away (a caller's service
    // run that fails leaves that caller to reboot its vCPU; this machine closes all the same).
    const error = disconnectCallers(space);
    for (const link of [...cpu.links.values()]) link.disconnect();
    for (const snap of this.#snapshots) snap.close();
    this.#snapshots = [];
    this.#linux?.close(); // the host files its program has open
    cpu.release();
    space.mem.close();
    if (error !== undefined) throw error;
  }
}

