/**
 * KVM availability for tests. A KVM test must never skip silently where /dev/kvm exists, and
 * must fail (not skip) where CI requires KVM (`IPRE_REQUIRE_KVM=1`, set by `.ci/run`).
 */
import { existsSync } from "node:fs";
import { describe } from "vitest";

export const HAVE_KVM = existsSync("/dev/kvm");

/** `describe` when /dev/kvm exists, `describe.skip` otherwise; throws if KVM is required but missing. */
export function describeKvm(name: string, fn: () => void): void {
  if (!HAVE_KVM && process.env.IPRE_REQUIRE_KVM === "1") {
    throw new Error(`IPRE_REQUIRE_KVM=1 but /dev/kvm does not exist: "${name}" cannot run`);
  }
  (HAVE_KVM ? describe : describe.skip)(name, fn);
}
