/**
 * The API of cluster security (JSON, like routes.ts):
 *
 *   POST /v1/nodes/join {name, csr}       join token: a node certificate (and the trusted CAs)
 *   POST /v1/tokens/rotate {which}        join|manager: a new secret; the old token is refused
 *   GET  /v1/ca                           the CA, a rotation's progress (nodes still on the old CA)
 *   POST /v1/ca/rotate                    starts a CA rotation
 */
import { invalid } from '../../src/errors.js';
import { route, type Route } from '../api/http.js';
import { validateName } from '../api/validate.js';
import type { Manager } from '../manager/index.js';

function fields(body: unknown, allowed: string[], what: string): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid(`${what} must be a JSON object`);
  const o = body as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw invalid(`unknown field '${k}' in ${what} (allowed: ${allowed.join(', ')})`, 'UNKNOWN_FIELD');
  return o;
}

/** `POST /v1/nodes/join`: served to the join token only (server.ts authorizes it apart). */
export const JOIN_PATH = '/v1/nodes/join';

/** The join route (a node certificate for a certificate request). */
export function joinRoute(m: Manager): Route {
  return route('POST', JOIN_PATH, async (r) => {
    const o = fields(r.body, ['name', 'csr'], 'join request');
    const name = validateName(o['name'], 'node name');
    return { status: 201, body: await m.security.joinCertificate(name, o['csr']) };
  });
}

/** The operator routes (manager token): token rotation, CA status and rotation. */
export function securityRoutes(m: Manager): Route[] {
  return [
    route('POST', '/v1/tokens/rotate', async (r) => {
      const which = fields(r.body, ['which'], 'token rotation')['which'];
      if (which !== 'join' && which !== 'manager') throw invalid(`which token to rotate: 'join' or 'manager', got '${String(which)}'`);
      return { body: { which, token: await m.security.rotateToken(which) } };
    }),
    route('GET', '/v1/ca', async () => ({ body: await m.security.caStatus() })),
    route('POST', '/v1/ca/rotate', async (r) => {
      if (r.body !== undefined) throw invalid('this request takes no body');
      return { body: await m.security.rotateCa() };
    }),
  ];
}
