/**
 * The state a shared remote's owner and its attached Remotes (src/ipre/share.ts) see in every
 * thread: a SharedArrayBuffer with Int32 [attached Remotes, owner closed], then (BigInt64 index
 * 1) the break of the owner's Linux program (src/linux/memory.ts). docs/ARCHITECTURE.md §3.
 */

/** The layout: Int32 indices, the BigInt64 index of the brk, its size in bytes. */
export const SHARED = { ATTACHED: 0, OWNER_CLOSED: 1, BRK64: 1, BYTES: 16 } as const;

export class SharedState {
  readonly #i32: Int32Array;
  readonly #i64: BigInt64Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(SHARED.BYTES)) {
    this.#i32 = new Int32Array(buffer);
    this.#i64 = new BigInt64Array(buffer);
  }

  /** Remotes attached in every thread. */
  attached(): number {
    return Atomics.load(this.#i32, SHARED.ATTACHED);
  }
  /** The break of the owner's Linux program, as the owner published it. */
  brk(): number {
    return Number(Atomics.load(this.#i64, SHARED.BRK64));
  }
  publishBrk(brk: number): void {
    Atomics.store(this.#i64, SHARED.BRK64, BigInt(brk));
  }

  /**
   * An attach: count it, *then* read the owner's mark (both sequentially consistent), so that a
   * concurrent close either sees this count or this attach sees the mark. False (uncounted) when
   * the owner closed.
   */
  tryAttach(): boolean {
    Atomics.add(this.#i32, SHARED.ATTACHED, 1);
    if (Atomics.load(this.#i32, SHARED.OWNER_CLOSED) === 0) return true;
    Atomics.sub(this.#i32, SHARED.ATTACHED, 1);
    return false;
  }
  detach(): void {
    Atomics.sub(this.#i32, SHARED.ATTACHED, 1);
  }
  /** The owner's close: mark it closed, *then* read the count; false (unmarked) while Remotes are attached. */
  tryClose(): boolean {
    Atomics.store(this.#i32, SHARED.OWNER_CLOSED, 1);
    if (Atomics.load(this.#i32, SHARED.ATTACHED) === 0) return true;
    Atomics.store(this.#i32, SHARED.OWNER_CLOSED, 0);
    return false;
  }
}
