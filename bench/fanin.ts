/**
 * `bun bench/fanin.ts [options]` or `deno run --allow-all bench/fanin.ts [options]`: the same code as
 * `ipre bench fanin` (src/bench/fanin.ts). Node 20 cannot run .ts: use `node bin/ipre.js bench fanin`
 * after `npx tsc -p tsconfig.json`. See bench/README.md.
 */
import process from "node:process";
import { parseFlags } from "../src/flags.ts";
import { bench } from "../src/bench.ts";

process.exitCode = await bench(parseFlags(["fanin", ...process.argv.slice(2)]));
