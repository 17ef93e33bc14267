/*
 * ipre.h: everything a freestanding C guest of ipre needs. No libc, no system calls.
 *
 * The machine model (src/guest/layout.ts, docs/ARCHITECTURE.md §3-§4):
 *
 *  - A machine owns window k = [k GiB, (k+1) GiB) of a shared address space, identity mapped
 *    (virtual address = guest physical address). Programs link at window base + 4 MiB
 *    (guests/ipre.ld, `-Wl,--defsym=IPRE_WINDOW_BASE=0x40000000` for window 1).
 *  - Guest code runs in ring 3. There are no system calls: the guest asks the host for things
 *    only by *calling addresses that fault*. Hostcall gate n (0 <= n < 4096) sits at
 *    window base + 0x3FE00000 + n * 16, in a region that is never mapped. Calling it like an
 *    ordinary C function (System V ABI: up to 6 integer/pointer arguments in rdi, rsi, rdx, rcx,
 *    r8, r9) faults into the host, which runs the JS handler registered for n and resumes at
 *    the return address with the 64-bit result in rax.
 *  - Hostcall 4095 is reserved for ipre_print(); user hostcalls are 0..4094.
 *  - A remote machine (IPRE) marks the functions callers may enter with IPRE_EXPORT. A caller
 *    calls them as plain C functions; it links against the remote's symbol addresses
 *    (see scripts/build-guests.mjs, guests/examples/kvstore.syms.ld). The entry into and the
 *    return from a remote function clobber r11 (a scratch register at any call in the ABI).
 *
 * Build flags (see scripts/build-guests.mjs): -O2 -static -nostdlib -ffreestanding -fno-pic
 * -no-pie -mgeneral-regs-only ... -T guests/ipre.ld, and link guests/lib/ipre_libc.c (gcc may
 * emit calls to memcpy/memset/memmove/memcmp even in freestanding code).
 * The default code model (-mcmodel=small) needs every address below 2 GiB, i.e. windows 0 and 1.
 * A program for window 2 or higher must be compiled with -mcmodel=large.
 */
#ifndef IPRE_H
#define IPRE_H

#ifdef __cplusplus
extern "C" {
#endif

typedef __SIZE_TYPE__ ipre_size_t;

/* ---------------------------------------------------------------- linker-script symbols */

/* Absolute symbols defined by guests/ipre.ld. Only their addresses are meaningful. */
extern char __ipre_window_base[]; /* window base (k GiB) */
extern char __ipre_gates[];       /* hostcall gate 0 = window base + 0x3FE00000 */
extern char __ipre_image_start[], __ipre_image_end[]; /* page-aligned program extent */
extern char __ipre_bss_start[], __ipre_bss_end[];

static inline unsigned long ipre_window_base(void) { return (unsigned long)__ipre_window_base; }

/* ---------------------------------------------------------------- hostcalls */

#define IPRE_TRAP_REGION_OFFSET 0x3FE00000UL
#define IPRE_HOSTCALL_STRIDE 16UL
#define IPRE_HOSTCALL_COUNT 4096
/** Hostcall number reserved for ipre_print(). */
#define IPRE_HOSTCALL_PRINT 4095
/** Highest hostcall number available to users. */
#define IPRE_HOSTCALL_USER_MAX 4094

typedef long (*ipre_hostcall_fn)(long, long, long, long, long, long);

/** A callable function pointer for hostcall gate n of this program's window. */
#define IPRE_HOSTCALL(n) \
  ((ipre_hostcall_fn)(void *)(__ipre_gates + (unsigned long)(n) * IPRE_HOSTCALL_STRIDE))

/* Unused argument registers are passed as 0, so the host always sees defined values. */
static inline long ipre_hostcall0(long n) { return IPRE_HOSTCALL(n)(0, 0, 0, 0, 0, 0); }
static inline long ipre_hostcall1(long n, long a) { return IPRE_HOSTCALL(n)(a, 0, 0, 0, 0, 0); }
static inline long ipre_hostcall2(long n, long a, long b) { return IPRE_HOSTCALL(n)(a, b, 0, 0, 0, 0); }
static inline long ipre_hostcall3(long n, long a, long b, long c) {
  return IPRE_HOSTCALL(n)(a, b, c, 0, 0, 0);
}
static inline long ipre_hostcall4(long n, long a, long b, long c, long d) {
  return IPRE_HOSTCALL(n)(a, b, c, d, 0, 0);
}
static inline long ipre_hostcall5(long n, long a, long b, long c, long d, long e) {
  return IPRE_HOSTCALL(n)(a, b, c, d, e, 0);
}
static inline long ipre_hostcall6(long n, long a, long b, long c, long d, long e, long f) {
  return IPRE_HOSTCALL(n)(a, b, c, d, e, f);
}

/** Built-in hostcall 4095: the host writes len bytes at s to its output. */
static inline long ipre_print(const char *s, unsigned long len) {
  return ipre_hostcall2(IPRE_HOSTCALL_PRINT, (long)s, (long)len);
}

/* ---------------------------------------------------------------- exports (IPRE) */

/**
 * Marks a function a caller machine may enter: it is placed in the output section
 * ".ipre_export" (kept by the linker script) and is never inlined away. Only *global* FUNC
 * symbols in that section are entry points (static functions are not exported).
 */
#define IPRE_EXPORT __attribute__((section(".ipre_export"), used, noinline, noclone))

/* ---------------------------------------------------------------- small helpers */

#define IPRE_NORETURN __attribute__((noreturn))
#define IPRE_UNUSED __attribute__((unused))

/** Compiler barrier: keeps loops and memory accesses from being optimized away. */
static inline void ipre_barrier(void) { __asm__ volatile("" ::: "memory"); }

/** Executes ud2 (#UD): the host reports a GuestFault. */
static inline IPRE_NORETURN void ipre_trap(void) { __builtin_trap(); }

/* ---------------------------------------------------------------- minimal libc */

/*
 * Real (non-inline) definitions live in guests/lib/ipre_libc.c; link it into every program,
 * since gcc emits calls to memcpy/memset/memmove/memcmp for struct copies and some loops even
 * with -ffreestanding. The prototypes match <string.h>.
 */
void *memcpy(void *dst, const void *src, ipre_size_t n);
void *memmove(void *dst, const void *src, ipre_size_t n);
void *memset(void *dst, int c, ipre_size_t n);
int memcmp(const void *a, const void *b, ipre_size_t n);
ipre_size_t strlen(const char *s);

/** Prints a NUL-terminated string through ipre_print. */
static inline long ipre_puts(const char *s) { return ipre_print(s, strlen(s)); }

#ifdef __cplusplus
}
#endif

#endif /* IPRE_H */
