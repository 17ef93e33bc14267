/**
 * `bun bench/payload.ts [options]` or `deno run --allow-all bench/payload.ts [options]`: the same code as
 * `ipre bench payload` (src/bench/payload.ts). Node 20 cannot run .ts: use `node bin/ipre.js bench payload`
 * after `npx tsc -p tsconfig.json`. See bench/README.md.
 */
import process from "node:process";
import { parseFlags } from "../src/flags.ts";
import { bench } from "../src/bench.ts";

process.exitCode = await bench(parseFlags(["payload", ...process.argv.slice(2)]));
