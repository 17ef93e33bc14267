/**
 * Runtime-neutral helpers over {@link Libc}: native memory the caller owns, and the Linux x86-64
 * constants that go with the libc calls.
 */
import { OsError } from "../errors.ts";
import { libc as defaultLibc, type Libc } from "./index.ts";

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;

export const MAP_SHARED = 0x1;
export const MAP_PRIVATE = 0x2;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
/** What `mmap` returns on failure. */
export const MAP_FAILED = -1;

export const O_RDWR = 2;
export const O_CLOEXEC = 0x80000;
export const MFD_CLOEXEC = 1;
export const MADV_DONTNEED = 4;

export const SIG_BLOCK = 0;
export const SIG_UNBLOCK = 1;
export const SIG_SETMASK = 2;

export const CLOCK_REALTIME = 0;
export const CLOCK_MONOTONIC = 1;

const encoder = new TextEncoder();

/** Detaches an ArrayBuffer where the runtime can (Bun, Deno, Node >= 21), so stale views throw. */
function detach(buffer: ArrayBuffer): void {
  const transfer = (buffer as ArrayBuffer & { transfer?: (length?: number) => ArrayBuffer }).transfer;
  if (typeof transfer !== "function") return;
  try {
    transfer.call(buffer, 0);
  } catch {
    // Not detachable on this runtime: the views simply stay (and must not be used).
  }
}

/**
 * Anonymous private read/write memory from `mmap`, with zero-copy JS views over it. Use it for
 * C strings, structs and out-parameters passed to {@link Libc} calls.
 *
 * ```ts
 * using buf = NativeBuffer.alloc(4096);
 * const fd = libc.open(buf.writeCString(0, "/dev/kvm"), O_RDWR | O_CLOEXEC);
 * ```
 */
export class NativeBuffer implements Disposable {
  /** Native address of byte 0. */
  readonly address: number;
  readonly length: number;
  /** Zero-copy byte view over the whole mapping. */
  readonly bytes: Uint8Array;
  /** Zero-copy DataView over the whole mapping (use little-endian accessors). */
  readonly view: DataView;
  #closed = false;
  readonly #libc: Libc;

  constructor(length: number, lib: Libc = defaultLibc) {
    if (!Number.isSafeInteger(length) || length <= 0) {
      throw new RangeError(`NativeBuffer length must be a positive integer, got ${length}`);
    }
    const address = lib.mmap(0, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (address === MAP_FAILED) throw new OsError("mmap", lib.errno(), `${length} bytes of scratch memory`);
    this.#libc = lib;
    this.address = address;
    this.length = length;
    const buffer = lib.view(address, length);
    this.bytes = new Uint8Array(buffer);
    this.view = new DataView(buffer);
  }

  static alloc(length: number, lib: Libc = defaultLibc): NativeBuffer {
    return new NativeBuffer(length, lib);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Native address of byte `offset`. */
  addressOf(offset: number): number {
    if (offset < 0 || offset > this.length) throw new RangeError(`offset ${offset} outside 0..${this.length}`);
    return this.address + offset;
  }

  /** Writes `s` as UTF-8 plus a NUL at `offset`; returns the native address of the string. */
  writeCString(offset: number, s: string): number {
    const encoded = encoder.encode(s);
    if (encoded.includes(0)) throw new RangeError("C string contains a NUL byte");
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + encoded.length + 1 > this.length) {
      throw new RangeError(`C string of ${encoded.length + 1} bytes at offset ${offset} does not fit in ${this.length}`);
    }
    this.bytes.set(encoded, offset);
    this.bytes[offset + encoded.length] = 0;
    return this.address + offset;
  }

  /** Unmaps the memory. Idempotent. The views must not be used afterwards. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    detach(this.bytes.buffer as ArrayBuffer);
    if (this.#libc.munmap(this.address, this.length) !== 0) {
      throw new OsError("munmap", this.#libc.errno(), `0x${this.address.toString(16)}+${this.length}`);
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
