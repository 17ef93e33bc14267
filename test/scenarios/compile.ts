/**
 * C source as a program (src/guest/compile.ts): `bun|deno|node test/scenarios/compile.ts PHASE`,
 * one JSON line. The parent (test/compile.test.ts) sets IPRE_CC to a wrapper that counts its
 * runs, and IPRE_CACHE_DIR to a fresh directory per runtime.
 *  - build:    Machine.create({ source }) for a remote and a caller linked against it, connect,
 *              call (KVM)
 *  - rebuild:  the same two machines again (the parent checks the compiler did not run)
 *  - errors:   a compile error (as source.c and as experiment.c), an explicit missing compiler
 *  - nocc:     compile with no compiler on PATH and no IPRE_CC
 *  - denied:   compile on Deno without --allow-run/--allow-env/--allow-write
 */
import process from "node:process";
import { CompileError, compile, connect, Machine } from "../../src/mod.ts";

/** Run directly (not imported)? Not common.ts's isMain: that module reads the environment, which the "denied" phase may not. */
function isMain(meta: ImportMeta): boolean {
  const main = (meta as ImportMeta & { main?: boolean }).main;
  return main ?? decodeURIComponent(new URL(meta.url).pathname) === process.argv[1];
}

export const STORE = `#include "ipre.h"
static long table[1024];
IPRE_EXPORT long put(long k, long v) { table[k & 1023] = v; return 0; }
IPRE_EXPORT long get(long k) { return table[k & 1023]; }
`;
export const APP = `#include "ipre.h"
long put(long k, long v);
long get(long k);
long roundtrip(long k) { put(k, k * 3); return get(k); }
`;
export const BAD = `#include "ipre.h"
long add(long a, long b) {
  return a + b
}
`;

function failure(f: () => unknown): Record<string, unknown> {
  try {
    f();
    return { threw: false };
  } catch (e) {
    const c = e as CompileError;
    return { threw: true, typed: e instanceof CompileError, name: c.name, reason: c.reason, message: c.message, diagnostics: c.diagnostics, output: c.output };
  }
}

function pair(): { result: number; ms: number } {
  const t0 = performance.now();
  using store = Machine.create({ window: 1, source: STORE });
  using app = Machine.create({ window: 0, source: APP, linkAgainst: [store] });
  const ms = performance.now() - t0;
  using _c = connect(app, store);
  return { result: app.call("roundtrip", 14), ms };
}

export function run(phase: string): Record<string, unknown> {
  switch (phase) {
    case "build":
    case "rebuild":
      return pair();
    case "errors":
      return {
        error: failure(() => compile(BAD)),
        named: failure(() => compile(BAD, { name: "experiment.c" })),
        missing: failure(() => compile(STORE, { cc: "/nonexistent/bin/cc" })),
        machine: failure(() => Machine.create({ name: "store", source: BAD })),
      };
    case "nocc":
    case "denied":
      return { error: failure(() => compile(STORE)) };
    default:
      throw new Error(`unknown phase ${phase}`);
  }
}

if (isMain(import.meta)) console.log(JSON.stringify(run(process.argv[2] ?? "build")));
