/**
 * In-memory {@link LinkExtras} over a FakeKernel namespace, for unit tests of drivers. It
 * writes MACs into the fake kernel's links (so `getLink().mac` shows them, also after a move)
 * and remembers which VXLANs were created with the proxy flag.
 */
import { KernelError } from '../errors.js';
import type { FakeLinkOps, VxlanSpec } from '../kernel/index.js';
import { normalizeMac } from '../kernel/inet.js';
import type { LinkExtras } from './types.js';

/** {@link LinkExtras} of the namespace `links` acts on. */
export class FakeLinkExtras implements LinkExtras {
  /** Names of VXLANs created through {@link ensureProxyVxlan}. */
  readonly proxied = new Set<string>();

  constructor(private readonly links: FakeLinkOps) {}

  async setMac(dev: string, mac: string): Promise<void> {
    const op = 'link.setMac';
    const l = this.links.kernel.ns(op, this.links.netns).links.get(dev);
    if (!l) throw new KernelError(op, 'ENODEV', `${dev}: no such device`);
    l.mac = normalizeMac(op, mac);
  }

  async ensureProxyVxlan(spec: VxlanSpec): Promise<void> {
    const have = await this.links.getLink(spec.name);
    if (have?.kind === 'vxlan' && !this.proxied.has(spec.name)) {
      throw new KernelError('link.ensureProxyVxlan', 'EBUSY', `${spec.name} exists with no proxy flag`);
    }
    await this.links.ensureVxlan(spec);
    this.proxied.add(spec.name);
  }
}
