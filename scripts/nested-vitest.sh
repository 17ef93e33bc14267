#!/usr/bin/env bash
# `vitest run [ARGS...]` inside the nested harness (scripts/nested-kvm.sh) with IPRE_REQUIRE_KVM=1,
# resumed when the guest freezes (docs/ARCHITECTURE.md §8): the harness kills a frozen guest
# (exit 123), and the test files that had not finished run again in a new guest, at most
# IPRE_NESTED_RERUNS times (default 2). test/progress-reporter.ts says which files finished.
#
#   scripts/nested-vitest.sh [VITEST ARGS...]     (what `npm run test:nested` runs)
#
# Exits with vitest's status, or 123 if the guest froze more often than allowed. With
# IPRE_VITEST_JSON set, writes there the counts over all attempts (numPassedTests,
# numFailedTests, numPendingTests, numTodoTests, numTotalTests, as vitest's JSON report has
# them); a file that never finished counts as one failed test. A resumed run passes vitest the
# remaining files and every original argument that is not a file.
set -uo pipefail
cd "$(dirname "$0")/.."
reruns=${IPRE_NESTED_RERUNS:-2}
json=${IPRE_VITEST_JSON:-}
unset IPRE_VITEST_JSON
# In the checkout: the guest sees the host's / over 9p (its TMPDIR is a guest tmpfs).
progress=$(mktemp "$PWD/.nested-progress.XXXXXX")
trap 'rm -f "$progress"' EXIT
args=("$@")
options=()
for a in "$@"; do [ -f "$a" ] || options+=("$a"); done

# The files of the first attempt's plan that have no result yet.
remaining() {
  node -e '
    const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const planned = lines.find((l) => l.planned)?.planned ?? [];
    const done = new Set(lines.filter((l) => l.file).map((l) => l.file));
    console.log(planned.filter((f) => !done.has(f)).join("\n"));
  ' "$progress"
}

# Node scenario children transpile their TypeScript through test/node-ts-hooks.mjs, which loads
# TypeScript only for what its cache lacks: fill the cache here, natively, where that takes a few
# seconds and under TCG most of a minute per child.
node -e 'import("./test/node-ts-hooks.mjs").then((m) => m.warmCache())' || echo "nested-vitest: the TypeScript cache of test/node-ts-hooks.mjs was not filled"

attempt=0
freezes=0
while :; do
  IPRE_VITEST_PROGRESS=$progress bash scripts/nested-kvm.sh -- env IPRE_REQUIRE_KVM=1 node_modules/.bin/vitest run "${args[@]}"
  status=$?
  [ $status = 123 ] || break
  freezes=$((freezes + 1))
  mapfile -t left < <(remaining)
  if [ ! -s "$progress" ] || ! grep -q '"planned"' "$progress"; then
    echo "nested-vitest: the guest froze before vitest started its files"
    left=()
  else
    echo "nested-vitest: the guest froze (freeze $freezes); ${#left[@]} file(s) had not finished: ${left[*]}"
    [ ${#left[@]} = 0 ] && { status=0; break; }
  fi
  if [ $attempt -ge "$reruns" ]; then
    echo "nested-vitest: giving up after $reruns reruns (IPRE_NESTED_RERUNS)"
    break
  fi
  attempt=$((attempt + 1))
  # Before vitest started, nothing ran: the same arguments again.
  [ ${#left[@]} -gt 0 ] && args=("${options[@]}" "${left[@]}")
  echo "nested-vitest: rerun $attempt of at most $reruns"
done

if [ -n "$json" ]; then
  node -e '
    const fs = require("fs");
    const lines = fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const planned = lines.find((l) => l.planned)?.planned ?? [];
    const last = new Map(lines.filter((l) => l.file).map((l) => [l.file, l]));
    let passed = 0, failed = 0, skipped = 0;
    for (const r of last.values()) { passed += r.passed; failed += r.failed; skipped += r.skipped; }
    const unfinished = planned.filter((f) => !last.has(f));
    for (const f of unfinished) console.error(`nested-vitest: ${f} never finished: counted as failed`);
    failed += unfinished.length;
    const report = { numPassedTests: passed, numFailedTests: failed, numPendingTests: skipped, numTodoTests: 0, numTotalTests: passed + failed + skipped, freezes: Number(process.argv[3]) };
    fs.writeFileSync(process.argv[2], JSON.stringify(report));
  ' "$progress" "$json" "$freezes" || status=1
fi
[ $freezes -gt 0 ] && echo "nested-vitest: the guest froze $freezes time(s) in this run"
exit $status
