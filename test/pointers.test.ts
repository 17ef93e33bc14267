/**
 * Host-side reads and writes on a guest's behalf obey the guest's own rights, on Node, Bun and
 * Deno (test/scenarios/pointers.ts): the print hostcall, and in hostcall handlers bytes/read/
 * write/readU64/readCString and guestRead/guestWrite. Expected rights are those of the page
 * tables the code that made the hostcall runs on (docs/ARCHITECTURE.md §3).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { CALL_PATHS, callPathEnv, inCallPath, collectReports, type ReportSet, RUNTIMES } from "./harness.ts";
import { describeKvm } from "./kvm.ts";
import { expectError, expectValue } from "./expect.ts";
import { pointersReport, type Access, type PointersReport } from "./scenarios/pointers.ts";

type Rights = "rw" | "r" | "-";
/** context -> target -> rights of the code that made the hostcall. */
const EXPECTED: Record<string, Record<string, Rights>> = {
  "caller code, no loan": {
    "caller data": "rw", "caller code": "r", "caller stack guard page": "-", "caller runtime area": "-", "caller page tables": "-",
    "remote data": "-", "remote code": "-", "remote runtime area": "-", "unmapped window 5": "-",
  },
  // Remote code sees its own window and the caller's memory (it was given pointers into it), not runtime areas.
  "remote code in a call, remote's gate": {
    "caller data": "rw", "caller code": "r", "caller stack guard page": "-", "caller runtime area": "-", "caller page tables": "-",
    "remote data": "rw", "remote code": "r", "remote runtime area": "-", "unmapped window 5": "-",
  },
  "remote code in a call, caller's gate": { "remote data": "rw", "caller data": "rw" },
  "caller code in a callback": { "remote data": "-", "caller data": "rw" },
  "caller code after a call": { "remote data": "-" },
  "caller code, read loan": { "remote data": "r", "remote code": "r", "remote runtime area": "-", "caller data": "rw" },
};

function checkAccess(a: Access, rights: Rights, what: string): void {
  const readable = rights !== "-";
  const writable = rights === "rw";
  for (const [name, o] of [["read", a.read], ["readU64", a.readU64], ["readCString", a.cstring], ["guestRead", a.guestRead]] as const) {
    if (readable) expect(o, `${what}: ${name}: ${JSON.stringify(o)}`).toMatchObject({ ok: true });
    else expectError(o, "GuestMemoryError", `${what}: ${name}`);
  }
  for (const [name, o] of [["write", a.write], ["guestWrite", a.guestWrite]] as const) {
    if (writable) expect(o, `${what}: ${name}: ${JSON.stringify(o)}`).toMatchObject({ ok: true });
    else {
      expectError(o, "GuestMemoryError", `${what}: ${name}`);
      if (readable) expect(o.message, what).toContain("read-only");
    }
  }
  if (readable) expect(a.guestRead.value).toBe(4);
}

for (const path of CALL_PATHS) describeKvm(`guest pointers followed by the host (${path} path)`, () => {
  let set: ReportSet<PointersReport>;
  beforeAll(async () => {
    set = await collectReports("test/scenarios/pointers.ts", () => [], () => inCallPath(path, pointersReport), 60_000, callPathEnv(path));
  }, 120_000);

  describe.each(RUNTIMES)("on %s", (rt) => {
    it("every probe reported, for every context that can make a hostcall", () => {
      const got = set.report(rt).probes.map((p) => `${p.context} / ${p.target}`);
      const want = Object.entries(EXPECTED).flatMap(([c, ts]) => Object.keys(ts).map((t) => `${c} / ${t}`));
      expect(got).toEqual(want);
    });
    it.each(Object.keys(EXPECTED))("%s: each accessor reads and writes exactly what that code may", (context) => {
      for (const p of set.report(rt).probes.filter((x) => x.context === context)) checkAccess(p.access, EXPECTED[context]![p.target]!, `${context} / ${p.target}`);
    });
    it("print hostcall: caller code cannot print a remote's memory without a loan; remote code inside a call and a loan can", () => {
      const pr = (context: string, target: string) => set.report(rt).prints.find((p) => p.context === context && p.target === target)!;
      const denied = pr("caller code, no loan", "remote data");
      expectError(denied.result, "GuestMemoryError", "print of remote data from caller code");
      expect(denied.result.message).toContain("not mapped");
      expect(denied.printed).toEqual([]);
      expectValue(pr("caller code, no loan", "caller data").result, "caller-data".length);
      expect(pr("caller code, no loan", "caller data").printed).toEqual(["caller-data"]);
      expect(pr("remote code in a call", "remote data").printed).toEqual(["remote-data"]);
      expect(pr("remote code in a call", "caller data").printed).toEqual(["caller-data"]);
      expect(pr("caller code, read loan", "remote data").printed).toEqual(["remote-data"]);
    });
    it("string arguments land on the caller's own stack and read back in a handler", () => {
      expectValue(set.report(rt).stringArg, "a string argument");
    });
    it("the remote's data is intact after every probe", () => {
      expect(set.report(rt).remoteData).toBe("remote-data");
    });
  });
});
