import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { configDefaults, defineConfig } from "vitest/config";
import { SLOWDOWN as slowdown } from "./test/scenarios/common.ts";

// .ci/run asks for a JSON report (IPRE_VITEST_JSON) to count passed/failed/skipped tests, and in
// the nested harness for a progress file (IPRE_VITEST_PROGRESS, test/progress-reporter.ts) that
// says which files finished, so that a run cut off by a guest freeze can be resumed.
const json = process.env.IPRE_VITEST_JSON;
const progress = process.env.IPRE_VITEST_PROGRESS;

// A split run (IPRE_TEST_PART, test/kvm.ts; .ci/run where /dev/kvm is missing): "pure" runs
// natively the files with tests that need no KVM, "kvm" runs in the nested harness the files
// with KVM suites. A file belongs to the KVM part if it has a describeKvm, describeKvmOptional or
// describeScenario suite, and to the pure part if it has none of those or a describePure suite.
const part = process.env.IPRE_TEST_PART;
const KVM_MARK = /\b(describeKvm(Optional)?|describeScenario)\(/;
const testDir = fileURLToPath(new URL("./test/", import.meta.url));
const leftOut = part
  ? readdirSync(testDir)
      .filter((f) => f.endsWith(".test.ts"))
      .filter((f) => {
        const src = readFileSync(`${testDir}${f}`, "utf8");
        const kvm = KVM_MARK.test(src);
        return part === "kvm" ? !kvm : kvm && !/\bdescribePure\(/.test(src);
      })
      .map((f) => `test/${f}`)
  : [];

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: [...configDefaults.exclude, ...leftOut],
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
    reporters: [
      "default",
      ...(json ? [["json", { outputFile: json }] satisfies [string, object]] : []),
      ...(progress ? [["./test/progress-reporter.ts", { file: progress }] satisfies [string, object]] : []),
    ],
  },
});
