import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // KVM tests spawn Bun and Deno scenarios and run real guests: be generous.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Each test file in its own process: FFI state (signal masks, timers, mappings) stays isolated.
    pool: "forks",
  },
});
