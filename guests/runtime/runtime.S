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
#define MAILBOX_PT_WRITES 240         /* the host derives it: (mb_pt_writes_end - mb_pt_writes) / 16 */

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
	STUB 14, 1
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
