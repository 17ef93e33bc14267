/**
 * Module hooks for test/node-ts.mjs: transpile .ts files with the project's TypeScript (no type
 * check). The output is cached by content in a directory under the temporary directory, and
 * TypeScript (~9 MB of JavaScript) is loaded only on a miss: in the nested harness, where new
 * JavaScript runs ~70x slower, loading it cost each Node child tens of seconds
 * (docs/ARCHITECTURE.md §8).
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const TS_VERSION = JSON.parse(readFileSync(require.resolve("typescript/package.json"), "utf8")).version;
const CACHE = `${tmpdir()}/ipre-node-ts-${process.getuid?.() ?? "user"}`;
let ts;

export async function load(url, context, next) {
  if (!url.startsWith("file:") || !url.endsWith(".ts")) return next(url, context);
  const fileName = fileURLToPath(url);
  const source = await readFile(fileName, "utf8");
  const cached = `${CACHE}/${createHash("sha256").update(`${TS_VERSION}\0${source}`).digest("hex")}.js`;
  try {
    return { format: "module", source: readFileSync(cached, "utf8"), shortCircuit: true };
  } catch {
    // not cached yet
  }
  ts ??= (await import("typescript")).default;
  const out = ts.transpileModule(source, {
    fileName,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  try {
    mkdirSync(CACHE, { recursive: true });
    const tmp = `${cached}.${process.pid}.tmp`;
    writeFileSync(tmp, out.outputText);
    renameSync(tmp, cached);
  } catch {
    // a cache that cannot be written only costs time
  }
  return { format: "module", source: out.outputText, shortCircuit: true };
}
