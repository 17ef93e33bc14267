/**
 * `node --import ./test/node-ts.mjs script.ts`: run a TypeScript scenario in a *child* Node
 * process (Node 20 cannot strip types itself). Used for checks that may crash the process, which
 * must not run inside the vitest worker. Hooks: test/node-ts-hooks.mjs.
 */
import { register } from "node:module";

register("./node-ts-hooks.mjs", import.meta.url);
