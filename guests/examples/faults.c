/* faults.c: every way a guest can fail, one function each. ok() returns 7 (the machine still works). */
#include "../ipre.h"

/** a / b: b == 0 (or a == LONG_MIN, b == -1) raises #DE. */
long divide(long a, long b) {
  long q;
  /* idiv written out so the compiler cannot reason about b. */
  __asm__ volatile("cqo\n\tidivq %[b]" : "=a"(q) : "a"(a), [b] "r"(b) : "rdx", "cc");
  return q;
}

/** Reads the 8 bytes at addr (#PF when unmapped or supervisor-only). */
long touch(long addr) { return *(volatile long *)addr; }

/** Writes v to addr and returns v (#PF when unmapped or read-only). */
long poke(long addr, long v) {
  *(volatile long *)addr = v;
  return v;
}

/** ud2: #UD. */
long undefined_insn(void) {
  __asm__ volatile("ud2");
  return -1;
}

/** Unbounded recursion, 256+ bytes of stack per level: runs off the stack (#PF). */
#pragma GCC diagnostic ignored "-Winfinite-recursion"
long recurse(long n) {
  volatile char frame[256];
  frame[0] = (char)n;
  __asm__ volatile("" : : "r"(frame) : "memory");
  return recurse(n + 1) + frame[0];
}

/** Writes into its own code: #PF, write to a read-only (R X) page. */
long write_code(void) {
  volatile unsigned char *p = (volatile unsigned char *)(unsigned long)&write_code;
  *p = 0xC3;
  return -1;
}

/** Calls a wild address: #PF instruction fetch (or whatever lives there). */
long jump_to(long addr) {
  long (*fn)(void) = (long (*)(void))addr;
  return fn() + 1; /* + 1 keeps it a call, not a tail jump */
}

/** int3: #BP (or #GP/#UD if the runtime's IDT does not allow int3 from ring 3). */
long breakpoint(void) {
  __asm__ volatile("int3");
  return -1;
}

/** hlt in ring 3: #GP(0). */
long general_protection(void) {
  __asm__ volatile("hlt");
  return -1;
}

long ok(void) { return 7; }
