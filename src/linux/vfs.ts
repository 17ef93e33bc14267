/**
 * The file namespace of a Linux program: only the host files and directories the user allowed
 * (`LinuxOptions.files`), each mounted at a guest path, read-only unless `write: true`.
 *
 * Rules (docs/ARCHITECTURE.md §4): a guest path is made absolute against the cwd and its `.` and
 * `..` are resolved lexically, never above `/`; the longest mount whose guest path is a prefix
 * of it maps it to a host path; the directories above mount points are synthetic (read-only,
 * listing the next components); anything else is ENOENT. A host path is resolved with realpath
 * and must stay inside the mount's own (realpath'd) host root: a symlink that leads out is EACCES.
 */
import { lstatSync, readdirSync, realpathSync, statSync } from "node:fs";
import { E, hostErrno, S, statOf, syntheticIno, syntheticStat, type StatInfo } from "./abi.ts";

/** One host file or directory the program may use: read-only unless `write`. */
export interface FileMount {
  /** The host path (a directory or a file). */
  host: string;
  /** Allow writing and creating files (default false: read-only, writes are EROFS). */
  write?: boolean;
}

/** Guest path → host path (or `{ host, write }`), e.g. `{ "/data": "./dir", "/etc/motd": "./motd.txt" }`. */
export type FilesOption = Record<string, string | FileMount>;

interface Mount {
  /** Normalised absolute guest path. */
  guest: string;
  /** realpath of the host path: everything the mount exposes is inside it. */
  root: string;
  write: boolean;
  dir: boolean;
}

/** A guest path resolved: a synthetic directory, or a host path inside a mount (maybe missing). */
export type Node =
  | { kind: "synthetic"; path: string; children: string[] }
  | { kind: "host"; path: string; host: string; mount: Mount; missing: boolean };

/** Make `path` absolute against `cwd` and resolve `.`/`..` lexically, never above `/`. */
export function normalize(cwd: string, path: string): string {
  const parts: string[] = [];
  for (const p of (path.startsWith("/") ? path : `${cwd}/${path}`).split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") parts.pop();
    else parts.push(p);
  }
  return "/" + parts.join("/");
}

const inside = (path: string, root: string) => path === root || path.startsWith(root === "/" ? "/" : root + "/");

export class Vfs {
  readonly mounts: Mount[];

  constructor(files: FilesOption = {}) {
    this.mounts = Object.entries(files).map(([guest, spec]) => {
      const { host, write = false } = typeof spec === "string" ? { host: spec } : spec;
      if (!guest.startsWith("/")) throw new RangeError(`files: the guest path ${JSON.stringify(guest)} must be absolute`);
      let root: string;
      try {
        root = realpathSync(host);
      } catch (e) {
        throw new RangeError(`files: cannot use the host path ${JSON.stringify(host)} for ${guest}: ${(e as Error).message}`);
      }
      return { guest: normalize("/", guest), root, write, dir: statSync(root).isDirectory() };
    });
    // The longest guest path first: a mount inside another one wins for its paths.
    this.mounts.sort((a, b) => b.guest.length - a.guest.length);
  }

  /**
   * Resolve an absolute, normalised guest path; `follow`: a symlink in the last component is
   * followed (stat, open) or not (lstat, readlink). A negative errno when it is not visible.
   */
  resolve(path: string, follow: boolean): Node | number {
    const m = this.mounts.find((x) => inside(path, x.guest));
    if (m === undefined) {
      const children = this.#children(path);
      return children === undefined ? -E.ENOENT : { kind: "synthetic", path, children };
    }
    const rest = m.guest === "/" ? (path === "/" ? "" : path) : path.slice(m.guest.length);
    if (rest === "") return { kind: "host", path, host: m.root, mount: m, missing: false };
    if (!m.dir) return -E.ENOTDIR;
    const lexical = m.root + (m.root.endsWith("/") ? rest.slice(1) : rest);
    const slash = lexical.lastIndexOf("/");
    const dir = lexical.slice(0, slash) || "/";
    const base = lexical.slice(slash + 1);
    let real: string;
    let missing = false;
    try {
      const parent = realpathSync(dir);
      if (!inside(parent, m.root)) return -E.EACCES;
      if (!statSync(parent).isDirectory()) return -E.ENOTDIR;
      real = parent === "/" ? `/${base}` : `${parent}/${base}`;
    } catch (e) {
      return -hostErrno(e);
    }
    if (follow) {
      try {
        real = realpathSync(real);
      } catch (e) {
        if (hostErrno(e) !== E.ENOENT) return -hostErrno(e);
        missing = true; // absent (or a dangling symlink: never created through, O_NOFOLLOW)
      }
      if (!missing && !inside(real, m.root)) return -E.EACCES;
    } else {
      try {
        lstatSync(real);
      } catch (e) {
        if (hostErrno(e) !== E.ENOENT) return -hostErrno(e);
        missing = true;
      }
    }
    return { kind: "host", path, host: real, mount: m, missing };
  }

  /** The mount points' next components under `path`, or undefined when no mount is below it. */
  #children(path: string): string[] | undefined {
    const prefix = path === "/" ? "/" : path + "/";
    const names = new Set<string>();
    for (const m of this.mounts) if (m.guest.startsWith(prefix)) names.add(m.guest.slice(prefix.length).split("/")[0]!);
    return names.size > 0 || path === "/" ? [...names].sort() : undefined;
  }

  /** stat of a resolved node (`follow` as in resolve), or a negative errno. */
  stat(node: Node, follow: boolean): StatInfo | number {
    if (node.kind === "synthetic") return syntheticStat(S.IFDIR | 0o555, syntheticIno(node.path));
    if (node.missing) return -E.ENOENT;
    try {
      return statOf(follow ? statSync(node.host) : lstatSync(node.host));
    } catch (e) {
      return -hostErrno(e);
    }
  }

  /** A directory's entries: [name, d_type-relevant mode, inode], "." and ".." first; or a negative errno. */
  list(node: Node): [string, number, number][] | number {
    const self = this.stat(node, true);
    if (typeof self === "number") return self;
    if ((self.mode & S.IFMT) !== S.IFDIR) return -E.ENOTDIR;
    const parent = node.path === "/" ? self : this.#statPath(normalize(node.path, ".."));
    const out: [string, number, number][] = [[".", self.mode, self.ino], ["..", S.IFDIR, typeof parent === "number" ? 1 : parent.ino]];
    const seen = new Set<string>();
    if (node.kind === "host") {
      let names: string[];
      try {
        names = readdirSync(node.host).sort();
      } catch (e) {
        return -hostErrno(e);
      }
      for (const name of names) {
        try {
          const s = lstatSync(`${node.host}/${name}`);
          out.push([name, s.mode, s.ino]);
          seen.add(name);
        } catch {
          // gone since readdir
        }
      }
    }
    // Mount points below this directory (all of a synthetic directory's entries).
    for (const name of this.#children(node.path) ?? []) {
      if (seen.has(name)) continue;
      const s = this.#statPath(normalize(node.path, name));
      if (typeof s !== "number") out.push([name, s.mode, s.ino]);
    }
    return out;
  }

  #statPath(path: string): StatInfo | number {
    const n = this.resolve(path, true);
    return typeof n === "number" ? n : this.stat(n, true);
  }
}
