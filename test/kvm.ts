/**
 * KVM availability for tests. A KVM test must never skip silently where /dev/kvm is usable, and
 * must fail (not skip) where CI requires KVM (`IPRE_REQUIRE_KVM=1`, set by `.ci/run` and by
 * `npm run test:nested`). Where there is no usable /dev/kvm, KVM suites are skipped with one
 * visible reason, and test/global-setup.ts says how to run them in the nested harness.
 */
import { closeSync, constants, openSync } from "node:fs";
import { describe } from "vitest";

/** Why /dev/kvm cannot be used (e.g. "ENOENT"), or undefined when it opens read-write. */
export const KVM_UNUSABLE: string | undefined = (() => {
  try {
    closeSync(openSync("/dev/kvm", constants.O_RDWR));
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
})();
export const HAVE_KVM = KVM_UNUSABLE === undefined;

/** The one reason printed for every skipped KVM suite. */
export const SKIP_REASON = `no usable /dev/kvm (${KVM_UNUSABLE}); run them with: npm run test:nested`;

/**
 * Which part of a split run this is (`IPRE_TEST_PART`; unset: everything). `.ci/run` splits the
 * suite where /dev/kvm is missing: "pure" runs natively and registers only the tests that need
 * no KVM, "kvm" runs in the nested harness and registers only the suites that use KVM
 * (`describeKvm`, `describeKvmOptional`). vitest.config.ts picks each part's files by the same
 * markers; a file's top-level hooks run in both parts.
 */
export const TEST_PART = ((p) => {
  if (p !== undefined && p !== "" && p !== "pure" && p !== "kvm") throw new Error(`IPRE_TEST_PART must be "pure" or "kvm", not "${p}"`);
  return (p || undefined) as "pure" | "kvm" | undefined;
})(process.env.IPRE_TEST_PART);

/** `describe` when /dev/kvm is usable, a visibly skipped `describe` otherwise; throws if KVM is required but missing. */
export function describeKvm(name: string, fn: () => void): void {
  if (TEST_PART === "pure") return;
  if (!HAVE_KVM && process.env.IPRE_REQUIRE_KVM === "1") {
    throw new Error(`IPRE_REQUIRE_KVM=1 but /dev/kvm is not usable (${KVM_UNUSABLE}): "${name}" cannot run`);
  }
  if (HAVE_KVM) describe(name, fn);
  else describe.skip(`${name} [skipped: ${SKIP_REASON}]`, fn);
}

/** A suite that needs no KVM in a file that also has KVM suites: left out of the "kvm" part. */
export function describePure(name: string, fn: () => void): void {
  if (TEST_PART !== "kvm") describe(name, fn);
}

/**
 * A suite that runs without KVM but checks more where /dev/kvm is usable (e.g. `bench fanin`
 * measures ipre there): the "kvm" part of a split run, so that CI runs it with KVM.
 */
export function describeKvmOptional(name: string, fn: () => void): void {
  if (TEST_PART === "pure") return;
  if (TEST_PART === "kvm" && !HAVE_KVM && process.env.IPRE_REQUIRE_KVM === "1") {
    throw new Error(`IPRE_REQUIRE_KVM=1 but /dev/kvm is not usable (${KVM_UNUSABLE}): "${name}" cannot run`);
  }
  describe(name, fn);
}

export { NESTED, SLOWDOWN, scaled, upperMs } from "./scenarios/common.ts";
