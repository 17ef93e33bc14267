/**
 * Exercises every `Libc` call on the running runtime and reports what happened.
 *
 * Run directly under Bun or Deno (`bun test/scenarios/ffi.ts`, `deno run -A test/scenarios/ffi.ts`)
 * it prints one JSON line; `test/ffi.test.ts` imports {@link ffiReport} on Node and asserts the
 * same report for all three runtimes.
 */
import { libc } from "../../src/ffi/index.ts";
import {
  CLOCK_MONOTONIC, MADV_DONTNEED, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, MFD_CLOEXEC, NativeBuffer,
  O_CLOEXEC, O_RDWR, PROT_READ, PROT_WRITE, SIG_BLOCK, SIG_SETMASK,
} from "../../src/ffi/native.ts";

const KVM_GET_API_VERSION = 0xae00;
const KVM_CHECK_EXTENSION = 0xae03;
const KVM_CAP_USER_MEMORY = 3;
/** _IOWR(KVMIO, 0x02, struct kvm_msr_list): the kernel reads nmsrs and writes nmsrs + indices. */
const KVM_GET_MSR_INDEX_LIST = 0xc004ae02;
const E2BIG = 7;
const SIGEV_THREAD_ID = 4;
/** A real-time signal nobody else uses (docs/ARCHITECTURE.md §7). */
const TIMEOUT_SIGNAL = 40;

export interface FfiReport {
  runtime: string;
  backend: string;
  pid: number;
  processPid: number;
  tid: number;
  kvmFd: number;
  apiVersion: number;
  capUserMemory: number;
  badIoctl: { ret: number; errno: number };
  msrList: { probeRet: number; probeErrno: number; count: number; ret: number; firstIndices: number[] };
  closeBad: { ret: number; errno: number };
  openMissing: { ret: number; errno: number };
  mmapFail: { ret: number; errno: number };
  scratchAddress: number;
  roundTrip: boolean;
  madviseZeroes: boolean;
  memfd: { fd: number; truncate: number; distinct: boolean; aToB: boolean; bToA: boolean };
  /** elapsedNs: between the two clock_gettime calls; the JS clock between them (inner) and around them (outer). */
  clock: { ret: number; sec: number; nsec: number; elapsedNs: number; jsInnerNs: number; jsOuterNs: number };
  sigmask: { blockRet: number; blockedAfter: boolean; restoreRet: number; blockedRestored: boolean; wasBlocked: boolean };
  timer: { createRet: number; timerId: number; setRet: number; signal: number; siginfoSigno: number; deleteRet: number };
  sigtimedwaitEmpty: { ret: number; errno: number };
  disposedTwice: boolean;
  ns: { getpid: number; ioctlApiVersion: number; errno: number };
}

function bench(iterations: number, fn: () => void): number {
  for (let i = 0; i < 10_000; i++) fn();
  const t0 = performance.now();
  for (let i = 0; i < iterations; i++) fn();
  return Math.round(((performance.now() - t0) * 1e6) / iterations);
}

function sigIsSet(view: DataView, offset: number, sig: number): boolean {
  const bit = sig - 1;
  return (view.getUint32(offset + Math.floor(bit / 32) * 4, true) & (1 << bit % 32)) !== 0;
}

function hostPid(): number {
  const g = globalThis as { process?: { pid: number }; Deno?: { pid: number } };
  return g.process?.pid ?? g.Deno?.pid ?? -1;
}

export function ffiReport(iterations = 100_000): FfiReport {
  using buf = NativeBuffer.alloc(64 * 1024);
  const v = buf.view;

  // open + ioctl (integer args) on /dev/kvm.
  const kvmFd = libc.open(buf.writeCString(0, "/dev/kvm"), O_RDWR | O_CLOEXEC);
  const apiVersion = libc.ioctl(kvmFd, KVM_GET_API_VERSION, 0);
  const capUserMemory = libc.ioctl(kvmFd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
  const badRet = libc.ioctl(kvmFd, 0xaeff, 0);
  const badIoctl = { ret: badRet, errno: libc.errno() };

  // ioctl with a pointer arg: the kernel reads and writes our memory.
  const MSR = 0x1000;
  v.setUint32(MSR, 0, true);
  const probeRet = libc.ioctl(kvmFd, KVM_GET_MSR_INDEX_LIST, buf.address + MSR);
  const probeErrno = libc.errno();
  const count = v.getUint32(MSR, true);
  v.setUint32(MSR, Math.min(count, 1000), true);
  const msrRet = libc.ioctl(kvmFd, KVM_GET_MSR_INDEX_LIST, buf.address + MSR);
  const firstIndices = [0, 1, 2].map((i) => v.getUint32(MSR + 4 + i * 4, true));

  // errno after failures.
  const closeBadRet = libc.close(-1);
  const closeBad = { ret: closeBadRet, errno: libc.errno() };
  const missingRet = libc.open(buf.writeCString(0, "/nonexistent/ipre"), O_RDWR);
  const openMissing = { ret: missingRet, errno: libc.errno() };
  const mmapFailRet = libc.mmap(0, 0, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const mmapFail = { ret: mmapFailRet, errno: libc.errno() };

  // Private anonymous memory: view round trip, then madvise(DONTNEED) zeroes it natively.
  let roundTrip = false;
  let madviseZeroes = false;
  {
    using page = NativeBuffer.alloc(8192);
    page.view.setUint32(4096, 0xdeadbeef, true);
    const again = new DataView(libc.view(page.address + 4096, 16));
    roundTrip = again.getUint32(0, true) === 0xdeadbeef && page.bytes[4096] === 0xef;
    const r = libc.madvise(page.address, 8192, MADV_DONTNEED);
    madviseZeroes = r === 0 && page.view.getUint32(4096, true) === 0 && again.getUint32(0, true) === 0;
  }

  // memfd mapped twice (MAP_SHARED): both views see the same bytes.
  const memfdFd = libc.memfd_create(buf.writeCString(0, "ipre-ffi-test"), MFD_CLOEXEC);
  const truncate = libc.ftruncate(memfdFd, 8192);
  const a = libc.mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, memfdFd, 0);
  const b = libc.mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, memfdFd, 0);
  const va = new Uint8Array(libc.view(a, 8192));
  const vb = new Uint8Array(libc.view(b, 8192));
  va.set([1, 2, 3, 4], 5000);
  const aToB = vb[5000] === 1 && vb[5003] === 4;
  vb[8191] = 0x5a;
  const bToA = va[8191] === 0x5a;
  const memfd = { fd: memfdFd, truncate, distinct: a !== b && a > 0 && b > 0, aToB, bToA };
  libc.munmap(a, 8192);
  libc.munmap(b, 8192);
  libc.close(memfdFd);

  // clock_gettime writes a timespec into our memory.
  // The JS clock is read around and between the two calls, so the C interval must lie between
  // the inner and the outer JS interval however the threads are scheduled.
  const TS = 0x2000;
  const outer0 = performance.now();
  const clockRet = libc.clock_gettime(CLOCK_MONOTONIC, buf.address + TS);
  const inner0 = performance.now();
  const sec = Number(v.getBigInt64(TS, true));
  const nsec = Number(v.getBigInt64(TS + 8, true));
  const spinUntil = inner0 + 20;
  while (performance.now() < spinUntil) { /* spin 20 ms */ }
  const inner1 = performance.now();
  libc.clock_gettime(CLOCK_MONOTONIC, buf.address + TS + 16);
  const outer1 = performance.now();
  const jsInnerNs = Math.round((inner1 - inner0) * 1e6);
  const jsOuterNs = Math.round((outer1 - outer0) * 1e6);
  const sec2 = Number(v.getBigInt64(TS + 16, true));
  const nsec2 = Number(v.getBigInt64(TS + 24, true));
  const clock = { ret: clockRet, sec, nsec, elapsedNs: (sec2 - sec) * 1e9 + (nsec2 - nsec), jsInnerNs, jsOuterNs };

  // pthread_sigmask round trip on TIMEOUT_SIGNAL (sigset_t is 128 bytes).
  const SET = 0x3000, OLD = 0x3080, CUR = 0x3100;
  buf.bytes.fill(0, SET, SET + 128);
  v.setUint32(SET + Math.floor((TIMEOUT_SIGNAL - 1) / 32) * 4, 1 << (TIMEOUT_SIGNAL - 1) % 32, true);
  const blockRet = libc.pthread_sigmask(SIG_BLOCK, buf.address + SET, buf.address + OLD);
  libc.pthread_sigmask(SIG_BLOCK, 0, buf.address + CUR);
  const blockedAfter = sigIsSet(v, CUR, TIMEOUT_SIGNAL);
  const wasBlocked = sigIsSet(v, OLD, TIMEOUT_SIGNAL);

  // With the signal blocked: a SIGEV_THREAD_ID timer fires on this thread; sigtimedwait takes it.
  const SEV = 0x4000, TID = 0x4040, ITS = 0x4080, INFO = 0x4100, TMO = 0x4200;
  buf.bytes.fill(0, SEV, SEV + 64);
  v.setInt32(SEV + 8, TIMEOUT_SIGNAL, true);
  v.setInt32(SEV + 12, SIGEV_THREAD_ID, true);
  v.setInt32(SEV + 16, libc.gettid(), true);
  const createRet = libc.timer_create(CLOCK_MONOTONIC, buf.address + SEV, buf.address + TID);
  const timerId = Number(v.getBigUint64(TID, true));
  buf.bytes.fill(0, ITS, ITS + 32);
  v.setBigInt64(ITS + 24, 1_000_000n, true); // it_value.tv_nsec = 1 ms, one shot
  const setRet = libc.timer_settime(timerId, 0, buf.address + ITS, 0);
  v.setBigInt64(TMO, 2n, true); // wait at most 2 s
  v.setBigInt64(TMO + 8, 0n, true);
  const signal = libc.sigtimedwait(buf.address + SET, buf.address + INFO, buf.address + TMO);
  const siginfoSigno = v.getInt32(INFO, true);
  const deleteRet = libc.timer_delete(timerId);
  const timer = { createRet, timerId, setRet, signal, siginfoSigno, deleteRet };
  // Nothing pending now: a zero timeout fails with EAGAIN.
  v.setBigInt64(TMO, 0n, true);
  const emptyRet = libc.sigtimedwait(buf.address + SET, buf.address + INFO, buf.address + TMO);
  const sigtimedwaitEmpty = { ret: emptyRet, errno: libc.errno() };

  const restoreRet = libc.pthread_sigmask(SIG_SETMASK, buf.address + OLD, 0);
  libc.pthread_sigmask(SIG_BLOCK, 0, buf.address + CUR);
  const blockedRestored = sigIsSet(v, CUR, TIMEOUT_SIGNAL);
  const sigmask = { blockRet, blockedAfter, restoreRet, blockedRestored, wasBlocked };

  // Disposal is idempotent.
  const extra = NativeBuffer.alloc(4096);
  extra.close();
  extra.close();
  const disposedTwice = extra.closed;

  const ns = {
    getpid: bench(iterations, () => libc.getpid()),
    ioctlApiVersion: bench(iterations, () => libc.ioctl(kvmFd, KVM_GET_API_VERSION, 0)),
    errno: bench(iterations, () => libc.errno()),
  };
  libc.close(kvmFd);

  return {
    runtime: libc.runtime,
    backend: libc.backend,
    pid: libc.getpid(),
    processPid: hostPid(),
    tid: libc.gettid(),
    kvmFd,
    apiVersion,
    capUserMemory,
    badIoctl,
    msrList: { probeRet, probeErrno, count, ret: msrRet, firstIndices },
    closeBad,
    openMissing,
    mmapFail,
    scratchAddress: buf.address,
    roundTrip,
    madviseZeroes,
    memfd,
    clock,
    sigmask,
    timer,
    sigtimedwaitEmpty,
    disposedTwice,
    ns,
  };
}

export { E2BIG, TIMEOUT_SIGNAL };

if ((import.meta as ImportMeta & { main?: boolean }).main) {
  const g = globalThis as { Deno?: { args: string[] }; process?: { argv: string[] } };
  const iterations = Number(g.Deno?.args[0] ?? g.process?.argv[2] ?? "") || 100_000;
  console.log(JSON.stringify(ffiReport(iterations)));
}
