/** Turning a handler result into the bytes the server sends. */
import type { DnsRequest, HandlerResult } from './handler.js';
import { DROP } from './wire/constants.js';
import { rcodeResponse, truncateToFit } from './wire/response.js';

/**
 * The message to send for `result`, or undefined to send nothing: a response code becomes a
 * minimal response; a UDP response larger than the client accepts is truncated with TC set.
 */
export function toWire(req: DnsRequest, result: HandlerResult): Buffer | undefined {
  if (typeof result === 'number') {
    return result === DROP ? undefined : rcodeResponse(req.msg, req.query, result, req.udpPayloadSize);
  }
  const w = result.wire;
  return req.transport === 'udp' && w.length > req.maxSize ? truncateToFit(w, req.maxSize) : w;
}
