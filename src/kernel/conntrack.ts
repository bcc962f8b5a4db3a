/**
 * Connection tracking entries, spoken through `conntrack` (Debian: `apt-get install conntrack`).
 *
 * A load balancer that rewrites destinations with NAT leaves the rewrite in conntrack: a UDP
 * "flow" (same 5-tuple) keeps going to a backend that was removed for as long as datagrams keep
 * refreshing the entry, i.e. forever for a chatty client (moby#36878). Deleting the entries
 * whose reply comes from the removed backend makes the next datagram a new flow, balanced
 * again. TCP is left alone: its flows end by themselves and deleting them would cut them.
 */
import { KernelError } from '../errors.js';
import { execTool, inNetns } from './exec.js';

/** Which flows to delete: all given fields must match. */
export interface ConntrackFlowFilter {
  protocol: 'tcp' | 'udp';
  /** Original destination address (the VIP the client sent to). */
  origDst?: string;
  /** Original destination port (the VIP's port). */
  origDstPort?: number;
  /** Source of the reply direction: the backend the flow was NATed to. */
  replySrc: string;
}

/** conntrack entries of one network namespace. */
export interface Conntrack {
  /** Delete the flows matching `filter`; resolves how many were deleted (0 is a success). */
  deleteFlows(filter: ConntrackFlowFilter): Promise<number>;
}

/** Options of {@link ExecConntrack}. */
export interface ExecConntrackOptions {
  /** Run inside this netns (a name under /run/netns or an nsfs path), via `nsenter --net=`. */
  netns?: string;
  /** The conntrack binary; default `conntrack` from PATH. */
  conntrack?: string;
}

const DELETED = /(\d+) flow entries have been deleted/;

/**
 * {@link Conntrack} by spawning `conntrack -D`. The tool exits 1 when nothing matched (with
 * "0 flow entries have been deleted."): that is a success with 0, not an error.
 */
export class ExecConntrack implements Conntrack {
  private readonly prefix: string[];
  private readonly cmd: string;

  constructor(opts: ExecConntrackOptions = {}) {
    [this.cmd, ...this.prefix] = inNetns(opts.conntrack ?? 'conntrack', opts.netns);
  }

  async deleteFlows(filter: ConntrackFlowFilter): Promise<number> {
    const args = [...this.prefix, ...conntrackDeleteArgs(filter)];
    try {
      const { stderr } = await execTool('conntrack.delete', this.cmd, args);
      return Number(DELETED.exec(stderr)?.[1] ?? 0);
    } catch (e) {
      const m = e instanceof KernelError ? DELETED.exec(e.stderr ?? '') : null;
      if (m?.[1] === '0') return 0;
      throw e;
    }
  }
}

/** The `conntrack` arguments deleting the flows of `filter` (without the binary). */
export function conntrackDeleteArgs(filter: ConntrackFlowFilter): string[] {
  const v6 = [filter.replySrc, filter.origDst ?? ''].some((a) => a.includes(':'));
  const args = ['-D', '-f', v6 ? 'ipv6' : 'ipv4', '-p', filter.protocol];
  if (filter.origDst !== undefined) args.push('--orig-dst', filter.origDst);
  if (filter.origDstPort !== undefined) args.push('--orig-port-dst', String(filter.origDstPort));
  args.push('--reply-src', filter.replySrc);
  return args;
}

/** In-memory {@link Conntrack} for unit tests: records every call; deletes nothing. */
export class FakeConntrack implements Conntrack {
  /** The filters passed to `deleteFlows`, in call order. */
  readonly calls: ConntrackFlowFilter[] = [];

  async deleteFlows(filter: ConntrackFlowFilter): Promise<number> {
    this.calls.push({ ...filter });
    return 0;
  }
}
