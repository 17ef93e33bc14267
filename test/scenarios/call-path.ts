/**
 * Imported by the scenarios of the IPRE suites that run once per call path (test/harness.ts
 * CALL_PATHS): a child learns its path from IPRE_TEST_CALL_PATH. Apart from common.ts, which
 * vitest.config.ts loads before any TypeScript transform (and which must not import src/).
 */
import { Machine } from "../../src/machine/machine.ts";
import { env } from "./common.ts";

const path = env("IPRE_TEST_CALL_PATH");
if (path === "fast" || path === "trap") Machine.callPath = path;
