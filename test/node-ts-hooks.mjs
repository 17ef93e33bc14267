/**
 * Module hooks for test/node-ts.mjs: transpile .ts files with the project's TypeScript (no type
 * check). The output is cached by content in node_modules/.cache/ipre-node-ts, and TypeScript
 * (~9 MB of JavaScript) is loaded only on a miss: in the nested harness, where new JavaScript runs
 * tens of times slower, loading it cost each Node child most of a minute (docs/ARCHITECTURE.md
 * §8). The cache is the checkout's, not the temporary directory's (a tmpfs of its own in the
 * harness), and scripts/nested-vitest.sh fills it natively first (`warmCache()`).
 */
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const TS_VERSION = JSON.parse(readFileSync(require.resolve("typescript/package.json"), "utf8")).version;
const CACHE = fileURLToPath(new URL("../node_modules/.cache/ipre-node-ts", import.meta.url));
let ts;

/** The JavaScript of a .ts file's source, from the cache or transpiled (and then cached). */
async function transpiled(fileName, source) {
  const cached = `${CACHE}/${createHash("sha256").update(`${TS_VERSION}\0${source}`).digest("hex")}.js`;
  try {
    return readFileSync(cached, "utf8");
  } catch {
    // not cached yet
  }
  ts ??= (await import("typescript")).default;
  const out = ts.transpileModule(source, {
    fileName,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  try {
    mkdirSync(CACHE, { recursive: true });
    const tmp = `${cached}.${process.pid}.tmp`;
    writeFileSync(tmp, out);
    renameSync(tmp, cached);
  } catch {
    // a cache that cannot be written only costs time
  }
  return out;
}

export async function load(url, context, next) {
  if (!url.startsWith("file:") || !url.endsWith(".ts")) return next(url, context);
  const fileName = fileURLToPath(url);
  return { format: "module", source: await transpiled(fileName, await readFile(fileName, "utf8")), shortCircuit: true };
}

/** Transpile every .ts file under src/ and test/ into the cache (what the Node children import). */
export async function warmCache() {
  const walk = async (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) await walk(p);
      else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) await transpiled(p, readFileSync(p, "utf8"));
    }
  };
  for (const d of ["src", "test"]) await walk(fileURLToPath(new URL(`../${d}`, import.meta.url)));
}
