/**
 * The raw KVM ABI for x86-64: ioctl numbers computed from the C `_IOC` encoding and the C sizes of
 * the structs they carry, struct offsets, exit reasons and capability numbers. No logic lives here.
 * Source: include/uapi/linux/kvm.h, arch/x86/include/uapi/asm/kvm.h, asm-generic/ioctl.h.
 */

const IOC_NONE = 0;
const IOC_WRITE = 1;
const IOC_READ = 2;

/** `_IOC(dir, type, nr, size)` from asm-generic/ioctl.h. */
export function ioc(dir: number, type: number, nr: number, size: number): number {
  // dir:2 | size:14 | type:8 | nr:8, computed without 32-bit sign trouble.
  return dir * 2 ** 30 + size * 2 ** 16 + type * 2 ** 8 + nr;
}
const KVMIO = 0xae;
const io = (nr: number) => ioc(IOC_NONE, KVMIO, nr, 0);
const ior = (nr: number, size: number) => ioc(IOC_READ, KVMIO, nr, size);
const iow = (nr: number, size: number) => ioc(IOC_WRITE, KVMIO, nr, size);
const iowr = (nr: number, size: number) => ioc(IOC_READ | IOC_WRITE, KVMIO, nr, size);

/** C struct sizes (bytes) that enter ioctl numbers. */
export const SIZEOF = {
  kvm_userspace_memory_region: 32,
  kvm_regs: 144,
  kvm_sregs: 312,
  kvm_segment: 24,
  kvm_dtable: 16,
  /** Header only: `__u32 nent; __u32 padding;` then entries. */
  kvm_cpuid2: 8,
  kvm_cpuid_entry2: 40,
  /** Header only: `__u32 nmsrs; __u32 pad;` then entries. */
  kvm_msrs: 8,
  kvm_msr_entry: 16,
  /** `struct kvm_signal_mask { __u32 len; __u8 sigset[0]; }` */
  kvm_signal_mask: 4,
} as const;

export const KVM = {
  GET_API_VERSION: io(0x00),
  CREATE_VM: io(0x01),
  CHECK_EXTENSION: io(0x03),
  GET_VCPU_MMAP_SIZE: io(0x04),
  GET_SUPPORTED_CPUID: iowr(0x05, SIZEOF.kvm_cpuid2),
  CREATE_VCPU: io(0x41),
  SET_USER_MEMORY_REGION: iow(0x46, SIZEOF.kvm_userspace_memory_region),
  SET_TSS_ADDR: io(0x47),
  RUN: io(0x80),
  GET_REGS: ior(0x81, SIZEOF.kvm_regs),
  SET_REGS: iow(0x82, SIZEOF.kvm_regs),
  GET_SREGS: ior(0x83, SIZEOF.kvm_sregs),
  SET_SREGS: iow(0x84, SIZEOF.kvm_sregs),
  SET_MSRS: iow(0x89, SIZEOF.kvm_msrs),
  SET_SIGNAL_MASK: iow(0x8b, SIZEOF.kvm_signal_mask),
  SET_CPUID2: iow(0x90, SIZEOF.kvm_cpuid2),
} as const;

export type KvmIoctlName = keyof typeof KVM;

/** Capabilities (KVM_CHECK_EXTENSION arguments). */
export const CAP = {
  IRQCHIP: 0,
  HLT: 1,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  EXT_CPUID: 7,
  NR_VCPUS: 9,
  NR_MEMSLOTS: 10,
  SYNC_MMU: 16,
  SET_IDENTITY_MAP_ADDR: 37,
  READONLY_MEM: 81,
  MAX_VCPUS: 66,
  SYNC_REGS: 74,
  IMMEDIATE_EXIT: 136,
} as const;
export type CapName = keyof typeof CAP;

export const EXIT = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  INTERNAL_ERROR: 17,
} as const;

export const EXIT_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(EXIT).map(([k, v]) => [v, `KVM_EXIT_${k}`]),
);

/** struct kvm_run (the mmapped vCPU page). */
export const RUN = {
  request_interrupt_window: 0,
  immediate_exit: 1,
  exit_reason: 8,
  // union of exit payloads at 32
  io_direction: 32,
  io_size: 33,
  io_port: 34,
  io_count: 36,
  io_data_offset: 40,
  fail_entry_reason: 32,
  internal_suberror: 32,
  kvm_valid_regs: 288,
  kvm_dirty_regs: 296,
  /** struct kvm_sync_regs: kvm_regs at +0, kvm_sregs at +144. */
  sync_regs: 304,
  sync_sregs: 304 + 144,
} as const;

/** kvm_valid_regs / kvm_dirty_regs bits. */
export const SYNC = { REGS: 1, SREGS: 2, EVENTS: 4 } as const;

/** struct kvm_regs, u64 fields in this order. */
export const REGS = {
  rax: 0, rbx: 8, rcx: 16, rdx: 24, rsi: 32, rdi: 40, rsp: 48, rbp: 56,
  r8: 64, r9: 72, r10: 80, r11: 88, r12: 96, r13: 104, r14: 112, r15: 120,
  rip: 128, rflags: 136,
} as const;
export type RegName = keyof typeof REGS;
/** The general registers of struct kvm_regs (all but RSP, RIP and RFLAGS), zeroed at a start. */
export const GENERAL_REGS = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"] as const satisfies readonly RegName[];

/** struct kvm_sregs. Segments are struct kvm_segment (24 bytes). */
export const SREGS = {
  cs: 0, ds: 24, es: 48, fs: 72, gs: 96, ss: 120, tr: 144, ldt: 168,
  gdt: 192, idt: 208,
  cr0: 224, cr2: 232, cr3: 240, cr4: 248, cr8: 256, efer: 264, apic_base: 272,
  interrupt_bitmap: 280,
} as const;

/** struct kvm_segment field offsets. */
export const SEGMENT = {
  base: 0, limit: 8, selector: 12, type: 14, present: 15, dpl: 16, db: 17, s: 18, l: 19,
  g: 20, avl: 21, unusable: 22,
} as const;

/** struct kvm_dtable: base u64, limit u16. */
export const DTABLE = { base: 0, limit: 8 } as const;

/** struct kvm_userspace_memory_region. */
export const MEMORY_REGION = {
  slot: 0, flags: 4, guest_phys_addr: 8, memory_size: 16, userspace_addr: 24,
} as const;
export const MEM_READONLY = 2;

/** struct kvm_cpuid_entry2. */
export const CPUID_ENTRY = { function: 0, index: 4, flags: 8, eax: 12, ebx: 16, ecx: 20, edx: 24 } as const;

/** struct kvm_msr_entry: index u32, reserved u32, data u64. */
export const MSR_ENTRY = { index: 0, data: 8 } as const;
