/** Control-register, EFER, RFLAGS and MSR bits (Intel SDM Vol. 3A §2.5, §2.2.1; AMD APM Vol. 2 §3.1). */
export const CR0 = {
  PE: 1 << 0, // protected mode
  MP: 1 << 1, // monitor coprocessor (SSE with TS)
  ET: 1 << 4,
  NE: 1 << 5, // native x87 error reporting
  WP: 1 << 16, // ring 0 honours read-only pages
  AM: 1 << 18,
  PG: 2 ** 31, // paging
} as const;

export const CR4 = {
  PAE: 1 << 5,
  PGE: 1 << 7,
  OSFXSR: 1 << 9, // SSE enabled (gcc-built guests use SSE registers)
  OSXMMEXCPT: 1 << 10,
  FSGSBASE: 1 << 16, // wrfsbase in the ring-0 stubs
} as const;

export const EFER = {
  SCE: 1 << 0,
  LME: 1 << 8,
  LMA: 1 << 10,
  NXE: 1 << 11, // execute-disable bit in page tables
} as const;

export const RFLAGS_RESERVED = 0x2;

export const MSR = {
  STAR: 0xc0000081,
  LSTAR: 0xc0000082,
  SFMASK: 0xc0000084,
  FS_BASE: 0xc0000100,
  GS_BASE: 0xc0000101,
  KERNEL_GS_BASE: 0xc0000102,
} as const;
