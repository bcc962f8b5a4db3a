/**
 * Counts every query that passed hygiene: network, type, rcode, latency and records served.
 * Sits right after hygiene so it times everything after it, answers and forwarding alike;
 * hygiene counts its own rejections.
 */
import { performance } from 'node:perf_hooks';
import { isPending, type DnsRequest, type HandlerResult, type Plugin } from '../../handler.js';
import type { DnsMetrics } from '../../metrics.js';

/** The metrics plugin. */
export function metricsPlugin(m: DnsMetrics): Plugin {
  const record = (req: DnsRequest, r: HandlerResult, start: number): void => {
    const seconds = (performance.now() - start) / 1000;
    if (typeof r === 'number') m.query(req.scope.label, req.query?.qtype ?? 0, r, seconds, 0);
    else m.query(req.scope.label, req.query?.qtype ?? 0, r.rcode, seconds, r.answers);
  };
  return (next) => (req) => {
    const start = performance.now();
    const r = next(req);
    if (isPending(r)) {
      return r.then((v) => {
        record(req, v, start);
        return v;
      });
    }
    record(req, r, start);
    return r;
  };
}
