import { configDefaults, defineConfig } from "vitest/config";
import { SLOWDOWN as slowdown } from "./test/scenarios/common.ts";

// .ci/run asks for a JSON report (IPRE_VITEST_JSON) to count passed/failed/skipped tests.
const json = process.env.IPRE_VITEST_JSON;
// .ci/run runs some files that need no KVM natively before the nested harness run, and names
// them here so that the harness run leaves them out (comma-separated paths).
const native = (process.env.IPRE_NATIVE_TESTS ?? "").split(",").filter((p) => p);

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: [...configDefaults.exclude, ...native],
    // Says whether the KVM suites run here, and how to run them where they cannot.
    globalSetup: ["test/global-setup.ts"],
    // KVM tests spawn Bun and Deno scenarios and run real guests: be generous.
    // In the nested harness (scripts/nested-kvm.sh) emulated code is several times slower.
    testTimeout: 120_000 * slowdown,
    hookTimeout: 120_000 * slowdown,
    // Each test file in its own process: FFI state (signal masks, timers, mappings) stays isolated.
    pool: "forks",
    // One file at a time: each KVM suite already runs Node, Bun and Deno at once on the 2 cores,
    // and the timeout tests assert a 20 ms overshoot bound. Sequential is no slower here (~40 s).
    fileParallelism: false,
    reporters: json ? ["default", ["json", { outputFile: json }]] : ["default"],
  },
});
