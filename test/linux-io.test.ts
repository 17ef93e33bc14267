/**
 * Standard input, allowed files and the single-process calls of Linux programs, with a real
 * static binary: Debian's busybox-static (apt-get install busybox-static; .ci/run installs it).
 * test/scenarios/linux-io.ts runs its applets by Machine.exec on Node (in this vitest process),
 * Bun and Deno over one fixture directory made here; the outputs are compared with busybox run
 * natively on the same input and files. Then `ipre exec` on the three runtimes: its stdin (1 MiB
 * and a streamed 64 MiB), --mount and --allow-read. The 64 MiB go through `dd bs=1M`, which
 * reads 1 MiB at a time (`wc -c` reads 4 KiB: 16,384 exits per run, slow in the nested harness).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDist, runCli, type CliResult } from "./cli-run.ts";
import { collectReports, ReportSet, RUNTIMES, type Runtime } from "./harness.ts";
import { describeKvm, upperMs } from "./kvm.ts";
import { binaryInput, findBusybox, linuxIoReport, MiB, sha256, textInput, type IoReport, type IoRun } from "./scenarios/linux-io.ts";

const BUSYBOX = findBusybox();
const SKIP = "busybox-static not installed (apt-get install busybox-static)";
/** `it`, or without busybox a skipped test whose name says why (CI installs it: .ci/run). */
const bbIt: (name: string, fn: () => void) => void = BUSYBOX === undefined ? (name, fn) => it.skip(`${name} [skipped: ${SKIP}]`, fn) : (name, fn) => it(name, fn);

/** The fixture: data/{x, sub/y, out -> ../secret by absolute path, up -> ../secret}, motd.txt, secret, out-<runtime>/. */
function makeFixture(): string {
  const dir = mkdtempSync(`${tmpdir()}/ipre-linux-io-`);
  mkdirSync(`${dir}/data/sub`, { recursive: true });
  writeFileSync(`${dir}/data/x`, "hello\n");
  writeFileSync(`${dir}/data/sub/y`, "inner\n");
  writeFileSync(`${dir}/secret`, "SECRET\n");
  writeFileSync(`${dir}/motd.txt`, "MOTD\n");
  symlinkSync(`${dir}/secret`, `${dir}/data/out`);
  symlinkSync("../secret", `${dir}/data/up`);
  for (const rt of RUNTIMES) mkdirSync(`${dir}/out-${rt}`);
  return dir;
}

/** busybox run natively (the reference). */
function native(args: string[], input?: Uint8Array): { stdout: Buffer; stderr: string; status: number | null } {
  const r = spawnSync(BUSYBOX!, args, { input, env: { PATH: "/bin", LANG: "C", TZ: "UTC" }, maxBuffer: 64 * MiB });
  return { stdout: r.stdout, stderr: r.stderr.toString(), status: r.status };
}

const detail = (r: IoRun) => `exit ${r.code}${r.error ? `, ${r.error}` : ""}\nstdout: ${r.stdout.slice(0, 2000)}\nstderr: ${r.stderr}\nwarnings: ${r.warnings.join(", ")}`;

describeKvm("linux: busybox with stdin and allowed files (Machine.exec)", () => {
  let set = new ReportSet<IoReport>();
  let fixture = "";
  beforeAll(async () => {
    fixture = makeFixture();
    set = await collectReports("test/scenarios/linux-io.ts", () => [fixture], () => linuxIoReport(fixture), upperMs(240_000));
  }, upperMs(480_000));
  afterAll(() => {
    if (fixture) rmSync(fixture, { recursive: true, force: true });
  });

  describe.each(RUNTIMES)("%s", (rt) => {
    const runs = (): Record<string, IoRun> | undefined => {
      const r = set.report(rt);
      if (r.skipped) {
        console.warn(`linux-io (${rt}): skipped: ${r.skipped}`);
        return undefined;
      }
      return r.runs;
    };
    /** A run that must exist (without the checks of ok()). */
    const run = (r: IoRun | undefined): IoRun => {
      if (r === undefined) throw new Error("no such run");
      return r;
    };
    const ok = (r: IoRun | undefined) => {
      expect(r, "no such run").toBeDefined();
      expect(r!.error, detail(r!)).toBeUndefined();
      expect(r!.warnings, detail(r!)).toEqual([]);
      return r!;
    };

    bbIt("filters on a 1 MiB stdin print what busybox prints natively (bytes, a string, a read callback, a host fd)", () => {
      const x = runs()!;
      const text = textInput(), binary = binaryInput();
      expect(ok(x.sha256sum).stdout).toBe(native(["sha256sum"], binary).stdout.toString());
      expect(run(x.sha256sum).stdout).toBe(`${sha256(binary)}  -\n`);
      expect(ok(x.wcString).stdout).toBe(native(["wc", "-c"], text).stdout.toString());
      const tr = native(["tr", "a-z", "A-Z"], text).stdout;
      expect(ok(x.trCallback).stdoutBytes).toBe(MiB);
      expect(run(x.trCallback).stdoutSha).toBe(sha256(tr));
      expect(ok(x.sortFd).stdoutSha).toBe(sha256(native(["sort"], text).stdout));
      for (const k of ["sha256sum", "wcString", "trCallback", "sortFd"]) expect(x[k]!.code, k).toBe(0);
    });

    bbIt("a 64 MiB stdin streams through dd bs=1M, one read's worth at a time", () => {
      const r = set.report(rt);
      const d = ok(r.runs.dd64);
      expect(d.code, detail(d)).toBe(0);
      expect(d.stderr).toBe("64+0 records in\n64+0 records out\n");
      expect(r.streamedOut).toBe(64 * MiB);
      expect(r.largestRead).toBeLessThanOrEqual(MiB); // the callback filled the program's buffer, never 64 MiB
      expect(d.calls.read).toBeGreaterThanOrEqual(64);
    });

    bbIt("ls, cat, stat, find and sh -c 'cd … && pwd && cat …' on a mounted directory", () => {
      const x = runs()!;
      // ls -lan: as natively, but for "..", the namespace's synthetic / above the mount (and so the total of blocks).
      const lines = (s: string) => s.split("\n").filter((l) => !l.endsWith(" ..") && !l.startsWith("total "));
      expect(lines(ok(x.lsData).stdout)).toEqual(lines(native(["ls", "-lan", `${fixture}/data`]).stdout.toString()));
      expect(lines(run(x.lsData).stdout)).toHaveLength(6); // ., out, sub, up, x and the final newline
      expect(run(x.lsData).stdout).toMatch(/^dr-xr-xr-x .* \.\.$/m);
      expect(ok(x.lsRoot).stdout).toBe("data\netc\nout\n"); // the mount points' first components
      expect(ok(x.cat).stdout).toBe("hello\nMOTD\n");
      expect(ok(x.shCd).stdout).toBe("/data\nhello\n");
      expect(run(x.shCd).code).toBe(0);
      expect(ok(x.shRelative).stdout).toBe("/\ninner\n"); // cd ../../.. from /data stops at /
      const st = native(["stat", "-c", "%s %F %a", `${fixture}/data/x`, `${fixture}/data/sub`, `${fixture}/data/out`]).stdout.toString();
      expect(ok(x.stat).stdout).toBe(st);
      expect(ok(x.find).stdout.split("\n").sort()).toEqual(["", "/data", "/data/out", "/data/sub", "/data/sub/y", "/data/up", "/data/x"]);
      expect(ok(x.heredoc).stdout).toBe("got from a pipe\nto-fd-3\n"); // a pipe, dup2, F_DUPFD inside one process
    });

    bbIt("nothing outside the mounts is visible: /etc/passwd, .. out of a mount, symlinks out fail as the program's own error", () => {
      const x = runs()!;
      const fails = (k: string, why: string) => {
        const r = ok(x[k]);
        expect(r.code, detail(r)).toBe(1);
        expect(r.stdout).toBe("");
        expect(r.stderr, k).toContain(why);
        expect(r.stderr).not.toContain("SECRET");
        expect(r.stderr).not.toContain("root:");
      };
      fails("passwd", "cat: can't open '/etc/passwd': No such file or directory");
      fails("dotdot", "No such file or directory");
      fails("dotdotRel", "No such file or directory");
      fails("linkOut", "cat: can't open '/data/out': Permission denied");
      fails("linkUp", "cat: can't open '/data/up': Permission denied");
      fails("lsOut", "Permission denied");
    });

    bbIt("a read-write mount takes new files; a read-only one is EROFS", () => {
      const r = set.report(rt);
      expect(ok(r.runs.write).stderr).toBe("sh: can't create /data/new: Read-only file system\n");
      expect(r.written).toBe("written\nmore\n");
      expect(ok(r.runs.writeRo).stderr).toBe("sh: can't create /data/x: Read-only file system\n");
      expect(run(r.runs.writeRo).code).toBe(1);
    });

    bbIt("one process: fork is the program's own error with one note; nproc 1; sleep sleeps; a sleep past the timeout is a TimeoutError", () => {
      const x = runs()!;
      expect(x.fork!.error).toBeUndefined();
      expect(x.fork!.code).toBe(2);
      expect(x.fork!.stderr).toBe("sh: can't fork: Function not implemented\n");
      expect(x.fork!.warnings).toEqual(["clone:56"]);
      expect(ok(x.nproc).stdout).toBe("1\n");
      expect(ok(x.sleep).code).toBe(0);
      expect(run(x.sleep).ms).toBeGreaterThanOrEqual(190);
      expect(x.sleepTimeout!.error).toMatch(/^TimeoutError: .*timeout 300 ms/);
      expect(x.sleepTimeout!.ms).toBeLessThan(upperMs(5000));
      expect(ok(x.afterTimeout).code).toBe(0); // reset() after the timeout: the machine runs again
    });
  });
});

describeKvm("ipre exec: stdin, --mount and --allow-read on Node, Bun and Deno", () => {
  const results = new Map<string, CliResult>();
  let fixture = "";
  const binary = binaryInput();
  beforeAll(async () => {
    if (BUSYBOX === undefined) return;
    fixture = makeFixture();
    ensureDist();
    const none = async () => {};
    const cases: Record<string, [string[], (w: (b: Uint8Array) => Promise<void>) => Promise<void>]> = {
      sha: [[BUSYBOX, "sha256sum"], (w) => w(binary)],
      dd64: [[BUSYBOX, "dd", "bs=1048576", "iflag=fullblock"], async (w) => {
        const chunk = new Uint8Array(MiB).fill(121);
        for (let i = 0; i < 64; i++) await w(chunk);
      }],
      mount: [["--mount", `${fixture}/data:/data`, BUSYBOX, "sh", "-c", "cd /data && pwd && cat x"], none],
      allowRead: [["--allow-read", `${fixture}/data`, "--allow-read", `${fixture}/motd.txt`, BUSYBOX, "cat", `${fixture}/data/x`, `${fixture}/motd.txt`], none],
      hidden: [["--mount", `${fixture}/data:/data`, BUSYBOX, "cat", "/etc/passwd"], none],
      rw: [["--mount", `${fixture}/out-node:/out:rw`, BUSYBOX, "sh", "-c", "cat > /out/cli"], (w) => w(new TextEncoder().encode("from stdin\n"))],
      badMount: [["--mount", "relative-guest", BUSYBOX, "true"], none],
    };
    const jobs = RUNTIMES.flatMap((rt) => Object.entries(cases).map(([k, [args, input]]) => async () => results.set(`${rt}:${k}`, await runCli(rt, ["exec", ...args], { input, timeoutMs: 120_000, countStdout: k === "dd64" }))));
    let next = 0;
    await Promise.all(Array.from({ length: 2 }, async () => {
      while (next < jobs.length) await jobs[next++]!();
    }));
  }, upperMs(600_000));
  afterAll(() => {
    if (fixture) rmSync(fixture, { recursive: true, force: true });
  });
  const res = (rt: Runtime, k: string) => results.get(`${rt}:${k}`)!;
  const show = (r: CliResult) => `exit ${r.code}\nstdout: ${r.stdout.slice(0, 2000)}\nstderr: ${r.stderr}`;

  describe.each(RUNTIMES)("%s", (rt) => {
    bbIt("the program reads ipre's stdin: 1 MiB through sha256sum, 64 MiB streamed through dd bs=1M", () => {
      const sha = res(rt, "sha");
      expect(sha.code, show(sha)).toBe(0);
      expect(sha.stdout).toBe(`${sha256(binary)}  -\n`);
      const dd = res(rt, "dd64");
      expect(dd.code, show(dd)).toBe(0);
      expect(dd.stderr).toBe("64+0 records in\n64+0 records out\n");
      expect(dd.stdoutBytes).toBe(64 * MiB);
    });

    bbIt("--mount HOST:GUEST and --allow-read PATH show those files only; :rw takes a file", () => {
      const m = res(rt, "mount");
      expect(m.code, show(m)).toBe(0);
      expect(m.stdout).toBe("/data\nhello\n");
      const a = res(rt, "allowRead");
      expect(a.code, show(a)).toBe(0);
      expect(a.stdout).toBe("hello\nMOTD\n");
      const h = res(rt, "hidden");
      expect(h.code, show(h)).toBe(1);
      expect(h.stderr).toBe("cat: can't open '/etc/passwd': No such file or directory\n");
      const w = res(rt, "rw");
      expect(w.code, show(w)).toBe(0);
      expect(readFileSync(`${fixture}/out-node/cli`, "utf8")).toBe("from stdin\n");
      const b = res(rt, "badMount");
      expect(b.code, show(b)).toBe(2);
      expect(b.stderr).toContain("--mount needs HOST:GUEST[:rw]");
    });
  });
});
