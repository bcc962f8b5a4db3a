/**
 * IPVS in a real kernel: this machine's kernel has no ip_vs, so the checks run in the kernel
 * lab (../shared/kernel-lab: Debian's kernel under QEMU; test/helpers/kernel-lab.ts): the
 * compiled test/kernel-lab/ipvs-lab.ts runs in ONE VM boot, printing one `ok - <id>: ...` line
 * per check. A missing lab is a failure, not a skip.
 */
import { describe, it } from 'vitest';
import { expectKernelLabChecks } from '../helpers/kernel-lab.js';

describe('IPVS in the kernel lab', () => {
  it('balances, drains, removes, answers UDP, refuses when empty, every port (fwmark), masquerades; ipvsadm agrees', async () => {
    await expectKernelLabChecks({
      script: 'dist/test/kernel-lab/ipvs-lab.js',
      // loaded by URL at run time (worker threads)
      emitted: ['dist/src/kernel/ipvs-genl.js', 'dist/src/kernel/netns-roamer-handlers.js', 'dist/src/kernel/netns-worker.js', 'dist/ingress/ipvs/load-balancer.js'],
      checks: [
        'has-ipvs', 'topology', 'program', 'spread', 'client-address', 'drain', 'remove', 'udp', 'refuse-empty', 'ipvsadm', 'every-port',
        'timeouts-sysctls', 'masquerade', 'masquerade-needed', 'cleanup',
      ],
      vmTimeoutS: 540,
    });
  }, 780_000);
});
