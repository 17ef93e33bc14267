/** Assertions on scenario outcomes (test/scenarios/common.ts `outcome()`), shared by the KVM suites. */
import { expect } from "vitest";
import type { Outcome } from "./scenarios/common.ts";
import type { ReportSet, Runtime } from "./harness.ts";

const BUILTIN_ERRORS = new Set(["RangeError", "TypeError"]);

/** The call threw the error class `name`: an ipre class (so also an IpreError), or RangeError/TypeError for bad options. */
export function expectError(o: Outcome | null | undefined, name: string, what = ""): asserts o is Outcome {
  expect(o, `${what}: no outcome`).toBeTruthy();
  expect(o!.ok, `${what}: expected ${name}, got ${JSON.stringify(o)}`).toBe(false);
  expect(o!.name, `${what}: ${o!.message}`).toBe(name);
  if (BUILTIN_ERRORS.has(name)) return;
  expect(o!.classes).toContain(name);
  expect(o!.classes).toContain("IpreError");
}

/** The call returned `value`. */
export function expectValue(o: Outcome, value: unknown, what = ""): void {
  expect(o, `${what}: ${JSON.stringify(o)}`).toMatchObject({ ok: true });
  expect(o.value, what).toEqual(value);
}

/** The scenario ran on `rt` with the seed it was given, and wrote nothing to stderr. */
export function expectScenarioRan(set: ReportSet<{ runtime: string; seed: number }>, rt: Runtime, seed: number): void {
  const r = set.report(rt);
  expect(r.runtime).toBe(rt);
  expect(r.seed).toBe(seed);
  expect(set.stderr(rt)).toBe("");
}
