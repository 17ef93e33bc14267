/**
 * Direct calls from JS (`Connection.call`, docs/ARCHITECTURE.md §3 "Direct calls"): a remote's
 * allowed function run on the caller machine's vCPU with no caller code in between, one exit per
 * call. Each case is paired with the same thing done by a guest-made remote call (kvcaller.elf
 * calling kvstore.elf), which must behave the same: results, the allow-list, a busy remote, a
 * fault inside the remote, hostcalls, callbacks, timeouts, forged returns, a Linux remote's
 * syscalls and abort; and after a direct call, caller code cannot reach remote memory.
 *
 * Inputs are pseudo-random from `seed`; test/direct.test.ts recomputes every expected value.
 *
 *   direct.ts <seed>     prints one JSON line
 */
import { readFileSync } from "node:fs";
import { libc } from "../../src/ffi/index.ts";
import { RemoteFault } from "../../src/errors.ts";
import { Machine } from "../../src/machine/machine.ts";
import { connect } from "../../src/ipre/connect.ts";
import { exampleElf, isMain, outcome, randInt, rng, scaled, scenarioArgs, type Outcome } from "./common.ts";
import { busyWith } from "./internals.ts";

/** How many direct calls the exit count covers (fewer in the nested harness). */
export const DIRECT_LOOP = scaled(2000, 20);

const COUNTER = new Uint8Array(readFileSync(new URL("../../guests/linux/counter.elf", import.meta.url)));

/** What a call did and how many exits of its caller it took. */
interface Counted {
  outcome: Outcome;
  exits: number;
}

/** A RemoteFault's signal and output (a Linux remote's abort), besides its Outcome. */
interface Abort {
  outcome: Outcome;
  signal?: number;
  output?: string;
  remoteMustReset: boolean;
}

function counted(m: Machine, fn: () => unknown): Counted {
  const e0 = m.exits;
  const o = outcome(fn);
  return { outcome: o, exits: m.exits - e0 };
}

function abortOf(fn: () => unknown, remote: Machine): Abort {
  let signal: number | undefined;
  let output: string | undefined;
  const o = outcome(() => {
    try {
      return fn();
    } catch (e) {
      if (e instanceof RemoteFault) ((signal = e.signal), (output = e.output));
      throw e;
    }
  });
  return { outcome: o, signal, output, remoteMustReset: remote.needsReset !== undefined };
}

/**
 * Flat remote code (window 2) for forged returns: `ok` returns 7; `forge_rsp` returns to its
 * return address with RSP 8 lower than a `ret` leaves it (pop rax; push 0; push rax; ret);
 * `forge_trap` jumps to the caller's return trap (whose address it is given in RDI) with the
 * RSP of a real return (add rsp, 8; jmp rdi); `ret_data` returns into the address in RDI (mov
 * [rsp], rdi; ret), given its own no-execute memory: a fault of the remote, not a return.
 */
const FLAT = new Uint8Array([
  0xb8, 0x07, 0x00, 0x00, 0x00, 0xc3, // ok: mov eax, 7; ret
  0x58, 0x6a, 0x00, 0x50, 0xc3, // forge_rsp: pop rax; push 0; push rax; ret
  0x48, 0x83, 0xc4, 0x08, 0xff, 0xe7, // forge_trap: add rsp, 8; jmp rdi
  0x48, 0x89, 0x3c, 0x24, 0xc3, // ret_data: mov [rsp], rdi; ret
]);
const FLAT_SYMBOLS = { ok: 0, forge_rsp: 6, forge_trap: 11, ret_data: 17 };

export function directReport(seed: number) {
  const r = rng(seed);
  let remoteHandlerCalls = 0;
  let inside: { busy: string | undefined; otherDirect: Outcome; otherGuest: Outcome; ownDirect: Outcome } | undefined;
  let other: { caller: Machine; conn: ReturnType<typeof connect> } | undefined;
  const remote = Machine.create({
    window: 1,
    program: exampleElf("kvstore"),
    name: "kvstore",
    hostcalls: {
      1: (x) => {
        remoteHandlerCalls++;
        if (x === -1 && other) {
          // Inside a direct call into kvstore: kvstore is busy with kvcaller.
          const k = 3;
          inside = {
            busy: busyWith(remote),
            otherDirect: outcome(() => other!.conn.call("kv_lookup", k)),
            otherGuest: outcome(() => other!.caller.call("serve", k)),
            ownDirect: outcome(() => conn.call("kv_lookup", k)),
          };
        }
        return x * 3 + 1;
      },
    },
  });
  const caller = Machine.create({ window: 0, program: exampleElf("kvcaller"), name: "kvcaller" });
  const conn = connect(caller, remote);
  const other2 = Machine.create({ window: 0, program: exampleElf("kvcaller"), name: "kvcaller2" });
  other = { caller: other2, conn: connect(other2, remote, { allow: ["kv_lookup"] }) };
  const sym = { kv_insert: remote.symbol("kv_insert"), kv_lookup: remote.symbol("kv_lookup"), kv_secret: remote.symbol("kv_secret"), kv_data_marker: remote.symbol("kv_data_marker") };
  try {
    // ---- results and exits: one exit per direct call ----
    const keys = Array.from({ length: 8 }, () => randInt(r, 0, 1_000_000));
    const inserts = keys.map((k) => counted(caller, () => conn.call("kv_insert", k, k * 10 + 1)));
    const lookups = keys.map((k) => counted(caller, () => conn.call(sym.kv_lookup, k))); // by address
    const absentKey = 2_000_001 + randInt(r, 0, 1000);
    const absent = counted(caller, () => conn.call("kv_lookup", absentKey));
    const e0 = caller.exits;
    let loopWrong = 0;
    for (let i = 0; i < DIRECT_LOOP; i++) if (conn.call("kv_lookup", keys[i % keys.length]!) !== keys[i % keys.length]! * 10 + 1) loopWrong++;
    const loop = { n: DIRECT_LOOP, wrong: loopWrong, exits: caller.exits - e0 };
    const count = { direct: counted(caller, () => conn.call("kv_count")), byOwner: remote.call("kv_count") };
    const big = counted(caller, () => conn.callBigInt("kv_lookup", 2_000_000)); // -1 as a bigint
    const invoked = counted(caller, () => conn.invoke("kv_lookup", [keys[0]!], { timeoutMs: 10_000 }));
    // A guest-made call after direct ones and a direct one after it: the same store.
    const serveKey = keys[1]!;
    const mixed = { serve: counted(caller, () => caller.call("serve", serveKey)), direct: counted(caller, () => conn.call("kv_lookup", serveKey)) };

    // ---- arguments: bytes copied to the caller's stack, a caller buffer read in place ----
    const bytes = Array.from({ length: randInt(r, 1, 300) }, () => randInt(r, 0, 255));
    const checksum = { bytes, direct: counted(caller, () => conn.call("checksum", new Uint8Array(bytes), bytes.length)), guest: outcome(() => caller.call("remote_checksum", new Uint8Array(bytes), bytes.length)) };
    const words = Array.from({ length: randInt(r, 1, 64) }, () => `${BigInt(randInt(r, 0, 2 ** 31)) * 4294967311n}`);
    const buf = caller.program!.highest + 4096 - (caller.program!.highest % 4096);
    words.forEach((w, i) => caller.writeU64(buf + 8 * i, BigInt.asUintN(64, BigInt(w))));
    const sum64 = { words, direct: counted(caller, () => `${BigInt.asUintN(64, conn.callBigInt("sum64", buf, 8 * words.length))}`), guest: outcome(() => `${BigInt.asUintN(64, caller.callBigInt("remote_sum64", buf, 8 * words.length))}`) };
    // The remote scales a vector in caller memory in place.
    const vec = caller.symbol("vec");
    const vector = Array.from({ length: 5 }, () => randInt(r, -1000, 1000));
    vector.forEach((v, i) => caller.writeU64(vec + 8 * i, BigInt.asUintN(64, BigInt(v))));
    const scale = randInt(r, 2, 9);
    const vecScale = { vector, k: scale, direct: counted(caller, () => conn.call("vec_scale", vec, vector.length, scale)), after: vector.map((_, i) => caller.readI64(vec + 8 * i)) };

    // ---- the allow-list ----
    const allow = {
      secret: counted(caller, () => conn.call("kv_secret")),
      secretByAddress: counted(caller, () => conn.call(sym.kv_secret)),
      guestSecret: outcome(() => caller.call("call_secret")),
      notInRemote: counted(caller, () => conn.call(caller.symbol("double_it"), 1)),
      noSymbol: outcome(() => conn.call("no_such_function")),
      narrowed: outcome(() => other!.conn.call("kv_insert", 1, 2)), // only kv_lookup is allowed there
      narrowedOk: outcome(() => other!.conn.call("kv_lookup", keys[0]!)),
      tooManyArgs: outcome(() => conn.call("kv_count", 1, 2, 3, 4, 5, 6, 7)),
      after: counted(caller, () => conn.call("kv_lookup", keys[0]!)),
    };

    // ---- hostcalls of the remote, a busy remote ----
    const hx = randInt(r, 1, 1000);
    const hostcall = { x: hx, direct: counted(caller, () => conn.call("remote_hostcall", hx)), guest: counted(caller, () => caller.call("call_remote_hostcall", hx)), handlerCalls: remoteHandlerCalls };
    const busyCall = counted(caller, () => conn.call("remote_hostcall", -1));
    const busy = { call: busyCall, inside: inside ?? null, busyAfter: busyWith(remote) ?? null, otherAfter: outcome(() => other!.conn.call("kv_lookup", keys[0]!)) };

    // ---- callbacks into caller code ----
    const cx = randInt(r, -1000, 1000);
    const callback = { x: cx, direct: counted(caller, () => conn.call("call_back", caller.symbol("double_it"), cx)), guest: counted(caller, () => caller.call("via_callback", cx)) };

    // ---- a fault inside the remote: the same RemoteFault as a guest-made call ----
    const fault = {
      direct: counted(caller, () => conn.call("remote_fault")),
      guest: counted(caller, () => caller.call("call_remote_fault")),
      busyAfter: busyWith(remote) ?? null,
      inRemoteCallAfter: caller.inRemoteCall,
      directAfter: outcome(() => conn.call("kv_lookup", keys[2]!)),
      guestAfter: outcome(() => caller.call("serve", keys[3]!)),
      ownerAfter: outcome(() => remote.call("kv_lookup", keys[2]!)),
    };

    // ---- isolation: after a direct call caller code cannot read remote memory ----
    conn.call("kv_count");
    const isolation = {
      readData: outcome(() => caller.call("read_remote", sym.kv_data_marker)),
      readCode: outcome(() => caller.call("read_remote", sym.kv_lookup)),
      callSecret: outcome(() => caller.call(sym.kv_secret)), // a vmcall straight at a non-allowed address
      busyAfter: busyWith(remote) ?? null,
      address: sym.kv_data_marker,
    };

    // ---- FSBASE follows whose code runs ----
    caller.fsBase = 0x1000 * randInt(r, 1, 1000);
    remote.fsBase = 0x1000 * randInt(r, 1001, 2000);
    const fsRemote = counted(caller, () => conn.call("remote_fsbase"));
    const out = buf + 4096;
    caller.call("fsbase_trip", out); // starts right after the direct call: the caller's FSBASE again
    const fsbase = { caller: caller.fsBase, remote: remote.fsBase, direct: fsRemote, trip: [0, 8, 16].map((o) => caller.readI64(out + o)) };
    caller.fsBase = 0;
    remote.fsBase = 0;

    // ---- forged returns: refused on both paths ----
    const flat = Machine.create({ window: 2, name: "flat" });
    flat.loadFlat(FLAT, { symbols: FLAT_SYMBOLS, exports: Object.keys(FLAT_SYMBOLS) });
    const flatConn = connect(caller, flat);
    const noExec = flat.symbol("ok") + 0x1000; // the page after the code: read-write, no-execute
    const retData = () => {
      const o = outcome(() => caller.call(flat.symbol("ret_data"), noExec));
      flat.reset();
      return { outcome: o, after: outcome(() => caller.call(flat.symbol("ok"))) };
    };
    const forged = {
      retData: retData(),
      ok: counted(caller, () => flatConn.call("ok")),
      okGuest: outcome(() => caller.call(flat.symbol("ok"))),
      rsp: counted(caller, () => flatConn.call("forge_rsp")),
      rspGuest: outcome(() => caller.call(flat.symbol("forge_rsp"))),
      trap: counted(caller, () => flatConn.call("forge_trap", caller.returnTrap)),
      busyAfter: busyWith(flat) ?? null,
      after: outcome(() => flatConn.call("ok")),
      afterGuest: outcome(() => caller.call("serve", keys[4]!)),
      rspGuestHostPath: (() => {
        flatConn.disconnect();
        const onTrapPath = connect(caller, flat, { path: "trap" });
        try {
          return {
            outcome: outcome(() => caller.call(flat.symbol("forge_rsp"))),
            retData: retData(),
            ok: outcome(() => caller.call(flat.symbol("ok"))),
          };
        } finally {
          onTrapPath.disconnect();
        }
      })(),
      exitTrap: caller.exitTrap,
      returnTrap: caller.returnTrap,
      noExec,
    };
    flat.close();

    // ---- a timeout inside the remote: caller and remote must be reset, as after a guest-made one ----
    const timeout = (run: () => unknown) => {
      const o = outcome(run);
      const state = { callerRefuses: outcome(() => conn.call("kv_count")), ownerRefuses: outcome(() => remote.call("kv_count")), otherRefused: outcome(() => other!.conn.call("kv_lookup", keys[0]!)) };
      caller.reset();
      remote.reset();
      return { outcome: o, ...state, after: outcome(() => conn.call("kv_insert", 5, 51)), afterLookup: outcome(() => caller.call("serve", 5)) };
    };
    const timeouts = {
      direct: timeout(() => conn.invoke("remote_spin", [], { timeoutMs: 50 })),
      guest: timeout(() => caller.invoke("call_remote_spin", [], { timeoutMs: 50 })),
      defaultMs: (() => {
        caller.timeoutMs = 50;
        try {
          return timeout(() => conn.call("remote_spin"));
        } finally {
          caller.timeoutMs = 0;
        }
      })(),
    };

    // ---- a disconnected connection ----
    other.conn.disconnect();
    const disconnected = outcome(() => other.conn.call("kv_lookup", 1));

    return {
      runtime: libc.runtime, seed, sym, keys, inserts, lookups, absentKey, absent, loop, count, big, invoked, mixed, checksum, sum64, vecScale,
      allow, hostcall, busy, callback, fault, isolation, fsbase, forged, timeouts, disconnected, linux: linuxRemote(),
    };
  } finally {
    other.caller.close();
    caller.close();
    remote.close();
  }
}

/** A Linux remote (counter.elf): its syscalls during a direct call, and its abort. */
function linuxRemote() {
  const dec = new TextDecoder();
  let out = "";
  const counter = Machine.create({ window: 1, program: COUNTER, linux: { stdout: (b) => (out += dec.decode(b)), stderr: () => {} }, timeoutMs: 20_000 });
  const caller = Machine.create({ window: 0, name: "plain-caller", timeoutMs: 20_000 });
  try {
    const conn = connect(caller, counter);
    out = "";
    const errno = counted(caller, () => conn.call("counter_errno")); // close(-1): EBADF, one syscall
    const keep = counted(caller, () => conn.call("counter_keep", "direct"));
    const keepGuest = outcome(() => caller.call(counter.symbol("counter_keep"), "guest"));
    const dump = outcome(() => conn.call("counter_dump"));
    const dumpOut = out;
    const direct = abortOf(() => conn.call("counter_abort", "direct"), counter);
    const refusedBeforeReset = outcome(() => conn.call("counter_calls"));
    counter.reset();
    const guest = abortOf(() => caller.call(counter.symbol("counter_abort"), "guest"), counter);
    counter.reset();
    return { errno, keep, keepGuest, dump, dumpOut, abort: { direct, guest, refusedBeforeReset }, after: outcome(() => conn.call("counter_errno")) };
  } finally {
    caller.close();
    counter.close();
  }
}

export type DirectReport = ReturnType<typeof directReport>;

if (isMain(import.meta)) {
  const [seed = "1"] = scenarioArgs();
  console.log(JSON.stringify(directReport(Number(seed))));
}
