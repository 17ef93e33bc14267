/** `/dev/kvm`: the system handle (API version, capabilities, supported CPUID, VM creation). */
import { readFileSync } from "node:fs";
import { libc } from "../ffi/index.ts";
import { NativeBuffer, O_CLOEXEC, O_RDWR } from "../ffi/native.ts";
import { KvmError } from "../errors.ts";
import { ERRNO } from "../errno.ts";
import { CAP, type CapName, KVM, SIZEOF } from "./abi.ts";

export const KVM_DEVICE = "/dev/kvm";
/** The only stable KVM API version (KVM_GET_API_VERSION). */
export const KVM_API_VERSION = 12;

/** The kind of KVM behind a device node; "none" when it cannot be opened. */
/** KVM_GET_VCPU_MMAP_SIZE's answer, once asked (Kvm.vcpuMmapSize). */
let vcpuMmapSize: number | undefined;

export type KvmFlavour = "hardware" | "pvm" | "none" | "unknown";

/** Check the result of a KVM ioctl: throw a KvmError naming the operation and errno when it is negative. */
export function check(result: number, operation: string, detail?: string): number {
  if (result < 0) throw new KvmError(operation, libc.errno(), detail);
  return result;
}

/**
 * Issue an ioctl and throw a KvmError (`KVM_<name>`, errno) when it fails. Retried when a signal
 * interrupted it (profilers, SIGCHLD, …): these ioctls are not the hot path.
 */
export function kvmIoctl(fd: number, name: keyof typeof KVM, arg: number): number {
  for (;;) {
    const r = libc.ioctl(fd, KVM[name], arg);
    if (r >= 0) return r;
    const errno = libc.errno();
    if (errno !== ERRNO.EINTR) throw new KvmError(`KVM_${name}`, errno);
  }
}

/**
 * Which kind of KVM backs the device: "none" when it cannot be opened (absent, no permission);
 * "hardware" when kvm_intel/kvm_amd is there and the CPU advertises VMX/SVM; "pvm" when kvm_pvm
 * (PVM's paravirtual shadow-paging KVM, which needs no VMX/SVM) is there without those; else
 * "unknown". `/sys/module` alone is not enough: kvm_pvm is built into some kernels and shows up
 * there even where it did not bind (docs/ARCHITECTURE.md §5).
 */
export function kvmFlavour(path = KVM_DEVICE): KvmFlavour {
  let f = flavours.get(path);
  if (f === undefined) {
    f = detectFlavour(path);
    if (f !== "none") flavours.set(path, f); // a device that appears later is looked at again
  }
  return f;
}
const flavours = new Map<string, KvmFlavour>();

function detectFlavour(path: string): KvmFlavour {
  using buf = NativeBuffer.alloc(4096);
  const fd = libc.open(buf.writeCString(0, path), O_RDWR | O_CLOEXEC);
  if (fd < 0) return "none";
  libc.close(fd);
  const modules = readSysModules(buf);
  const vendor = modules.includes("kvm_intel") || modules.includes("kvm_amd");
  if (vendor && cpuHasVirtualization()) return "hardware";
  if (modules.includes("kvm_pvm")) return "pvm";
  return vendor ? "hardware" : "unknown";
}

/** The CPU flags of /proc/cpuinfo name VMX (Intel) or SVM (AMD). */
function cpuHasVirtualization(): boolean {
  try {
    return /^flags\s*:.*\b(vmx|svm)\b/m.test(readFileSync("/proc/cpuinfo", "utf8"));
  } catch {
    return false;
  }
}

const O_DIRECTORY = 0x10000;

/** Names among kvm_pvm/kvm_intel/kvm_amd that have a directory under /sys/module. */
function readSysModules(buf: NativeBuffer): string[] {
  return ["kvm_pvm", "kvm_intel", "kvm_amd"].filter((name) => {
    const fd = libc.open(buf.writeCString(0, `/sys/module/${name}`), O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    libc.close(fd);
    return true;
  });
}

/** An open `/dev/kvm`. One owner; `close()` is idempotent. */
export class Kvm {
  #fd: number;
  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Open /dev/kvm and check the API version. */
  static open(path = KVM_DEVICE): Kvm {
    using buf = NativeBuffer.alloc(4096);
    const fd = libc.open(buf.writeCString(0, path), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      const errno = libc.errno();
      throw new KvmError(`open(${path})`, errno, kvmOpenHint(errno, path));
    }
    const kvm = new Kvm(fd);
    const api = kvm.apiVersion();
    if (api !== KVM_API_VERSION) {
      kvm.close();
      throw new KvmError("KVM_GET_API_VERSION", ERRNO.EINVAL, `API version ${api}, expected ${KVM_API_VERSION}`);
    }
    return kvm;
  }

  get fd(): number {
    if (this.#fd < 0) throw new KvmError("use of closed /dev/kvm", ERRNO.EBADF);
    return this.#fd;
  }

  /** KVM_GET_API_VERSION */
  apiVersion(): number {
    return kvmIoctl(this.fd, "GET_API_VERSION", 0);
  }

  /** KVM_CHECK_EXTENSION: 0 when absent, otherwise a capability-specific positive value. */
  checkExtension(cap: CapName | number): number {
    const n = typeof cap === "number" ? cap : CAP[cap];
    return kvmIoctl(this.fd, "CHECK_EXTENSION", n);
  }

  /**
   * KVM_GET_VCPU_MMAP_SIZE: size of the kvm_run mapping. A property of the kernel, not of the
   * fd: asked once per process (every VM creation used to ask again).
   */
  vcpuMmapSize(): number {
    vcpuMmapSize ??= kvmIoctl(this.fd, "GET_VCPU_MMAP_SIZE", 0);
    return vcpuMmapSize;
  }

  /**
   * KVM_GET_SUPPORTED_CPUID into a new native buffer (`struct kvm_cpuid2` + entries), ready for
   * KVM_SET_CPUID2. The caller owns (and closes) the buffer.
   */
  supportedCpuid(): NativeBuffer {
    for (let n = 256; n <= 4096; ) {
      const buf = NativeBuffer.alloc(SIZEOF.kvm_cpuid2 + n * SIZEOF.kvm_cpuid_entry2);
      buf.view.setUint32(0, n, true);
      const r = libc.ioctl(this.fd, KVM.GET_SUPPORTED_CPUID, buf.address);
      if (r >= 0) return buf;
      const errno = libc.errno();
      buf.close();
      if (errno === ERRNO.EINTR) continue;
      if (errno !== ERRNO.E2BIG) throw new KvmError("KVM_GET_SUPPORTED_CPUID", errno);
      n *= 2;
    }
    throw new KvmError("KVM_GET_SUPPORTED_CPUID", ERRNO.E2BIG, "more than 4096 entries");
  }

  #cpuid: NativeBuffer | undefined;
  /** KVM_GET_SUPPORTED_CPUID, fetched once per open /dev/kvm (owned by this handle). */
  get cpuid(): NativeBuffer {
    this.#cpuid ??= this.supportedCpuid();
    return this.#cpuid;
  }

  /** KVM_CREATE_VM: the raw VM fd (wrapped by `Vm`). */
  createVmFd(): number {
    return kvmIoctl(this.fd, "CREATE_VM", 0);
  }

  close(): void {
    if (this.#fd >= 0) {
      libc.close(this.#fd);
      this.#fd = -1;
      this.#cpuid?.close();
      this.#cpuid = undefined;
    }
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Whether a feature works on a KVM flavour, and why (or why not), for `ipre doctor`. */
export interface Capability {
  ok: boolean;
  why: string;
}

/**
 * What works on each KVM flavour: a static table, kept here beside the flavour detection
 * (nothing is probed by trying it; PCID in particular is not probed by setting CR4.PCIDE, which
 * PVM refuses). `cpuidPcid`: KVM offers PCID in its supported CPUID.
 */
export function flavourCapabilities(flavour: KvmFlavour, cpuidPcid = false): { ipre: Capability; linuxPrograms: Capability; pcid: Capability } {
  if (flavour === "none") {
    const why = "no usable KVM device";
    return { ipre: { ok: false, why }, linuxPrograms: { ok: false, why }, pcid: { ok: false, why } };
  }
  return {
    ipre: { ok: true, why: "freestanding guests, vmcalls, hostcalls and IPRE remote calls (every flavour: requests are page faults)" },
    linuxPrograms: {
      ok: true,
      why: `static Linux programs, ipre exec and Machine.exec (every flavour${flavour === "pvm" ? "; on PVM a syscall is a fetch fault at LSTAR, one exit" : ""})`,
    },
    pcid:
      flavour === "pvm"
        ? { ok: false, why: "PVM refuses CR4.PCIDE (hardware KVM only; ipre does not use PCID yet)" }
        : cpuidPcid
          ? { ok: true, why: "KVM offers PCID to guests (ipre does not use it yet: every unmerge flushes the TLB)" }
          : { ok: false, why: "KVM does not offer PCID on this CPU" },
  };
}

/**
 * A one-line fix for the usual reasons /dev/kvm cannot be opened. A `path` other than /dev/kvm
 * was given by the user: when it does not exist, that is the fix, not a KVM module.
 */
export function kvmOpenHint(errno: number, path: string = KVM_DEVICE): string {
  switch (errno) {
    case 2:
      if (path !== KVM_DEVICE) return `${path} does not exist: check the path (the KVM device is normally ${KVM_DEVICE})`;
      return "no /dev/kvm: load the module (`modprobe kvm_intel` or `modprobe kvm_amd`) or enable nested virtualization for this VM";
    case 13:
    case 1:
      return "no permission: add yourself to the kvm group (`sudo usermod -aG kvm $USER`, then log in again) or `sudo chmod 666 /dev/kvm`";
    case 6:
    case 19:
      return "/dev/kvm exists but no KVM module backs it: load kvm_intel/kvm_amd (or kvm_pvm)";
    default:
      return "check that KVM is enabled on this machine";
  }
}
