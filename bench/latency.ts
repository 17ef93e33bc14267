/**
 * `bun bench/latency.ts [options]` or `deno run --allow-all bench/latency.ts [options]`: the same code as
 * `ipre bench latency` (src/bench/latency.ts). Node 20 cannot run .ts: use `node bin/ipre.js bench latency`
 * after `npx tsc -p tsconfig.json`. See bench/README.md.
 */
import process from "node:process";
import { parseFlags } from "../src/flags.ts";
import { bench } from "../src/bench.ts";

process.exitCode = await bench(parseFlags(["latency", ...process.argv.slice(2)]));
