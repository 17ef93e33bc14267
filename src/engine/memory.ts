/**
 * Guest memory of one machine: a memfd mapped MAP_PRIVATE into this process, seen through typed
 * views. The memfd is the *implicit baseline* (what reset() returns to without a snapshot);
 * snapshot() moves the mapping onto a frozen copy; forks map a snapshot's memfd privately
 * (docs/ARCHITECTURE.md §7). Offsets here are from the window base; bounds and rights are the
 * Machine's business.
 */
import { libc } from "../ffi/index.ts";
import { MADV_DONTNEED, MAP_ANONYMOUS, MAP_FAILED, MAP_FIXED, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, MFD_CLOEXEC, NativeBuffer, PROT_READ, PROT_WRITE } from "../ffi/native.ts";
import { OsError } from "../errors.ts";
import { getI64, getU64, setU64 } from "../u64.ts";
import type { PtMemory } from "../x86/paging.ts";

/**
 * SAFETY (views into guest memory): `u8`/`u32`/`dv`, and every view a user took from
 * `Machine.bytes()`/`rawMemory()`, point into the host mapping of guest memory. They are valid
 * while the mapping lives, and follow it through `freeze()` (the same host address). At `close()`
 * the mapping must never be released under a view a caller still holds: the ArrayBuffer is
 * detached first (every view of it then has length 0 and reads `undefined`), and where the
 * runtime cannot detach an FFI buffer (Node 20 has no `ArrayBuffer.prototype.transfer`, and
 * koffi's buffers do not detach through `structuredClone`) and a view was handed out
 * (`GuestMemory.lend`), the range is replaced by an anonymous, zero-filled, unreserved mapping
 * that is unmapped only once that ArrayBuffer is garbage-collected. Either way a stale view never
 * reaches unmapped memory, nor memory that anything else reuses.
 */
const placeholders = new FinalizationRegistry<[number, number]>(([addr, size]) => libc.munmap(addr, size));
/** The GuestMemory whose mapping each live ArrayBuffer covers (for GuestMemory.lend). */
const owners = new WeakMap<ArrayBuffer, GuestMemory>();

/** Detach an ArrayBuffer (its views get length 0); false where this runtime cannot. */
function detach(buf: ArrayBuffer): boolean {
  const transfer = (buf as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer }).transfer;
  if (typeof transfer !== "function") return false;
  try {
    transfer.call(buf, 0);
  } catch {
    return false; // a non-detachable buffer
  }
  return buf.byteLength === 0;
}

export class GuestMemory {
  /** The memfd under the mapping while it is the implicit baseline; -1 once a snapshot took over, and for forks. */
  memfd = -1;
  /** Host address of the mapping (0 once closed). */
  hostAddr = 0;
  u8: Uint8Array = new Uint8Array(0);
  u32: Uint32Array = new Uint32Array(0);
  dv: DataView = new DataView(new ArrayBuffer(0));

  private constructor(
    /** Guest-physical (= virtual) address of byte 0. */
    readonly base: number,
    readonly size: number,
  ) {}

  /** No memory yet (a machine before setup) or any more (after close). */
  static none(base: number, size: number): GuestMemory {
    return new GuestMemory(base, size);
  }

  /**
   * Views of memory another machine owns (a remote shared with this thread, src/ipre/share.ts):
   * close() drops the views and never unmaps.
   */
  static borrow(base: number, size: number, hostAddr: number): GuestMemory {
    const m = new GuestMemory(base, size);
    m.#borrowed = true;
    m.#adopt(hostAddr);
    return m;
  }
  #borrowed = false;

  /** A new zeroed memfd, mapped privately: the guest's writes are copy-on-write pages. */
  static create(base: number, size: number, name: string): GuestMemory {
    const m = new GuestMemory(base, size);
    m.memfd = newMemfd(name, size);
    try {
      m.#adopt(mapOrThrow(0, size, MAP_PRIVATE, m.memfd, "mmap(guest memory)"));
    } catch (e) {
      m.close();
      throw e;
    }
    return m;
  }

  /** A private (copy-on-write) mapping of a snapshot's memfd. */
  static fromSnapshot(base: number, size: number, fd: number): GuestMemory {
    const m = new GuestMemory(base, size);
    m.#adopt(mapOrThrow(0, size, MAP_PRIVATE, fd, "mmap(snapshot)"));
    return m;
  }

  /** The ArrayBuffer over the mapping, which every view shares (detached at close). */
  #buffer: ArrayBuffer | undefined;
  /** A view of this memory was handed to user code (Machine.bytes/rawMemory). */
  #lent = false;

  /** Note that `view` (of some machine's guest memory) goes to user code, which may keep it. */
  static lend(view: Uint8Array): Uint8Array {
    const owner = owners.get(view.buffer as ArrayBuffer);
    if (owner !== undefined) owner.#lent = true;
    return view;
  }

  #adopt(addr: number): void {
    this.hostAddr = addr;
    const buf = libc.view(addr, this.size);
    this.#buffer = buf;
    owners.set(buf, this);
    this.#lent = false;
    this.u8 = new Uint8Array(buf);
    this.u32 = new Uint32Array(buf);
    this.dv = new DataView(buf);
  }

  /** Run `write` on a shared view of the implicit baseline, if there is one (no snapshot yet, not a fork). */
  withBaseline(write: (baseline: Uint8Array) => void): void {
    if (this.memfd < 0) return;
    const addr = mapOrThrow(0, this.size, MAP_SHARED, this.memfd, "mmap(baseline)");
    try {
      write(new Uint8Array(libc.view(addr, this.size)));
    } finally {
      libc.munmap(addr, this.size);
    }
  }

  /**
   * Copy the current contents into a new memfd and continue on a private mapping of it at the
   * same host address (so every memslot that points here stays valid; KVM's MMU notifiers drop
   * the old pages). The baseline memfd is released. Returns the new memfd (the snapshot's).
   */
  freeze(name: string): number {
    const fd = newMemfd(name, this.size);
    try {
      const tmp = mapOrThrow(0, this.size, MAP_SHARED, fd, "mmap(snapshot)");
      new Uint8Array(libc.view(tmp, this.size)).set(this.u8);
      libc.munmap(tmp, this.size);
      const addr = libc.mmap(this.hostAddr, this.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
      if (addr !== this.hostAddr) throw new OsError("mmap(MAP_FIXED snapshot)", libc.errno());
    } catch (e) {
      libc.close(fd);
      throw e;
    }
    if (this.memfd >= 0) libc.close(this.memfd);
    this.memfd = -1;
    return fd;
  }

  /** Drop the private pages of [offset, size): they read as the file under the mapping again. */
  discard(offset: number): void {
    if (libc.madvise(this.hostAddr + offset, this.size - offset, MADV_DONTNEED) < 0) throw new OsError("madvise(MADV_DONTNEED)", libc.errno());
  }

  /** The u64 at u32 index `i` (index = offset >> 2). */
  getU64At(i: number): number {
    return getU64(this.u32, i);
  }
  getI64At(i: number): number {
    return getI64(this.u32, i);
  }
  setU64At(i: number, value: number): void {
    setU64(this.u32, i, value);
  }

  /** Page-table access by guest-physical address, straight into memory (before the vCPU first runs). */
  readonly direct: PtMemory = {
    read64: (gpa) => this.dv.getBigUint64(gpa - this.base, true),
    write64: (gpa, v) => this.dv.setBigUint64(gpa - this.base, v, true),
    write64Parts: (gpa, lo, hi) => {
      const i = (gpa - this.base) >> 2;
      this.u32[i] = lo;
      this.u32[i + 1] = hi;
    },
  };

  /** Unmap and close (see SAFETY above for the views still held). Idempotent. */
  close(): void {
    const buf = this.#buffer;
    this.#buffer = undefined;
    const detached = buf !== undefined && detach(buf);
    if (this.hostAddr && !this.#borrowed) {
      if (detached || buf === undefined || !this.#lent) libc.munmap(this.hostAddr, this.size);
      else {
        // Views may outlive the mapping: give them zero pages that cost nothing until written,
        // and unmap those once the buffer is unreachable.
        const at = libc.mmap(this.hostAddr, this.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
        if (at === this.hostAddr) placeholders.register(buf, [at, this.size]);
        else libc.munmap(this.hostAddr, this.size); // cannot happen (MAP_FIXED); never leave the memfd pages mapped
      }
    }
    if (this.memfd >= 0) libc.close(this.memfd);
    this.hostAddr = 0;
    this.memfd = -1;
    this.u8 = new Uint8Array(0);
    this.u32 = new Uint32Array(0);
    this.dv = new DataView(new ArrayBuffer(0));
  }
}

function newMemfd(name: string, size: number): number {
  using buf = NativeBuffer.alloc(64);
  const fd = libc.memfd_create(buf.writeCString(0, `ipre-${name}`), MFD_CLOEXEC);
  if (fd < 0) throw new OsError("memfd_create", libc.errno());
  if (libc.ftruncate(fd, size) < 0) {
    const errno = libc.errno();
    libc.close(fd);
    throw new OsError("ftruncate(memfd)", errno);
  }
  return fd;
}

function mapOrThrow(addr: number, size: number, flags: number, fd: number, what: string): number {
  const got = libc.mmap(addr, size, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (got === MAP_FAILED) throw new OsError(what, libc.errno());
  return got;
}
