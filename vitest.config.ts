import { defineConfig } from "vitest/config";

// .ci/run asks for a JSON report (IPRE_VITEST_JSON) to count passed/failed/skipped tests.
const json = process.env.IPRE_VITEST_JSON;

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // KVM tests spawn Bun and Deno scenarios and run real guests: be generous.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Each test file in its own process: FFI state (signal masks, timers, mappings) stays isolated.
    pool: "forks",
    // One file at a time: each KVM suite already runs Node, Bun and Deno at once on the 2 cores,
    // and the timeout tests assert a 20 ms overshoot bound. Sequential is no slower here (~40 s).
    fileParallelism: false,
    reporters: json ? ["default", ["json", { outputFile: json }]] : ["default"],
  },
});
