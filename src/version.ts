/** ipre's version, as in package.json and deno.json (test/cli.test.ts checks that they agree). */
export const VERSION = "0.1.0";
