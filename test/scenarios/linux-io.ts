/**
 * Real programs with standard input and allowed files: Debian's busybox-static (a static glibc
 * binary nobody here wrote) run by Machine.exec. Filters read a 1 MiB stdin given as bytes, a
 * string, a read callback and a host fd; a 64 MiB stdin streams through `dd bs=1M`; `ls`, `cat`,
 * `stat` and `sh -c 'cd … && pwd && cat …'` (busybox execs its applet in place) work on a
 * mounted directory; /etc/passwd, `..` out of the mount and a symlink to a host file outside
 * fail with the program's own error; a read-write mount takes a file, a read-only one refuses;
 * fork is the program's "can't fork" with one note; sleep really sleeps and a sleep past the
 * call's timeout is a TimeoutError. Runtime-neutral: test/linux-io.test.ts runs it on Node (in
 * process), Bun and Deno, with the fixture directory it made as the argument.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { Machine } from "../../src/machine/machine.ts";
import type { ExecOptions } from "../../src/machine/machine.ts";
import { libc } from "../../src/ffi/index.ts";
import { rng } from "./common.ts";

/** Where Debian's busybox-static puts the binary, or undefined when it is not installed. */
export function findBusybox(): string | undefined {
  return ["/bin/busybox", "/usr/bin/busybox"].find((p) => existsSync(p));
}

export const MiB = 1024 * 1024;

/** 1 MiB of lowercase text in lines (for tr and sort), the same on every runtime. */
export function textInput(): Uint8Array {
  const r = rng(7);
  const b = new Uint8Array(MiB);
  for (let i = 0; i < b.length; i++) b[i] = i % 61 === 60 ? 10 : 97 + Math.floor(r() * 26);
  return b;
}

/** 1 MiB of pseudo-random bytes (for sha256sum and wc). */
export function binaryInput(): Uint8Array {
  const r = rng(11);
  const b = new Uint8Array(MiB);
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256);
  return b;
}

export const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

export interface IoRun {
  code: number;
  stdout: string;
  /** sha256 of stdout, and its length, for the big outputs. */
  stdoutSha: string;
  stdoutBytes: number;
  stderr: string;
  warnings: string[];
  /** Syscalls the program made (names, counts), for the streaming check. */
  calls: Record<string, number>;
  error?: string;
  ms: number;
}

export interface IoReport {
  runtime: string;
  skipped?: string;
  runs: Record<string, IoRun>;
  /** What the read-write mount holds afterwards. */
  written?: string;
  /** The largest stdin read callback buffer (64 MiB run): the program's read size. */
  largestRead?: number;
  /** Bytes the 64 MiB run printed (counted, not kept). */
  streamedOut?: number;
}

export function linuxIoReport(fixture: string): IoReport {
  const busybox = findBusybox();
  if (busybox === undefined) return { runtime: libc.runtime, skipped: "busybox-static not installed (apt-get install busybox-static)", runs: {} };
  const program = new Uint8Array(readFileSync(busybox));
  const rw = `${fixture}/out-${libc.runtime}`;
  const files: ExecOptions["files"] = { "/data": `${fixture}/data`, "/etc/motd": `${fixture}/motd.txt`, "/out": { host: rw, write: true } };
  using m = Machine.create({ memory: 64 * MiB });
  const runs: Record<string, IoRun> = {};
  const dec = new TextDecoder();
  const run = (label: string, argv: string[], extra: ExecOptions = {}) => {
    m.reset();
    const out: Uint8Array[] = [];
    const r: IoRun = { code: -1, stdout: "", stdoutSha: "", stdoutBytes: 0, stderr: "", warnings: [], calls: {}, ms: 0 };
    const t0 = performance.now();
    try {
      r.code = m.exec(program, {
        argv: ["busybox", ...argv],
        env: { PATH: "/bin", LANG: "C" },
        files,
        timeoutMs: 60_000,
        stdout: (b) => void out.push(b),
        stderr: (b) => (r.stderr += dec.decode(b)),
        onUnknownSyscall: (nr, name) => r.warnings.push(`${name}:${nr}`),
        trace: (_nr, name) => (r.calls[name] = (r.calls[name] ?? 0) + 1),
        ...extra,
      });
    } catch (e) {
      r.error = `${(e as Error).name}: ${(e as Error).message}`;
    }
    r.ms = performance.now() - t0;
    const all = new Uint8Array(out.reduce((a, b) => a + b.length, 0));
    let o = 0;
    for (const b of out) (all.set(b, o), (o += b.length));
    r.stdoutSha = sha256(all);
    r.stdoutBytes = all.length;
    r.stdout = all.length <= 65536 ? dec.decode(all) : "";
    runs[label] = r;
  };

  // Filters on a 1 MiB stdin, in each shape the option takes.
  const text = textInput(), binary = binaryInput();
  run("sha256sum", ["sha256sum"], { stdin: binary });
  run("wcString", ["wc", "-c"], { stdin: dec.decode(text) });
  let off = 0;
  run("trCallback", ["tr", "a-z", "A-Z"], {
    stdin: (buf) => {
      const n = Math.min(buf.length, 1000, text.length - off); // short reads, as a pipe gives
      buf.set(text.subarray(off, off + n));
      off += n;
      return n;
    },
  });
  writeFileSync(`${rw}-stdin`, text);
  const fd = openSync(`${rw}-stdin`, "r");
  try {
    run("sortFd", ["sort"], { stdin: { fd } });
  } finally {
    closeSync(fd);
  }
  // 64 MiB through dd from a callback that makes it as it goes (never held whole), copied to
  // stdout and counted there. dd reads 1 MiB at a time: 64 reads (wc -c reads 4 KiB at a time, 16,384
  // exits, a minute of the nested harness on three runtimes for no more coverage).
  let left = 64 * MiB, largestRead = 0, streamedOut = 0;
  run("dd64", ["dd", "bs=1048576", "iflag=fullblock"], {
    stdin: (buf) => {
      largestRead = Math.max(largestRead, buf.length);
      const n = Math.min(buf.length, left);
      buf.fill(120, 0, n);
      left -= n;
      return n;
    },
    stdout: (b) => void (streamedOut += b.length),
  });

  // Allowed files.
  run("lsData", ["ls", "-lan", "/data"]);
  run("lsRoot", ["ls", "/"]);
  run("cat", ["cat", "/data/x", "/etc/motd"]);
  run("shCd", ["sh", "-c", "cd /data && pwd && cat x"]);
  run("shRelative", ["sh", "-c", "cd /data/sub && cd .. && cd ../../.. && pwd && cat data/sub/y"]);
  run("stat", ["stat", "-c", "%s %F %a", "/data/x", "/data/sub", "/data/out"]);
  run("find", ["find", "/data"]);
  run("heredoc", ["sh", "-c", "read a <<EOF\nfrom a pipe\nEOF\necho \"got $a\"; exec 3>&1; echo to-fd-3 >&3"]);
  // Nothing else is visible.
  run("passwd", ["cat", "/etc/passwd"]);
  run("dotdot", ["cat", "/data/../../etc/passwd"]);
  run("dotdotRel", ["sh", "-c", "cd /data && cat ../../../../etc/passwd"]);
  run("linkOut", ["cat", "/data/out"]);
  run("linkUp", ["cat", "/data/up"]);
  run("lsOut", ["ls", "/data/out/"]);
  // Writing: a read-write mount takes a file; a read-only one and the namespace refuse.
  run("write", ["sh", "-c", "echo written > /out/f; echo more >> /out/f; echo no > /data/new; echo $?"]);
  run("writeRo", ["sh", "-c", "echo no > /data/x"]);
  const written = existsSync(`${rw}/f`) ? readFileSync(`${rw}/f`, "utf8") : undefined;
  // The single-process calls.
  run("fork", ["sh", "-c", "echo a | cat"]);
  run("nproc", ["nproc"]);
  run("sleep", ["sleep", "0.2"]);
  run("sleepTimeout", ["sleep", "10"], { timeoutMs: 300 });
  run("afterTimeout", ["true"]);
  return { runtime: libc.runtime, runs, written, largestRead, streamedOut };
}

if ((import.meta as ImportMeta & { main?: boolean }).main) {
  const g = globalThis as { process?: { argv: string[] }; Deno?: { args: string[] } };
  const fixture = g.Deno?.args[0] ?? g.process!.argv[2]!;
  console.log(JSON.stringify(linuxIoReport(fixture)));
}
