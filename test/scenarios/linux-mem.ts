/**
 * The memory calls of a Linux program (src/linux/memory.ts), driven step by step through
 * guests/linux/memtest.elf (window 1): munmap of any mapping or part of one and reuse of the
 * range, mremap in place or moved, mprotect for real (a write to a read-only page is a GuestFault
 * at that address; PROT_NONE; PROT_EXEC), reset() and fork() restoring the snapshot's
 * permissions, the same permissions for an IPRE caller inside calls (whichever vCPU changed
 * them), and the rules while the program is shared (Remote.attach in this thread).
 * Runtime-neutral: test/linux-mem.test.ts runs it on Node (in process), Bun and Deno.
 */
import { readFileSync } from "node:fs";
import { Machine } from "../../src/machine/machine.ts";
import { connect } from "../../src/ipre/connect.ts";
import { Remote } from "../../src/ipre/share.ts";
import { libc } from "../../src/ffi/index.ts";
import { isMain } from "./common.ts";

export const MEMTEST = new Uint8Array(readFileSync(new URL("../../guests/linux/memtest.elf", import.meta.url)));
const PAGE = 4096;
export const PROT = { NONE: 0, R: 1, RW: 3, RX: 5 } as const;
const MREMAP_MAYMOVE = 1;

/** What a call gave: its result, or the error it threw (name, CR2, vector, message). */
export type Outcome = { value: number } | { error: string; cr2?: number; vector?: number; message: string };

function outcome(f: () => number): Outcome {
  try {
    return { value: f() };
  } catch (e) {
    const x = e as Error & { cr2?: number; vector?: number };
    return { error: x.name, cr2: x.cr2, vector: x.vector, message: x.message };
  }
}

export function memReport() {
  let out = "";
  const dec = new TextDecoder();
  using m = Machine.create({ window: 1, program: MEMTEST, linux: { stdout: (b) => (out += dec.decode(b)) }, timeoutMs: 20_000 });
  const map = (bytes: number, prot: number = PROT.RW) => m.call("mt_map", bytes, prot);
  const poke = (a: number, v: number) => outcome(() => m.call("mt_poke", a, v));
  const peek = (a: number) => outcome(() => m.call("mt_peek", a));
  const r: Record<string, unknown> = { runtime: libc.runtime, ready: out };

  // munmap: a middle mapping goes back and is reused; part of a mapping too.
  const a = map(PAGE);
  const b = map(2 * PAGE);
  const c = map(PAGE);
  r.layout = { bBelowA: a - b, cBelowB: b - c };
  r.unmapB = m.call("mt_unmap", b, 2 * PAGE);
  r.unmapBAgain = m.call("mt_unmap", b, 2 * PAGE); // nothing mapped there: 0
  r.unmapUnaligned = m.call("mt_unmap", b + 1, PAGE);
  r.unmapZero = m.call("mt_unmap", b, 0);
  r.reuseB = map(2 * PAGE) === b;
  const d = map(3 * PAGE);
  r.unmapMiddle = m.call("mt_unmap", d + PAGE, PAGE);
  r.reuseMiddle = map(PAGE) === d + PAGE;
  r.zeroedOnReuse = (m.call("mt_poke", b, 77), m.call("mt_unmap", b, 2 * PAGE), map(2 * PAGE) === b && m.call("mt_peek", b) === 0);

  // mremap: in place when the pages above are free, else moved with MREMAP_MAYMOVE.
  const e = map(PAGE);
  const f = map(PAGE); // just below e
  m.call("mt_poke", f, 1234);
  r.growNoRoom = m.call("mt_remap", f, PAGE, 2 * PAGE, 0);
  const moved = m.call("mt_remap", f, PAGE, 2 * PAGE, MREMAP_MAYMOVE);
  r.moved = { away: moved !== f, kept: m.call("mt_peek", moved), oldFreed: map(PAGE) === f };
  m.call("mt_unmap", e, PAGE);
  const g = e - PAGE; // f's range, mapped again just above
  r.inPlace = m.call("mt_remap", g, PAGE, 2 * PAGE, 0) === g;

  // mprotect for real.
  const p = map(PAGE);
  r.pokeRw = poke(p, 7);
  r.protectR = m.call("mt_protect", p, PAGE, PROT.R);
  r.pokeR = poke(p, 8);
  r.faultAddress = p;
  r.peekR = peek(p);
  r.protectRw = m.call("mt_protect", p, PAGE, PROT.RW);
  r.pokeAgain = poke(p, 9);
  r.protectNone = m.call("mt_protect", p, PAGE, PROT.NONE);
  r.peekNone = peek(p);
  m.call("mt_protect", p, PAGE, PROT.RW);
  r.jitNx = outcome(() => m.call("mt_jit", p, 1));
  r.protectRx = m.call("mt_protect", p, PAGE, PROT.RX);
  r.jitRx = outcome(() => m.call("mt_jit", p, 0));
  r.protectUnaligned = m.call("mt_protect", p + 8, PAGE, PROT.R);
  r.protectGuard = m.call("mt_protect", m.stackGuard, PAGE, PROT.RW);
  const gone = map(PAGE);
  m.call("mt_unmap", gone, PAGE);
  r.protectUnmapped = m.call("mt_protect", gone, PAGE, PROT.R);
  r.mapReadOnly = (() => {
    const q = map(PAGE, PROT.R);
    return { peek: peek(q), poke: poke(q, 1), faultAt: q };
  })();
  r.stdout = out;

  // reset(): back to the snapshot create() took (every mapping gone, every page RW again).
  m.reset();
  const first = map(PAGE);
  r.afterReset = { sameFirst: first === a, poke: poke(first, 5), wasProtected: poke(p, 5) };

  // A snapshot with a read-only page: reset() and fork() restore it.
  const q = map(PAGE);
  m.call("mt_poke", q, 11);
  m.call("mt_protect", q, PAGE, PROT.R);
  const snap = m.snapshot();
  m.call("mt_protect", q, PAGE, PROT.RW);
  const before = poke(q, 12);
  m.reset();
  r.snapshotProt = { before, afterReset: poke(q, 13), read: peek(q), faultAt: q };
  {
    using fork = Machine.fork(snap);
    r.fork = { poke: outcome(() => fork.call("mt_poke", q, 14)), read: outcome(() => fork.call("mt_peek", q)) };
  }
  // A machine that faulted resets and works.
  m.reset();
  r.faultThenReset = { fault: poke(q, 15), poke: (m.call("mt_protect", q, PAGE, PROT.RW), poke(q, 16)) };

  // IPRE: the caller sees the remote's permissions inside calls, whichever vCPU set them.
  m.reset();
  using caller = Machine.create({ window: 0, timeoutMs: 20_000 });
  connect(caller, m);
  const cpoke = (a: number, v: number) => outcome(() => caller.call(m.symbol("mt_poke"), a, v));
  const s = map(PAGE);
  const viaCaller = { before: cpoke(s, 1) } as Record<string, unknown>;
  m.call("mt_protect", s, PAGE, PROT.R); // on the remote's own vCPU
  viaCaller.afterOwnerProtect = cpoke(s, 2);
  viaCaller.faultAt = s;
  viaCaller.unprotect = caller.call(m.symbol("mt_protect"), s, PAGE, PROT.RW); // on the caller's vCPU, inside a call
  viaCaller.ownerPoke = poke(s, 3);
  viaCaller.callerPoke = cpoke(s, 4);
  viaCaller.protectInCall = caller.call(m.symbol("mt_protect"), s, PAGE, PROT.NONE);
  viaCaller.ownerPeek = peek(s);
  viaCaller.callerPeek = outcome(() => caller.call(m.symbol("mt_peek"), s));
  m.reset(); // back to RW for the caller too
  viaCaller.afterReset = (map(PAGE), cpoke(s, 5));
  r.ipre = viaCaller;

  // Shared with a Remote (this thread stands for a Worker): the owner's permissions are frozen,
  // the attached Remote's layer grows nothing.
  m.reset();
  const t = map(PAGE);
  const handle = m.share();
  let remoteOut = "";
  const remote = Remote.attach(handle, { linux: { stdout: (b) => (remoteOut += dec.decode(b)) } });
  using wcaller = Machine.create({ window: 0, memory: 4 * 1024 * 1024, timeoutMs: 20_000 });
  connect(wcaller, remote);
  const wcall = (fn: string, ...args: number[]) => outcome(() => wcaller.call(remote.symbol(fn), ...args));
  r.shared = {
    ownerProtect: m.call("mt_protect", t, PAGE, PROT.R),
    ownerProtectSame: m.call("mt_protect", t, PAGE, PROT.RW),
    ownerMap: map(PAGE) > 0,
    ownerMapNone: map(PAGE, PROT.NONE),
    remoteHello: wcall("mt_hello", 3),
    remoteMap: wcall("mt_map", PAGE, PROT.RW),
    remoteProtect: wcall("mt_protect", t, PAGE, PROT.R),
    remoteUnmap: wcall("mt_unmap", t, PAGE),
    remotePoke: wcall("mt_poke", t, 6),
    remoteOut,
  };
  remote.detach();
  r.afterDetach = m.call("mt_protect", t, PAGE, PROT.R);
  return r;
}

if (isMain(import.meta)) console.log(JSON.stringify(memReport()));
