/**
 * API body validation: table-driven good inputs (with the normalised result) and bad inputs
 * (with the message, which must name the field and say what is allowed).
 */
import { isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  MAX_REPLICAS, parseNetworkCreate, parseNodeJoin, parseNodeUpdate, parseScale, parseServiceCreate,
  parseServiceUpdate, validateName,
} from '../../mesh/api/validate.js';
import { isShoalError } from '../../src/errors.js';

/** The InvalidParameter error `fn` throws (fails the test if it throws anything else or nothing). */
function errorOf(fn: () => unknown): { message: string; code: string } {
  try {
    fn();
  } catch (e) {
    if (!isShoalError(e)) throw new Error(`expected a ShoalError, got ${String(e)}`, { cause: e });
    expect(e.kind).toBe('InvalidParameter');
    return { message: e.message, code: e.code };
  }
  throw new Error('expected an error, got none');
}

type Bad = [name: string, body: unknown, message: RegExp];

describe('validateName', () => {
  it.each([
    'a', 'Z', '7', 'web', 'Web-1', 'web_1', 'a-b_c', 'a'.repeat(63),
    '0123456789abcde', // 15 hex digits: not an id
    '0123456789abcdeg', // 16 characters, not all hex
    '0123456789ABCDEF', // ids are lowercase
  ])('accepts %j', (name) => {
    expect(validateName(name, 'service name')).toBe(name);
  });

  it.each<[unknown, RegExp]>([
    [undefined, /^service name is required$/],
    [null, /^service name is required$/],
    ['', /^service name is required$/],
    [5, /^service name is required$/],
    [['web'], /^service name is required$/],
    ['-web', /^service name '-web' is invalid: use 1-63 letters, digits, '-' or '_'/],
    ['web-', /^service name 'web-' is invalid/],
    ['_web', /^service name '_web' is invalid/],
    ['a b', /^service name 'a b' is invalid/],
    ['a.b', /^service name 'a.b' is invalid/],
    ['wéb', /^service name 'wéb' is invalid/],
    ['web\n', /^service name 'web\n' is invalid/],
    ['a'.repeat(64), /^service name 'a{64}' is invalid/],
    ['0123456789abcdef', /^service name '0123456789abcdef' looks like an id; choose a name that is not 16 hex digits$/],
  ])('refuses %j', (name, message) => {
    expect(errorOf(() => validateName(name, 'service name')).message).toMatch(message);
  });

  it('names what it was validating', () => {
    expect(errorOf(() => validateName('a b', 'network name')).message).toMatch(/^network name /);
  });
});

describe('parseNetworkCreate', () => {
  it.each<[string, unknown, unknown]>([
    ['defaults', { name: 'app' }, { name: 'app', driver: 'overlay', ipv6: false, options: {}, labels: {} }],
    ['every field', {
      name: 'app', driver: 'bridge', subnet: '10.1.0.0/24', gateway: '10.1.0.254', ipv6: true, subnetV6: 'fd00:1::/64',
      gatewayV6: 'fd00:1::1', options: { mtu: '1400' }, labels: { team: 'a' },
    }, {
      name: 'app', driver: 'bridge', subnet: '10.1.0.0/24', gateway: '10.1.0.254', ipv6: true, subnetV6: 'fd00:1::/64',
      gatewayV6: 'fd00:1::1', options: { mtu: '1400' }, labels: { team: 'a' },
    }],
    ['a v6 subnet turns ipv6 on', { name: 'app', subnetV6: 'fd00:2::/64' }, { name: 'app', driver: 'overlay', ipv6: true, subnetV6: 'fd00:2::/64', options: {}, labels: {} }],
    ['ipv6 without a subnet (assigned from the pool)', { name: 'app', ipv6: true }, { name: 'app', driver: 'overlay', ipv6: true, options: {}, labels: {} }],
    ['macvlan with a parent', { name: 'lan', driver: 'macvlan', options: { parent: 'eth0' } }, { name: 'lan', driver: 'macvlan', ipv6: false, options: { parent: 'eth0' }, labels: {} }],
    ['smallest mtu', { name: 'app', options: { mtu: '1280' } }, { name: 'app', driver: 'overlay', ipv6: false, options: { mtu: '1280' }, labels: {} }],
    ['largest mtu', { name: 'app', options: { mtu: '9000' } }, { name: 'app', driver: 'overlay', ipv6: false, options: { mtu: '9000' }, labels: {} }],
    ['every option a bridge reads', { name: 'b', driver: 'bridge', options: { mtu: '1400', 'dns.ttl': '5' } }, { name: 'b', driver: 'bridge', ipv6: false, options: { mtu: '1400', 'dns.ttl': '5' }, labels: {} }],
    ['every option a macvlan reads', { name: 'm', driver: 'macvlan', options: { parent: 'eth0', mtu: '1400', 'dns.ttl': '0' } }, { name: 'm', driver: 'macvlan', ipv6: false, options: { parent: 'eth0', mtu: '1400', 'dns.ttl': '0' }, labels: {} }],
    ['internal and attachable', { name: 'app', internal: true, attachable: true }, { name: 'app', driver: 'overlay', ipv6: false, options: {}, labels: {}, internal: true, attachable: true }],
    ['internal false is no flag', { name: 'app', internal: false, attachable: false }, { name: 'app', driver: 'overlay', ipv6: false, options: {}, labels: {} }],
    ['an internal bridge', { name: 'app', driver: 'bridge', internal: true }, { name: 'app', driver: 'bridge', ipv6: false, options: {}, labels: {}, internal: true }],
  ])('accepts %s', (_name, body, want) => {
    expect(parseNetworkCreate(body)).toEqual(want);
  });

  const bad: Bad[] = [
    ['null', null, /^network must be a JSON object$/],
    ['an array', [{ name: 'app' }], /^network must be a JSON object$/],
    ['a string', 'app', /^network must be a JSON object$/],
    ['an unknown field', { name: 'app', colour: 'blue' }, /^unknown field 'colour' in network \(allowed: name, driver, subnet, gateway, ipv6, subnetV6, gatewayV6, options, labels, internal, attachable\)$/],
    ['no name', {}, /^network name is required$/],
    ['a bad name', { name: 'my net' }, /^network name 'my net' is invalid/],
    ['an id-like name', { name: 'deadbeefdeadbeef' }, /^network name 'deadbeefdeadbeef' looks like an id/],
    ['the reserved name', { name: 'ingress' }, /^network name 'ingress' is reserved/],
    ['an unknown driver', { name: 'app', driver: 'token-ring' }, /^network\.driver must be one of bridge, overlay, macvlan, got 'token-ring'$/],
    ['a driver that is not a string', { name: 'app', driver: 1 }, /^network\.driver must be a string$/],
    ['macvlan without parent', { name: 'app', driver: 'macvlan' }, /^macvlan network needs a parent interface: -o parent=<interface>$/],
    ['a subnet that is not a string', { name: 'app', subnet: 10 }, /^network\.subnet must be a string$/],
    ['a gateway without a subnet', { name: 'app', gateway: '10.0.0.1' }, /^network\.gateway needs network\.subnet/],
    ['a v6 gateway without a v6 subnet', { name: 'app', gatewayV6: 'fd00::1' }, /^network\.gatewayV6 needs network\.subnetV6$/],
    ['ipv6 not a boolean', { name: 'app', ipv6: 'yes' }, /^network\.ipv6 must be true or false$/],
    ['options not an object', { name: 'app', options: ['mtu=1400'] }, /^network\.options must be a JSON object$/],
    ['an option value not a string', { name: 'app', options: { mtu: 1400 } }, /^network\.options\.mtu must be a string$/],
    ['an empty option key', { name: 'app', options: { '': 'x' } }, /^network\.options has an empty or over-long key$/],
    ['labels not an object', { name: 'app', labels: 'team=a' }, /^network\.labels must be a JSON object$/],
    ['a label value not a string', { name: 'app', labels: { n: 1 } }, /^network\.labels\.n must be a string$/],
    ['an over-long label key', { name: 'app', labels: { ['k'.repeat(257)]: 'v' } }, /^network\.labels has an empty or over-long key$/],
    ['mtu too small', { name: 'app', options: { mtu: '1279' } }, /^network option mtu must be an integer from 1280 to 9000, got '1279'$/],
    ['mtu too large', { name: 'app', options: { mtu: '9001' } }, /^network option mtu must be an integer from 1280 to 9000, got '9001'$/],
    ['mtu not a number', { name: 'app', options: { mtu: 'big' } }, /^network option mtu .* got 'big'$/],
    ['mtu not an integer', { name: 'app', options: { mtu: '1400.5' } }, /^network option mtu .* got '1400.5'$/],
    ['an option no driver reads', { name: 'app', options: { foo: 'bar' } }, /^network option 'foo' is not an option of the overlay driver \(known: mtu, dns\.ttl\)$/],
    ['parent on a bridge', { name: 'app', driver: 'bridge', options: { parent: 'eth0' } }, /^network option 'parent' is not an option of the bridge driver \(known: mtu, dns\.ttl\)$/],
    ['Docker\'s mtu option', { name: 'app', options: { 'com.docker.network.driver.mtu': '1400' } }, /^network option 'com\.docker\.network\.driver\.mtu' is not an option of the overlay driver \(known: mtu, dns\.ttl\); Docker's com\.docker\.network\.driver\.mtu is mtu here$/],
    ['a Docker bridge option', { name: 'app', driver: 'bridge', options: { 'com.docker.network.bridge.name': 'br0' } }, /^network option 'com\.docker\.network\.bridge\.name' is not an option of the bridge driver/],
    ['a macvlan option Shoal does not read', { name: 'app', driver: 'macvlan', options: { parent: 'eth0', macvlan_mode: 'bridge' } }, /known: parent, mtu, dns\.ttl\)$/],
    ['internal not a boolean', { name: 'app', internal: 'yes' }, /^network\.internal must be true or false$/],
    ['attachable not a boolean', { name: 'app', attachable: 1 }, /^network\.attachable must be true or false$/],
    ['an internal macvlan', { name: 'app', driver: 'macvlan', internal: true, options: { parent: 'eth0' } }, /^--internal applies to bridge and overlay networks/],
  ];
  it.each(bad)('refuses %s', (_name, body, message) => {
    expect(errorOf(() => parseNetworkCreate(body)).message).toMatch(message);
  });

  it('refuses encrypted as not supported yet (NotImplemented), on every driver', () => {
    for (const driver of ['overlay', 'bridge']) {
      let err: unknown;
      try { parseNetworkCreate({ name: 'app', driver, options: { encrypted: '' } }); } catch (e) { err = e; }
      expect(isShoalError(err) && err.kind).toBe('NotImplemented');
      expect(isShoalError(err) && err.message).toMatch(/^network option encrypted is not supported yet/);
    }
  });

  it('gives unknown fields and options their own codes', () => {
    expect(errorOf(() => parseNetworkCreate({ name: 'app', options: { x: '1' } })).code).toBe('SHOAL_ERR_UNKNOWN_OPTION');
    expect(errorOf(() => parseNetworkCreate({ name: 'app', colour: 1 })).code).toBe('SHOAL_ERR_UNKNOWN_FIELD');
    expect(errorOf(() => parseNetworkCreate({})).code).toBe('SHOAL_ERR_INVALID_PARAMETER');
  });
});

const CMD = ['sleep', '600'];

describe('parseServiceCreate', () => {
  it('fills in defaults', () => {
    expect(parseServiceCreate({ name: 'web', command: CMD })).toEqual({
      name: 'web', replicas: 1, endpointMode: 'vip', ports: [], networks: [], command: CMD, env: {}, labels: {},
    });
  });

  it('accepts every field and normalises ports, networks and the health check', () => {
    const s = parseServiceCreate({
      name: 'web', replicas: 3, endpointMode: 'vip', command: ['node', 'server.js'], env: { PORT: '80' }, labels: { tier: 'front' },
      ports: [{ target: 80 }, { target: 53, published: 5353, protocol: 'udp', mode: 'host', name: 'dns' }],
      networks: ['app', { network: 'back', aliases: ['api', 'api-v2'] }],
      healthCheck: { type: 'http', port: 80 },
    });
    expect(s).toEqual({
      name: 'web', replicas: 3, endpointMode: 'vip', command: ['node', 'server.js'], env: { PORT: '80' }, labels: { tier: 'front' },
      ports: [
        { target: 80, published: 0, protocol: 'tcp', mode: 'ingress' },
        { target: 53, published: 5353, protocol: 'udp', mode: 'host', name: 'dns' },
      ],
      networks: [{ network: 'app', aliases: [] }, { network: 'back', aliases: ['api', 'api-v2'] }],
      healthCheck: { type: 'http', port: 80, path: '/', intervalMs: 5000, timeoutMs: 2000, retries: 3, startPeriodMs: 0 },
    });
  });

  it.each<[string, Record<string, unknown>, (s: ReturnType<typeof parseServiceCreate>) => unknown, unknown]>([
    ['replicas 0', { replicas: 0 }, (s) => s.replicas, 0],
    ['replicas at the maximum', { replicas: MAX_REPLICAS }, (s) => s.replicas, MAX_REPLICAS],
    ['dnsrr with host ports', { endpointMode: 'dnsrr', ports: [{ target: 80, published: 8080, mode: 'host' }] }, (s) => s.endpointMode, 'dnsrr'],
    ['the same published port on tcp and udp', { ports: [{ target: 53, published: 53 }, { target: 53, published: 53, protocol: 'udp' }] }, (s) => s.ports.length, 2],
    ['several unpublished ports', { ports: [{ target: 80 }, { target: 81 }] }, (s) => s.ports.map((p) => p.published), [0, 0]],
    ['a health check of type none without port', { healthCheck: { type: 'none' } }, (s) => s.healthCheck, { type: 'none', intervalMs: 5000, timeoutMs: 2000, retries: 3, startPeriodMs: 0 }],
    ['a tcp health check with timings', { healthCheck: { port: 80, intervalMs: 100, timeoutMs: 10, retries: 100, startPeriodMs: 0 } }, (s) => s.healthCheck,
      { type: 'tcp', port: 80, intervalMs: 100, timeoutMs: 10, retries: 100, startPeriodMs: 0 }],
    ['an http check with a path', { healthCheck: { type: 'http', port: 8080, path: '/healthz' } }, (s) => s.healthCheck?.path, '/healthz'],
  ])('accepts %s', (_name, extra, pick, want) => {
    expect(pick(parseServiceCreate({ name: 'web', command: CMD, ...extra }))).toEqual(want);
  });

  const svc = (extra: Record<string, unknown>): Record<string, unknown> => ({ name: 'web', command: CMD, ...extra });
  const bad: Bad[] = [
    ['null', null, /^service must be a JSON object$/],
    ['an unknown field', svc({ image: 'nginx' }), /^unknown field 'image' in service \(allowed: name, replicas,/],
    ['no name', { command: CMD }, /^service name is required$/],
    ['a bad name', svc({ name: 'web!' }), /^service name 'web!' is invalid/],
    ['replicas below 0', svc({ replicas: -1 }), /^service\.replicas must be between 0 and 1000, got -1$/],
    ['replicas above the maximum', svc({ replicas: MAX_REPLICAS + 1 }), /^service\.replicas must be between 0 and 1000, got 1001$/],
    ['fractional replicas', svc({ replicas: 1.5 }), /^service\.replicas must be an integer$/],
    ['replicas as a string', svc({ replicas: '3' }), /^service\.replicas must be an integer$/],
    ['an unknown endpoint mode', svc({ endpointMode: 'magic' }), /^service\.endpointMode must be one of vip, dnsrr, got 'magic'$/],
    ['ports not a list', svc({ ports: { target: 80 } }), /^service\.ports must be a list$/],
    ['a port that is not an object', svc({ ports: [80] }), /^ports\[0\] must be a JSON object$/],
    ['a port without target', svc({ ports: [{ target: 80 }, { published: 8080 }] }), /^ports\[1\]\.target is required/],
    ['a port target out of range', svc({ ports: [{ target: 0 }] }), /^ports\[0\]\.target must be between 1 and 65535, got 0$/],
    ['a published port out of range', svc({ ports: [{ target: 80, published: 65536 }] }), /^ports\[0\]\.published must be between 0 and 65535, got 65536$/],
    ['a port with an unknown field', svc({ ports: [{ target: 80, host: 'x' }] }), /^unknown field 'host' in ports\[0\]/],
    ['an unknown protocol', svc({ ports: [{ target: 80, protocol: 'sctp' }] }), /^ports\[0\]\.protocol must be one of tcp, udp, got 'sctp'$/],
    ['an unknown publish mode', svc({ ports: [{ target: 80, mode: 'nat' }] }), /^ports\[0\]\.mode must be one of ingress, host, got 'nat'$/],
    ['host mode without a published port', svc({ ports: [{ target: 80, mode: 'host' }] }), /^ports\[0\]: host-mode ports need an explicit published port$/],
    ['a bad port name', svc({ ports: [{ target: 80, name: 'HTTP' }] }), /^ports\[0\]\.name 'HTTP' is invalid/],
    ['an over-long port name', svc({ ports: [{ target: 80, name: 'a'.repeat(16) }] }), /^ports\[0\]\.name 'a{16}' is invalid/],
    ['a published port twice', svc({ ports: [{ target: 80, published: 8080 }, { target: 81, published: 8080, protocol: 'tcp' }] }), /^published port 8080\/tcp is listed twice$/],
    ['networks not a list', svc({ networks: 'app' }), /^service\.networks must be a list$/],
    ['an empty network', svc({ networks: [''] }), /^networks\[0\] is empty$/],
    ['a network that is neither string nor object', svc({ networks: [7] }), /^networks\[0\] must be a JSON object$/],
    ['a network object without network', svc({ networks: ['a', { aliases: [] }] }), /^networks\[1\]\.network is required$/],
    ['a network object with an unknown field', svc({ networks: [{ network: 'a', alias: 'x' }] }), /^unknown field 'alias' in networks\[0\]/],
    ['aliases not a list', svc({ networks: [{ network: 'a', aliases: 'x' }] }), /^networks\[0\]\.aliases must be a list of names$/],
    ['a bad alias', svc({ networks: [{ network: 'a', aliases: ['ok', 'no way'] }] }), /^networks\[0\] alias 'no way' is invalid/],
    ['a network listed twice', svc({ networks: ['app', { network: 'app' }] }), /^network 'app' is listed twice$/],
    ['no command', { name: 'web' }, /^service\.command is required/],
    ['an empty command', svc({ command: [] }), /^service\.command is required/],
    ['a command that is a string', svc({ command: 'sleep 600' }), /^service\.command is required/],
    ['a command argument that is not a string', svc({ command: ['sleep', 600] }), /^service\.command\[1\] must be a string$/],
    ['env not an object', svc({ env: ['A=1'] }), /^service\.env must be a JSON object$/],
    ['an env value not a string', svc({ env: { A: 1 } }), /^service\.env\.A must be a string$/],
    ['labels not an object', svc({ labels: null }), /^service\.labels must be a JSON object$/],
    ['a health check that is not an object', svc({ healthCheck: 'tcp' }), /^healthCheck must be a JSON object$/],
    ['a health check with an unknown field', svc({ healthCheck: { port: 80, every: 5 } }), /^unknown field 'every' in healthCheck/],
    ['an unknown health check type', svc({ healthCheck: { type: 'udp', port: 53 } }), /^healthCheck\.type must be one of tcp, http, none, got 'udp'$/],
    ['a tcp check without port', svc({ healthCheck: { type: 'tcp' } }), /^healthCheck\.port is required for a tcp check$/],
    ['an http check without port', svc({ healthCheck: { type: 'http', path: '/' } }), /^healthCheck\.port is required for a http check$/],
    ['a check interval too short', svc({ healthCheck: { port: 80, intervalMs: 99 } }), /^healthCheck\.intervalMs must be between 100 and 3600000, got 99$/],
    ['a check timeout too short', svc({ healthCheck: { port: 80, timeoutMs: 9 } }), /^healthCheck\.timeoutMs must be between 10 and 600000, got 9$/],
    ['zero retries', svc({ healthCheck: { port: 80, retries: 0 } }), /^healthCheck\.retries must be between 1 and 100, got 0$/],
    ['a negative start period', svc({ healthCheck: { port: 80, startPeriodMs: -1 } }), /^healthCheck\.startPeriodMs must be between 0 and 3600000, got -1$/],
    ['a path on a tcp check', svc({ healthCheck: { port: 80, path: '/' } }), /^healthCheck\.path only applies to http checks$/],
    ['a relative path', svc({ healthCheck: { type: 'http', port: 80, path: 'healthz' } }), /^healthCheck\.path must start with '\/'$/],
    ['dnsrr with an ingress port', svc({ endpointMode: 'dnsrr', ports: [{ target: 80 }] }), /^dnsrr services cannot publish ingress ports/],
  ];
  it.each(bad)('refuses %s', (_name, body, message) => {
    expect(errorOf(() => parseServiceCreate(body)).message).toMatch(message);
  });
});

describe('parseServiceUpdate', () => {
  it.each<[string, unknown, unknown]>([
    ['replicas', { replicas: 3 }, { replicas: 3 }],
    ['replicas 0 with a version', { version: 4, replicas: 0 }, { version: 4, replicas: 0 }],
    ['command', { command: ['sleep', '1'] }, { command: ['sleep', '1'] }],
    ['env cleared', { env: {} }, { env: {} }],
    ['labels', { labels: { a: 'b' } }, { labels: { a: 'b' } }],
    ['ports cleared', { ports: [] }, { ports: [] }],
    ['ports normalised', { ports: [{ target: 80 }] }, { ports: [{ target: 80, published: 0, protocol: 'tcp', mode: 'ingress' }] }],
    ['networks', { networks: ['app'] }, { networks: [{ network: 'app', aliases: [] }] }],
    ['endpoint mode', { endpointMode: 'dnsrr' }, { endpointMode: 'dnsrr' }],
    ['health check', { healthCheck: { type: 'none' } }, { healthCheck: { type: 'none', intervalMs: 5000, timeoutMs: 2000, retries: 3, startPeriodMs: 0 } }],
  ])('accepts %s', (_name, body, want) => {
    expect(parseServiceUpdate(body)).toEqual(want);
  });

  const bad: Bad[] = [
    ['a non-object', 'replicas=3', /^service update must be a JSON object$/],
    ['an empty update', {}, /^service update changes nothing: give at least one field to change$/],
    ['only a version', { version: 3 }, /^service update changes nothing/],
    ['the name (it cannot change)', { name: 'other' }, /^unknown field 'name' in service update \(allowed: version, replicas,/],
    ['an unknown field', { replica: 3 }, /^unknown field 'replica' in service update/],
    ['version 0', { version: 0, replicas: 1 }, /^service update\.version must be between 1 and \d+, got 0$/],
    ['a fractional version', { version: 1.5, replicas: 1 }, /^service update\.version must be an integer$/],
    ['replicas out of range', { replicas: MAX_REPLICAS + 1 }, /^service\.replicas must be between 0 and 1000/],
    ['a bad endpoint mode', { endpointMode: 'rr' }, /^service\.endpointMode must be one of vip, dnsrr, got 'rr'$/],
    ['an empty command', { command: [] }, /^service\.command is required/],
    ['a bad port', { ports: [{ target: 'http' }] }, /^ports\[0\]\.target must be an integer$/],
    ['a bad network list', { networks: ['a', 'a'] }, /^network 'a' is listed twice$/],
    ['a bad env', { env: { A: true } }, /^service\.env\.A must be a string$/],
    ['a bad health check', { healthCheck: { type: 'tcp' } }, /^healthCheck\.port is required/],
  ];
  it.each(bad)('refuses %s', (_name, body, message) => {
    expect(errorOf(() => parseServiceUpdate(body)).message).toMatch(message);
  });
});

describe('parseScale', () => {
  it.each([0, 1, 7, MAX_REPLICAS])('accepts %i', (n) => {
    expect(parseScale({ replicas: n })).toBe(n);
  });

  const bad: Bad[] = [
    ['a bare number', 3, /^scale request must be a JSON object$/],
    ['null', null, /^scale request must be a JSON object$/],
    ['no replicas', {}, /^scale request needs replicas \(0-1000\)$/],
    ['replicas as a string', { replicas: '3' }, /^scale request\.replicas must be an integer$/],
    ['negative replicas', { replicas: -1 }, /^scale request\.replicas must be between 0 and 1000, got -1$/],
    ['too many replicas', { replicas: 1001 }, /^scale request\.replicas must be between 0 and 1000, got 1001$/],
    ['an extra field', { replicas: 2, force: true }, /^unknown field 'force' in scale request \(allowed: replicas\)$/],
  ];
  it.each(bad)('refuses %s', (_name, body, message) => {
    expect(errorOf(() => parseScale(body)).message).toMatch(message);
  });
});

describe('parseNodeUpdate', () => {
  it.each<[string, unknown, unknown]>([
    ['availability', { availability: 'drain' }, { availability: 'drain' }],
    ['each availability', { availability: 'pause' }, { availability: 'pause' }],
    ['labels', { labels: { zone: 'a' } }, { labels: { zone: 'a' } }],
    ['labels cleared', { labels: {} }, { labels: {} }],
    ['both', { availability: 'active', labels: { zone: 'b' } }, { availability: 'active', labels: { zone: 'b' } }],
  ])('accepts %s', (_name, body, want) => {
    expect(parseNodeUpdate(body)).toEqual(want);
  });

  const bad: Bad[] = [
    ['a non-object', [], /^node update must be a JSON object$/],
    ['an empty update', {}, /^node update changes nothing: give availability, labels, labelAdd or labelRm$/],
    ['an unknown availability', { availability: 'off' }, /^node\.availability must be one of active, drain, pause, got 'off'$/],
    ['availability not a string', { availability: 1 }, /^node\.availability must be a string$/],
    ['labels not an object', { labels: 'zone=a' }, /^node\.labels must be a JSON object$/],
    ['a label value not a string', { labels: { zone: 1 } }, /^node\.labels\.zone must be a string$/],
    ['an unknown field', { state: 'down' }, /^unknown field 'state' in node update \(allowed: availability, labels, labelAdd, labelRm\)$/],
  ];
  it.each(bad)('refuses %s', (_name, body, message) => {
    expect(errorOf(() => parseNodeUpdate(body)).message).toMatch(message);
  });
});

describe('parseNodeJoin', () => {
  it.each<[string, unknown, unknown]>([
    ['an IPv4 address', { type: 'join', name: 'node-1', address: '192.0.2.10' }, { name: 'node-1', address: '192.0.2.10' }],
    ['an IPv6 address and a revision', { type: 'join', name: 'node-1', address: '2001:db8::1', revision: 42 }, { name: 'node-1', address: '2001:db8::1' }],
    ['the loopback (tests, single host)', { name: 'n', address: '127.0.0.1' }, { name: 'n', address: '127.0.0.1' }],
    ['bound ports (deduplicated, sorted)', { name: 'n', address: '192.0.2.1', boundPorts: ['8080/tcp', '53/udp', '8080/tcp'] }, { name: 'n', address: '192.0.2.1', boundPorts: ['53/udp', '8080/tcp'] }],
  ])('accepts %s', (_name, body, want) => {
    expect(parseNodeJoin(body)).toEqual(want);
  });

  const bad: Bad[] = [
    ['a non-object', 'join', /^join request must be a JSON object$/],
    ['no name', { type: 'join', address: '192.0.2.1' }, /^node name is required$/],
    ['a bad name', { name: 'node 1', address: '192.0.2.1' }, /^node name 'node 1' is invalid/],
    ['no address', { name: 'n1' }, /^join request needs the node's underlay address \(an IPv4 or IPv6 address\)$/],
    ['an empty address', { name: 'n1', address: '' }, /^join request needs the node's underlay address/],
    ['a host name', { name: 'n1', address: 'node1.example' }, /^join request needs the node's underlay address/],
    ['an address that is not a string', { name: 'n1', address: 3232235777 }, /^join request\.address must be a string$/],
    ['bound ports that are not a list', { name: 'n1', address: '192.0.2.1', boundPorts: '80/tcp' }, /^boundPorts must be a list of 'PORT\/tcp\|udp'$/],
    ['a bound port without protocol', { name: 'n1', address: '192.0.2.1', boundPorts: ['80'] }, /^boundPorts: '80' is not 'PORT\/tcp' or 'PORT\/udp'$/],
    ['a bound port out of range', { name: 'n1', address: '192.0.2.1', boundPorts: ['70000/tcp'] }, /^boundPorts: '70000\/tcp' is not/],
    ['a bound port 0', { name: 'n1', address: '192.0.2.1', boundPorts: ['0/udp'] }, /^boundPorts: '0\/udp' is not/],
    ['an unknown field', { name: 'n1', address: '192.0.2.1', token: 'x' }, /^unknown field 'token' in join request \(allowed: type, name, address, revision, boundPorts\)$/],
  ];
  it.each(bad)('refuses %s', (_name, body, message) => {
    expect(errorOf(() => parseNodeJoin(body)).message).toMatch(message);
  });

  // The documented contract is "an IPv4 or IPv6 address": the underlay address becomes a VXLAN
  // tunnel endpoint, so anything that is not an IP address must be refused at the boundary.
  it.each([
    '300.1.1.1', // octet above 255
    '999.999.999.999',
    'node1.example:7946', // host:port, contains ':'
    'http://192.0.2.1', // a URL, contains ':'
    ':', // just a colon
  ])('refuses %j, which is not an IP address', (address) => {
    expect(isIP(address)).toBe(0);
    expect(errorOf(() => parseNodeJoin({ name: 'n1', address })).message).toMatch(/^join request needs the node's underlay address/);
  });
});
