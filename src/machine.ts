/**
 * A Machine: one KVM VM with one vCPU, its guest memory (a memfd), the ring-0 runtime, page
 * tables, a loaded program, and the exit loop that implements vmcalls, hostcalls and (through
 * the links that `src/remote.ts` installs) IPRE remote calls.
 *
 * Life of a vCPU: it boots once into the runtime and from then on is always *parked* in a ring-0
 * stub right after an `out` (docs/ARCHITECTURE.md §4). A call writes an iret frame and the argument
 * registers, resumes; the guest runs in ring 3 until it faults into a stub: the exit trap (the
 * call returned), a hostcall gate, an IPRE entry or return trap, or a real exception.
 */
import { libc } from "./ffi/index.ts";
import { MADV_DONTNEED, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, MFD_CLOEXEC, NativeBuffer, PROT_READ, PROT_WRITE } from "./ffi/native.ts";
import {
  GuestCrash,
  GuestFault,
  GuestMemoryError,
  IpreError,
  KvmError,
  MachineStateError,
  OsError,
  RemoteAccessError,
  RemoteFault,
  TimeoutError,
  hex,
  VECTOR_NAMES,
  type FaultInfo,
} from "./errors.ts";
import { Watchdog } from "./watchdog.ts";
import { CAP, EXIT, EXIT_NAMES, SYNC } from "./kvm/abi.ts";
import { Kvm, kvmFlavour, type KvmFlavour } from "./kvm/system.ts";
import { Vm } from "./kvm/vm.ts";
import type { Vcpu } from "./kvm/vcpu.ts";
import { flatImage, parseElf, type ElfImage } from "./guest/elf.ts";
import {
  DEFAULT_MEMORY,
  ELF_LINK_OFFSET,
  EXIT_TRAP_OFFSET,
  FRAME,
  FRAME_SIZE,
  HOSTCALL_GATE_COUNT,
  HOSTCALL_GATE_OFFSET,
  HOSTCALL_GATE_STRIDE,
  MAILBOX_PT_WRITES,
  MAX_MEMORY,
  MAX_WINDOW,
  MiB,
  PAGE_SIZE,
  PORT,
  RETURN_TRAP_OFFSET,
  RT,
  USER_OFFSET,
  WINDOW_SIZE,
  windowBase,
} from "./guest/layout.ts";
import { runtimeBytes, runtimeSymbol, stubOffset } from "./guest/runtime.ts";
import { buildGdt, buildIdt, buildTss, GDT_LIMIT, SELECTOR, starMsr } from "./x86/descriptors.ts";
import { segmentFromGdt } from "./kvm/sregs.ts";
import { CR0, CR4, EFER, MSR, RFLAGS_RESERVED } from "./x86/registers.ts";
import { ADDR_MASK, indices, PERM, PTE, SPAN, type PagePerm, type PtMemory, WindowTables } from "./x86/paging.ts";

/** A JS function the guest can call through a hostcall gate: six integer args, integer result. */
export type HostcallFn = (
  a0: number,
  a1: number,
  a2: number,
  a3: number,
  a4: number,
  a5: number,
  machine: Machine,
) => number | bigint | void;

/** Hostcall gate reserved for `ipre_print(const char *s, unsigned long len)`. */
export const HOSTCALL_PRINT = 4095;

export type CallArg = number | bigint | boolean | Uint8Array | string;

export interface MachineOptions {
  /** Guest memory in bytes, runtime area included (default 32 MiB, max 464 MiB). Rounded up to 2 MiB. */
  memory?: number;
  /** The 1 GiB window this machine owns (VA = GPA = window * 1 GiB). Default 0. */
  window?: number;
  /** Bytes of stack at the top of memory (default 1 MiB); a guard page sits below it. */
  stackSize?: number;
  /** Hostcall handlers by gate number (0-4094). */
  hostcalls?: Record<number, HostcallFn>;
  /** Where `ipre_print` output goes (default: console.log without the trailing newline). */
  print?: (text: string) => void;
  /** A program to load right away: ELF64 bytes. */
  program?: Uint8Array;
  /** A name for messages (default "machine@window"). */
  name?: string;
  /** Default execution timeout of every call, in ms (remote calls made inside it included). */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Stop the guest and throw TimeoutError after this many ms (overrides the machine default; 0 = none). */
  timeoutMs?: number;
}

/**
 * A frozen state of a machine (memory in a memfd) to reset to, or to fork copy-on-write VMs
 * from. Owned by the machine that took it (closed with it); `close()` earlier is allowed and only
 * stops new forks: existing forks keep their copy-on-write mappings.
 */
export class Snapshot {
  #fd: number;
  constructor(
    fd: number,
    readonly window: number,
    readonly memorySize: number,
    readonly stackSize: number,
    readonly program: ElfImage | undefined,
    readonly source: string,
  ) {
    this.#fd = fd;
  }
  get fd(): number {
    if (this.#fd < 0) throw new MachineStateError(`snapshot of ${this.source} is closed`);
    return this.#fd;
  }
  get closed(): boolean {
    return this.#fd < 0;
  }
  close(): void {
    if (this.#fd >= 0) {
      libc.close(this.#fd);
      this.#fd = -1;
    }
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** What a Machine knows about a connected remote (installed by `src/remote.ts`). */
export interface RemoteLink {
  readonly remote: Machine;
  readonly window: number;
  /** Allowed entry addresses. */
  readonly allow: ReadonlySet<number>;
  /** GPA of the caller's merged root (its tables + PDPT[window] := remote's entry). */
  readonly mergedRoot: number;
  /** Undo the connection (called when either machine closes). */
  readonly disconnect: () => void;
}

/**
 * One level of IPRE on this vCPU: a call into a remote (merged root loaded), or a callback from
 * the remote into caller code (normal root loaded: the remote is unmapped while caller code runs,
 * so caller code can reach the remote only through allowed entries).
 */
interface IpreFrame {
  kind: "call" | "callback";
  /** The remote being called, or whose code made the callback. */
  link: RemoteLink;
  /** The real return address that the trap replaced. */
  returnAddress: number;
  /** RSP at entry (pointing at the replaced return address). */
  rsp: number;
}

const TWO32 = 2 ** 32;
const PF = 14;
/** #PF error code: the fault was an instruction fetch (Intel SDM Vol. 3A §4.7). */
const PF_FETCH = 0x10;
const EINTR = 4;
const DF = 8;
/** Nesting limit of IPRE calls and callbacks on one vCPU. */
const MAX_IPRE_DEPTH = 64;
/** GPA for KVM_SET_TSS_ADDR: inside window 3's trap region, never guest memory. */
const VMX_TSS_GPA = 3 * WINDOW_SIZE + WINDOW_SIZE - 0x100000;

let kvmShared: Kvm | undefined;
let kvmUsers = 0;

function acquireKvm(): Kvm {
  if (!kvmShared) kvmShared = Kvm.open();
  kvmUsers++;
  return kvmShared;
}
function releaseKvm(): void {
  if (--kvmUsers === 0 && kvmShared) {
    kvmShared.close();
    kvmShared = undefined;
  }
}

/** Facts about the KVM this process uses (for `ipre doctor`). */
export interface KvmInfo {
  api: number;
  flavour: KvmFlavour;
  capabilities: Record<string, number>;
  vcpuMmapSize: number;
  cpuidEntries: number;
}

/** What `ipre doctor` reports; `device` checks another path than /dev/kvm. */
export function kvmInfo(device?: string): KvmInfo {
  if (device !== undefined) {
    using kvm = Kvm.open(device);
    return describeKvm(kvm, device);
  }
  const kvm = acquireKvm();
  try {
    return describeKvm(kvm);
  } finally {
    releaseKvm();
  }
}

function describeKvm(kvm: Kvm, device?: string): KvmInfo {
  const capabilities: Record<string, number> = {};
  for (const name of Object.keys(CAP) as (keyof typeof CAP)[]) capabilities[name] = kvm.checkExtension(name);
  return {
    api: kvm.apiVersion(),
    flavour: kvmFlavour(device),
    capabilities,
    vcpuMmapSize: kvm.vcpuMmapSize(),
    cpuidEntries: kvm.cpuid.view.getUint32(0, true),
  };
}

export class Machine {
  readonly name: string;
  readonly window: number;
  /** Window base: VA = GPA of the first byte of memory. */
  readonly base: number;
  /** Bytes of guest memory (runtime area included). */
  readonly memorySize: number;
  readonly stackSize: number;
  readonly hostcalls: Map<number, HostcallFn>;
  print: (text: string) => void;

  /** The loaded program, if any. */
  program: ElfImage | undefined;

  #kvm: Kvm | undefined;
  #vm: Vm | undefined;
  #vcpu: Vcpu | undefined;
  #memfd = -1;
  #hostAddr = 0;
  #mem: Uint8Array = new Uint8Array(0);
  #mem32: Uint32Array = new Uint32Array(0);
  #dv: DataView = new DataView(new ArrayBuffer(0));
  #tables: WindowTables;
  #booted = false;
  #closed = false;
  /** Index (in #mem32) of the parked frame and of mailbox words. */
  readonly #frame: number;
  readonly #mbPending: number;
  /** Guest addresses of the runtime's fast continuations (see runtime.S). */
  readonly #resumeIret: number;
  readonly #resumeCr3: number;
  readonly #park: number;
  readonly #parkAlt: number;
  readonly #mbCr3: number;
  readonly #mbService: number;
  readonly #mbPtCount: number;
  readonly #mbPtWrites: number;
  readonly #mbFsbase: number;
  readonly #mbFsbaseSet: number;
  #fsBase = 0;
  /** Pending page-table writes for the next service run (after boot). */
  #ptQueue = new Map<number, bigint>();
  readonly exitTrap: number;
  readonly returnTrap: number;
  /** Return address installed for callbacks from a remote into this machine's code. */
  readonly callbackTrap: number;
  readonly gateBase: number;
  /** @internal Root loaded when no remote call is active (the plain root, or one with loans). */
  normalRoot: number;
  /** Remote links by window index. */
  readonly links: Map<number, RemoteLink> = new Map();
  /** IPRE calls and callbacks in progress, innermost last (objects from #framePool). */
  #frames: IpreFrame[] = [];
  /** Preallocated frames, one per nesting level: an IPRE call or callback allocates nothing. */
  readonly #framePool: IpreFrame[] = Array.from({ length: MAX_IPRE_DEPTH + 1 }, () => ({ kind: "call" as const, link: undefined as unknown as RemoteLink, returnAddress: 0, rsp: 0 }));
  /** @internal Set while a remote call runs *into* this machine (serialises access to a remote). */
  busyWith: Machine | undefined;
  /** Statistics: exits handled since creation. */
  exits = 0;
  /** A call is running on this vCPU (a hostcall handler may not start another). */
  #inCall = false;
  /** performance.now() at which the running call times out (0: no timeout). */
  #callDeadline = 0;
  /** Default timeout of calls in ms (0: none). */
  timeoutMs: number;
  /** Why the machine must be reset before the next call (a timeout inside a remote call). */
  #mustReset: string | undefined;
  /** Thread id whose watchdog mask is installed on this vCPU (KVM_SET_SIGNAL_MASK). */
  #signalMaskTid = -1;
  /** The state reset() returns to, and the snapshots this machine owns. */
  #snapshot: Snapshot | undefined;
  #snapshots: Snapshot[] = [];

  private constructor(options: MachineOptions) {
    const window = options.window ?? 0;
    if (!Number.isInteger(window) || window < 0 || window > MAX_WINDOW) throw new RangeError(`window must be an integer in 0..${MAX_WINDOW}`);
    const requested = options.memory ?? DEFAULT_MEMORY;
    const memory = Math.ceil(requested / (2 * MiB)) * 2 * MiB;
    if (!(memory >= 4 * MiB && memory <= MAX_MEMORY)) throw new RangeError(`memory must be between 4 MiB and ${MAX_MEMORY / MiB} MiB (got ${requested})`);
    const stackSize = Math.ceil((options.stackSize ?? 1 * MiB) / PAGE_SIZE) * PAGE_SIZE;
    if (stackSize < PAGE_SIZE || stackSize > memory - USER_OFFSET - 2 * PAGE_SIZE) throw new RangeError("stackSize does not fit in memory");
    this.window = window;
    this.base = windowBase(window);
    this.memorySize = memory;
    this.stackSize = stackSize;
    this.name = options.name ?? `machine@${window}`;
    this.hostcalls = new Map(Object.entries(options.hostcalls ?? {}).map(([k, v]) => [Number(k), v]));
    this.print = options.print ?? ((text) => console.log(text.endsWith("\n") ? text.slice(0, -1) : text));
    this.#tables = new WindowTables({
      base: this.base,
      memory,
      pml4: this.base + RT.PML4,
      pdpt: this.base + RT.PDPT,
      pd: this.base + RT.PD,
      ptBase: this.base + RT.PT_BASE,
    });
    this.#frame = (RT.IST1_TOP - FRAME_SIZE) >> 2;
    const mb = (s: Parameters<typeof runtimeSymbol>[0]) => (RT.CODE + runtimeSymbol(s)) >> 2;
    this.#mbPending = mb("mb_pending");
    this.#resumeIret = this.base + RT.CODE + runtimeSymbol("resume_iret");
    this.#resumeCr3 = this.base + RT.CODE + runtimeSymbol("resume_cr3");
    this.#park = this.base + RT.CODE + runtimeSymbol("park");
    this.#parkAlt = this.base + RT.CODE + runtimeSymbol("park_alt");
    this.#mbCr3 = mb("mb_cr3");
    this.#mbService = mb("mb_service");
    this.#mbPtCount = mb("mb_pt_count");
    this.#mbPtWrites = mb("mb_pt_writes");
    this.#mbFsbase = mb("mb_fsbase");
    this.#mbFsbaseSet = mb("mb_fsbase_set");
    this.exitTrap = this.base + EXIT_TRAP_OFFSET;
    this.returnTrap = this.base + RETURN_TRAP_OFFSET;
    this.callbackTrap = this.returnTrap + HOSTCALL_GATE_STRIDE;
    this.gateBase = this.base + HOSTCALL_GATE_OFFSET;
    this.normalRoot = this.base + RT.PML4;
    this.timeoutMs = options.timeoutMs ?? 0;
  }

  /** Create a VM, its memory and vCPU, boot the runtime, and optionally load a program. */
  static create(options: MachineOptions = {}): Machine {
    const m = new Machine(options);
    try {
      m.#setup();
      if (options.program) m.load(options.program);
    } catch (e) {
      m.close();
      throw e;
    }
    return m;
  }

  /**
   * A new VM whose memory is a copy-on-write view of `snapshot` (same window, program and page
   * tables); it boots in microseconds-to-milliseconds and resets to the snapshot.
   */
  static fork(snapshot: Snapshot, options: Pick<MachineOptions, "hostcalls" | "print" | "name" | "timeoutMs"> = {}): Machine {
    const m = new Machine({ ...options, window: snapshot.window, memory: snapshot.memorySize, stackSize: snapshot.stackSize, name: options.name ?? `fork of ${snapshot.source}` });
    try {
      m.#setup(snapshot);
      m.program = snapshot.program;
      m.#snapshot = snapshot;
    } catch (e) {
      m.close();
      throw e;
    }
    return m;
  }

  // ---- setup, one step per function ----

  #setup(from?: Snapshot): void {
    this.#kvm = acquireKvm();
    this.#checkCapabilities(this.#kvm);
    this.#vm = Vm.create(this.#kvm);
    if (from) this.#mapSnapshot(from);
    else this.#createMemory();
    this.#vm.setMemory({ slot: 0, guestPhysAddr: this.base, size: this.memorySize, hostAddr: this.#hostAddr });
    if (this.#kvm.checkExtension("SET_TSS_ADDR") > 0 && kvmFlavour() !== "pvm") this.#vm.setTssAddr(VMX_TSS_GPA);
    this.#vcpu = this.#vm.createVcpu(0);
    this.#vcpu.setCpuid(this.#kvm.cpuid);
    if (from) {
      this.#clearMailbox();
    } else {
      this.#writeRuntimeArea();
      this.#tables.init(this.#directPt);
      this.#mapStackGuard();
    }
    this.#setSpecialRegisters(this.#vcpu);
    this.#boot(this.#vcpu);
  }

  /** Guest memory as a private (copy-on-write) mapping of a snapshot's memfd. */
  #mapSnapshot(snapshot: Snapshot): void {
    const addr = libc.mmap(0, this.memorySize, PROT_READ | PROT_WRITE, MAP_PRIVATE, snapshot.fd, 0);
    if (addr === -1) throw new OsError("mmap(snapshot)", libc.errno());
    this.#adoptMemory(addr);
  }

  #adoptMemory(addr: number): void {
    this.#hostAddr = addr;
    const buf = libc.view(addr, this.memorySize);
    this.#mem = new Uint8Array(buf);
    this.#mem32 = new Uint32Array(buf);
    this.#dv = new DataView(buf);
  }

  #clearMailbox(): void {
    for (const i of [this.#mbPending, this.#mbCr3, this.#mbService, this.#mbPtCount]) this.#setU64At(i, 0);
    this.#setU64At((RT.CODE + runtimeSymbol("mb_fsbase_set")) >> 2, 0);
  }

  #checkCapabilities(kvm: Kvm): void {
    const sync = kvm.checkExtension("SYNC_REGS");
    if (!(sync & SYNC.REGS)) throw new KvmError("KVM_CAP_SYNC_REGS", 95, "this KVM cannot sync general registers through kvm_run; ipre needs it");
  }

  #createMemory(): void {
    using name = NativeBuffer.alloc(64);
    const fd = libc.memfd_create(name.writeCString(0, `ipre-${this.name}`), MFD_CLOEXEC);
    if (fd < 0) throw new OsError("memfd_create", libc.errno());
    this.#memfd = fd;
    if (libc.ftruncate(fd, this.memorySize) < 0) throw new OsError("ftruncate(memfd)", libc.errno());
    // Private: the memfd is the implicit baseline that reset() returns to without a snapshot
    // (load() writes programs into both); the guest's writes are copy-on-write pages.
    const addr = libc.mmap(0, this.memorySize, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (addr === -1) throw new OsError("mmap(guest memory)", libc.errno());
    this.#adoptMemory(addr);
  }

  /**
   * Run `write` on a shared view of the implicit baseline (the memfd under guest memory) while
   * there is one: no snapshot() yet and not a fork (those reset to their snapshot).
   */
  #withBaseline(write: (baseline: Uint8Array) => void): void {
    if (this.#snapshot !== undefined || this.#memfd < 0) return;
    const addr = libc.mmap(0, this.memorySize, PROT_READ | PROT_WRITE, MAP_SHARED, this.#memfd, 0);
    if (addr === -1) throw new OsError("mmap(baseline)", libc.errno());
    try {
      write(new Uint8Array(libc.view(addr, this.memorySize)));
    } finally {
      libc.munmap(addr, this.memorySize);
    }
  }

  /** GDT, IDT (vector → its stub on IST1; #DF on IST2), TSS and the runtime code. */
  #writeRuntimeArea(): void {
    const b = this.base;
    this.#mem.set(runtimeBytes(), RT.CODE);
    this.#mem.set(buildGdt(b + RT.TSS), RT.GDT);
    this.#mem.set(buildTss({ rsp0: b + RT.RSP0_TOP, ist: [0, b + RT.IST1_TOP, b + RT.IST2_TOP] }), RT.TSS);
    this.#mem.set(buildIdt(32, (v) => ({ offset: b + RT.CODE + stubOffset(v), ist: v === DF ? 2 : 1 })), RT.IDT);
  }

  /** Unmap the page below the stack, so that a stack overflow faults instead of corrupting data. */
  #mapStackGuard(): void {
    this.#tables.setPages(this.#directPt, this.stackGuard, PAGE_SIZE, null);
  }

  /**
   * Long mode, ring 0, paging on (Intel SDM Vol. 3A §9.8.5), the GDT/IDT/TSS above, MSR_STAR.
   * Segment registers are derived from the GDT in guest memory (written by #writeRuntimeArea).
   */
  #setSpecialRegisters(vcpu: Vcpu): void {
    const s = vcpu.getSregs();
    const gdt = this.#mem.subarray(RT.GDT, RT.GDT + GDT_LIMIT + 1);
    s.cs = segmentFromGdt(gdt, SELECTOR.KERNEL_CODE);
    s.ds = s.es = s.fs = s.gs = s.ss = segmentFromGdt(gdt, SELECTOR.KERNEL_DATA);
    // KVM wants the task register busy (type 0xB); the GDT keeps it available (0x9) as `ltr` would expect.
    s.tr = { ...segmentFromGdt(gdt, SELECTOR.TSS), type: 0xb };
    s.ldt = { ...s.ldt, unusable: 1 };
    s.gdt = { base: this.base + RT.GDT, limit: GDT_LIMIT };
    s.idt = { base: this.base + RT.IDT, limit: 32 * 16 - 1 };
    s.cr0 = BigInt((CR0.PE | CR0.MP | CR0.ET | CR0.NE | CR0.WP | CR0.PG) >>> 0); // PG is bit 31: keep it unsigned
    s.cr3 = BigInt(this.normalRoot);
    s.cr4 = BigInt(CR4.PAE | CR4.OSFXSR | CR4.OSXMMEXCPT | CR4.FSGSBASE);
    s.efer = BigInt(EFER.LME | EFER.LMA | EFER.NXE | EFER.SCE);
    vcpu.setSregs(s);
    vcpu.setMsrs([
      [MSR.STAR, starMsr()],
      [MSR.LSTAR, 0n],
      [MSR.SFMASK, 0n],
      [MSR.FS_BASE, 0n],
      [MSR.GS_BASE, 0n],
      [MSR.KERNEL_GS_BASE, 0n],
    ]);
  }

  /** Run the runtime's boot entry until it parks (first `out`). */
  #boot(vcpu: Vcpu): void {
    vcpu.loadRegs();
    for (const r of ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"] as const) vcpu.setReg(r, 0);
    vcpu.setReg("rip", this.base + RT.CODE + runtimeSymbol("boot"));
    vcpu.setReg("rsp", this.base + RT.IST1_TOP - FRAME_SIZE);
    vcpu.setReg("rflags", RFLAGS_RESERVED);
    vcpu.storeRegs();
    this.#expectPark(vcpu, PORT.BOOT, "boot");
    this.#booted = true;
  }

  /**
   * Run the parked (or booting) vCPU until the runtime exits on `port`: boot and service runs,
   * which execute only ring-0 runtime code. They have their own watchdog
   * ({@link Machine.serviceRunLimitMs}): a runtime that does not park is a GuestCrash, not a hang.
   * Inside a call (a hostcall handler that changes page tables) the call's watchdog stays armed;
   * a timeout signal that lands here is handed back to the call's loop.
   */
  #expectPark(vcpu: Vcpu, port: number, what: string): void {
    const limit = Machine.serviceRunLimitMs;
    const start = performance.now();
    // Inside a call (a hostcall handler that changes page tables), the call's timer is re-armed
    // for the rest of its deadline afterwards.
    const callDeadline = this.#inCall ? this.#callDeadline : 0;
    const watchdog = limit > 0 ? this.#armWatchdog(limit) : undefined;
    try {
      for (;;) {
        const reason = vcpu.runOnce();
        if (reason !== -EINTR) {
          if (reason !== EXIT.IO || vcpu.ioPort !== port) throw this.#crash(reason, `during ${what}`);
          return;
        }
        if (watchdog === undefined) Watchdog.drainStray();
        else if (watchdog.drain()) {
          const elapsed = performance.now() - start;
          if (elapsed >= limit * 0.999) {
            this.#broken = "a service run that did not park";
            throw new GuestCrash(`${this.name}: the runtime did not park within ${limit} ms during ${what} (rip=${hex(vcpu.reg("rip"))}); the machine reboots its vCPU on the next use`);
          }
          watchdog.arm(limit - elapsed); // early (a stale signal): keep the deadline
        }
      }
    } finally {
      if (watchdog) {
        watchdog.disarm();
        watchdog.drain();
        if (callDeadline > 0) watchdog.arm(Math.max(0.001, callDeadline - performance.now()));
      }
    }
  }

  /**
   * Upper bound in ms of a boot or service run (ring-0 runtime code only, normally a few µs;
   * 0 = none). Exceeding it means a bug in the runtime or a corrupted runtime area.
   */
  static serviceRunLimitMs = 5000;

  /** Before any KVM_RUN outside a call: a vCPU stopped mid-guest (timeout, crash) is rebooted first, so the guest cannot run. */
  #readyForService(): Vcpu {
    const vcpu = this.#requireVcpu();
    if (this.#broken !== undefined) this.#recover();
    return vcpu;
  }

  // ---- page tables: direct stores before boot, the stub's mailbox after ----

  readonly #directPt: PtMemory = {
    read64: (gpa) => this.#dv.getBigUint64(gpa - this.base, true),
    write64: (gpa, v) => this.#dv.setBigUint64(gpa - this.base, v, true),
    write64Parts: (gpa, lo, hi) => {
      const i = (gpa - this.base) >> 2;
      this.#mem32[i] = lo;
      this.#mem32[i + 1] = hi;
    },
  };

  /** Page-table memory that queues writes for the stub (docs/ARCHITECTURE.md §4): use for live tables. */
  readonly pt: PtMemory = {
    read64: (gpa) => this.#ptQueue.get(gpa) ?? this.#directPt.read64(gpa),
    write64: (gpa, v) => {
      if (!this.#booted) this.#directPt.write64(gpa, v);
      else this.#ptQueue.set(gpa, v);
    },
  };

  /**
   * Let the ring-0 stub apply the queued page-table writes and then reload CR3 with `root`
   * (which flushes the TLB), in service runs of up to MAILBOX_PT_WRITES writes.
   */
  flushPageTables(root = this.normalRoot): void {
    const vcpu = this.#readyForService();
    const entries = [...this.#ptQueue];
    this.#ptQueue.clear();
    let i = 0;
    do {
      const n = Math.min(MAILBOX_PT_WRITES, entries.length - i);
      for (let j = 0; j < n; j++) {
        const [gpa, v] = entries[i + j]!;
        const w = this.#mbPtWrites + j * 4;
        this.#setU64At(w, gpa);
        this.#mem32[w + 2] = Number(v & 0xffffffffn);
        this.#mem32[w + 3] = Number(v >> 32n);
      }
      this.#mem32[this.#mbPtCount] = n;
      this.#mem32[this.#mbPtCount + 1] = 0;
      i += n;
      if (i >= entries.length) this.#mailbox(this.#mbCr3, root);
      this.#mailbox(this.#mbService, 1);
      this.#expectPark(vcpu, PORT.SERVICE, "page-table service run");
    } while (i < entries.length);
  }

  /** Change user page permissions (null unmaps), applied through the stub. */
  protect(address: number, length: number, perm: PagePerm | null): void {
    this.#tables.setPages(this.pt, address, length, perm);
    this.flushPageTables();
  }

  get tables(): WindowTables {
    return this.#tables;
  }

  // ---- memory ----

  /** Host address of guest memory (for memslots of callers that connect to this machine). */
  get hostAddress(): number {
    return this.#hostAddr;
  }
  get memfd(): number {
    return this.#memfd;
  }
  /** First user address and the end of memory. */
  get userStart(): number {
    return this.base + USER_OFFSET;
  }
  get memoryEnd(): number {
    return this.base + this.memorySize;
  }
  get stackTop(): number {
    return this.memoryEnd;
  }
  get stackGuard(): number {
    return this.memoryEnd - this.stackSize - PAGE_SIZE;
  }

  #offset(address: number, length: number, userOnly: boolean): number {
    if (this.#closed) throw new MachineStateError(`${this.name} is closed`);
    const lo = userOnly ? this.userStart : this.base;
    if (!(Number.isFinite(address) && length >= 0 && address >= lo && address + length <= this.memoryEnd)) {
      throw new GuestMemoryError(address, length, `${this.name}: range ${hex(address)}+${length} is outside ${userOnly ? "user memory" : "guest memory"} [${hex(lo)}, ${hex(this.memoryEnd)})`);
    }
    return address - this.base;
  }

  /**
   * A zero-copy view of guest user memory [address, address+length); throws GuestMemoryError when
   * out of range. Inside one of this machine's hostcall handlers, the address is a guest pointer:
   * it is resolved with the rights of the code that made the hostcall (see {@link guestRead}), and
   * may designate a connected remote's memory where that code may read it.
   */
  bytes(address: number, length: number): Uint8Array {
    const runner = this.#hostcallRunner;
    if (runner !== undefined) return runner.#guestRange(address, length, false);
    const off = this.#offset(address, length, true);
    return this.#mem.subarray(off, off + length);
  }
  read(address: number, length: number): Uint8Array {
    return this.bytes(address, length).slice();
  }
  /** Copy into guest memory; inside a hostcall handler the pages must be writable by the code that made it. */
  write(address: number, data: Uint8Array | string): void {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    this.#writable(address, bytes.length).set(bytes);
  }
  readU64(address: number): bigint {
    if (this.#hostcallRunner !== undefined) return new DataView(this.guestRead(address, 8).buffer).getBigUint64(0, true);
    return this.#dv.getBigUint64(this.#offset(address, 8, true), true);
  }
  writeU64(address: number, value: bigint | number): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(value)), true);
    this.#writable(address, 8).set(b);
  }
  readI64(address: number): number {
    return Number(BigInt.asIntN(64, this.readU64(address)));
  }
  /** A NUL-terminated string (at most maxLength bytes). */
  readCString(address: number, maxLength = 4096): string {
    if (this.#hostcallRunner !== undefined) return this.guestCString(address, maxLength);
    const off = this.#offset(address, 1, true);
    const end = Math.min(this.#mem.length, off + maxLength);
    let i = off;
    while (i < end && this.#mem[i] !== 0) i++;
    return new TextDecoder().decode(this.#mem.subarray(off, i));
  }
  #writable(address: number, length: number): Uint8Array {
    const runner = this.#hostcallRunner;
    if (runner !== undefined) return runner.#guestRange(address, length, true);
    const off = this.#offset(address, length, true);
    return this.#mem.subarray(off, off + length);
  }
  /** Guest memory of the whole window, runtime area included (host-side tooling and tests). */
  rawMemory(): Uint8Array {
    return this.#mem;
  }

  #getU64At(i: number): number {
    return this.#mem32[i]! + this.#mem32[i + 1]! * TWO32;
  }
  #getI64At(i: number): number {
    return this.#mem32[i]! + (this.#mem32[i + 1]! | 0) * TWO32;
  }
  #setU64At(i: number, v: number): void {
    const hi = Math.floor(v / TWO32);
    this.#mem32[i] = v - hi * TWO32;
    this.#mem32[i + 1] = hi;
  }

  // ---- programs ----

  /** Load a static ELF64 executable linked for this machine's window. */
  load(image: Uint8Array | ElfImage): ElfImage {
    this.#requireUsable();
    if (this.callers.size > 0) throw new MachineStateError(`${this.name} is connected as a remote; disconnect its callers before loading a program (their VMs cache its page tables)`);
    const elf = image instanceof Uint8Array ? parseElf(image) : image;
    for (const seg of elf.segments) {
      const end = seg.vaddr + seg.memsz;
      if (seg.vaddr < this.userStart || end > this.stackGuard) {
        const w = Math.floor(seg.vaddr / WINDOW_SIZE);
        const hint = w !== this.window ? ` (the program is linked for window ${w}; this machine is window ${this.window})` : ` (user memory is [0x${this.userStart.toString(16)}, 0x${this.stackGuard.toString(16)}) below the stack)`;
        throw new GuestMemoryError(seg.vaddr, seg.memsz, `ELF segment 0x${seg.vaddr.toString(16)}+0x${seg.memsz.toString(16)} does not fit this machine${hint}`);
      }
    }
    // Pages of a previous program go back to the default (RW, no-exec) first.
    for (const seg of this.program?.segments ?? []) this.#tables.setPages(this.pt, seg.vaddr, seg.memsz, PERM.RW);
    const place = (mem: Uint8Array) => {
      for (const seg of elf.segments) {
        const off = seg.vaddr - this.base;
        mem.set(seg.data, off);
        mem.fill(0, off + seg.filesz, off + seg.memsz);
      }
    };
    this.#withBaseline(place); // what reset() returns to when there is no snapshot
    place(this.#mem);
    for (const seg of elf.segments) {
      const perm: PagePerm = seg.executable ? PERM.RX : seg.writable ? PERM.RW : PERM.R;
      if (perm !== PERM.RW) this.#tables.setPages(this.pt, seg.vaddr, seg.memsz, perm);
    }
    this.flushPageTables();
    this.program = elf;
    return elf;
  }

  /**
   * Load a flat binary (raw code, no headers) at `address` (default: where ELFs link, window
   * base + 4 MiB), executable and read-only unless `writable`; `symbols` name offsets in it.
   */
  loadFlat(bytes: Uint8Array, options: { address?: number; writable?: boolean; symbols?: Record<string, number>; exports?: string[] } = {}): ElfImage {
    return this.load(flatImage(bytes, options.address ?? this.base + ELF_LINK_OFFSET, options));
  }

  /** Address of a symbol of the loaded program. */
  symbol(name: string): number {
    const s = this.program?.symbols.get(name);
    if (!s) throw new IpreError(this.program ? `${this.name}: no symbol "${name}" in the loaded program` : `${this.name}: no program loaded`);
    return s.value;
  }

  // ---- calls ----

  /**
   * vmcall: run `fn(args…)` in ring 3 until it returns; the result (RAX) as a signed number.
   * Integer args go in registers; Uint8Array and string args are copied to the guest stack and
   * passed as pointers (strings NUL-terminated).
   */
  call(fn: string | number, ...args: CallArg[]): number {
    this.#prepareCall(fn, args);
    this.#runCall(this.timeoutMs);
    return this.#vcpu!.regSigned("rax");
  }

  /** Like call(), with the full 64-bit result as a bigint. */
  callBigInt(fn: string | number, ...args: CallArg[]): bigint {
    this.#prepareCall(fn, args);
    this.#runCall(this.timeoutMs);
    return BigInt.asIntN(64, this.#vcpu!.regBigInt("rax"));
  }

  /** call() with options, e.g. `invoke("spin", [], { timeoutMs: 50 })`. */
  invoke(fn: string | number, args: CallArg[] = [], options: CallOptions = {}): number {
    this.#prepareCall(fn, args);
    this.#runCall(options.timeoutMs ?? this.timeoutMs);
    return this.#vcpu!.regSigned("rax");
  }
  /** invoke() with the full 64-bit result as a bigint. */
  invokeBigInt(fn: string | number, args: CallArg[] = [], options: CallOptions = {}): bigint {
    this.#prepareCall(fn, args);
    this.#runCall(options.timeoutMs ?? this.timeoutMs);
    return BigInt.asIntN(64, this.#vcpu!.regBigInt("rax"));
  }

  static readonly #ARG_REGS = ["rdi", "rsi", "rdx", "rcx", "r8", "r9"] as const;

  #prepareCall(fn: string | number, args: CallArg[]): void {
    this.#requireUsable();
    if (this.busyWith) throw new MachineStateError(`${this.name} is inside a remote call from ${this.busyWith.name}`);
    if (this.#inCall) throw new MachineStateError(`${this.name} is already running a call (call() from inside one of its hostcalls is not supported)`);
    if (args.length > 6) throw new RangeError("at most 6 arguments");
    const target = typeof fn === "number" ? fn : this.symbol(fn);
    if (!Number.isSafeInteger(target)) throw new RangeError(`call target must be an integer address (got ${target})`);
    const vcpu = this.#vcpu!;
    let sp = this.stackTop;
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!;
      const reg = Machine.#ARG_REGS[i]!;
      if (typeof a === "number") vcpu.setReg(reg, a);
      else if (typeof a === "bigint") vcpu.setRegBigInt(reg, a);
      else if (typeof a === "boolean") vcpu.setReg(reg, a ? 1 : 0);
      else {
        const bytes = typeof a === "string" ? new TextEncoder().encode(a + "\0") : a;
        sp = Math.floor((sp - bytes.length) / 16) * 16;
        if (sp < this.memoryEnd - this.stackSize / 2) throw new RangeError("arguments take more than half of the stack");
        this.#mem.set(bytes, sp - this.base);
        vcpu.setReg(reg, sp);
      }
    }
    // Return address = the exit trap; RSP ≡ 8 (mod 16) at function entry (SysV ABI).
    sp -= 8;
    this.#setU64At((sp - this.base) >> 2, this.exitTrap);
    this.#writeFrame(target, sp);
    this.#resumeFast();
  }

  /**
   * The vCPU is parked after a stub's `out`: continue straight at `iretq` when the mailbox is
   * empty (fewer ring-0 instructions per exit), else through `resume`, which applies it.
   */
  #resumeFast(): void {
    if (this.#mem32[this.#mbPending] !== 0) return;
    this.#vcpu!.setReg("rsp", this.base + RT.IST1_TOP - FRAME_SIZE + FRAME.rip);
    this.#vcpu!.setReg("rip", this.#resumeIret);
  }

  /**
   * Continue with a CR3 load and the FSBASE of the code that runs next (IPRE merge/unmerge)
   * through the short resume_cr3 path when possible: a value a guest wrote with `wrfsbase` never
   * survives a switch into the other side's code.
   */
  #resumeWithCr3(root: number, fsBase: number): void {
    if (this.#mem32[this.#mbPending] !== 0) {
      this.#mailbox(this.#mbCr3, root); // other mailbox work is queued: the general path does all
      this.#loadFsBase(fsBase);
      return;
    }
    this.#setU64At(this.#mbFsbase, fsBase); // resume_cr3 loads it (mb_fsbase_set stays 0)
    const vcpu = this.#vcpu!;
    vcpu.setReg("r11", root); // scratch at function entry and return (SysV ABI)
    vcpu.setReg("rsp", this.base + RT.IST1_TOP - FRAME_SIZE + FRAME.rip);
    vcpu.setReg("rip", this.#resumeCr3);
  }

  /** Resume the parked vCPU into ring 3 at rip with rsp (iret frame on IST1). */
  #writeFrame(rip: number, rsp: number): void {
    const f = this.#frame;
    this.#setU64At(f + (FRAME.error >> 2), 0);
    this.#setU64At(f + (FRAME.rip >> 2), rip);
    this.#setU64At(f + (FRAME.cs >> 2), SELECTOR.USER_CODE);
    this.#setU64At(f + (FRAME.rflags >> 2), RFLAGS_RESERVED);
    this.#setU64At(f + (FRAME.rsp >> 2), rsp);
    this.#setU64At(f + (FRAME.ss >> 2), SELECTOR.USER_DATA);
  }

  /** The exit loop: one KVM_RUN per exit, no allocation on the hostcall/IPRE paths. */
  #runCall(timeoutMs: number): void {
    const vcpu = this.#vcpu!;
    const mem32 = this.#mem32;
    const f = this.#frame;
    const ripIdx = f + (FRAME.rip >> 2);
    const rspIdx = f + (FRAME.rsp >> 2);
    const errIdx = f + (FRAME.error >> 2);
    // Read the clock before arming: a pause in between must not make the real signal look early.
    const start = timeoutMs > 0 ? performance.now() : 0;
    const watchdog = timeoutMs > 0 ? this.#armWatchdog(timeoutMs) : undefined;
    this.#callDeadline = timeoutMs > 0 ? start + timeoutMs : 0;
    this.#inCall = true;
    try {
      for (;;) {
        const reason = vcpu.runOnce();
        if (reason !== EXIT.IO) {
          if (reason === -EINTR) {
            if (watchdog === undefined) Watchdog.drainStray();
            else if (watchdog.drain()) {
              const elapsed = performance.now() - start;
              if (elapsed >= timeoutMs * 0.999) throw this.#timedOut(timeoutMs, elapsed);
              watchdog.arm(timeoutMs - elapsed); // early (a stale signal): keep the deadline
            }
            continue; // another signal interrupted KVM_RUN: resume
          }
          throw this.#crash(reason, "while running a call");
        }
        this.exits++;
        const vector = vcpu.ioPort - PORT.VECTOR_BASE;
        // An instruction fetch (#PF error code bit 4) from a trap address is a request, not an
        // error; its RIP lies in a never-mapped page, so CR2 = RIP (the stub need not save CR2).
        if (vector === PF && (mem32[errIdx]! & PF_FETCH) !== 0) {
          const rip = mem32[ripIdx]! + mem32[ripIdx + 1]! * TWO32;
          if (rip === this.exitTrap && this.#frames.length === 0) return;
          const rsp = mem32[rspIdx]! + mem32[rspIdx + 1]! * TWO32;
          if (this.#fetchFault(rip, rsp, ripIdx, rspIdx)) continue;
        }
        if (vector < 0 || vector > 31) throw this.#crash(reason, `unexpected exit on port 0x${vcpu.ioPort.toString(16)}`);
        throw this.#fault(vector);
      }
    } catch (e) {
      this.#abortRemoteCall();
      throw e;
    } finally {
      this.#inCall = false;
      if (watchdog) {
        watchdog.disarm();
        watchdog.drain(); // the timer may have fired after the last exit
      }
    }
  }

  #armWatchdog(timeoutMs: number): Watchdog {
    const w = Watchdog.forThisThread();
    if (this.#signalMaskTid !== w.tid) {
      this.#vcpu!.setSignalMask(w.kvmMask);
      this.#signalMaskTid = w.tid;
    }
    w.arm(timeoutMs);
    return w;
  }

  /** The vCPU was stopped mid-guest: it must reboot; inside a remote call both machines need a reset. */
  #timedOut(timeoutMs: number, elapsedMs: number): TimeoutError {
    this.#broken = "timeout";
    if (this.#frames.length > 0) {
      const remotes = [...new Set(this.#frames.map((f) => f.link.remote))];
      const names = remotes.map((r) => r.name).join(", ");
      const why = `a timeout inside a remote call from ${this.name} into ${names}`;
      this.#mustReset = why;
      for (const r of remotes) r.#mustReset = why;
      return new TimeoutError(timeoutMs, elapsedMs, `remote call from ${this.name} into ${names}`);
    }
    return new TimeoutError(timeoutMs, elapsedMs, this.name);
  }

  /** Handle a fetch fault at a trap address; false when it is a genuine fault. */
  #fetchFault(cr2: number, rsp: number, ripIdx: number, rspIdx: number): boolean {
    const window = Math.floor(cr2 / WINDOW_SIZE);
    const offset = cr2 - window * WINDOW_SIZE;
    // Hostcall gate of this machine or of the remote whose code is running.
    const top = this.#frames[this.#frames.length - 1];
    const inRemote = top?.kind === "call"; // remote code is running, its window mapped
    if (offset >= HOSTCALL_GATE_OFFSET && offset < HOSTCALL_GATE_OFFSET + HOSTCALL_GATE_COUNT * HOSTCALL_GATE_STRIDE) {
      const owner = window === this.window ? this : inRemote && top.link.window === window ? top.link.remote : undefined;
      if (!owner || (offset - HOSTCALL_GATE_OFFSET) % HOSTCALL_GATE_STRIDE !== 0) return false;
      this.#hostcall(owner, (offset - HOSTCALL_GATE_OFFSET) / HOSTCALL_GATE_STRIDE, rsp, ripIdx, rspIdx);
      return true;
    }
    // The remote returned from a call, or caller code returned from a callback.
    if ((cr2 === this.returnTrap && inRemote) || (cr2 === this.callbackTrap && top?.kind === "callback")) {
      if (rsp !== top.rsp + 8) return false;
      this.#frames.pop();
      this.#setU64At(ripIdx, top.returnAddress);
      this.#switchTo(this.#frames[this.#frames.length - 1]);
      if (top.kind === "call" && !this.#inFrames(top.link.remote)) top.link.remote.busyWith = undefined;
      return true;
    }
    // Remote code jumped into caller code (a function pointer): run it unmerged.
    if (inRemote && window === this.window && cr2 >= this.userStart && cr2 < this.memoryEnd) {
      this.#callback(top.link, rsp);
      return true;
    }
    // A fetch fault in the running remote's own window is its own fault (e.g. no-execute data),
    // not an entry.
    if (inRemote && window === top.link.window) return false;
    const link = this.links.get(window);
    if (link !== undefined && cr2 >= link.remote.base && cr2 < link.remote.memoryEnd) {
      this.#enterRemote(link, cr2, rsp, inRemote ? top.link : undefined);
      return true;
    }
    return false;
  }

  /**
   * Load the address space of the now innermost frame: the merged root of a call, or the normal
   * root for a callback or for no IPRE at all; FSBASE follows whose code runs.
   */
  #switchTo(frame: IpreFrame | undefined): void {
    const to = frame?.kind === "call" ? frame.link.remote : this;
    this.#resumeWithCr3(frame?.kind === "call" ? frame.link.mergedRoot : this.normalRoot, to.#fsBase);
  }

  #pushFrame(kind: IpreFrame["kind"], link: RemoteLink, returnAddress: number, rsp: number): IpreFrame {
    const frame = this.#framePool[this.#frames.length]!; // depth < MAX_IPRE_DEPTH: checked on entry
    frame.kind = kind;
    frame.link = link;
    frame.returnAddress = returnAddress;
    frame.rsp = rsp;
    this.#frames.push(frame);
    return frame;
  }
  /** Whether a call into `remote` is still on the frame stack (a loop: no closure on the return path). */
  #inFrames(remote: Machine): boolean {
    for (let i = 0; i < this.#frames.length; i++) if (this.#frames[i]!.link.remote === remote) return true;
    return false;
  }

  /** A callback: remote code called caller code (a fetch fault: caller code is no-execute while merged). */
  #callback(link: RemoteLink, rsp: number): void {
    const returnAddress = this.#stackU64(rsp);
    this.#checkTrapSlot(rsp, link.remote);
    this.#setU64At((rsp - this.base) >> 2, this.callbackTrap);
    const frame = this.#pushFrame("callback", link, returnAddress, rsp);
    this.#switchTo(frame); // RIP stays at the target: it retries unmerged
  }

  #hostcall(owner: Machine, gate: number, rsp: number, ripIdx: number, rspIdx: number): void {
    const vcpu = this.#vcpu!;
    const fn = owner.hostcalls.get(gate);
    let result: number | bigint | void;
    if (fn !== undefined) {
      owner.#hostcallRunner = this; // guest pointers resolve with the rights of the code that made it
      try {
        result = fn(vcpu.regSigned("rdi"), vcpu.regSigned("rsi"), vcpu.regSigned("rdx"), vcpu.regSigned("rcx"), vcpu.regSigned("r8"), vcpu.regSigned("r9"), owner);
      } finally {
        owner.#hostcallRunner = undefined;
      }
    } else if (gate === HOSTCALL_PRINT) {
      owner.print(new TextDecoder().decode(this.#guestRange(vcpu.reg("rdi"), vcpu.reg("rsi"), false)));
      result = vcpu.reg("rsi");
    } else {
      throw new IpreError(`${owner.name}: hostcall ${gate} called at 0x${this.#callerOf(rsp).toString(16)} has no handler`);
    }
    if (typeof result === "bigint") vcpu.setRegBigInt("rax", result);
    else vcpu.setReg("rax", result ?? 0);
    // Emulate `ret`: pop the return address the guest's call pushed.
    this.#setU64At(ripIdx, this.#stackU64(rsp));
    this.#setU64At(rspIdx, rsp + 8);
    this.#resumeFast();
  }

  /** Read the u64 at a guest stack address (the stack is this machine's memory). */
  #stackU64(rsp: number): number {
    const off = rsp - this.base;
    if (off < USER_OFFSET || off + 8 > this.memorySize) throw new GuestMemoryError(rsp, 8, `${this.name}: guest stack pointer 0x${rsp.toString(16)} is outside its memory`);
    if (off % 8 !== 0) throw new GuestMemoryError(rsp, 8, `${this.name}: guest stack pointer 0x${rsp.toString(16)} is not 8-byte aligned`);
    return this.#getU64At(off >> 2);
  }

  /**
   * The VMM replaces the return address at [rsp] with a trap: only where the guest code itself
   * could write (a user-writable page; checked on the leaf entry, the upper levels of a window's
   * own tables are always user-writable), else this is the #PF a `push` there would have raised,
   * blamed on `remote` when remote code set up that stack.
   */
  #checkTrapSlot(rsp: number, remote: Machine | undefined): void {
    const pte = this.#tables.pteAddress(rsp) - this.base;
    const lo = this.#mem32[pte >> 2]!;
    if ((lo & 7) === 7) return; // present, writable, user
    const info: FaultInfo = { vector: PF, rip: this.#getI64At(this.#frame + (FRAME.rip >> 2)), cr2: rsp, errorCode: (lo & 1) | 2 | 4, rsp };
    throw remote !== undefined ? new RemoteFault(info, remote.name) : new GuestFault(info, this.name);
  }
  #callerOf(rsp: number): number {
    try {
      return this.#stackU64(rsp);
    } catch {
      return 0;
    }
  }

  // ---- guest pointers, checked like the guest's own accesses (docs/ARCHITECTURE.md §6) ----

  /** Set on the machine whose hostcall handler runs: the machine whose vCPU made the hostcall. */
  #hostcallRunner: Machine | undefined;

  /** The root the vCPU runs on now: the merged root inside a remote call, else the normal root. */
  #activeRoot(): number {
    const top = this.#frames[this.#frames.length - 1];
    return top?.kind === "call" ? top.link.mergedRoot : this.normalRoot;
  }

  /** Whose code runs now on this vCPU, for messages. */
  #runningCode(): string {
    const top = this.#frames[this.#frames.length - 1];
    return top?.kind === "call" ? `code of ${top.link.remote.name} (inside a remote call from ${this.name})` : `code of ${this.name}`;
  }

  /** The machine whose memory holds guest-physical `gpa` in this VM: this one or a connected remote. */
  #physOwner(gpa: number): Machine | undefined {
    const w = Math.floor(gpa / WINDOW_SIZE);
    const m = w === this.window ? this : this.links.get(w)?.remote;
    return m !== undefined && !m.#closed && gpa >= m.base && gpa + 8 <= m.memoryEnd ? m : undefined;
  }

  /**
   * Walk the active page tables for user address `va` as the CPU would for ring-3 code (Intel SDM
   * Vol. 3A §4.5, §4.6): present and user at every level, and writable at every level for a
   * write. The host address (owner and offset) of the page, or why not.
   */
  #translate(va: number, write: boolean): { owner: Machine; offset: number } | string {
    let table = this.#activeRoot();
    const idx = indices(va);
    const levels = [idx.pml4, idx.pdpt, idx.pd, idx.pt];
    for (let level = 0; level < 4; level++) {
      const owner = this.#physOwner(table);
      if (owner === undefined) return "page tables outside the VM's memory";
      const e = owner.#dv.getBigUint64(table - owner.base + levels[level]! * 8, true);
      if (!(e & PTE.P)) return "not mapped";
      if (!(e & PTE.US)) return "supervisor-only";
      if (write && !(e & PTE.RW)) return "read-only";
      const addr = Number(e & ADDR_MASK);
      let page: number | undefined;
      if (level === 3) page = addr;
      else if (level === 2 && e & PTE.PS) page = addr - (addr % SPAN.PD) + (va % SPAN.PD) - (va % PAGE_SIZE);
      else if (level === 1 && e & PTE.PS) return "a 1 GiB page (never used by ipre)";
      if (page !== undefined) {
        const m = this.#physOwner(page);
        if (m === undefined) return "outside the VM's memory";
        return { owner: m, offset: page - m.base + (va % PAGE_SIZE) };
      }
      table = addr;
    }
    return "not mapped";
  }

  /** A view of [address, address+length) as the running code may access it; GuestMemoryError otherwise. */
  #guestRange(address: number, length: number, write: boolean): Uint8Array {
    const what = write ? "writable" : "readable";
    if (!(Number.isSafeInteger(address) && Number.isSafeInteger(length) && address >= 0 && length >= 0 && address + length <= 2 ** 47)) {
      throw new GuestMemoryError(address, length, `${this.name}: guest range ${hex(address)}+${length} is not a user address range`);
    }
    if (length === 0) return new Uint8Array(0);
    let first: { owner: Machine; offset: number } | undefined;
    for (let va = address; va < address + length; va = va - (va % PAGE_SIZE) + PAGE_SIZE) {
      const t = this.#translate(va, write);
      if (typeof t === "string" || (first !== undefined && (t.owner !== first.owner || t.offset !== first.offset + (va - address)))) {
        let why = typeof t === "string" ? t : "not contiguous";
        const link = this.links.get(Math.floor(va / WINDOW_SIZE));
        if (link !== undefined && why === "not mapped") why += ` (the memory of ${link.remote.name}: its code may use it only inside a call, its callers only when it is loaned)`;
        throw new GuestMemoryError(address, length, `${this.name}: guest range ${hex(address)}+${length} is not ${what} by ${this.#runningCode()}: ${hex(va)} is ${why}`);
      }
      first ??= t;
    }
    return first!.owner.#mem.subarray(first!.offset, first!.offset + length);
  }

  /**
   * For hostcall handlers: a copy of the bytes a guest pointer designates, read with the rights of
   * the guest code that made the hostcall (the page tables it runs on: its own window; a remote's
   * only while that remote's code runs inside a call; a loaned window read-only). Outside a
   * hostcall: with the rights of this machine's code outside calls. GuestMemoryError otherwise.
   * (`bytes()`/`read()` are the host's own unchecked access to this machine's user memory.)
   */
  guestRead(address: number, length: number): Uint8Array {
    return (this.#hostcallRunner ?? this).#guestRange(address, length, false).slice();
  }
  /** Like {@link guestRead}, for writing: the pages must be writable by that code. */
  guestWrite(address: number, data: Uint8Array | string): void {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    (this.#hostcallRunner ?? this).#guestRange(address, bytes.length, true).set(bytes);
  }
  /** Like {@link guestRead}, for a NUL-terminated string of at most maxLength bytes. */
  guestCString(address: number, maxLength = 4096): string {
    const runner = this.#hostcallRunner ?? this;
    const parts: Uint8Array[] = [];
    let n = 0;
    for (let va = address; n < maxLength; ) {
      const chunk = runner.#guestRange(va, Math.min(maxLength - n, PAGE_SIZE - (va % PAGE_SIZE)), false);
      const nul = chunk.indexOf(0);
      parts.push(chunk.subarray(0, nul < 0 ? chunk.length : nul));
      if (nul >= 0) break;
      n += chunk.length;
      va += chunk.length;
    }
    const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) (out.set(p, o), (o += p.length));
    return new TextDecoder().decode(out);
  }

  // ---- IPRE (the links are built by src/remote.ts) ----

  #enterRemote(link: RemoteLink, entry: number, rsp: number, from: RemoteLink | undefined): void {
    if (from !== undefined) {
      throw new RemoteAccessError(entry, `${from.remote.name}: call to 0x${entry.toString(16)} in ${link.remote.name} from remote code: nested remote calls are not supported from inside a remote (call it from a callback into the caller instead)`);
    }
    if (this.#frames.length >= MAX_IPRE_DEPTH) throw new RemoteAccessError(entry, `${this.name}: more than ${MAX_IPRE_DEPTH} nested IPRE calls and callbacks`);
    if (!link.allow.has(entry)) {
      const syms = [...(link.remote.program?.symbols.values() ?? [])].filter((s) => s.value === entry);
      const sym = (syms.find((s) => s.type === "func") ?? syms[0])?.name;
      throw new RemoteAccessError(entry, `${this.name}: 0x${entry.toString(16)}${sym ? ` (${sym})` : ""} is not an allowed entry point of ${link.remote.name}`);
    }
    if (link.remote.busyWith !== undefined && link.remote.busyWith !== this) throw new RemoteAccessError(entry, `${link.remote.name} is busy with a call from ${link.remote.busyWith.name}`);
    if (link.remote.#closed) throw new MachineStateError(`${link.remote.name} is closed`);
    if (link.remote.#mustReset !== undefined) throw new MachineStateError(`${link.remote.name} must be reset before it serves calls again (${link.remote.#mustReset})`);
    const returnAddress = this.#stackU64(rsp);
    this.#checkTrapSlot(rsp, undefined);
    this.#setU64At((rsp - this.base) >> 2, this.returnTrap);
    link.remote.busyWith = this;
    const frame = this.#pushFrame("call", link, returnAddress, rsp);
    this.#switchTo(frame);
    this.onRemoteEntry?.(entry);
  }

  /** Called on every IPRE entry (after the checks, before the remote runs); for tracing and benchmarks. */
  onRemoteEntry: ((entry: number) => void) | undefined;

  /**
   * One KVM_RUN that runs a single ring-0 `out` (or, when the mailbox has work, applies it
   * first): the raw exit round-trip floor of this machine, for benchmarks.
   */
  serviceRun(): void {
    const vcpu = this.#readyForService();
    if (this.#mem32[this.#mbPending] === 0) {
      // Never resume at the `out` that just exited: hardware KVM would skip it (runtime.S, park).
      vcpu.setReg("rip", vcpu.reg("rip") === this.#park ? this.#parkAlt : this.#park);
    } else this.#mailbox(this.#mbService, 1); // apply what is queued on the way
    this.#expectPark(vcpu, PORT.SERVICE, "service run");
  }

  /** FSBASE (the thread pointer of guest TLS), loaded by the stub at the next resume. */
  get fsBase(): number {
    return this.#fsBase;
  }
  set fsBase(value: number) {
    this.#fsBase = value;
    this.#loadFsBase(value);
  }
  #loadFsBase(value: number): void {
    this.#setU64At(this.#mbFsbase, value);
    this.#mailbox(this.#mbFsbaseSet, 1);
  }

  /** Set a mailbox field for the stub's next resume (and the flag its fast path checks). */
  #mailbox(index: number, value: number): void {
    this.#setU64At(index, value);
    this.#setU64At(this.#mbPending, 1);
  }

  /** A call ended by an exception: undo the merge so that the next resume runs unmerged. */
  #abortRemoteCall(): void {
    if (this.#frames.length === 0) return;
    this.#mailbox(this.#mbCr3, this.normalRoot);
    this.#loadFsBase(this.#fsBase);
    for (const f of this.#frames) if (f.link.remote.busyWith === this) f.link.remote.busyWith = undefined;
    this.#frames.length = 0;
  }

  /** Whether an IPRE call is in progress (e.g. from inside a hostcall). */
  get inRemoteCall(): boolean {
    return this.#frames.length > 0;
  }

  /** @internal Used by src/remote.ts: map (size > 0) or unmap (size 0) a remote's memory in this VM. */
  setMemslot(slot: number, gpa: number, size: number, hostAddr: number): void {
    this.#requireVm().setMemory({ slot, guestPhysAddr: gpa, size, hostAddr });
  }

  #roots: boolean[] = new Array<boolean>(RT.ROOT_POOL_ROOTS).fill(false);
  /** @internal Free (PML4, PDPT, PD) pages of the runtime area for an extra root. */
  allocRoot(): { pml4: number; pdpt: number; pd: number; index: number } {
    const index = this.#roots.indexOf(false);
    if (index < 0) throw new IpreError(`${this.name}: no free page-table root (at most ${RT.ROOT_POOL_ROOTS}: one per connected remote, plus one for loans)`);
    this.#roots[index] = true;
    const pml4 = this.base + RT.ROOT_POOL + index * 3 * PAGE_SIZE;
    return { pml4, pdpt: pml4 + PAGE_SIZE, pd: pml4 + 2 * PAGE_SIZE, index };
  }
  /** @internal */
  freeRoot(index: number): void {
    this.#roots[index] = false;
  }
  /** Callers currently connected to this machine as a remote. */
  readonly callers: Set<Machine> = new Set();

  // ---- faults and crashes ----

  #fault(vector: number): GuestFault {
    const f = this.#frame;
    const info: FaultInfo = {
      vector,
      // Signed: an upper-half (kernel) address stays exact as a negative number.
      rip: this.#getI64At(f + (FRAME.rip >> 2)),
      cr2: vector === PF ? this.#vcpu!.cr2() : 0,
      errorCode: this.#getU64At(f + (FRAME.error >> 2)),
      rsp: this.#getU64At(f + (FRAME.rsp >> 2)),
    };
    if (vector === DF) {
      this.#broken = "double fault";
      return new GuestFault(info);
    }
    const top = this.#frames[this.#frames.length - 1];
    if (top?.kind === "call" && info.rip >= top.link.remote.base && info.rip < top.link.remote.base + WINDOW_SIZE) return new RemoteFault(info, top.link.remote.name);
    return new GuestFault(info, this.name);
  }

  #broken: string | undefined;

  #crash(reason: number, when: string): IpreError {
    this.#broken = reason < 0 ? `KVM_RUN failed` : EXIT_NAMES[reason] ?? `exit ${reason}`;
    if (reason < 0) return new KvmError("KVM_RUN", -reason, when);
    const vcpu = this.#vcpu!;
    const vector = reason === EXIT.IO ? vcpu.ioPort - PORT.VECTOR_BASE : -1;
    if (vector >= 0 && vector <= 31) {
      // A stub reported an exception where none was expected: name it from the frame the CPU
      // pushed on IST1 (the faulting instruction, its privilege level, the error code).
      const f = this.#frame;
      const rip = this.#getI64At(f + (FRAME.rip >> 2));
      const cs = this.#mem32[f + (FRAME.cs >> 2)]! & 0xffff;
      const errorCode = this.#getU64At(f + (FRAME.error >> 2));
      const name = VECTOR_NAMES[vector] ?? `vector ${vector}`;
      const where = rip >= this.base + RT.CODE && rip < this.base + RT.CODE + runtimeBytes().length ? " (in the ipre runtime)" : "";
      return new GuestCrash(
        `${this.name}: ${name} at rip=0x${rip.toString(16)}${where}, ring ${cs & 3}, error code 0x${errorCode.toString(16)}, ${when}; the machine reboots its vCPU on the next call`,
        { vector, rip, errorCode, cr2: vector === PF ? vcpu.cr2() : 0, rsp: this.#getU64At(f + (FRAME.rsp >> 2)) },
      );
    }
    const detail = reason === EXIT.IO ? ` port=0x${vcpu.ioPort.toString(16)}` : "";
    return new GuestCrash(`${this.name}: ${EXIT_NAMES[reason] ?? `exit ${reason}`}${detail} ${when} (rip=0x${vcpu.reg("rip").toString(16)}); the machine reboots its vCPU on the next call`);
  }

  /** Bring a vCPU that stopped abnormally (shutdown, double fault) back to the parked state. */
  #recover(): void {
    const vcpu = this.#vcpu!;
    this.#writeRuntimeArea();
    this.#setSpecialRegisters(vcpu);
    this.#frames.length = 0;
    this.#clearMailbox();
    this.#booted = false;
    this.#boot(vcpu);
    this.#broken = undefined;
    if (this.#fsBase !== 0) this.#loadFsBase(this.#fsBase);
  }

  #requireVcpu(): Vcpu {
    if (this.#closed || !this.#vcpu) throw new MachineStateError(`${this.name} is closed`);
    return this.#vcpu;
  }
  #requireVm(): Vm {
    if (this.#closed || !this.#vm) throw new MachineStateError(`${this.name} is closed`);
    return this.#vm;
  }
  #requireUsable(): void {
    this.#requireVcpu();
    if (this.#mustReset !== undefined) throw new MachineStateError(`${this.name} must be reset before it is used again (${this.#mustReset})`);
    if (this.#broken !== undefined) this.#recover();
  }

  /** Why the machine refuses calls until reset(), or undefined. */
  get needsReset(): string | undefined {
    return this.#mustReset;
  }

  // ---- snapshot, reset ----

  /**
   * Freeze the current state: memory is copied into a new memfd, and this machine continues on a
   * copy-on-write private mapping of it, so reset() can drop its changes and fork() can share it.
   */
  snapshot(): Snapshot {
    this.#requireUsable();
    if (this.#frames.length > 0 || this.busyWith) throw new MachineStateError(`${this.name} is inside a remote call`);
    using name = NativeBuffer.alloc(64);
    const fd = libc.memfd_create(name.writeCString(0, `ipre-snapshot-${this.name}`), MFD_CLOEXEC);
    if (fd < 0) throw new OsError("memfd_create", libc.errno());
    try {
      if (libc.ftruncate(fd, this.memorySize) < 0) throw new OsError("ftruncate(snapshot)", libc.errno());
      const tmp = libc.mmap(0, this.memorySize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (tmp === -1) throw new OsError("mmap(snapshot)", libc.errno());
      new Uint8Array(libc.view(tmp, this.memorySize)).set(this.#mem);
      libc.munmap(tmp, this.memorySize);
      // Same host address, so the memslots of this VM and of connected callers stay valid;
      // KVM's MMU notifiers drop the old pages.
      const addr = libc.mmap(this.#hostAddr, this.memorySize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
      if (addr !== this.#hostAddr) throw new OsError("mmap(MAP_FIXED snapshot)", libc.errno());
    } catch (e) {
      libc.close(fd);
      throw e;
    }
    if (this.#memfd >= 0) {
      libc.close(this.#memfd);
      this.#memfd = -1;
    }
    const snap = new Snapshot(fd, this.window, this.memorySize, this.stackSize, this.program, this.name);
    this.#snapshots.push(snap);
    this.#snapshot = snap;
    return snap;
  }

  /**
   * Return user memory to the last snapshot, or without one to the implicit baseline: zeroed
   * memory plus the programs load() wrote (MADV_DONTNEED on the private mapping: only the pages
   * the guest dirtied are dropped). The vCPU is rebooted if it was stopped mid-guest. Not
   * reverted: the runtime area (page tables, so protect() and IPRE connections survive), fsBase,
   * hostcalls. Clears a pending "must reset" (a timeout inside a remote call).
   */
  reset(): void {
    this.#requireVcpu();
    if (this.#inCall || (this.busyWith !== undefined && this.busyWith.#inCall)) throw new MachineStateError(`cannot reset ${this.name} while ${this.busyWith?.name ?? this.name} is running a call into it; reset it after the call`);
    if (!this.#snapshot && this.#memfd < 0) throw new MachineStateError(`${this.name} has no snapshot or baseline to reset to`);
    this.#abortRemoteCall();
    if (libc.madvise(this.#hostAddr + USER_OFFSET, this.memorySize - USER_OFFSET, MADV_DONTNEED) < 0) throw new OsError("madvise(MADV_DONTNEED)", libc.errno());
    if (this.#snapshot) this.program = this.#snapshot.program;
    this.#mustReset = undefined;
    this.busyWith = undefined;
    if (this.#broken !== undefined) this.#recover();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Release the vCPU, VM, memory and fds. Idempotent. */
  close(): void {
    if (this.#closed) return;
    // Not from inside a call that runs on this vCPU or uses this memory (a hostcall handler).
    const running = this.#inCall ? this : [...this.callers].find((c) => c.#inCall);
    if (running) throw new MachineStateError(`cannot close ${this.name} while ${running.name} is running a call${running === this ? "" : " (it maps this machine's memory)"}; close it after the call`);
    // From here on nothing runs this vCPU: its own links go without a page-table service run.
    this.#closed = true;
    let error: unknown;
    // Callers map this memory: unmap it from their VMs before it goes away (a caller's service
    // run that fails leaves that caller to reboot its vCPU; this machine closes all the same).
    for (const caller of [...this.callers]) {
      try {
        caller.links.get(this.window)?.disconnect();
      } catch (e) {
        error ??= e;
      }
    }
    for (const link of [...this.links.values()]) link.disconnect();
    for (const snap of this.#snapshots) snap.close();
    this.#snapshots = [];
    this.#vcpu?.close();
    this.#vm?.close();
    if (this.#hostAddr) libc.munmap(this.#hostAddr, this.memorySize);
    if (this.#memfd >= 0) libc.close(this.#memfd);
    this.#hostAddr = 0;
    this.#memfd = -1;
    this.#mem = new Uint8Array(0);
    this.#mem32 = new Uint32Array(0);
    this.#dv = new DataView(new ArrayBuffer(0));
    if (this.#kvm) releaseKvm();
    this.#kvm = undefined;
    if (error !== undefined) throw error;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}
