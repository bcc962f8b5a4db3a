/**
 * The ingress routing mesh on the IPVS dataplane: this machine's kernel has no ip_vs, so the
 * 2-node harness (test/harness/cluster.ts) runs in the kernel lab (../shared/kernel-lab:
 * Debian's kernel under QEMU; test/helpers/kernel-lab.ts) with `--lb-dataplane ipvs`: the
 * compiled test/kernel-lab/ingress-lab.ts runs in ONE VM boot, printing one `ok - <id>: ...`
 * line per check. A missing lab is a failure, not a skip. The same mesh on nftables, on this
 * kernel: ingress-mesh.test.ts.
 */
import { describe, it } from 'vitest';
import { expectKernelLabChecks } from '../helpers/kernel-lab.js';

describe('ingress routing mesh on IPVS in the kernel lab', () => {
  it('every node publishes, reaches every replica through its sandbox\'s IPVS (masqueraded); ipvsadm agrees; ipvsadm -C is repaired by the resync; removal cleans up', async () => {
    await expectKernelLabChecks({
      script: 'dist/test/kernel-lab/ingress-lab.js',
      // the harness, the `shoal` program and what it loads by URL at run time (worker threads)
      emitted: [
        'dist/test/harness/cluster.js', 'dist/mesh/cli/main.js', 'dist/mesh/agent/ingress.js', 'dist/ingress/published.js',
        'dist/mesh/daemon/dataplane.js', 'dist/ingress/ipvs/load-balancer.js', 'dist/src/kernel/ipvs-genl.js',
        'dist/src/kernel/netns-roamer-handlers.js', 'dist/src/kernel/netns-worker.js',
      ],
      checks: ['has-ipvs', 'harness', 'ingress-sandboxes', 'services', 'every-node', 'all-replicas', 'no-local-replica', 'vip-every-port', 'ipvsadm', 'host-hop', 'ipvsadm-clear-repaired', 'remove', 'cleanup'],
      vmTimeoutS: 600, // TCG: the 2-node harness over TLS starts in ~70 s idle, over 200 s on a loaded machine
    });
  }, 900_000);
});
