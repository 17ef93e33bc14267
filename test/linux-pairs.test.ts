/**
 * IPRE between static Linux programs (test/scenarios/linux-pairs.ts) on Node (in this vitest
 * process), Bun and Deno: the language pairs of the paper's §V.G and the allocator argument of
 * §V.H, with guests/linux/pairs/ (C++ -> C++, C -> C++, Rust -> Rust). Each caller checks the
 * answers itself and prints them; here the exact output and exit code, and that an exception or
 * panic in the remote is a RemoteFault with the remote's message, after which reset() machines
 * run normally again.
 */
import { expect, it } from "vitest";
import { describeScenario } from "./harness.ts";
import { pairsReport, type PairRun } from "./scenarios/linux-pairs.ts";

const CPP = [
  "kv_load: table has 9 entries",
  "kv_get(alpha) = 0",
  "kv_get(gamma) = 3",
  "kv_get(a key that is much longer than fifteen chars) = 2",
  "kv_get(epsilon) = 50",
  "kv_get(zeta, also longer than the SSO buffer of std::string) = 60",
  "kv_get(remote.boot) = 7",
  "kv_get(omega): not found",
  "kv_shape_total = 129174",
  "kv_score_all = 357 (score called 9 times, seen 9)",
  "kv_match(a) = 2: [a key that is much longer than fifteen chars] [alpha] (arena grew 1 time)",
  "kv_match_pmr(remote.) = 2: [remote.a key longer than the small string buffer] [remote.boot]",
  "kv_check(epsilon) = 50",
];
const CPP_OK = [...CPP, "cpp_caller: all checks passed", ""].join("\n");

const C_OK = [
  "kv_put: 3 new, table has 5 entries",
  "kv_get(c.one) = 10",
  "kv_get(c.a long key from the C caller, past the SSO) = 3",
  "kv_get(remote.boot) = 7",
  "kv_get(nope): not found",
  "kv_shape_total = 129033",
  "kv_score_all = 283 (score called 5 times, seen 5)",
  "kv_match(c.) = 3: [c.a long key from the C caller, past the SSO] [c.one] [c.two] (81 arena bytes)",
  "c_caller: all checks passed",
  "",
].join("\n");

const RUST = [
  "rs_sum(1^2..1000^2) = 333833500",
  "rs_stats(11^2..20^2) = Stats { count: 10, sum: 2485, min: 121, max: 400 }",
  "rs_index(19 words) = 17 distinct",
  "rs_count(the) = 3",
  "rs_count(fox) = 1",
  "rs_count(remote) = 2",
  "rs_count(absent) = 0",
  "rs_count(<the long word>) = 1",
  "rs_greet = hello, ipre → Rust! (11 chars, 17 words known)",
];
const RUST_OK = [...RUST, "rust_caller: all checks passed", ""].join("\n");

/** The run's facts for a failed expectation. */
const facts = (r: PairRun | undefined) =>
  r ? `error: ${r.error?.name}: ${r.error?.message}\nexit ${r.exitCode}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}\nremote stderr:\n${r.remoteStderr}` : "no run";

function expectClean(r: PairRun | undefined, stdout: string): void {
  expect(r?.error, facts(r)).toBeUndefined();
  expect(r?.stdout, facts(r)).toBe(stdout);
  expect(r?.stderr).toBe("");
  expect(r?.exitCode).toBe(0);
}

describeScenario("linux pairs: IPRE between static Linux programs in C, C++ and Rust", { script: "test/scenarios/linux-pairs.ts", report: pairsReport, timeoutMs: 600_000 }, (rt, get) => {
    it("C++ -> C++: containers by reference, templates and virtuals, caller callbacks, arena and pmr answers", () => {
      const r = get();
      expect(r.runtime).toBe(rt);
      expect(r.setup.cpp).toBeUndefined();
      expectClean(r.cpp[0], CPP_OK);
    });

    it("an exception in the C++ remote is a RemoteFault with what std::terminate printed; reset() recovers", () => {
      const [, thrown, again, thrownAgain] = get().cpp;
      expect(thrown?.error, facts(thrown)).toMatchObject({ name: "RemoteFault", signal: 6, remoteName: "cpp_remote" });
      expect(thrown?.error?.message).toContain("remote says no");
      expect(thrown?.error?.output).toBe("terminate called after throwing an instance of 'std::runtime_error'\n  what():  remote says no\n");
      expect(thrown?.stdout).toBe([...CPP, "kv_check(missing) ...", ""].join("\n"));
      expectClean(again, CPP_OK);
      expect(thrownAgain?.error?.output, "the output since reset() only").toBe(thrown?.error?.output);
    });

    it("C -> C++: extern \"C\" entries, an arena, a hand-built vtable", () => {
      const r = get();
      expect(r.setup.c).toBeUndefined();
      expectClean(r.c[0], C_OK);
    });

    it("Rust -> Rust: slices, &str, &Vec<String>, a repr(C) struct by value", () => {
      const r = get();
      expect(r.setup.rust).toBeUndefined();
      expectClean(r.rust[0], RUST_OK);
    });

    it("a panic in the Rust remote is a RemoteFault with the panic message; reset() recovers", () => {
      const [, panicked, again, panickedAgain] = get().rust;
      expect(panicked?.error, facts(panicked)).toMatchObject({ name: "RemoteFault", signal: 6, remoteName: "rust_remote" });
      expect(panicked?.error?.message).toContain("remote panicked on purpose (code 7)");
      expect(panicked?.error?.output).toContain("panicked at guests/linux/pairs/rust_remote.rs:");
      expect(panicked?.stdout).toBe([...RUST, "rs_panic(7) ...", ""].join("\n"));
      expectClean(again, RUST_OK);
      expect(panickedAgain?.error?.output, "the output since reset() only").toBe(panicked?.error?.output);
    });
});
