/**
 * Kernel request timeouts over REAL netlink sockets, no root: NetlinkLinkOps and GenlIpvs talk
 * through an NETLINK_USERSOCK socket whose requests are addressed to a second user socket (the
 * "kernel" here) that answers only when told to. npm `netlink`'s own timeout runs on the
 * faked `setTimeout`, so the 5 s default is checked without waiting 5 s. Spawned tools: a
 * real `sleep` outliving execTool's (faked) deadline is killed and reported as ETIMEDOUT.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createNetlink, GenericNetlinkSocket, Protocol, RtNetlinkSocket, type NetlinkMessage, type NetlinkSocket } from 'netlink';
import { KernelError } from '../../src/errors.js';
import { execTool } from '../../src/kernel/exec.js';
import { GenlIpvs } from '../../src/kernel/ipvs-genl.js';
import { NetlinkLinkOps } from '../../src/kernel/rtnl-link-ops.js';

const NLMSG_ERROR = 2;
const GENL_ID_CTRL = 0x10;

/** Two user netlink sockets: requests of `client` go to `peer`, which records them and replies on demand. */
interface Pair { client: NetlinkSocket; peer: NetlinkSocket; got: Array<{ msg: NetlinkMessage; port: number }> }
let pairs: Pair[] = [];

function pair(): Pair {
  const client = createNetlink(Protocol.USERSOCK);
  const peer = createNetlink(Protocol.USERSOCK);
  const p: Pair = { client, peer, got: [] };
  const send = client.send.bind(client);
  client.send = (type, data, o, cb) => send(type, data, { ...o, port: peer.address().port }, cb);
  peer.on('message', (msgs, rinfo) => { for (const msg of msgs) p.got.push({ msg, port: rinfo.port }); });
  pairs.push(p);
  return p;
}

/** An ACK (NLMSG_ERROR with error 0) for `req`, as the kernel would send it. */
function ack(p: Pair, req: { msg: NetlinkMessage; port: number }): void {
  const body = Buffer.alloc(4 + 16);
  body.writeInt32LE(0, 0);
  p.peer.send(NLMSG_ERROR, body, { seq: req.msg.seq, port: req.port });
}

/** Polls `cond` through the event loop (setImmediate is not faked); fails after 2 s. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 2000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

beforeEach(() => { vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] }); });
afterEach(() => {
  vi.useRealTimers();
  for (const p of pairs) { p.client.close(); p.peer.close(); }
  pairs = [];
});

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => new Error('resolved'), (e: unknown) => e);
}

describe('NetlinkLinkOps request timeout', () => {
  it('fails an unanswered request with ETIMEDOUT after the 5 s default, and the next request still runs', async () => {
    const p = pair();
    const ops = new NetlinkLinkOps({ socket: new RtNetlinkSocket(p.client) });
    const first = rejection(ops.deleteLink('hung0'));
    await until(() => p.got.length === 1, 'the first request');
    vi.advanceTimersByTime(4999);
    const second = ops.deleteLink('next0'); // queued behind the hung one
    await new Promise((r) => setImmediate(r));
    expect(p.got).toHaveLength(1);
    vi.advanceTimersByTime(1);
    const e = await first;
    expect(e).toBeInstanceOf(KernelError);
    expect(e).toMatchObject({ op: 'link.deleteLink', errno: 'ETIMEDOUT' });
    expect((e as Error).message).toMatch(/hung0.*timeout/);
    await until(() => p.got.length === 2, 'the second request');
    const req = p.got[1];
    if (!req) throw new Error('no second request');
    ack(p, req);
    await expect(second).resolves.toBeUndefined();
  });

  it('honours requestTimeoutMs on every kind of request (dumps and changes)', async () => {
    const p = pair();
    const ops = new NetlinkLinkOps({ socket: new RtNetlinkSocket(p.client), requestTimeoutMs: 250 });
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['link.listLinks', () => ops.listLinks()],
      ['link.getLink', () => ops.getLink('x0').then(() => { throw new Error('answered'); })],
      ['link.ensureBridge', () => ops.ensureBridge('br-x0')],
      ['link.ensureRoute', () => ops.ensureRoute({ dst: '10.9.0.0/16', via: '10.0.0.1' })],
      ['link.setUp', () => ops.setUp('x0')],
    ];
    for (const [op, call] of calls) {
      const n = p.got.length;
      const r = rejection(call());
      await until(() => p.got.length === n + 1, op);
      vi.advanceTimersByTime(250);
      expect(await r).toMatchObject({ op, errno: 'ETIMEDOUT' });
    }
  });
});

describe('GenlIpvs request timeout', () => {
  it('fails open with ipvs.open ETIMEDOUT when the family lookup is never answered', async () => {
    const p = pair();
    const r = rejection(GenlIpvs.open({ socket: new GenericNetlinkSocket(p.client), requestTimeoutMs: 300 }));
    await until(() => p.got.length === 1, 'the family lookup');
    expect(p.got[0]?.msg.type).toBe(GENL_ID_CTRL);
    vi.advanceTimersByTime(300);
    expect(await r).toMatchObject({ op: 'ipvs.open', errno: 'ETIMEDOUT' });
  });

  it('fails an unanswered IPVS request with ETIMEDOUT, named after the operation', async () => {
    const p = pair();
    const opening = GenlIpvs.open({ socket: new GenericNetlinkSocket(p.client), requestTimeoutMs: 300 });
    await until(() => p.got.length === 1, 'the family lookup');
    const lookup = p.got[0];
    if (!lookup) throw new Error('no lookup');
    // CTRL_CMD_NEWFAMILY with CTRL_ATTR_FAMILY_ID = 42, as the kernel's controller answers.
    const reply = Buffer.alloc(4 + 8);
    reply.writeUInt8(1, 0); // cmd NEWFAMILY
    reply.writeUInt8(2, 1); // version
    reply.writeUInt16LE(6, 4); // nla_len
    reply.writeUInt16LE(1, 6); // CTRL_ATTR_FAMILY_ID
    reply.writeUInt16LE(42, 8);
    p.peer.send(GENL_ID_CTRL, reply, { seq: lookup.msg.seq, port: lookup.port });
    const ipvs = await opening;
    const r = rejection(ipvs.getServices());
    await until(() => p.got.length === 2, 'the dump request');
    expect(p.got[1]?.msg.type).toBe(42);
    vi.advanceTimersByTime(300);
    expect(await r).toMatchObject({ op: 'ipvs.getServices', errno: 'ETIMEDOUT' });
  });
});

describe('execTool timeout', () => {
  it('kills a tool still running after the 30 s default and rejects with ETIMEDOUT', async () => {
    const r = rejection(execTool('test.hang', 'sleep', ['60']));
    await new Promise((res) => setImmediate(res));
    vi.advanceTimersByTime(30_000);
    const e = await r;
    expect(e).toBeInstanceOf(KernelError);
    expect(e).toMatchObject({ op: 'test.hang', errno: 'ETIMEDOUT' });
    expect((e as Error).message).toMatch(/timed out after 30000 ms/);
  });

  it('honours timeoutMs, and a tool done in time is not affected', async () => {
    const r = rejection(execTool('test.hang', 'sleep', ['60'], { timeoutMs: 100 }));
    vi.advanceTimersByTime(100);
    expect(await r).toMatchObject({ errno: 'ETIMEDOUT' });
    await expect(execTool('test.quick', 'true', [], { timeoutMs: 100 })).resolves.toEqual({ stdout: '', stderr: '' });
  });
});
