/**
 * Says once, at the start and at the end of `npm test`, whether the KVM suites run here, and where
 * they are skipped, how to run them (the nested hardware-flavour KVM of scripts/nested-kvm.sh).
 */
import { HAVE_KVM, NESTED, SKIP_REASON } from "./kvm.ts";

const say = (s: string) => process.stdout.write(`\n${s}\n`);

export function setup(): () => void {
  if (HAVE_KVM) say(`ipre tests: /dev/kvm is usable${NESTED ? " (nested hardware-flavour KVM under QEMU TCG: iteration counts scaled down)" : ""}; the KVM suites run on Node, Bun and Deno.`);
  else say(`ipre tests: KVM suites SKIPPED: ${SKIP_REASON}. The pure tests run.`);
  return () => {
    if (!HAVE_KVM) {
      say(
        `ipre tests: the KVM suites were skipped (${SKIP_REASON}).\n` +
          "  Run them in a nested hardware-flavour KVM (QEMU + Debian's kernel, set up on first use, root for apt-get):\n" +
          "    npm run test:nested                      # the whole suite, Node, Bun and Deno\n" +
          "    npm run test:nested -- test/remote.test.ts   # some files",
      );
    }
  };
}
