#!/usr/bin/env node
// npm/npx entry: the compiled CLI (tsc output in dist/). Bun and Deno can run src/cli.ts directly.
import { main } from "../dist/cli.js";
process.exitCode = await main(process.argv.slice(2));
