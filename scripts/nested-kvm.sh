#!/usr/bin/env bash
# Run one command in this checkout inside a nested, hardware-flavour KVM: a QEMU guest under TCG
# (`-cpu max` emulates AMD SVM with nested paging) whose Debian kernel loads kvm_amd, so the
# guest has a real /dev/kvm. The guest's root filesystem is the host's `/` over virtio-9p, so the
# checkout, node_modules and the node/bun/deno binaries are simply there. See
# docs/ARCHITECTURE.md §8.
#
#   scripts/nested-kvm.sh [--setup] [--] COMMAND [ARGS...]
#
# Prints the command's output and exits with its status (124 if the harness time limit hit,
# 125 for a harness failure, 123 if the guest froze: no heartbeat for IPRE_NESTED_STALL seconds). Setup is idempotent: Debian's qemu-system-x86 and busybox-static
# (apt-get, as root), and the stock kernel package fetched with `apt-get download` and unpacked
# into a cache directory (never installed). `--setup` alone only prepares.
#
# Environment:
#   IPRE_NESTED_CACHE    cache directory (default ${XDG_CACHE_HOME:-$HOME/.cache}/ipre-nested)
#   IPRE_NESTED_TIMEOUT  time limit in seconds for the whole guest run (default 4800)
#   IPRE_NESTED_STALL    seconds without the guest's heartbeat after which it counts as frozen
#                        and is killed (default 150; see docs/ARCHITECTURE.md §8)
#   IPRE_NESTED_MEMORY   guest memory in MiB (default 8192)
#   IPRE_NESTED_CPUS     guest vCPUs (default 1; more are faster but see below)
#   IPRE_NESTED_CPU      QEMU CPU model (default max); IPRE_NESTED_APPEND: extra kernel arguments
#   IPRE_NESTED_KVM_AMD  kvm-amd module parameters; IPRE_NESTED_KEEPER=0: no keeper VM
#   IPRE_NESTED_MONITOR  path of a QEMU monitor socket, to inspect a stuck guest
#   IPRE_NESTED_SLOWDOWN skip the calibration and pass this factor to the command
# Inside, the command sees IPRE_NESTED=1, IPRE_NESTED_SLOWDOWN (the guest's measured slowdown
# against this host) and TMPDIR=/dev/shm (a guest tmpfs: Unix sockets cannot be bound on 9p).
# Timings inside the guest are meaningless (emulated code runs ~50x slower); never compare them.
set -euo pipefail

# Marks the environment of the command inside, so tests can scale wall-clock bounds.
readonly GUEST_MARK=IPRE_NESTED
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${IPRE_NESTED_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/ipre-nested}
limit=${IPRE_NESTED_TIMEOUT:-4800}
stall=${IPRE_NESTED_STALL:-150}
memory=${IPRE_NESTED_MEMORY:-8192}
# One vCPU by default: with two, QEMU 7.2's multi-threaded TCG corrupted the guest kernel under
# nested SVM (a panic "corrupted stack end detected inside scheduler" in a process doing KVM
# ioctls, with four ipre demos running at once); one vCPU ran the same load cleanly.
cpus=${IPRE_NESTED_CPUS:-1}
cpu_model=${IPRE_NESTED_CPU:-max}
append=${IPRE_NESTED_APPEND:-}
kvm_amd_params=${IPRE_NESTED_KVM_AMD:-}
# A QEMU monitor socket to inspect a stuck guest (`info registers -a`), e.g. with socat.
monitor="-monitor none"
[ -n "${IPRE_NESTED_MONITOR:-}" ] && monitor="-monitor unix:$IPRE_NESTED_MONITOR,server=on,wait=off"
# Module load order (insmod fails on unknown symbols; a few passes forgive a wrong order).
readonly MODULES="virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p irqbypass ccp kvm kvm-amd"

log() { printf 'nested-kvm: %s\n' "$*" >&2; }
die() { log "$*"; exit 125; }

setup_only=0
if [ "${1:-}" = "--setup" ]; then setup_only=1; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi
if [ $setup_only = 0 ] && [ $# = 0 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    die "needs the Debian packages: $* (run as root, or: sudo apt-get install $*)"
  fi
  log "installing $* (apt-get)"
  if [ $apt_updated = 0 ]; then apt-get update -qq >&2 || die "apt-get update failed"; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 \
    || die "apt-get install $* failed"
}

setup() {
  command -v qemu-system-x86_64 >/dev/null || apt_install qemu-system-x86
  # A static busybox is the whole initramfs userland.
  if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then apt_install busybox-static; fi
  mkdir -p "$cache"
  if [ ! -f "$cache/kernel/ready" ]; then
    command -v apt-get >/dev/null || die "needs apt-get to fetch Debian's linux-image-amd64"
    [ $apt_updated = 1 ] || [ -n "$(apt-cache depends linux-image-amd64 2>/dev/null | grep Depends)" ] \
      || { apt-get update -qq >&2 || die "apt-get update failed"; apt_updated=1; }
    local pkg
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [ -n "$pkg" ] || die "cannot resolve linux-image-amd64 to a kernel package (apt-get update?)"
    log "fetching $pkg (apt-get download; unpacked into $cache, not installed)"
    rm -rf "$cache/kernel" "$cache/dl" && mkdir -p "$cache/dl" "$cache/kernel"
    (cd "$cache/dl" && apt-get download "$pkg" >&2 2>/dev/null) || (cd "$cache/dl" && apt-get download "$pkg" >&2) \
      || die "apt-get download $pkg failed"
    dpkg-deb -x "$cache"/dl/*.deb "$cache/dl/x" || die "dpkg-deb -x failed"
    cp "$cache"/dl/x/boot/vmlinuz-* "$cache/kernel/vmlinuz"
    mkdir -p "$cache/kernel/modules"
    local m f
    for m in $MODULES; do
      f=$(find "$cache"/dl/x/lib/modules -name "$m.ko" -o -name "${m//-/_}.ko" | head -n1)
      [ -n "$f" ] && cp "$f" "$cache/kernel/modules/$m.ko"  # absent = built into this kernel
    done
    [ -f "$cache/kernel/modules/kvm-amd.ko" ] || die "kvm-amd.ko not found in $pkg"
    echo "$pkg" > "$cache/kernel/ready"
    rm -rf "$cache/dl"
  fi
  # The initramfs depends on this script (its init) too: rebuild when either changes.
  local stamp
  stamp=$( (cat "$cache/kernel/ready" "$0"; echo "$kvm_amd_params") | cksum | cut -d' ' -f1)
  if [ "$(cat "$cache/initramfs.stamp" 2>/dev/null)" != "$stamp" ]; then
    build_initramfs
    echo "$stamp" > "$cache/initramfs.stamp"
  fi
}

build_initramfs() {
  local root="$cache/initramfs.d"
  rm -rf "$root" && mkdir -p "$root"/{bin,dev,proc,sys,mnt,lib/modules}
  cp /bin/busybox "$root/bin/busybox"
  cp "$cache"/kernel/modules/*.ko "$root/lib/modules/"
  # The guest's /init: modules, the host's / over 9p, then the run script in a chroot.
  cat > "$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for pass in 1 2 3 4; do
  for m in $MODULES; do
    [ -e /lib/modules/\$m.ko ] || continue
    p=; [ \$m = kvm-amd ] && p="$kvm_amd_params"
    [ -d /sys/module/\$(echo \$m | tr - _) ] || insmod /lib/modules/\$m.ko \$p 2>/dev/null
  done
done
run=\$(sed -n 's/.*ipre\\.run=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
fail() { echo "nested-kvm(guest): \$*"; poweroff -f; echo o > /proc/sysrq-trigger; }
[ -e /dev/kvm ] || fail "no /dev/kvm after loading kvm-amd (is SVM emulated? -cpu max)"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 root /mnt || fail "9p mount failed"
mount -t proc proc /mnt/proc; mount -t sysfs sys /mnt/sys; mount -t devtmpfs dev /mnt/dev
mkdir -p /mnt/dev/pts /mnt/dev/shm
mount -t devpts devpts /mnt/dev/pts; mount -t tmpfs -o mode=1777 shm /mnt/dev/shm
stty -onlcr 2>/dev/null
chroot /mnt /bin/sh "\$run" < /dev/null
sync
poweroff -f
echo o > /proc/sysrq-trigger
EOF
  chmod +x "$root/init"
  (cd "$root" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$cache/initramfs.gz.tmp"
  mv "$cache/initramfs.gz.tmp" "$cache/initramfs.gz"
  rm -rf "$root"
}

setup
[ $setup_only = 1 ] && { log "ready: $cache ($(cat "$cache/kernel/ready"))"; exit 0; }

run=$(mktemp -d "$cache/run.XXXXXX")
trap 'rm -rf "$run"' EXIT
# How much slower the guest is, measured here and inside in the same run, as the larger of two
# ratios (five rounds each): warm code (a loop of syscalls and arithmetic) and
# cold code (compiling and running 300 new functions, throwing an error). Cold code suffers
# twice as much under TCG (every new JIT page is translated again), and the tests' first calls
# are cold. Tests scale wall-clock upper bounds by it, never lower ones.
calibrate='const fs=require("fs");const med=(a)=>a.sort((x,y)=>x-y)[process.argv[1]==="best"?0:2];const w=[],c=[];for(let r=0;r<5;r++){let t=process.hrtime.bigint();let x=0;for(let i=0;i<20000;i++){fs.fstatSync(0);x+=Math.sqrt(i)}w.push(Number(process.hrtime.bigint()-t)/1e6);t=process.hrtime.bigint();let src="";for(let i=0;i<300;i++)src+=`function f${r}_${i}(a){let s=0;for(let j=0;j<a;j++){s+=j*${i}%7;try{if(s>1e9)throw new Error("x"+j)}catch(e){s=0}}return s}\n`;src+="return ["+Array.from({length:300},(_,i)=>`f${r}_${i}(3)`).join(",")+"];";new Function(src)();try{throw new RangeError("r"+r)}catch(e){String(e.stack)}c.push(Number(process.hrtime.bigint()-t)/1e6)}console.log(med(w).toFixed(3),med(c).toFixed(3))'
host_ms=
# The host's best round against the guest's median: another process briefly busy on the host
# (seen: a test run started at the same moment) must not shrink the factor.
if [ -z "${IPRE_NESTED_SLOWDOWN:-}" ] && command -v node >/dev/null; then host_ms=$(node -e "$calibrate" best </dev/null); fi
# Executables and shared objects that the guest maps again and again: the runtimes, their
# libraries, koffi's addon, busybox, sh and the C toolchain, held open in the guest by processes
# that only sleep. Without a cache mode (the root's 9p mount) the guest kernel evicts a file's
# inode, pages included, when its last user closes it, so every start read them again into new
# guest pages, whose code TCG then translated anew: `node -e 0` took ~5 s, ~1 s with its files
# held (docs/ARCHITECTURE.md §8).
held=()
hold() {
  local f
  for f in "$@"; do
    [ -n "$f" ] && f=$(readlink -f "$f" 2>/dev/null) && [ -f "$f" ] && held+=("$f")
  done
  return 0
}
hold_with_libs() {
  local f
  for f in "$@"; do
    [ -n "$f" ] || continue
    hold "$f"
    # shellcheck disable=SC2046 # one path per word
    hold $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true)
  done
}
hold_with_libs "$(command -v node || true)" "$repo/node_modules/.bin/bun" "$repo/node_modules/.bin/deno" \
  /bin/busybox /bin/sh "$(command -v as || true)" "$(command -v ld || true)"
if command -v cc >/dev/null; then
  hold_with_libs "$(command -v cc)" "$(cc -print-prog-name=cc1)" "$(cc -print-prog-name=collect2)"
fi
hold "$repo"/node_modules/@koromix/*/*/*.node
[ ${#held[@]} = 0 ] || mapfile -t held < <(printf '%s\n' "${held[@]}" | sort -u)

# The run script: this shell's exported environment and working directory, then the command.
{
  echo '#!/bin/sh'
  # Not NODE_EXTRA_CA_CERTS (set on some hosts, e.g. to a CA bundle): Node and Bun read and parse
  # every certificate named there at start-up, which under TCG made each Bun process ~3x slower
  # (and Node's ~15%); the guest has no network to use them on.
  export -p | grep -v -E '^(declare -x |export )(OLDPWD|PWD|SHLVL|_|TMPDIR|NODE_EXTRA_CA_CERTS)=' | sed 's/^declare -x /export /'
  echo "export $GUEST_MARK=1"
  # Unix sockets cannot be bound on 9p: temporary files go to a guest tmpfs (/tmp stays the host's).
  echo "export TMPDIR=/dev/shm"
  # Deno's caches are SQLite databases whose WAL shared memory is mapped: shared over 9p with Deno
  # processes on the host, a truncation on one side ends the other with SIGBUS (seen when a native
  # suite ran beside a nested one). The guest's Deno works on a private copy (npm packages
  # included: the guest has no network).
  deno_dir=${DENO_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/deno}
  printf 'if [ -d %q ] && cp -a %q /dev/shm/deno-dir 2>/dev/null; then export DENO_DIR=/dev/shm/deno-dir; fi\n' "$deno_dir" "$deno_dir"
  # Holders of the files above, seven open files each (fds 3-9, what sh can name).
  echo 'holders='
  for ((i = 0; i < ${#held[@]}; i += 7)); do
    line='( exec'
    fd=3
    for f in "${held[@]:i:7}"; do line+=" $fd<$(printf %q "$f")"; fd=$((fd + 1)); done
    echo "$line; exec sleep 2147483647 ) </dev/null >/dev/null 2>&1 &"
    echo 'holders="$holders $!"'
  done
  # The heartbeat: the host kills a guest whose heartbeat file has not changed for $stall s (a
  # frozen guest runs nothing at all, not even a timeout). A shell builtin, no process per beat.
  printf '( while :; do : > %q; sleep 5; done ) </dev/null >/dev/null 2>&1 &\n' "$run/heartbeat"
  echo 'heartbeat=$!'
  if [ -n "$host_ms" ]; then
    printf 'guest_ms=$(node -e %q </dev/null)\n' "$calibrate"
    echo "export IPRE_NESTED_SLOWDOWN=\$(node -e 'const [gw, gc, hw, hc] = process.argv.slice(1).map(Number); console.log(Math.max(1, gw / hw, gc / hc).toFixed(1))' \$guest_ms $host_ms)"
    echo 'echo "nested-kvm: guest slowdown ${IPRE_NESTED_SLOWDOWN}x (warm and cold JS, guest vs host: the larger ratio)" >&2'
  fi
  if [ "${IPRE_NESTED_KEEPER:-1}" = 1 ] && [ -x "$repo/node_modules/.bin/bun" ]; then
    # Keep one VM with a vCPU open for the whole run, so the guest kernel's KVM static keys
    # (preempt_notifier_key, patched into __schedule, and kvm_has_noapic_vcpu) never flip: each
    # flip live-patches kernel text, and QEMU 7.2's multi-threaded TCG can then keep running a
    # stale int3 on the other vCPU forever, freezing the whole guest. See docs/ARCHITECTURE.md §8.
    printf 'import { Machine } from "%s";\nconst keep = Machine.create({ memory: 4 << 20, name: "nested-kvm keeper" });\nsetInterval(() => keep.exits, 1 << 30);\nconsole.log("ready");\n' "$repo/src/mod.ts" > "$run/keeper.ts"
    printf '%q %q > %q 2>&1 &\n' "$repo/node_modules/.bin/bun" "$run/keeper.ts" "$run/keeper.out"
    echo 'keeper=$!'
    printf 'i=0; until grep -q ready %q 2>/dev/null || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done\n' "$run/keeper.out"
    printf 'grep -q ready %q || echo "nested-kvm: the keeper VM did not start: $(cat %q)" >&2\n' "$run/keeper.out" "$run/keeper.out"
  fi
  printf 'cd %q || exit 125\n' "$PWD"
  # Through a pipe, so the command sees no terminal (the guest's console is a serial line). The
  # guest's shell is a POSIX sh: each word in single quotes, not bash's printf %q, whose $'...'
  # for a word with a newline sh reads as `$` and a literal string (a multi-line `sh -c` script
  # then ran as the command "$n" and ended 0: *found* 2026-12-06, CI's nested bench smoke).
  quoted=""
  for nested_word in "$@"; do quoted+="'${nested_word//\'/\'\\\'\'}' "; done
  echo "{ $quoted; echo \$? > $(printf %q "$run/status"); } 2>&1 | cat"
  echo '[ -n "${keeper:-}" ] && kill $keeper 2>/dev/null'
  echo 'kill $heartbeat $holders 2>/dev/null'
  echo 'exit 0' 
} > "$run/run.sh"

log "booting ($cpus vCPUs, $memory MiB, TCG; limit ${limit}s): $*"
status=0
# The serial console goes to stdout and to $run/console, where the kernel's warnings are looked
# for (loglevel=4: errors and worse, which soft lockups and RCU stalls are).
timeout -k 10 "$limit" qemu-system-x86_64 \
  -accel tcg,thread=multi -cpu "$cpu_model" -smp "$cpus" -m "$memory" \
  -kernel "$cache/kernel/vmlinuz" -initrd "$cache/initramfs.gz" \
  -append "console=ttyS0 quiet loglevel=4 panic=-1 $append ipre.run=$run/run.sh" \
  -virtfs local,path=/,mount_tag=root,security_model=none,multidevs=remap \
  -display none -no-reboot $monitor \
  -chardev "stdio,id=console,signal=off,logfile=$run/console" -serial chardev:console \
  -nic none < /dev/null &
qemu=$!
# The freeze watchdog: the boot and the guest's calibration count from here; after that, the
# heartbeat file's age. A frozen guest is killed (timeout passes the TERM on to QEMU).
froze=0
started=$(date +%s)
while kill -0 $qemu 2>/dev/null; do
  sleep 5
  now=$(date +%s)
  beat=$started
  [ -f "$run/heartbeat" ] && beat=$(stat -c %Y "$run/heartbeat" 2>/dev/null || echo "$started")
  if [ $((now - beat)) -ge "$stall" ] && [ ! -f "$run/status" ]; then
    froze=1
    log "the guest froze: no heartbeat for $((now - beat)) s (IPRE_NESTED_STALL=$stall): killing it"
    kill $qemu 2>/dev/null
    break
  fi
done
wait $qemu || status=$?
# What the guest kernel said about stuck CPUs (a freeze, or a transient stall it survived).
warnings=$(grep -a -E 'soft lockup|self-detected stall|rcu_sched detected stall|RCU Stall|rcu: INFO|blocked for more than|hard LOCKUP|Kernel panic' "$run/console" 2>/dev/null | tr -d '\r' | head -n 5 || true)
[ -n "$warnings" ] && log "the guest kernel reported: $(printf '%s' "$warnings" | sed 's/^/  /')"
if [ -f "$run/status" ]; then
  exit "$(cat "$run/status")"
fi
[ $froze = 1 ] && exit 123
[ $status = 124 ] && log "time limit (${limit}s) reached: guest killed"
log "the guest ended without a status (time limit, crash or boot failure)"
exit 124
