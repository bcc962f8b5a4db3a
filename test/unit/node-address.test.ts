/**
 * The start-up warning for a node address no other node can reach (mesh/daemon/dataplane.ts):
 * loopback addresses, given or defaulted, warn; routable ones do not.
 */
import { describe, expect, it } from 'vitest';
import { loopbackWarning } from '../../mesh/daemon/dataplane.js';

describe('loopbackWarning', () => {
  it('warns for loopback addresses and says whether --address was left out', () => {
    expect(loopbackWarning('127.0.0.1', true)).toMatch(/^warning: the node address is 127\.0\.0\.1 \(no --address given\), a loopback address: .*Pass --address/);
    expect(loopbackWarning('127.3.2.1', false)).toMatch(/^warning: the node address is 127\.3\.2\.1, a loopback address/);
    expect(loopbackWarning('::1', false)).toContain('::1');
  });

  it('is silent for addresses other nodes can reach', () => {
    for (const a of ['192.0.2.10', '10.0.0.1', '2001:db8::1', '128.0.0.1']) expect(loopbackWarning(a, false)).toBeUndefined();
  });
});
