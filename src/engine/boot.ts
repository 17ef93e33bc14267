/**
 * From nothing to a vCPU ready to boot: the shared /dev/kvm handle, the VM with its memslot and
 * vCPU, the runtime area (GDT, IDT, TSS, the assembled runtime), long-mode special registers
 * derived from that GDT, the MSRs, and the registers of the boot entry. The canonical KVM flow,
 * in the order it happens (docs/ARCHITECTURE.md §2); the run that boots is in service.ts.
 */
import { KvmError } from "../errors.ts";
import { ERRNO } from "../errno.ts";
import { CAP, GENERAL_REGS, SYNC } from "../kvm/abi.ts";
import { Kvm, kvmFlavour, type KvmFlavour } from "../kvm/system.ts";
import { Vm } from "../kvm/vm.ts";
import type { Vcpu } from "../kvm/vcpu.ts";
import { segmentFromGdt } from "../kvm/sregs.ts";
import { PORT, RT, WINDOW_SIZE } from "../guest/layout.ts";
import { runtimeBytes, stubOffset } from "../guest/runtime.ts";
import { buildGdt, buildIdt, buildTss, GDT_LIMIT, SELECTOR, starMsr, VECTOR } from "../x86/descriptors.ts";
import { CR0, CR4, EFER, MSR, RFLAGS_RESERVED } from "../x86/registers.ts";
import type { GuestMemory } from "./memory.ts";
import { ENTRY } from "./parked.ts";

/** RFLAGS bits MSR_SFMASK clears on `syscall`: TF, IF, DF, IOPL, NT, AC (Linux's value). */
const SYSCALL_MASK = 0x47700n;
/** Exception vectors with an IDT entry (the architectural ones). */
const VECTORS = 32;

/**
 * GPA for KVM_SET_TSS_ADDR (Intel VMX needs three pages for real-mode emulation; AMD and PVM
 * ignore it). It must lie below 4 GiB, since the ioctl takes a 32-bit address, and must never be
 * guest memory: window 3's trap region is below 4 GiB and never mapped.
 */
export const VMX_TSS_GPA = 3 * WINDOW_SIZE + WINDOW_SIZE - 0x100000;

let kvmShared: Kvm | undefined;
let kvmUsers = 0;
/** TR's type in KVM_SET_SREGS for this process's KVM (taskRegisterType), decided when it opens. */
let trType = 0xb;

/** The process-wide /dev/kvm handle, opened on first use and closed with its last user. */
function acquireKvm(): Kvm {
  if (!kvmShared) {
    kvmShared = Kvm.open();
    trType = taskRegisterType(kvmShared);
  }
  kvmUsers++;
  return kvmShared;
}

/**
 * The type of the task register: 0xB, a busy 64-bit TSS, as `ltr` leaves it and as Intel VM
 * entry requires (SDM Vol. 3C §27.3.1.2); PVM takes it too. On AMD SVM 0x9 (available): the VMCB
 * does not keep TR's busy bit (KVM's svm_get_segment sets it back when reading), and QEMU's SVM,
 * the nested harness (§8), checks the TSS I/O bitmap of a ring-3 `out` only against an available
 * TSS, so with 0xB every hostcall gate's `out` would be a #GP there (§4, §5).
 */
function taskRegisterType(kvm: Kvm): number {
  const vendor = cpuidVendor(kvm.cpuid.view);
  return kvmFlavour() === "hardware" && (vendor === "AuthenticAMD" || vendor === "HygonGenuine") ? 0x9 : 0xb;
}
export function releaseKvm(): void {
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
  /** KVM_GET_SUPPORTED_CPUID leaf 1 has PCID (ECX bit 17): what a guest could be offered; ipre does not use it. */
  cpuidPcid: boolean;
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
    cpuidPcid: cpuidHasPcid(kvm.cpuid.view),
  };
}

/** The vendor string of CPUID leaf 0 (EBX, EDX, ECX) in a struct kvm_cpuid2, "" without that leaf. */
function cpuidVendor(view: DataView): string {
  const n = view.getUint32(0, true);
  for (let i = 0; i < n; i++) {
    const e = 8 + i * 40;
    if (view.getUint32(e, true) !== 0) continue;
    const bytes = new Uint8Array(12);
    const out = new DataView(bytes.buffer);
    [16, 24, 20].forEach((reg, k) => out.setUint32(k * 4, view.getUint32(e + reg, true), true));
    return String.fromCharCode(...bytes);
  }
  return "";
}

/** Leaf 1, ECX bit 17 (PCID) in a struct kvm_cpuid2 (8-byte header, 40-byte entries: function, index, flags, eax, ebx, ecx, edx). */
function cpuidHasPcid(view: DataView): boolean {
  const n = view.getUint32(0, true);
  for (let i = 0; i < n; i++) {
    const e = 8 + i * 40;
    if (view.getUint32(e, true) === 1) return ((view.getUint32(e + 20, true) >>> 17) & 1) === 1;
  }
  return false;
}

/**
 * KVM, the VM with guest memory (window `base`, `size` bytes at host address `hostAddr`) as slot
 * 0, and vCPU 0 with the host's CPUID. Nothing is left open when it fails.
 */
export function createVm(base: number, size: number, hostAddr: number): { kvm: Kvm; vm: Vm; vcpu: Vcpu } {
  const kvm = acquireKvm();
  let vm: Vm | undefined;
  try {
    if (!(kvm.checkExtension("SYNC_REGS") & SYNC.REGS)) throw new KvmError("KVM_CAP_SYNC_REGS", ERRNO.EOPNOTSUPP, "this KVM cannot sync general registers through kvm_run; ipre needs it");
    vm = Vm.create(kvm);
    vm.setMemory({ slot: 0, guestPhysAddr: base, size, hostAddr });
    if (kvm.checkExtension("SET_TSS_ADDR") > 0 && kvmFlavour() !== "pvm") vm.setTssAddr(VMX_TSS_GPA);
    const vcpu = vm.createVcpu(0);
    try {
      vcpu.setCpuid(kvm.cpuid);
    } catch (e) {
      vcpu.close();
      throw e;
    }
    return { kvm, vm, vcpu };
  } catch (e) {
    vm?.close();
    releaseKvm();
    throw e;
  }
}

/**
 * GDT, IDT (vector → its stub on IST1; #DF on IST2, so that a broken IST1 still reports; #PF on
 * no IST but TSS.RSP0, which is IST1's top: from ring 3 the same frame, and a fault of ring-0
 * code, a runtime bug, lands below the frame it interrupted, where the host finds it), TSS
 * (with the I/O bitmap of the hostcall gates) and the runtime code, hostcall gate page included.
 */
export function writeRuntimeArea(memory: GuestMemory, b: number): void {
  const mem = memory.u8;
  mem.set(runtimeBytes(), RT.CODE);
  // Ring 3 may use one port, a hostcall gate's (IOPL stays 0): the host accepts that exit only at a gate (§4).
  const tss = buildTss({ rsp0: b + RT.IST1_TOP, ist: [0, b + RT.IST1_TOP, b + RT.IST2_TOP], ioPorts: [PORT.HOSTCALL] });
  mem.set(buildGdt(b + RT.TSS, tss.length), RT.GDT);
  mem.set(tss, RT.TSS);
  mem.set(buildIdt(VECTORS, (v) => ({ offset: b + RT.CODE + stubOffset(v), ist: v === VECTOR.DF ? 2 : v === VECTOR.PF ? 0 : 1 })), RT.IDT);
}

/**
 * Long mode, ring 0, paging on (Intel SDM Vol. 3A §9.8.5), the GDT/IDT/TSS above, MSR_STAR.
 * Segment registers are derived from the GDT in guest memory (written by writeRuntimeArea).
 */
export function setSpecialRegisters(vcpu: Vcpu, mem: GuestMemory, base: number, root: number): void {
  const s = vcpu.getSregs();
  const gdt = mem.u8.subarray(RT.GDT, RT.GDT + GDT_LIMIT + 1);
  s.cs = segmentFromGdt(gdt, SELECTOR.KERNEL_CODE);
  s.ds = s.es = s.fs = s.gs = s.ss = segmentFromGdt(gdt, SELECTOR.KERNEL_DATA);
  // The GDT keeps the TSS available (0x9) as `ltr` would expect; TR is busy except on AMD (taskRegisterType).
  s.tr = { ...segmentFromGdt(gdt, SELECTOR.TSS), type: trType };
  s.ldt = { ...s.ldt, unusable: 1 };
  s.gdt = { base: base + RT.GDT, limit: GDT_LIMIT };
  s.idt = { base: base + RT.IDT, limit: VECTORS * 16 - 1 };
  s.cr0 = BigInt((CR0.PE | CR0.MP | CR0.ET | CR0.NE | CR0.WP | CR0.PG) >>> 0); // PG is bit 31: keep it unsigned
  s.cr3 = BigInt(root);
  s.cr4 = BigInt(CR4.PAE | CR4.OSFXSR | CR4.OSXMMEXCPT | CR4.FSGSBASE);
  s.efer = BigInt(EFER.LME | EFER.LMA | EFER.NXE | EFER.SCE);
  vcpu.setSregs(s);
  vcpu.setMsrs([
    [MSR.STAR, starMsr()],
    // A ring-3 `syscall` enters the runtime's syscall_entry on hardware KVM. PVM jumps there still in
    // ring 3, and the fetch of that supervisor page faults with RIP == LSTAR, which exits.ts takes
    // for the syscall (docs/ARCHITECTURE.md §4). SFMASK clears TF, DF, IF, IOPL, AC and NT on
    // entry, as Linux does.
    [MSR.LSTAR, BigInt(base + ENTRY.syscall)],
    [MSR.SFMASK, SYSCALL_MASK],
    [MSR.FS_BASE, 0n],
    [MSR.GS_BASE, 0n],
    [MSR.KERNEL_GS_BASE, 0n],
  ]);
}

/** Zeroed general registers, RIP at the runtime's boot entry, RSP at the parked frame. */
export function setBootRegisters(vcpu: Vcpu, base: number): void {
  vcpu.loadRegs();
  for (const r of GENERAL_REGS) vcpu.setReg(r, 0);
  vcpu.setReg("rip", base + ENTRY.boot);
  vcpu.setReg("rsp", base + ENTRY.frameSp);
  vcpu.setReg("rflags", RFLAGS_RESERVED);
  vcpu.storeRegs();
}
