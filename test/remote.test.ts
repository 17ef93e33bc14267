/**
 * IPRE remote calls on Node, Bun and Deno against the real /dev/kvm: the scenario
 * test/scenarios/remote.ts (kvcaller.elf in window 0 calling kvstore.elf in window 1) runs
 * in-process on Node and as a child under Bun and Deno, each with its own random seed; every
 * expected value is recomputed here from the inputs in the report.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { CALL_PATHS, callPathEnv, collectReports, inCallPath, ReportSet, RUNTIMES, type Runtime } from "./harness.ts";
import { describeKvm, upperMs } from "./kvm.ts";
import type { Outcome } from "./scenarios/common.ts";
import { remoteReport, type RemoteReport } from "./scenarios/remote.ts";
import { expectError, expectScenarioRan, expectValue } from "./expect.ts";

const SCENARIO = "test/scenarios/remote.ts";
const SEED = Number(process.env.IPRE_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const seedOf = (rt: Runtime) => (SEED + 10 + RUNTIMES.indexOf(rt)) >>> 0;
const SERVE = 10_000;
const GIB = 2 ** 30;
/** kvcaller.c: serve() caches in a 256-entry direct-mapped cache. */
const CACHE = 256;

/** kvstore.c's IPRE_EXPORT functions: what a default connect() must allow, and nothing else. */
const EXPORTS = ["call_back", "checksum", "kv_count", "kv_insert", "kv_lookup", "remote_fault", "remote_fsbase", "remote_hostcall", "remote_spin", "sum64", "vec_scale"];

/** What the store answers for key after fill(n). */
const stored = (key: number, n: number) => (key >= 0 && key < n ? key * 10 + 1 : -1);

/** A caller-side #PF with the caller's context: not a RemoteFault. */
function expectCallerPf(o: Outcome, cr2: number, errorBits: { fetch?: boolean; write?: boolean; present: boolean }): void {
  expectError(o, "GuestFault");
  expect(o.classes).not.toContain("RemoteFault");
  expect(o.vector).toBe(14);
  expect(o.cr2).toBe(cr2);
  const ec = o.errorCode!;
  expect(ec & 4).toBe(4); // user mode
  expect(ec & 1).toBe(errorBits.present ? 1 : 0);
  expect(ec & 2).toBe(errorBits.write ? 2 : 0);
  expect(ec & 0x10).toBe(errorBits.fetch ? 0x10 : 0);
}
/** The remote is not mapped in the caller: reading `address` faults with "page not present". */
const expectUnreachable = (o: Outcome, address: number) => expectCallerPf(o, address, { present: false });

function checkMany(r: RemoteReport): void {
  expect(r.allowedNames).toEqual(EXPORTS);
  // fill(n): n remote kv_insert calls, all new keys, and the remote's own count agrees.
  expect(r.fill.added).toBe(r.fill.n);
  expect(r.fill.entries).toBe(r.fill.n);
  expectValue(r.fill.remoteCount, r.fill.n);
  // 10,000 requests that miss the caller's cache (10,000 consecutive remote calls), then 500
  // that hit it; each answer checked; every cache miss was exactly one remote call.
  const { keys, results } = r.serve;
  expect(keys).toHaveLength(SERVE + SERVE / 20);
  expect(results).toHaveLength(keys.length);
  let wrong = 0;
  for (let i = 0; i < keys.length; i++) if (results[i] !== stored(keys[i]!, r.fill.n)) wrong++;
  expect(wrong).toBe(0);
  expect(results.filter((v) => v === -1).length).toBeGreaterThan(0); // absent keys were asked too
  const slots = new Map<number, number>();
  let misses = 0;
  for (const k of keys) {
    if (slots.get(k % CACHE) !== k) {
      misses++;
      slots.set(k % CACHE, k);
    }
  }
  expect(misses).toBe(SERVE);
  expect(r.serve.misses).toBe(misses);
  expect(r.serve.entries).toBe(misses);
  // call_remote_n(n): n consecutive remote calls from one vmcall.
  expect(r.callRemoteN.entries).toBe(r.callRemoteN.n);
  expect(r.callRemoteN.result).toBe(r.callRemoteN.n * r.fill.n);
}

function checkData(r: RemoteReport): void {
  // The remote keeps its data between calls and answers its own vmcalls too.
  expect(r.persistence.refill).toBe(0); // every key already there: updates, not inserts
  expectValue(r.persistence.count, r.fill.n);
  for (const [k, v] of r.persistence.lookups) expect(v).toBe(stored(k, r.fill.n));
  // Zero copy: the remote scaled the caller's vector in place, element by element.
  expect(r.vector).toHaveLength(30);
  expect(r.vector[0]!.n).toBe(1024);
  for (const { n, k, sum, elements, localSum } of r.vector) {
    expect(elements).toHaveLength(n);
    let wrong = 0;
    for (let i = 0; i < n; i++) if (elements[i] !== i * k) wrong++;
    expect(wrong).toBe(0);
    expect(sum).toBe((k * n * (n - 1)) / 2 + 0); // + 0: no -0 when n = 1
    expect(localSum).toBe(sum);
  }
  expect(new Set(r.vector.map((v) => v.k)).size).toBeGreaterThan(1);
  // Callbacks: the remote calls the caller's double_it, adds 1.
  for (const [x, v] of r.callbacks) expect(v).toBe(2 * x + 1);
  // The remote reads caller bytes in place: FNV-1a computed here.
  let h = 2166136261;
  for (const b of r.checksum.bytes) h = Math.imul(h ^ b, 16777619) >>> 0;
  expect(r.checksum.result).toBe(h);
  // sum64 over the same bytes, cut to a length that is not a multiple of 8: u64 words, the last one zero-padded.
  expect(r.sum64.length % 8).not.toBe(0);
  let s = 0n;
  for (let i = 0; i < r.sum64.length; i++) s += BigInt(r.checksum.bytes[i]!) << BigInt(8 * (i % 8));
  expect(r.sum64.result).toBe(BigInt.asUintN(64, s).toString());
}

function checkHostcalls(h: RemoteReport["hostcalls"], sym: RemoteReport["sym"]): void {
  // A hostcall made by remote code goes to the remote's handler, with the remote as `machine`.
  for (const { x, result } of h.results) expect(result).toBe(x * h.m + h.c);
  expect(h.remoteHandlerCalls).toBe(h.results.length);
  expect(h.callerHandlerCalls).toBe(0);
  expect(h.owner).toEqual(h.results.map(() => h.remoteName));
  // During the call: the caller is in a remote call, the remote is busy and refuses vmcalls.
  expect(h.insideInRemoteCall).toBe(true);
  expect(h.insideBusyWithCaller).toBe(true);
  expectError(h.insideRemoteCall, "MachineStateError");
  expect(h.afterInRemoteCall).toBe(false);
  expect(h.afterBusy).toBe(false);
  // A JS error in the remote's handler ends the call, unmerged; the next remote call works.
  expect(h.thrown.outcome).toMatchObject({ ok: false, name: "Error", message: h.thrown.message });
  expectUnreachable(h.thrown.readAfter, sym.kv_data_marker);
  expectValue(h.thrown.next.result, h.thrown.next.x * h.m + h.c);
}

function checkAccess(r: RemoteReport): void {
  const { sym } = r;
  // kv_secret is global in the remote but not exported: refused before the remote runs.
  const d = r.disallowed;
  expectError(d.outcome, "RemoteAccessError");
  expect(d.outcome.address).toBe(sym.kv_secret);
  expect(d.outcome.message).toContain("kv_secret");
  expect(d.entries).toBe(0);
  expect(d.memoryUnchanged).toBe(true);
  expect(d.countAfter).toBe(d.countBefore);
  expect(d.busyAfter).toBe(false);
  expect(d.inRemoteCallAfter).toBe(false);
  expectValue(d.next.result, stored(d.next.key, r.fill.n));
  // The same checks apply to a host vmcall whose target is a remote address.
  expectError(d.hostVmcallSecret, "RemoteAccessError");
  expectValue(d.hostVmcallCount, r.fill.n);

  // allow: ["kv_lookup"] makes kv_insert (and call_back) disallowed; kv_lookup still works.
  const a = r.allowList;
  expect(a.allowedNames).toEqual(["kv_lookup"]);
  expectError(a.fill, "RemoteAccessError");
  expect(a.fill.address).toBe(sym.kv_insert);
  expect(a.fill.message).toContain("kv_insert");
  expectValue(a.serve.result, stored(a.serve.key, r.fill.n));
  expectError(a.viaCallback, "RemoteAccessError");
  expect(a.viaCallback.address).toBe(sym.call_back);
  // An allow-list by address.
  expect(a.byAddress.allowedNames).toEqual(["kv_count"]);
  expectValue(a.byAddress.callRemoteN, 3 * r.fill.n);
  expectError(a.byAddress.serve, "RemoteAccessError");
  expectValue(a.countAfter, r.fill.n); // the refused fill(1) inserted nothing
}

function checkLoans(r: RemoteReport): void {
  const { sym } = r;
  const n = r.loan.none;
  expectUnreachable(n.readRemote, sym.kv_data_marker);
  expectUnreachable(n.readMarker, sym.kv_data_marker);
  expectValue(n.next.result, stored(n.next.key, r.fill.n));
  const l = r.loan.read;
  expectValue(l.initial, 0x1234); // kvstore.c's initial kv_data_marker
  expectValue(l.readRemote, l.hostValue); // the remote's live memory, read-only
  expectValue(l.readMarker, l.hostValue);
  expectCallerPf(l.writeMarker, sym.kv_data_marker, { present: true, write: true });
  expect(l.markerAfterWrite).toBe(l.hostValue);
  expectValue(l.next.result, stored(l.next.key, r.fill.n)); // remote calls still work with a loan
  expectValue(l.readAfterCall, l.hostValue); // and the loan is back after the call
  expectError(l.callSecret, "RemoteAccessError"); // a loan does not make the remote executable
  expect(l.readCode.value).toMatchObject({ ok: true, value: l.readCode.expected });
  expectUnreachable(r.loan.afterLoanDisconnect, sym.kv_data_marker); // a connection without a loan
}

function checkUnmerge(r: RemoteReport): void {
  const { sym } = r;
  expect(r.unmerge).toHaveLength(20);
  for (const u of r.unmerge) {
    expectValue(u.serve, stored(u.key, r.fill.n));
    expectUnreachable(u.readMarker, sym.kv_data_marker);
    expectUnreachable(u.readCode, sym.kv_lookup);
  }
  expectValue(r.unmergeAfter.callback, 9);
  expectUnreachable(r.unmergeAfter.callbackRead, sym.kv_data_marker);
  expect(r.unmergeAfter.hostcall.ok).toBe(true);
  expectUnreachable(r.unmergeAfter.hostcallRead, sym.kv_data_marker);
}

function checkRemoteFault(r: RemoteReport): void {
  const f = r.remoteFault;
  for (const o of [f.outcome, f.twice]) {
    expectError(o, "RemoteFault");
    expect(o.classes).toContain("GuestFault");
    expect(o.vector).toBe(6);
    expect(o.rip).toBeGreaterThanOrEqual(r.sym.remoteBase);
    expect(o.rip).toBeLessThan(r.sym.remoteBase + GIB);
    expect(o.rip).toBeGreaterThanOrEqual(r.sym.remote_fault);
    expect(o.rip).toBeLessThan(r.sym.remote_fault + 16);
    expect(o.remoteName).toBe("kvstore");
  }
  expectUnreachable(f.readAfter, r.sym.kv_data_marker); // the faulted call was unmerged
  expect(f.busyAfter).toBe(false);
  expect(f.inRemoteCallAfter).toBe(false);
  expectValue(f.next.result, stored(f.next.key, r.fill.n));
  expectValue(f.remoteCount, r.fill.n);
  expectValue(f.nextAgain.result, 2 * f.nextAgain.x + 1);
}

function checkDisconnect(r: RemoteReport): void {
  const d = r.disconnect;
  expect(d.connectedAfter).toBe(false);
  expect(d.links).toBe(0);
  expect(d.callers).toBe(0);
  // A cache miss now calls an address that is mapped nowhere: #PF instruction fetch.
  expectCallerPf(d.miss, r.sym.kv_lookup, { fetch: true, present: false });
  expectValue(d.cached, stored(d.cachedKey, r.fill.n));
  expectValue(d.local, 0);
  expectValue(d.twice, "ok");
  expectValue(d.reconnect.result, stored(d.reconnect.key, r.fill.n));
}

function checkNested(r: RemoteReport): void {
  // call_back(via_callback, x) from the host: the remote calls the caller's via_callback (a
  // callback: the VMM unmerges while caller code runs), which calls call_back again: a second,
  // nested IPRE entry into the same remote. Result (2x + 1) + 1.
  expectValue(r.nested.result, 2 * r.nested.x + 2);
  expect(r.nested.entries).toBe(2);
  // Caller code reached through a callback sees the remote only through allowed entries.
  const iso = r.nested.isolation;
  expectError(iso.secret, "RemoteAccessError");
  expect(iso.secret.address).toBe(r.sym.kv_secret);
  expect(iso.secretCalls).toBe(1); // only the outer call_back entered the remote
  expectCallerPf(iso.read, iso.marker, { present: false });
  expectValue(iso.after, stored(iso.afterKey, r.fill.n));
  // A second caller cannot enter a remote that is busy with another caller's call.
  const b = r.nested.busy;
  expectError(b.inside, "RemoteAccessError");
  expect(b.inside.message).toMatch(/busy/);
  expect(b.inside.address).toBe(r.sym.kv_lookup);
  expectValue(b.after, stored(b.key, r.fill.n));
  // A call into a second remote while a call into the first runs is refused, clearly; both work after.
  const s2 = r.nested.second;
  expectValue(s2.direct, s2.x + 1);
  expectError(s2.nested, "RemoteAccessError");
  expect(s2.nested.message).toMatch(/nested remote calls are not supported/);
  expect(s2.nested.address).toBe(s2.address);
  expectValue(s2.after, s2.x + 2);
}

function checkCloseOrder(r: RemoteReport): void {
  const a = r.closeOrder.remoteFirst;
  expect(a.connectedAfter).toBe(false);
  expect(a.links).toBe(0);
  expectValue(a.local, 2 * a.x);
  expectValue(a.cached, stored(a.cachedKey, r.fill.n));
  expectCallerPf(a.miss, r.sym.kv_lookup, { fetch: true, present: false });
  expectError(a.connectClosed, "MachineStateError");
  const b = r.closeOrder.callerFirst;
  expect(b.connectedAfter).toBe(false);
  expect(b.callers).toBe(0);
  expectValue(b.remoteCount, 10);
  expectValue(b.remoteLookup.result, stored(b.remoteLookup.key, 10));
}

function checkReentrant(re: RemoteReport["reentrant"], sym: RemoteReport["sym"]): void {
  // A remote hostcall handler calling the caller again (whose vCPU is inside the IPRE call)
  // must be refused; the outer remote call must complete and leave the caller unmerged.
  expectError(re.inner, "MachineStateError");
  expectValue(re.outer, re.x * re.m);
  expectUnreachable(re.readAfter, sym.kv_data_marker);
  expectValue(re.next.result, stored(re.next.key, 10));
}

for (const path of CALL_PATHS) describeKvm(`IPRE remote calls on Node, Bun and Deno (${path} path)`, () => {
  let set = new ReportSet<RemoteReport>();
  beforeAll(async () => {
    set = await collectReports(SCENARIO, (rt) => [String(seedOf(rt)), String(SERVE)], () => inCallPath(path, () => remoteReport(seedOf("node"), SERVE)), 100_000, callPathEnv(path));
    console.log(`remote scenario seed ${SEED} (IPRE_TEST_SEED to repeat); ${SERVE} serve() requests: ${set.summary((r) => `${r.serve.elapsedMs.toFixed(0)} ms (${r.serve.misses} remote calls)`)}`);
  }, upperMs(120_000));
  const report = (rt: Runtime): RemoteReport => set.report(rt);

  describe.each(RUNTIMES)("%s", (rt) => {
    it("runs the scenario on this runtime, silently", () => expectScenarioRan(set, rt, seedOf(rt)));
    it("thousands of consecutive remote calls are all correct (fill, 10,000 serve requests, call_remote_n)", () => checkMany(report(rt)));
    it("remote data persists; zero-copy vectors, callbacks and caller buffers", () => checkData(report(rt)));
    it("remote hostcalls reach the remote's handlers; the remote is busy during a call", () => checkHostcalls(report(rt).hostcalls, report(rt).sym));
    it("entries outside the allow-list are refused before the remote runs", () => checkAccess(report(rt)));
    it("remote data is unreachable outside calls unless loaned, and a loan is read-only", () => checkLoans(report(rt)));
    it("after every remote call the remote window is unmapped again", () => checkUnmerge(report(rt)));
    it("a fault inside the remote is a RemoteFault; both machines keep working", () => checkRemoteFault(report(rt)));
    it("disconnect() unmaps the remote; reconnecting works", () => checkDisconnect(report(rt)));
    it("callbacks run unmerged; nested calls through them are IPRE entries; a busy remote refuses a second caller", () => checkNested(report(rt)));
    it("closing the remote (or the caller) first disconnects cleanly", () => checkCloseOrder(report(rt)));
    it("the remote runs with its own FSBASE; the caller's is restored on return", () => {
      const f = report(rt).fsbase;
      expect(f.caller).not.toBe(f.remote);
      expect(f.seen).toEqual([f.caller, f.remote, f.caller]);
    });
    it("a call() on the caller from inside a remote hostcall is refused; the outer call completes", () => checkReentrant(report(rt).reentrant, report(rt).sym));
  });
});
