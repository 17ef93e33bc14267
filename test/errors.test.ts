import { describe, expect, test } from "vitest";
import { ERRNO, errnoName } from "../src/errno.ts";
import { IpreError, KvmError, OsError } from "../src/errors.ts";
import { NativeBuffer } from "../src/ffi/native.ts";

describe("OsError and KvmError", () => {
  test("KvmError is an OsError; both carry operation, errno and its name", () => {
    const os = new OsError("mmap(guest memory)", ERRNO.ENOMEM);
    expect(os).toBeInstanceOf(IpreError);
    expect(os).not.toBeInstanceOf(KvmError);
    expect(os).toMatchObject({ name: "OsError", operation: "mmap(guest memory)", errno: 12, errnoName: "ENOMEM" });
    expect(os.message).toBe("mmap(guest memory) failed: ENOMEM");
    const kvm = new KvmError("KVM_CREATE_VM", ERRNO.EBUSY, "detail");
    expect(kvm).toBeInstanceOf(OsError);
    expect(kvm).toMatchObject({ name: "KvmError", operation: "KVM_CREATE_VM", errno: 16, errnoName: "EBUSY" });
    expect(kvm.message).toBe("KVM_CREATE_VM failed: EBUSY (detail)");
  });

  test("errno names come from one table; unknown values are spelled out", () => {
    expect(errnoName(ERRNO.EINTR)).toBe("EINTR");
    expect(errnoName(ERRNO.E2BIG)).toBe("E2BIG");
    expect(errnoName(4242)).toBe("errno 4242");
  });

  test("a failing mmap (more than the address space) throws OsError ENOMEM, not KvmError", () => {
    let caught: unknown;
    try {
      NativeBuffer.alloc(2 ** 52);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(OsError);
    expect(caught).not.toBeInstanceOf(KvmError);
    expect(caught).toMatchObject({ operation: "mmap", errnoName: "ENOMEM" });
  });
});
