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
    reporters: json ? ["default", ["json", { outputFile: json }]] : ["default"],
  },
});
