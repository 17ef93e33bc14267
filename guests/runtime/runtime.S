/*
 * ipre guest runtime: the ring-0 side of every machine.
 *
 * Linked at offset 0 and copied to window base + RT.CODE (src/guest/layout.ts); position
 * independent (RIP-relative data). Guest programs run in ring 3 and reach the host by faulting:
 * every exception vector 0-31 enters a stub here on the IST1 stack, and the stub exits to the
 * VMM with `out PORT_VECTOR_BASE+vector` (`int n` and `syscall` do not enter ring 0 on PVM,
 * docs/ARCHITECTURE.md §5). On hardware KVM a Linux program's `syscall` enters
 * `syscall_entry`, which leaves the same frame and exits on PORT_SYSCALL; on PVM it faults
 * fetching `syscall_entry` and exits through the #PF stub (§4). The one exit that needs no ring
 * 0: a hostcall gate (`hostcall_gates`, the last page) runs in ring 3 and its `out PORT_HOSTCALL`
 * exits directly, allowed by the TSS I/O bitmap for that port alone (IOPL stays 0); the host
 * takes it only at a gate, and the guest then runs on to the gate's `ret` itself, never parked.
 * The host reads registers through KVM_CAP_SYNC_REGS and the frame from IST1, edits them, and resumes the vCPU, which then runs
 * `resume`: apply the page-table writes and the CR3/FSBASE loads the host left in the mailbox
 * (so a shadow-paging hypervisor sees them), then `iretq`.
 *
 * Invariant: whenever the vCPU is parked (stopped after a ring-0 `out`), RSP = IST1_TOP - 48 and
 * the frame there is [error, rip, cs, rflags, rsp, ss]; all general registers hold guest values.
 * Stopped at a gate's ring-3 `out` it is not parked: the host parks it first (a fetch of the
 * exit trap faults into the #PF stub) before any service run, and when the call ends with an error.
 */
	.intel_syntax noprefix
	.code64
	.text

#define PORT_BOOT 0xd0
#define PORT_SERVICE 0xd1
#define PORT_SYSCALL 0xd2
#define PORT_HOSTCALL 0xd3            /* the only port the TSS I/O bitmap lets ring 3 use */
#define IST1_TOP 0x24000              /* RT.IST1_TOP: the frame's top (window offset) */
#define RUNTIME_CODE 0x10000          /* RT.CODE: where runtime_start lies (window offset) */
#define USER_CODE 0x23                /* SELECTOR.USER_CODE (src/x86/descriptors.ts) */
#define USER_DATA 0x1b                /* SELECTOR.USER_DATA */
#define PORT_VECTOR_BASE 0xe0
#define FRAME_SIZE 48                 /* the parked frame: [error, rip, cs, rflags, rsp, ss] */
#define MAILBOX_PT_WRITES 240         /* the host derives it: (mb_pt_writes_end - mb_pt_writes) / 16 */
#define PF_USER_FETCH_NP 0x14         /* #PF error code: ring-3 instruction fetch, page not present */
#define PF_USER_FETCH_NX 0x15         /* #PF error code: ring-3 fetch of a present page it may not run */
#define HASH_MUL -1640531535          /* 0x9e3779b1 as imm32: multiplicative hash of an entry address */

/*
 * The IPRE fast path's area (docs/ARCHITECTURE.md §3, "the fast path"): RT.FAST of the window,
 * outside the runtime image, supervisor-only, written by the host (src/engine/fastpath.ts) while
 * the vCPU is parked, except the frame (fp_rsp) and the scratch words, which the #PF handler
 * below writes. Offsets are exported as absolute symbols (window offsets).
 */
#define FAST 0x30000                  /* RT.FAST (src/guest/layout.ts) */
	.globl fp_area, fp_rsp, fp_normal_root, fp_fsbase, fp_caller_base
	.globl fp_user_lo, fp_user_span, fp_user_lo8, fp_save_rax, fp_save_r11, fp_entries
	.globl fp_entry_roots, fp_entry_fsbases, fp_entry_windows, fp_entries_end
	.set fp_area, FAST
	.set fp_rsp, FAST + 0x00          /* the frame: the RSP the remote's `ret` leaves (entry RSP + 8; */
	                                  /* the merged root in CR3 names the remote); 0: no frame, */
	                                  /* entries listed; 1: the host has frames or lists no entry */
	                                  /* (the handler does nothing) */
	.set fp_normal_root, FAST + 0x20  /* the root outside calls */
	.set fp_fsbase, FAST + 0x28       /* FSBASE of this window's code */
	.set fp_user_lo, FAST + 0x30      /* a valid entry RSP is in [lo, lo + span], 8-aligned: this */
	.set fp_user_span, FAST + 0x38    /* window's user memory (lo is 8-aligned) */
	.set fp_user_lo8, FAST + 0x48     /* lo + 8 */
	.set fp_caller_base, FAST + 0x40  /* this window's base (1 GiB aligned) */
	.set fp_save_rax, FAST + 0x58     /* scratch: guest RAX and R11 while the handler runs */
	.set fp_save_r11, FAST + 0x60
	.set fp_entries, FAST + 0x1000    /* 256 slots in four arrays of u64: the allowed entries of */
	.set fp_entry_roots, FAST + 0x1800    /* connected remotes, their merged roots, */
	.set fp_entry_fsbases, FAST + 0x2000  /* the remotes' FSBASE */
	.set fp_entry_windows, FAST + 0x2800  /* and windows (the host's, for adoption) */
	.set fp_entries_end, FAST + 0x3000
#define FP(field) [rip + runtime_start + field - RUNTIME_CODE]
/* Slot RAX of one of the entry arrays, addressed from the handler's RSP (IST1_TOP - FRAME_SIZE) */
#define SLOT(array) [rsp + rax * 8 + array - (IST1_TOP - FRAME_SIZE)]

	.globl runtime_start
runtime_start:

/* First instruction the vCPU runs (ring 0); the host set RSP = IST1_TOP - 48. */
	.globl boot
boot:
	out PORT_BOOT, al
	jmp resume

/*
 * Few instructions on purpose: a ring-0 instruction can be expensive (PVM emulates the whole
 * non-PVM-ABI supervisor mode, ~0.5 us per instruction). CR2 is not saved: for the fetch faults
 * that are requests, CR2 = RIP; for a genuine fault the host reads CR2 with KVM_GET_SREGS.
 */
.macro STUB vec, has_error
	.balign 16
	.globl stub_\vec
stub_\vec:
.if \has_error == 0
	push 0
.endif
	out PORT_VECTOR_BASE + \vec, al
	jmp resume
.endm

	STUB 0, 0
	STUB 1, 0
	STUB 2, 0
	STUB 3, 0
	STUB 4, 0
	STUB 5, 0
	STUB 6, 0
	STUB 7, 0
	STUB 8, 1
	STUB 9, 0
	STUB 10, 1
	STUB 11, 1
	STUB 12, 1
	STUB 13, 1

/*
 * #PF: the IPRE fast path first (fast_pf, fast_return, below), routed by fp_rsp, then the exit.
 * The IDT gives #PF no IST: from ring 3 it arrives on TSS.RSP0, which is IST1's top (the parked
 * frame's place, like every other vector). No ring-0 code of the runtime touches memory that can
 * fault; if it ever did (a bug), its frame lies below the parked one and the host, which finds
 * RSP elsewhere than the parked frame at the `out`, reports a crash (src/engine/exits.ts).
 */
	.balign 16
	.globl stub_14
stub_14:
	cmp qword ptr FP(fp_rsp), 1       /* 0: maybe an entry; 1: nothing for the fast path (no */
	jb fast_pf                        /* entry listed, or the host has IPRE frames); else the */
	ja fast_return                    /* live frame: maybe its return */
	.globl pf_exit
pf_exit:
	out PORT_VECTOR_BASE + 14, al
	jmp resume

	STUB 15, 0
	STUB 16, 0
	STUB 17, 1
	STUB 18, 0
	STUB 19, 0
	STUB 20, 0
	STUB 21, 1
	STUB 22, 0
	STUB 23, 0
	STUB 24, 0
	STUB 25, 0
	STUB 26, 0
	STUB 27, 0
	STUB 28, 0
	STUB 29, 1
	STUB 30, 1
	STUB 31, 0

/* Apply what the host asked for, then return to the frame on IST1. */
	.balign 16
	.globl resume
resume:
	cmp qword ptr [rip + mb_pending], 0   /* the host set something in the mailbox? */
	jne resume_slow
	add rsp, 8                   /* the normalised error code */
	iretq

resume_slow:
	mov qword ptr [rip + mb_pending], 0
	push rax
	mov rax, [rip + mb_pt_count]
	test rax, rax
	jnz apply_pt_writes
after_pt_writes:
	mov rax, [rip + mb_cr3]
	test rax, rax
	jz 1f
	mov cr3, rax                 /* also flushes non-global TLB entries (no PCID) */
	mov qword ptr [rip + mb_cr3], 0
1:
	mov rax, [rip + mb_fsbase_set]
	test rax, rax
	jz 2f
	mov rax, [rip + mb_fsbase]
	wrfsbase rax
	mov qword ptr [rip + mb_fsbase_set], 0
2:
	mov rax, [rip + mb_service]
	test rax, rax
	jnz service
	pop rax
	add rsp, 8                   /* the normalised error code */
	iretq

/*
 * Fast continuations the host may point RIP at while the vCPU is parked, skipping `jmp resume`:
 * it also sets RSP to the frame's RIP slot (past the error code). resume_iret when the mailbox is
 * empty; resume_cr3 for an IPRE merge/unmerge, with the new root in R11 (R11 is a scratch
 * register of the SysV ABI, dead at every function entry and return, which is where IPRE's entry
 * and return traps happen). Each ring-0 instruction saved matters on PVM.
 */
	.globl resume_iret
resume_iret:
	iretq

	.globl resume_cr3
resume_cr3:
	mov cr3, r11                 /* flushes the TLB: the remote's translations go with it */
	mov r11, [rip + mb_fsbase]   /* FSBASE of the code that runs next, set by the host: a value */
	wrfsbase r11                 /* a guest wrote itself must not leak across the switch */
	iretq

/*
 * The raw exit floor: the host points RIP here for one KVM_RUN that only exits (and parks).
 * Two copies, used alternately: a hardware KVM host completes a PIO exit on the next KVM_RUN by
 * skipping the `out` if RIP still equals that `out`'s address (complete_fast_pio_out), so
 * resuming at the very `out` that just exited would run on into `jmp resume` instead of exiting.
 */
	.globl park
park:
	out PORT_SERVICE, al
	jmp resume
	.globl park_alt
park_alt:
	out PORT_SERVICE, al
	jmp resume

/*
 * `syscall` from ring 3 (LSTAR points here). On hardware KVM the CPU enters it in ring 0; on PVM
 * the CPU jumps here still in ring 3 and the fetch faults (#PF at RIP == LSTAR), which the host
 * takes for the syscall (docs/ARCHITECTURE.md §4): this code then never runs.
 * The CPU saved the return RIP in RCX and RFLAGS in R11 and masked RFLAGS with SFMASK, but kept
 * the user RSP: park it in a scratch slot, switch to IST1 and build the same frame an exception
 * stub leaves [error=0, rip, cs, rflags, rsp, ss], so the host and every resume path treat a
 * syscall like any other exit. The host answers in RAX only (RCX and R11 keep their Linux values).
 */
	.balign 16
	.globl syscall_entry
syscall_entry:
	mov [rip + sc_user_rsp], rsp
	lea rsp, [rip + runtime_start + IST1_TOP - RUNTIME_CODE]
	push USER_DATA
	push qword ptr [rip + sc_user_rsp]
	push r11
	push USER_CODE
	push rcx
	push 0
	out PORT_SYSCALL, al
	jmp resume

/* A service run: the host only wanted the mailbox applied; park again. */
service:
	mov qword ptr [rip + mb_service], 0
	pop rax
	out PORT_SERVICE, al
	jmp resume

apply_pt_writes:
	push rbx
	push rcx
	push rdx
	mov rcx, [rip + mb_pt_count]
	lea rdx, [rip + mb_pt_writes]
3:
	mov rbx, [rdx]
	mov rax, [rdx + 8]
	mov [rbx], rax
	add rdx, 16
	dec rcx
	jnz 3b
	mov qword ptr [rip + mb_pt_count], 0
	pop rdx
	pop rcx
	pop rbx
	jmp after_pt_writes

/*
 * The IPRE fast path (docs/ARCHITECTURE.md §3): a remote call and its return without an exit.
 * Entry: caller code fetched an address that its normal root does not map. If that address is in
 * the entry table (the host lists there exactly the allowed entries of connected remotes that
 * are free: not busy, not to be reset, not closed), no IPRE frame exists on this vCPU and the
 * user RSP is 8-aligned caller user memory (the host's rules for an entry), the handler records
 * the frame (the RSP the remote's `ret` will leave; the merged root names the remote), loads
 * that root and the remote's FSBASE and returns to the entry. The return address stays where it is: caller memory
 * is no-execute in the merged root, so the remote's `ret` faults fetching it (error code 0x15).
 * Return: that fault, inside the caller's window, with RSP = the frame's: load the normal root and
 * the caller's FSBASE and resume there. Ring 0 never touches the guest's stack. Everything else
 * (and any exit while a frame is live, when the host adopts the frame: src/engine/fastpath.ts)
 * goes through the host, as before. R11 is a scratch register of the SysV ABI at a function's
 * entry and return and is clobbered there, as by the host's path (`resume_cr3`); every other
 * register keeps its value. Ring-0 instructions are emulated one by one on PVM: few, no loop,
 * and few memory writes, which cost most there (~1.2 us each).
 * Frame on entry: [rsp] error, +8 rip, +16 cs, +24 rflags, +32 user rsp, +40 ss.
 */
fast_pf:                              /* fp_rsp = 0 */
	cmp qword ptr [rsp], PF_USER_FETCH_NP   /* only a fetch of a page that is not mapped: the PVM */
	jne pf_exit                       /* route of a syscall (0x15 at LSTAR) exits without the saves */
	mov FP(fp_save_r11), r11
	mov r11, [rsp + 8]                /* the fetched address */
	mov FP(fp_save_rax), rax
	imul eax, r11d, HASH_MUL          /* slot = bits 24-31 of the 32-bit product (zero-extended) */
	shr eax, 24
	cmp r11, SLOT(fp_entries)         /* an allowed entry of a free remote? */
	jne fast_exit
	mov r11, [rsp + 32]               /* user RSP: in caller user memory (one unsigned */
	sub r11, FP(fp_user_lo)           /* comparison of RSP - lo), 8-aligned */
	test r11b, 7
	jnz fast_exit
	cmp r11, FP(fp_user_span)
	ja fast_exit
	add r11, FP(fp_user_lo8)          /* RSP + 8 */
	mov FP(fp_rsp), r11               /* the frame is live (before CR3: see liveLink, frames.ts) */
	mov r11, SLOT(fp_entry_roots)     /* the merged root (flushes the TLB) */
	mov cr3, r11
	mov r11, SLOT(fp_entry_fsbases)   /* the remote's TLS */
	wrfsbase r11
	mov rax, FP(fp_save_rax)
	add rsp, 8
	iretq

fast_exit:
	mov rax, FP(fp_save_rax)
	mov r11, FP(fp_save_r11)
	jmp pf_exit
fast_return_exit_window:             /* R11 again the frame's RSP, which the `cmp` found equal, */
	mov r11, [rsp + 32]
fast_return_exit:                     /* swapped back with the guest's R11 */
	xchg r11, FP(fp_rsp)
	jmp pf_exit

fast_return:                          /* fp_rsp > 1: the handler's frame is live */
	cmp qword ptr [rsp], PF_USER_FETCH_NX
	jne pf_exit
	xchg r11, FP(fp_rsp)              /* R11 := the frame's RSP, which holds R11 meanwhile (a */
	cmp r11, [rsp + 32]               /* remote's syscall fetches LSTAR with 0x15 on PVM, §4, and */
	jne fast_return_exit              /* the host needs its R11): RSP where the entry left it + 8, */
	mov r11, [rsp + 8]                /* and a fetch in the caller's own window (1 GiB) */
	xor r11, FP(fp_caller_base)
	shr r11, 30
	jnz fast_return_exit_window
	mov qword ptr FP(fp_rsp), 0
	mov r11, FP(fp_normal_root)       /* unmerged (flushes the remote's translations), */
	mov cr3, r11
	mov r11, FP(fp_fsbase)            /* with the caller's TLS */
	wrfsbase r11
	add rsp, 8
	iretq

/* The mailbox: written by the host while the vCPU is parked, read by `resume`. */
	.balign 4096
	.globl mailbox
mailbox:
	.globl mb_pending
mb_pending:     .quad 0     /* nonzero: some field below is set (the fast path checks only this) */
	.globl mb_cr3
mb_cr3:         .quad 0     /* nonzero: load into CR3 */
	.globl mb_fsbase_set
mb_fsbase_set:  .quad 0     /* nonzero: load mb_fsbase into FSBASE */
	.globl mb_fsbase
mb_fsbase:      .quad 0
	.globl mb_service
mb_service:     .quad 0     /* nonzero: exit on PORT_SERVICE instead of iretq */
	.globl sc_user_rsp
sc_user_rsp:    .quad 0     /* syscall_entry's scratch: the user RSP (not a mailbox field) */
	.globl mb_pt_count
mb_pt_count:    .quad 0     /* number of (address, value) pairs in mb_pt_writes */
	.balign 16
	.globl mb_pt_writes
mb_pt_writes:   .fill MAILBOX_PT_WRITES * 2, 8, 0
	.globl mb_pt_writes_end
mb_pt_writes_end:

/*
 * Hostcall gates, run in ring 3 (docs/ARCHITECTURE.md §4). The host maps this page, user
 * read-only and executable, at every page of the window's gate range (gate n = trap region +
 * 16 n): all 4096 gates share these 256. A guest `call`s gate n; its ring-3 `out` is allowed by
 * the TSS I/O bitmap and exits; the host finds n from RIP, puts the handler's result in RAX, and
 * the guest runs on to the `ret` itself. Nothing else lives on the page (guest code can read
 * it); the padding traps: `hlt` is a #GP in ring 3 on every flavour, whichever byte a wild jump
 * lands on (`int3` would be a #BP on PVM and, through a DPL-0 IDT gate, a #GP elsewhere).
 */
	.balign 4096
	.globl hostcall_gates
hostcall_gates:
	.rept 256
	out PORT_HOSTCALL, al
	ret
	.balign 16, 0xf4             /* hlt */
	.endr
	.globl hostcall_gates_end
hostcall_gates_end:
	.globl runtime_end
runtime_end:
