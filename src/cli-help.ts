/** The help texts of the `ipre` command line (cli.ts): the usage, and each command's options and examples. */
import { exampleNames, type ExampleKind } from "./examples.ts";

/** Each command's help: `ipre help <cmd>` and `ipre <cmd> --help` print it; the options are also the ones it accepts. */
export interface CommandHelp {
  args: string;
  about: string;
  options: ReadonlyArray<readonly [flag: string, what: string]>;
  examples: readonly string[];
  /** Printed after the options (computed when the help is printed). */
  notes?: () => string;
}

/** How a program argument is found, for the helps of run, exec and symbols. */
function programNote(what: string, kinds: readonly ExampleKind[], c: boolean): string {
  const names = kinds.map((k) => `${exampleNames(k).join(", ")} (guests/${k}/)`).join("; ");
  return `${what} is a file, ${c ? "a C file (NAME.c: compiled with cc for its window, cached; see the README), " : ""}or the name of one of the package's example guests (used when no such file exists): ${names}.`;
}

export const COMMANDS: Readonly<Record<string, CommandHelp>> = {
  doctor: {
    args: "[--json] [--device PATH]",
    about: "check /dev/kvm, KVM flavour, capabilities and the FFI backend",
    options: [["--json", "print one JSON document"], ["--device PATH", "the KVM device (default /dev/kvm)"]],
    examples: ["ipre doctor", "ipre doctor --json"],
  },
  run: {
    args: "<elf> <function> [int args...] [options]",
    about: "load a guest ELF (a static Linux program is started first, to ipre_wait_for_requests()) and call a function; prints the result last",
    options: [
      ["--memory MiB", "guest memory of the machine (default 32)"],
      ["--timeout-ms N", "stop the guest after N ms (exit 124)"],
      ["--argc N", "the function takes N arguments: check the count (an ELF records no arity)"],
      ["--remote ELF", "connect a remote machine running ELF (the caller may call its exports)"],
      ["--remote-window N", "the remote's window (default: the window its ELF is linked for)"],
      ["--allow a,b", "the remote functions the caller may enter (default: its exports)"],
      ["--loan read", "the caller may read remote memory outside calls (default none)"],
      ["--json", "print one JSON document: the result as a decimal string"],
    ],
    examples: [
      "ipre run add add 2 40",
      "ipre run kvcaller serve 7 --remote kvstore",
      "ipre run libc-bench call_remote_n 3 --remote counter",
    ],
    notes: () => programNote("Each ELF", ["examples", "linux"], true) + " A C caller is linked against a C or ELF remote's exports; a C remote goes in window 1 (or --remote-window N).",
  },
  exec: {
    args: "[options] <program> [args...]",
    about: "run a static Linux program (glibc, musl, C++, Rust, busybox) to exit, with ipre's stdin and only the files --allow-read/--mount allow; exits with its code",
    options: [
      ["--memory MiB", "guest memory (default 64)"],
      ["--timeout MS", "stop the program after MS ms (exit 124)"],
      ["--allow-read PATH", "the program may read the host file or directory PATH, at the same absolute path (repeatable)"],
      ["--mount HOST:GUEST[:rw]", "the host path HOST at the guest path GUEST, read-only unless :rw (repeatable)"],
    ],
    examples: ["ipre exec hello a b", "ipre exec --timeout 5000 hello-rs --verbose"],
    notes: () =>
      programNote("The program", ["linux"], false) +
      " Its stdin is ipre's (streamed: `ipre exec /bin/busybox sha256sum < big.iso`); it sees only the files allowed (`ipre exec --mount ./data:/data /bin/busybox ls -la /data`).",
  },
  symbols: {
    args: "<elf> [--all] [--json]",
    about: "a remote's exports as linker-script lines (name = 0xADDR;) to link a caller",
    options: [["--all", "every global function and object, not only the exports"], ["--json", "print one JSON document"]],
    examples: ["ipre symbols kvstore > kvstore.syms.ld"],
    notes: () => programNote("The ELF", ["examples", "linux"], false),
  },
  demo: {
    args: "[--json]",
    about: "the IPRE key-value demo (caller VM calls a remote VM's store)",
    options: [["--json", "print one JSON document instead of the report"]],
    examples: ["ipre demo"],
  },
  bench: {
    args: "latency|load|payload|fanin [options]",
    about: "the paper's experiments on this machine (ipre bench --help)",
    options: [],
    examples: ["ipre bench latency --iterations 1000"],
  },
};

export const USAGE = `usage: ipre <command> [options]

commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => {
    const head = `  ${name} ${c.args}`;
    return head.length < 39 ? `${head.padEnd(39)}${c.about}` : `${head}\n${" ".repeat(39)}${c.about}`;
  })
  .join("\n")}

Run ipre <command> --help (or ipre help <command>) for its options and an example; ipre --version
prints the version. Programs are files, C files (.c) or the names of the package's example guests.
Exit status: 0 ok, 1 an error (unreadable file, bad ELF or argument, guest fault, KVM), 2 a usage
error (unknown command or option, missing argument), 124 a --timeout-ms timeout; exec: the
program's exit code, 128 + signal when it killed itself (abort: 134).
`;

export function commandHelp(name: string): string {
  const c = COMMANDS[name]!;
  const width = Math.max(0, ...c.options.map(([f]) => f.length)) + 2;
  const options = c.options.length ? `\noptions:\n${c.options.map(([f, w]) => `  ${f.padEnd(width)}${w}`).join("\n")}\n  ${"--help".padEnd(width)}this help\n` : "";
  const notes = c.notes ? `\n${wrap(c.notes(), 96)}\n` : "";
  return `usage: ipre ${name} ${c.args}\n\n${c.about}\n${options}${notes}\nexample${c.examples.length > 1 ? "s" : ""}:\n${c.examples.map((e) => `  ${e}`).join("\n")}\n`;
}

/** Words of `text` in lines of at most `width` characters. */
function wrap(text: string, width: number): string {
  const lines: string[] = [];
  let line = "";
  for (const w of text.split(/\s+/)) {
    if (line && line.length + 1 + w.length > width) {
      lines.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  return [...lines, line].join("\n");
}

