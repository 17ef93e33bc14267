/**
 * Benchmark progress (src/bench/common.ts): on a terminal one line rewritten in place with a step
 * count and an ETA, cleared at the end; otherwise, or with --json / --quiet, the line-oriented
 * `[bench] …` lines. No terminal and no KVM needed: the clock, the writer and the width are injected.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { clock, ProgressLine, reporter } from "../src/bench/common.ts";
import { parseFlags } from "../src/cli.ts";

describe("bench progress", () => {
  afterEach(() => vi.restoreAllMocks());

  it("ProgressLine rewrites one line (\\r … erase to end) with the step count, the elapsed time and an ETA from the steps done", () => {
    let t = 0;
    const out: string[] = [];
    const p = new ProgressLine((s) => out.push(s), () => t, () => 200);
    p.plan(4);
    p.step("kvm_run");
    expect(out.at(-1)).toBe("\r[bench] 1/4 kvm_run (0:00 elapsed)\x1b[K"); // no step done yet: no ETA
    t = 10_000;
    p.step("hostcall");
    expect(out.at(-1)).toBe("\r[bench] 2/4 hostcall (0:10 elapsed, ETA 0:30)\x1b[K"); // 1 done in 10 s, 3 to go
    t = 30_000;
    p.step("vmcall");
    expect(out.at(-1)).toBe("\r[bench] 3/4 vmcall (0:30 elapsed, ETA 0:30)\x1b[K");
    p.status("still vmcall");
    expect(out.at(-1)).toContain("3/4 still vmcall");
    expect(out.every((s) => !s.includes("\n"))).toBe(true);
    p.done();
    expect(out.at(-1)).toBe("\r\x1b[K"); // cleared: the results start on a clean line
    p.done(); // harmless twice
    expect(out.at(-1)).toBe("\r\x1b[K");
  });

  it("ProgressLine fits the terminal's width", () => {
    const out: string[] = [];
    const p = new ProgressLine((s) => out.push(s), () => 0, () => 40);
    p.plan(2);
    p.step("x".repeat(100));
    expect(p.text().length).toBe(39);
    expect(p.text().endsWith("…")).toBe(true);
    p.done();
  });

  it("clock() prints m:ss, and h:mm:ss from an hour", () => {
    expect(clock(0)).toBe("0:00");
    expect(clock(59.6)).toBe("1:00");
    expect(clock(754)).toBe("12:34");
    expect(clock(3600 + 62)).toBe("1:01:02");
  });

  const capture = () => {
    const err: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation(((s: string) => (err.push(String(s)), true)) as typeof process.stderr.write);
    return err;
  };

  it("reporter on a terminal: one updating line, cleared by done(); later progress is a plain line", () => {
    const err = capture();
    const rep = reporter(parseFlags([]), true);
    rep.progress("latency on this machine");
    rep.plan(2);
    rep.step("kvm_run");
    rep.step("hostcall");
    rep.done();
    rep.progress("results written to out/");
    expect(err.slice(0, -1).every((s) => s.startsWith("\r") && !s.includes("\n"))).toBe(true);
    expect(err).toContain("\r\x1b[K");
    expect(err.at(-1)).toBe("[bench] results written to out/\n");
  });

  it("reporter without a terminal, or with --json, prints a [bench] line per phase and no control characters; --quiet prints nothing", () => {
    for (const [argv, tty] of [[[], false], [["--json"], true], [["--json"], false]] as const) {
      const err = capture();
      const rep = reporter(parseFlags([...argv]), tty);
      rep.plan(2);
      rep.step("kvm_run");
      rep.progress("note");
      rep.step("hostcall");
      rep.done();
      expect(err).toEqual(["[bench] kvm_run\n", "[bench] note\n", "[bench] hostcall\n"]);
      vi.restoreAllMocks();
    }
    const err = capture();
    const rep = reporter(parseFlags(["--quiet"]), true);
    rep.plan(1);
    rep.step("kvm_run");
    rep.done();
    expect(err).toEqual([]);
  });
});
