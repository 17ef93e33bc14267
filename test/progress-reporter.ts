/**
 * A vitest reporter for the nested harness's resumable runs (scripts/nested-vitest.sh): appends to
 * a file, as JSON lines, the test files a run is about to run, then each file's counts as soon as
 * that file has finished. When the guest freezes (docs/ARCHITECTURE.md §8) vitest never writes its
 * JSON report; these lines still say which files finished and how, and which must run again.
 */
import { appendFileSync } from "node:fs";
import { relative } from "node:path";
import type { Reporter, TestModule, TestSpecification } from "vitest/node";

export default class ProgressReporter implements Reporter {
  readonly #file: string;
  constructor(options: { file: string }) {
    this.#file = options.file;
  }
  #write(line: object): void {
    appendFileSync(this.#file, `${JSON.stringify(line)}\n`);
  }
  onTestRunStart(specifications: ReadonlyArray<TestSpecification>): void {
    this.#write({ planned: specifications.map((s) => relative(process.cwd(), s.moduleId)) });
  }
  onTestModuleEnd(module: TestModule): void {
    const count = { passed: 0, failed: 0, skipped: 0 };
    for (const t of module.children.allTests()) {
      const s = t.result().state;
      if (s === "passed") count.passed++;
      else if (s === "skipped") count.skipped++;
      else count.failed++; // failed, or still pending when its file ended
    }
    // A file that failed to load or in a hook outside any test has no failed test to count.
    if (count.failed === 0 && (module.errors().length > 0 || module.state() === "failed")) count.failed++;
    this.#write({ file: relative(process.cwd(), module.moduleId), state: module.state(), ...count });
  }
}
