/**
 * Seed and run counts of the property-based tests in test/fuzz.test.ts (docs/TESTING.md).
 * CI runs a fixed seed and a bounded number of cases per property, so a run is reproducible and
 * short; IPRE_FUZZ_SEED and IPRE_FUZZ_RUNS override both to search further.
 */
import process from "node:process";
import type { Parameters } from "fast-check";
import { upperMs } from "../scenarios/common.ts";

const DEFAULT_SEED = 0x1b5e_2024;

function seedFromEnv(value: string | undefined): number {
  if (value === undefined || value === "") return DEFAULT_SEED;
  // fast-check seeds are 32-bit integers; "random" picks one, and the printed line names it.
  if (value === "random") return (Math.random() * 2 ** 32) | 0;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new Error(`IPRE_FUZZ_SEED must be an integer or "random", not ${JSON.stringify(value)}`);
  return n | 0;
}

function runsFromEnv(value: string | undefined): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`IPRE_FUZZ_RUNS must be a positive integer, not ${JSON.stringify(value)}`);
  return n;
}

export const SEED = seedFromEnv(process.env.IPRE_FUZZ_SEED);
/** When set, every property runs this many cases instead of its own default. */
export const RUNS_OVERRIDE = runsFromEnv(process.env.IPRE_FUZZ_RUNS);

/** fast-check parameters of a property whose default is `runs` cases. */
export function params<T>(runs: number): Parameters<T> {
  return { seed: SEED, numRuns: RUNS_OVERRIDE ?? runs };
}

/** The one line printed before the properties run: what to set to reproduce a failure. */
export function describeRun(defaults: Record<string, number>): string {
  const runs = RUNS_OVERRIDE !== undefined
    ? `${RUNS_OVERRIDE} cases per property (IPRE_FUZZ_RUNS)`
    : `cases per property: ${Object.entries(defaults).map(([k, n]) => `${k} ${n}`).join(", ")}`;
  return `fuzz: IPRE_FUZZ_SEED=${SEED}, ${runs}`;
}

/**
 * Upper bound of one parse: parsing must take time linear in the input, so a slower case found
 * a loop bounded by a header field rather than by the file.
 */
export const CASE_LIMIT_MS = upperMs(250);
/**
 * Upper bound of one whole ELF property of `runs` default cases (~1 ms each natively): past it,
 * a loop that never ends is interrupted (./deadline.ts).
 */
export function propertyLimitMs(runs: number): number {
  return upperMs(10_000 + 10 * (RUNS_OVERRIDE ?? runs));
}
