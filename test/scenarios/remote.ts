/**
 * IPRE scenario: a caller VM (kvcaller.elf, window 0) calls a remote VM's key-value store
 * (kvstore.elf, window 1). Many calls, zero-copy vectors, callbacks, remote hostcalls, the
 * allow-list, data loans, remote faults, isolation after unmerge, disconnect, busy remotes and
 * close order.
 *
 * Inputs are pseudo-random from `seed`; the report carries them and `test/remote.test.ts`
 * recomputes every expected value. Run directly under Bun or Deno it prints one JSON line
 * (`bun test/scenarios/remote.ts <seed>`).
 */
import "./call-path.ts";
import { libc } from "../../src/ffi/index.ts";
import { Machine, type HostcallFn } from "../../src/machine/machine.ts";
import { connect, type Connection } from "../../src/ipre/connect.ts";
import { exampleElf, isMain, outcome, randInt, rng, scenarioArgs, type Outcome } from "./common.ts";
import { busyWith, callerCount, linkCount } from "./internals.ts";

export interface Symbols {
  kv_insert: number;
  kv_lookup: number;
  kv_count: number;
  kv_secret: number;
  kv_data_marker: number;
  remote_fault: number;
  call_back: number;
  remoteBase: number;
  remoteEnd: number;
}

export interface RemoteReport {
  runtime: string;
  seed: number;
  sym: Symbols;
  /** Names of the entries a default connect() allows. */
  allowedNames: string[];
  fill: { n: number; added: number; remoteCount: Outcome; entries: number };
  serve: { keys: number[]; results: number[]; misses: number; entries: number; elapsedMs: number };
  callRemoteN: { n: number; result: number; entries: number };
  persistence: { refill: number; count: Outcome; lookups: Array<[number, number]> };
  vector: Array<{ n: number; k: number; sum: number; elements: number[]; localSum: number }>;
  callbacks: Array<[number, number]>;
  checksum: { bytes: number[]; result: number };
  sum64: { length: number; result: string };
  /** FSBASE seen by the caller before, by the remote during, and by the caller after a call. */
  fsbase: { caller: number; remote: number; seen: number[] };
  hostcalls: {
    m: number;
    c: number;
    results: Array<{ x: number; result: number }>;
    remoteHandlerCalls: number;
    callerHandlerCalls: number;
    owner: string[];
    remoteName: string;
    insideInRemoteCall: boolean;
    insideBusyWithCaller: boolean;
    insideRemoteCall: Outcome;
    afterInRemoteCall: boolean;
    afterBusy: boolean;
    thrown: { message: string; outcome: Outcome; readAfter: Outcome; next: { x: number; result: Outcome } };
  };
  disallowed: {
    outcome: Outcome;
    entries: number;
    memoryUnchanged: boolean;
    countBefore: number;
    countAfter: number;
    busyAfter: boolean;
    inRemoteCallAfter: boolean;
    next: { key: number; result: Outcome };
    hostVmcallSecret: Outcome;
    hostVmcallCount: Outcome;
  };
  allowList: {
    allowedNames: string[];
    fill: Outcome;
    serve: { key: number; result: Outcome };
    viaCallback: Outcome;
    byAddress: { allowedNames: string[]; callRemoteN: Outcome; serve: Outcome };
    countAfter: Outcome;
  };
  loan: {
    none: { readRemote: Outcome; readMarker: Outcome; next: { key: number; result: Outcome } };
    read: {
      loan: string;
      initial: Outcome;
      hostValue: number;
      readRemote: Outcome;
      readMarker: Outcome;
      writeMarker: Outcome;
      markerAfterWrite: number;
      next: { key: number; result: Outcome };
      readAfterCall: Outcome;
      callSecret: Outcome;
      readCode: { value: Outcome; expected: string };
    };
    afterLoanDisconnect: Outcome;
  };
  unmerge: Array<{ key: number; serve: Outcome; readMarker: Outcome; readCode: Outcome }>;
  unmergeAfter: { callback: Outcome; callbackRead: Outcome; hostcall: Outcome; hostcallRead: Outcome };
  remoteFault: {
    outcome: Outcome;
    readAfter: Outcome;
    busyAfter: boolean;
    inRemoteCallAfter: boolean;
    next: { key: number; result: Outcome };
    remoteCount: Outcome;
    twice: Outcome;
    nextAgain: { x: number; result: Outcome };
  };
  disconnect: {
    connectedAfter: boolean;
    links: number;
    callers: number;
    missKey: number;
    miss: Outcome;
    cachedKey: number;
    cached: Outcome;
    local: Outcome;
    twice: Outcome;
    reconnect: { key: number; result: Outcome };
  };
  nested: {
    x: number;
    result: Outcome;
    entries: number;
    /** Callbacks run unmerged: caller code called back by the remote cannot reach the remote except through allowed entries. */
    isolation: { secret: Outcome; secretCalls: number; read: Outcome; marker: number; after: Outcome; afterKey: number };
    /** A call into a second remote (window 2, a flat binary) from inside a call into kvstore. */
    second: { address: number; x: number; direct: Outcome; nested: Outcome; after: Outcome };
    busy: {
      key: number;
      inside: Outcome;
      after: Outcome;
    };
  };
  /** A remote's hostcall handler calls the caller (the machine whose vCPU runs the call) again. */
  reentrant: {
    x: number;
    m: number;
    inner: Outcome;
    outer: Outcome;
    readAfter: Outcome;
    next: { key: number; result: Outcome };
  };
  closeOrder: {
    remoteFirst: {
      connectedAfter: boolean;
      links: number;
      x: number;
      local: Outcome;
      cachedKey: number;
      cached: Outcome;
      missKey: number;
      miss: Outcome;
      connectClosed: Outcome;
    };
    callerFirst: { connectedAfter: boolean; callers: number; remoteCount: Outcome; remoteLookup: { key: number; result: Outcome } };
  };
}

const ri = randInt;

function makePair(hostcalls: { remote?: Record<number, HostcallFn>; caller?: Record<number, HostcallFn> } = {}) {
  const remote = Machine.create({ window: 1, program: exampleElf("kvstore"), name: "kvstore", hostcalls: hostcalls.remote });
  const caller = Machine.create({ window: 0, program: exampleElf("kvcaller"), name: "kvcaller", hostcalls: hostcalls.caller });
  return { remote, caller };
}

function namesOf(remote: Machine, addrs: Iterable<number>): string[] {
  const out: string[] = [];
  for (const a of addrs) {
    const s = [...remote.program!.symbols.values()].find((x) => x.value === a && x.type === "func");
    out.push(s ? s.name : `0x${a.toString(16)}`);
  }
  return out.sort();
}

/**
 * Isolated (its own machines), because a failure here could leave them unusable: a call() on
 * the caller from inside a remote hostcall, while the caller's vCPU is in the middle of the
 * IPRE call, must be refused without disturbing the running call.
 */
function reentrantSection(r: () => number): RemoteReport["reentrant"] {
  let inner: Outcome = { ok: true, value: "handler not run" };
  const hm = ri(r, 2, 1000);
  let self: Machine | undefined;
  const { remote, caller } = makePair({
    remote: {
      1: (x) => {
        inner = outcome(() => self!.call("double_it", 1));
        return x * hm;
      },
    },
  });
  self = caller;
  try {
    connect(caller, remote);
    caller.call("fill", 10);
    const x = ri(r, 1, 1e6);
    const key = ri(r, 0, 9);
    const outer = outcome(() => caller.call("call_remote_hostcall", x));
    return {
      x,
      m: hm,
      inner,
      outer,
      readAfter: outcome(() => caller.call("read_marker")),
      next: { key, result: outcome(() => caller.call("serve", key)) },
    };
  } finally {
    caller.close();
    remote.close();
  }
}

export function remoteReport(seed: number, serveCount = 10_000): RemoteReport {
  const r = rng(seed);
  const hm = ri(r, 2, 1000), hc = ri(r, -1000, 1000);
  let remoteHandlerCalls = 0, callerHandlerCalls = 0;
  const owner: string[] = [];
  let inside: { inRemote: boolean; busy: boolean; remoteCall: Outcome } | undefined;
  let remoteHandler: (x: number, ...rest: unknown[]) => number;
  const { remote, caller } = makePair({
    remote: { 1: (x, _a, _b, _c, _d, _e, m) => remoteHandler(x, m) },
    caller: {
      1: () => {
        callerHandlerCalls++;
        return -999;
      },
    },
  });
  try {
    const sym: Symbols = {
      kv_insert: remote.symbol("kv_insert"),
      kv_lookup: remote.symbol("kv_lookup"),
      kv_count: remote.symbol("kv_count"),
      kv_secret: remote.symbol("kv_secret"),
      kv_data_marker: remote.symbol("kv_data_marker"),
      remote_fault: remote.symbol("remote_fault"),
      call_back: remote.symbol("call_back"),
      remoteBase: remote.base,
      remoteEnd: remote.memoryEnd,
    };
    let conn: Connection = connect(caller, remote);
    const allowedNames = namesOf(remote, conn.allowed);
    let entries = 0;
    caller.onRemoteEntry = () => entries++;
    const countEntries = <T>(fn: () => T): [T, number] => {
      const e0 = entries;
      const v = fn();
      return [v, entries - e0];
    };
    /**
     * serve(key) that surely goes to the remote: first evict key's slot of the caller's
     * 256-entry direct-mapped cache with a key that is never stored (also a remote call).
     */
    let evict = 1000;
    const fresh = (key: number): number => {
      caller.call("serve", key + 256 * evict++);
      return caller.call("serve", key);
    };

    // ---- many calls ----
    const n = ri(r, 2000, 3000);
    const [added, fillEntries] = countEntries(() => caller.call("fill", n));
    const fill = { n, added, remoteCount: outcome(() => remote.call("kv_count")), entries: fillEntries };

    // serveCount requests that all miss the caller's 256-entry direct-mapped cache (each one is a
    // remote call), then serveCount / 20 repeats of cached keys (hits, answered locally).
    const slotKey = new Map<number, number>();
    const keys: number[] = [];
    while (keys.length < serveCount) {
      const k = ri(r, 0, 4095);
      if (slotKey.get(k % 256) === k) continue;
      slotKey.set(k % 256, k);
      keys.push(k);
    }
    const cached = [...slotKey.values()];
    for (let i = 0; i < serveCount / 20; i++) keys.push(cached[ri(r, 0, cached.length - 1)]!);
    const results = new Array<number>(keys.length);
    const t0 = performance.now();
    const [, serveEntries] = countEntries(() => {
      for (let i = 0; i < keys.length; i++) results[i] = caller.call("serve", keys[i]!);
    });
    const serve = { keys, results, misses: caller.call("serve_misses"), entries: serveEntries, elapsedMs: performance.now() - t0 };

    const rn = ri(r, 500, 1500);
    const [rnResult, rnEntries] = countEntries(() => caller.call("call_remote_n", rn));
    const callRemoteN = { n: rn, result: rnResult, entries: rnEntries };

    const lookups: Array<[number, number]> = [];
    for (let i = 0; i < 10; i++) {
      const k = ri(r, 0, n + 500);
      lookups.push([k, remote.call("kv_lookup", k)]);
    }
    const persistence = { refill: caller.call("fill", n), count: outcome(() => remote.call("kv_count")), lookups };

    // ---- zero copy: the remote scales the caller's vector in place ----
    const vecAddr = caller.symbol("vec");
    const vector: RemoteReport["vector"] = [];
    for (let round = 0; round < 30; round++) {
      const vn = round === 0 ? 1024 : ri(r, 1, 1024), k = ri(r, -50, 50);
      const sum = caller.call("scale_vector", vn, k);
      const v = caller.bytes(vecAddr, vn * 8);
      const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
      const elements = Array.from({ length: vn }, (_, i) => Number(dv.getBigInt64(i * 8, true)));
      vector.push({ n: vn, k, sum, elements, localSum: caller.call("sum_vector", vn) });
    }

    const callbacks: Array<[number, number]> = [];
    for (const x of [ri(r, 0, 1e6), ri(r, -1e6, -1), 0, ri(r, 1e9, 2e9)]) callbacks.push([x, caller.call("via_callback", x)]);

    const bytes = Uint8Array.from({ length: ri(r, 100, 4000) }, () => ri(r, 0, 255));
    const checksum = { bytes: [...bytes], result: caller.call("remote_checksum", bytes, bytes.length) };
    // sum64 over a length that is not a multiple of 8 (the zero-padded last word), as a decimal string (JSON has no u64).
    const oddBytes = bytes.length % 8 ? bytes : bytes.subarray(0, bytes.length - 3);
    const sum64 = { length: oddBytes.length, result: BigInt.asUintN(64, caller.callBigInt("remote_sum64", oddBytes, oddBytes.length)).toString() };
    const fsCaller = 0x1000 + 0x10 * randInt(r, 1, 1000);
    const fsRemote = remote.userStart + 0x10 * randInt(r, 1, 1000);
    caller.fsBase = fsCaller;
    remote.fsBase = fsRemote;
    const fsOut = caller.stackGuard - 64;
    caller.call("fsbase_trip", fsOut);
    caller.fsBase = 0;
    remote.fsBase = 0;
    const fsbase = { caller: fsCaller, remote: fsRemote, seen: [0, 8, 16].map((o) => caller.readI64(fsOut + o)) };

    // ---- remote hostcalls reach the remote's handlers ----
    remoteHandler = (x, m) => {
      remoteHandlerCalls++;
      owner.push((m as Machine).name);
      if (inside === undefined) {
        inside = {
          inRemote: caller.inRemoteCall,
          busy: busyWith(remote) === caller.name,
          remoteCall: outcome(() => remote.call("kv_count")),
        };
      }
      return x * hm + hc;
    };
    const hostcallResults: Array<{ x: number; result: number }> = [];
    for (const x of [ri(r, 0, 1e6), ri(r, -1e6, -1), ri(r, 0, 100)]) hostcallResults.push({ x, result: caller.call("call_remote_hostcall", x) });
    const afterInRemoteCall = caller.inRemoteCall;
    const afterBusy = busyWith(remote) !== undefined;
    const boomMessage = `remote-boom-${ri(r, 0, 1e9)}`;
    remoteHandler = () => {
      throw new Error(boomMessage);
    };
    const thrownOutcome = outcome(() => caller.call("call_remote_hostcall", 3));
    const thrownReadAfter = outcome(() => caller.call("read_remote", sym.kv_data_marker));
    remoteHandler = (x) => x * hm + hc;
    const tx = ri(r, 0, 1e6);
    const hostcalls: RemoteReport["hostcalls"] = {
      m: hm, c: hc, results: hostcallResults, remoteHandlerCalls, callerHandlerCalls, owner, remoteName: remote.name,
      insideInRemoteCall: inside?.inRemote ?? false,
      insideBusyWithCaller: inside?.busy ?? false,
      insideRemoteCall: inside?.remoteCall ?? { ok: true, value: "handler not run" },
      afterInRemoteCall,
      afterBusy,
      thrown: { message: boomMessage, outcome: thrownOutcome, readAfter: thrownReadAfter, next: { x: tx, result: outcome(() => caller.call("call_remote_hostcall", tx)) } },
    };

    // ---- a non-exported entry is refused before the remote runs ----
    const program = remote.program!;
    const snapshot = (): Uint8Array => remote.read(program.lowest, program.highest - program.lowest);
    const before = snapshot();
    const countBefore = remote.call("kv_count");
    const [disallowedOutcome, disallowedEntries] = countEntries(() => outcome(() => caller.call("call_secret")));
    const afterSnap = snapshot();
    let freshKey = ri(r, 0, n - 1);
    const disallowed: RemoteReport["disallowed"] = {
      outcome: disallowedOutcome,
      entries: disallowedEntries,
      memoryUnchanged: before.length > 0 && before.every((b, i) => b === afterSnap[i]),
      countBefore,
      countAfter: remote.call("kv_count"),
      busyAfter: busyWith(remote) !== undefined,
      inRemoteCallAfter: caller.inRemoteCall,
      next: { key: freshKey, result: outcome(() => fresh(freshKey)) },
      hostVmcallSecret: outcome(() => caller.call(sym.kv_secret)),
      hostVmcallCount: outcome(() => caller.call(sym.kv_count)),
    };

    // ---- an explicit allow-list ----
    conn.disconnect();
    conn = connect(caller, remote, { allow: ["kv_lookup"] });
    const allowKey = ri(r, 0, n - 1);
    const allowList: RemoteReport["allowList"] = {
      allowedNames: namesOf(remote, conn.allowed),
      fill: outcome(() => caller.call("fill", 1)),
      serve: { key: allowKey, result: outcome(() => fresh(allowKey)) },
      viaCallback: outcome(() => caller.call("via_callback", 1)),
      byAddress: { allowedNames: [], callRemoteN: { ok: true }, serve: { ok: true } },
      countAfter: { ok: true },
    };
    conn.disconnect();
    conn = connect(caller, remote, { allow: [sym.kv_count] });
    allowList.byAddress = {
      allowedNames: namesOf(remote, conn.allowed),
      callRemoteN: outcome(() => caller.call("call_remote_n", 3)),
      serve: outcome(() => caller.call("serve", 777_777)),
    };
    allowList.countAfter = outcome(() => remote.call("kv_count"));
    conn.disconnect();

    // ---- data loans ----
    conn = connect(caller, remote);
    freshKey = ri(r, 0, n - 1);
    const loanNone = {
      readRemote: outcome(() => caller.call("read_remote", sym.kv_data_marker)),
      readMarker: outcome(() => caller.call("read_marker")),
      next: { key: freshKey, result: outcome(() => fresh(freshKey)) },
    };
    conn.disconnect();
    conn = connect(caller, remote, { loan: "read" });
    const initial = outcome(() => caller.call("read_marker"));
    const hostValue = ri(r, 1, 2 ** 40);
    remote.writeU64(sym.kv_data_marker, hostValue);
    const readRemote = outcome(() => caller.call("read_remote", sym.kv_data_marker));
    const readMarker = outcome(() => caller.call("read_marker"));
    const writeMarker = outcome(() => caller.call("write_marker", ri(r, 1, 1000)));
    const markerAfterWrite = remote.readI64(sym.kv_data_marker);
    freshKey = ri(r, 0, n - 1);
    const loanNext = { key: freshKey, result: outcome(() => fresh(freshKey)) };
    const readAfterCall = outcome(() => caller.call("read_marker"));
    const callSecret = outcome(() => caller.call("call_secret"));
    const codeWord = remote.readU64(sym.kv_lookup);
    const readCode = { value: outcome(() => caller.callBigInt("read_remote", sym.kv_lookup)), expected: `${BigInt.asIntN(64, codeWord)}n` };
    conn.disconnect();
    conn = connect(caller, remote);
    const loan: RemoteReport["loan"] = {
      none: loanNone,
      read: { loan: "read", initial, hostValue, readRemote, readMarker, writeMarker, markerAfterWrite, next: loanNext, readAfterCall, callSecret, readCode },
      afterLoanDisconnect: outcome(() => caller.call("read_marker")),
    };

    // ---- after every successful remote call the remote is unreachable again ----
    const unmerge: RemoteReport["unmerge"] = [];
    for (let i = 0; i < 20; i++) {
      const key = ri(r, 0, n - 1);
      unmerge.push({
        key,
        serve: outcome(() => fresh(key)),
        readMarker: outcome(() => caller.call("read_marker")),
        readCode: outcome(() => caller.call("read_remote", sym.kv_lookup)),
      });
    }
    const unmergeAfter = {
      callback: outcome(() => caller.call("via_callback", 4)),
      callbackRead: outcome(() => caller.call("read_marker")),
      hostcall: outcome(() => caller.call("call_remote_hostcall", 4)),
      hostcallRead: outcome(() => caller.call("read_remote", sym.kv_data_marker)),
    };

    // ---- a fault inside the remote ----
    const faultOutcome = outcome(() => caller.call("call_remote_fault"));
    freshKey = ri(r, 0, n - 1);
    const fx = ri(r, 0, 1e6);
    const remoteFault = {
      outcome: faultOutcome,
      readAfter: outcome(() => caller.call("read_marker")),
      busyAfter: busyWith(remote) !== undefined,
      inRemoteCallAfter: caller.inRemoteCall,
      next: { key: freshKey, result: outcome(() => fresh(freshKey)) },
      remoteCount: outcome(() => remote.call("kv_count")),
      twice: outcome(() => caller.call("call_remote_fault")),
      nextAgain: { x: fx, result: outcome(() => caller.call("via_callback", fx)) },
    };

    // ---- nested calls, and a remote that is busy ----
    const nx = ri(r, 0, 1e6);
    const [nestedResult, nestedEntries] = countEntries(() => outcome(() => caller.call("call_back", caller.symbol("via_callback"), nx)));
    const caller2 = Machine.create({ window: 0, program: exampleElf("kvcaller"), name: "kvcaller2" });
    let busy: RemoteReport["nested"]["busy"];
    try {
      using conn2 = connect(caller2, remote);
      const busyKey = ri(r, 0, n - 1);
      let insideBusy: Outcome = { ok: true, value: "handler not run" };
      remoteHandler = (x) => {
        insideBusy = outcome(() => caller2.call("serve", busyKey));
        return x;
      };
      caller.call("call_remote_hostcall", 1);
      remoteHandler = (x) => x * hm + hc;
      busy = { key: busyKey, inside: insideBusy, after: outcome(() => caller2.call("serve", busyKey)) };
      conn2.disconnect();
    } finally {
      caller2.close();
    }
    // A second remote in window 2: a flat binary `inc(x) = x + 1` (lea rax, [rdi+1]; ret).
    const remote2 = Machine.create({ window: 2, memory: 8 * 1024 * 1024, name: "inc" });
    let second: RemoteReport["nested"]["second"];
    try {
      remote2.loadFlat(new Uint8Array([0x48, 0x8d, 0x47, 0x01, 0xc3]), { symbols: { inc: 0 }, exports: ["inc"] });
      using conn3 = connect(caller, remote2);
      const sx = ri(r, 0, 1e6);
      const inc = remote2.symbol("inc");
      second = {
        address: inc,
        x: sx,
        direct: outcome(() => caller.call(inc, sx)), // a vmcall whose target is the second remote
        nested: outcome(() => caller.call(remote.symbol("call_back"), inc, sx)), // kvstore calls inc: nested
        after: outcome(() => caller.call("serve", ri(r, 0, n - 1)) >= 0 && caller.call(inc, sx + 1)),
      };
      conn3.disconnect();
    } finally {
      remote2.close();
    }
    // Callback isolation: a callback into call_secret (which calls the non-exported kv_secret)
    // and into read_remote (which reads remote data) are refused / fault, as outside a call.
    const [isoSecret, isoEntries] = countEntries(() => outcome(() => caller.call(remote.symbol("call_back"), caller.symbol("call_secret"), 0)));
    const isoKey = ri(r, 0, n - 1);
    const isolation = {
      secret: isoSecret,
      secretCalls: isoEntries,
      read: outcome(() => caller.call(remote.symbol("call_back"), caller.symbol("read_remote"), sym.kv_data_marker)),
      marker: sym.kv_data_marker,
      after: outcome(() => caller.call("serve", isoKey)),
      afterKey: isoKey,
    };
    const nested = { x: nx, result: nestedResult, entries: nestedEntries, busy, second, isolation };

    // ---- disconnect ----
    const cachedKey = ri(r, 0, n - 1);
    caller.call("serve", cachedKey); // now in the caller's cache
    conn.disconnect();
    const dMiss = ri(r, 0, n - 1) + 256 * 500; // never served: not in the cache
    const lx = ri(r, 0, 1e6);
    const disconnect = {
      connectedAfter: conn.connected,
      links: linkCount(caller),
      callers: callerCount(remote),
      missKey: dMiss,
      miss: outcome(() => caller.call("serve", dMiss)),
      cachedKey,
      cached: outcome(() => caller.call("serve", cachedKey)),
      local: outcome(() => caller.call("double_it", lx) - 2 * lx),
      twice: outcome(() => {
        conn.disconnect();
        conn[Symbol.dispose]();
        return "ok";
      }),
      reconnect: { key: dMiss, result: { ok: true } as Outcome },
    };
    conn = connect(caller, remote);
    disconnect.reconnect = { key: dMiss - 256 * 500, result: outcome(() => fresh(dMiss - 256 * 500)) };

    // ---- close order: the remote first ----
    caller.call("serve", cachedKey); // (back) in the caller's cache
    remote.close();
    const cx = ri(r, -1e6, 1e6);
    const cMiss = ri(r, 0, n - 1) + 256 * 600; // never served
    const remoteFirst = {
      connectedAfter: conn.connected,
      links: linkCount(caller),
      x: cx,
      local: outcome(() => caller.call("double_it", cx)),
      cachedKey,
      cached: outcome(() => caller.call("serve", cachedKey)),
      missKey: cMiss,
      miss: outcome(() => caller.call("serve", cMiss)),
      connectClosed: outcome(() => connect(caller, remote)),
    };

    // ---- close order: the caller first ----
    let callerFirst: RemoteReport["closeOrder"]["callerFirst"];
    {
      const { remote: r2, caller: c2 } = makePair();
      try {
        const conn3 = connect(c2, r2);
        c2.call("fill", 10);
        c2.close();
        const lk = ri(r, 0, 9);
        callerFirst = {
          connectedAfter: conn3.connected,
          callers: callerCount(r2),
          remoteCount: outcome(() => r2.call("kv_count")),
          remoteLookup: { key: lk, result: outcome(() => r2.call("kv_lookup", lk)) },
        };
      } finally {
        c2.close();
        r2.close();
      }
    }


    return {
      runtime: libc.runtime, seed, sym, allowedNames, fill, serve, callRemoteN, persistence, vector, callbacks, checksum, sum64, fsbase,
      hostcalls, disallowed, allowList, loan, unmerge, unmergeAfter, remoteFault, disconnect, nested,
      closeOrder: { remoteFirst, callerFirst },
      reentrant: reentrantSection(r),
    };
  } finally {
    caller.close();
    remote.close();
  }
}

if (isMain(import.meta)) {
  const [seed, count] = scenarioArgs();
  console.log(JSON.stringify(remoteReport(Number(seed ?? 1), Number(count ?? 10_000))));
}
