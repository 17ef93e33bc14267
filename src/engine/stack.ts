/**
 * The IPRE frame stack of one vCPU (docs/ARCHITECTURE.md §3): one frame per nesting level, a call
 * into a remote (its merged root loaded) or a callback from the remote into caller code (the
 * normal root loaded: caller code reaches the remote only through allowed entries), innermost
 * last. Frames come from a preallocated pool, so a call or a return allocates nothing.
 *
 * A Cpu owns its stack (src/engine/owners.ts); what entering and leaving a frame does (merge,
 * unmerge, callbacks, aborting) is src/engine/frames.ts. The stack needs only what it releases of
 * a remote, so it imports neither: `L` is the Cpu's RemoteLink.
 */
import { IpreError } from "../errors.ts";

/** Nesting limit of IPRE calls and callbacks on one vCPU. */
export const MAX_IPRE_DEPTH = 64;

/** What the stack needs of a called remote: whom it is busy with, and to free it. */
export interface StackRemote {
  readonly busyWith: unknown;
  release(): void;
}

/** One level of IPRE on a vCPU. */
export interface Frame<L> {
  readonly kind: "call" | "callback";
  /** The link to the remote being called, or whose code made the callback. */
  readonly link: L;
  /** The real return address that the trap replaced. */
  readonly returnAddress: number;
  /** RSP at entry (pointing at the replaced return address). */
  readonly rsp: number;
}

/** Preallocated frames are written in place: the stack's own, mutable view of a Frame. */
type Slot<L> = { -readonly [K in keyof Frame<L>]: Frame<L>[K] };

export class FrameStack<L extends { readonly remote: StackRemote }> {
  readonly #frames: Slot<L>[] = [];
  readonly #pool: Slot<L>[] = Array.from({ length: MAX_IPRE_DEPTH + 1 }, () => ({ kind: "call" as const, link: undefined as unknown as L, returnAddress: 0, rsp: 0 }));

  /**
   * `owner`: the Cpu whose stack this is (drop() frees only the remotes busy with it); `onDepth`
   * hears every change of depth (the fast path's table: the handler takes only the outermost call).
   */
  constructor(
    readonly owner: unknown,
    readonly name: string,
    private readonly onDepth: (depth: number) => void,
  ) {}

  /** Frames in progress, innermost last. */
  get frames(): readonly Frame<L>[] {
    return this.#frames;
  }
  get depth(): number {
    return this.#frames.length;
  }
  /** The innermost frame, if any. */
  top(): Frame<L> | undefined {
    return this.#frames[this.#frames.length - 1];
  }
  /** Remotes called on this stack, each once. */
  remotes(): L["remote"][] {
    return [...new Set(this.#frames.map((f) => f.link.remote))];
  }
  /** Push a frame from the pool (the caller checked the depth against MAX_IPRE_DEPTH). */
  push(kind: Frame<L>["kind"], link: L, returnAddress: number, rsp: number): Frame<L> {
    const frame = this.#pool[this.#frames.length];
    if (frame === undefined) throw new IpreError(`${this.name}: more than ${MAX_IPRE_DEPTH} nested IPRE calls and callbacks`);
    frame.kind = kind;
    frame.link = link;
    frame.returnAddress = returnAddress;
    frame.rsp = rsp;
    this.#frames.push(frame);
    this.onDepth(this.#frames.length);
    return frame;
  }
  /** Pop the innermost frame; a called remote no longer on the stack is free again. */
  pop(): void {
    const top = this.#frames.pop();
    this.onDepth(this.#frames.length);
    if (top?.kind === "call" && !this.#holds(top.link.remote)) top.link.remote.release();
  }
  /** Drop every frame (a call ended with an error), freeing the remotes it occupied. */
  drop(): void {
    const frames = [...this.#frames];
    this.clear();
    for (const f of frames) if (f.link.remote.busyWith === this.owner) f.link.remote.release();
  }
  /** Forget every frame (the vCPU rebooted; its remotes were reset or released already). */
  clear(): void {
    this.#frames.length = 0;
    this.onDepth(0);
  }
  /** Whether a call into `remote` is still on the stack (a loop: no closure on the return path). */
  #holds(remote: StackRemote): boolean {
    const frames = this.#frames;
    for (let i = 0; i < frames.length; i++) if (frames[i]?.link.remote === remote) return true;
    return false;
  }
}
