/**
 * `bun bench/load.ts [options]` or `deno run --allow-all bench/load.ts [options]`: the same code as
 * `ipre bench load` (src/bench/load.ts). Node 20 cannot run .ts: use `node bin/ipre.js bench load`
 * after `npx tsc -p tsconfig.json`. See bench/README.md.
 */
import process from "node:process";
import { parseFlags } from "../src/flags.ts";
import { bench } from "../src/bench.ts";

process.exitCode = await bench(parseFlags(["load", ...process.argv.slice(2)]));
