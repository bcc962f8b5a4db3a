/**
 * CLI argument parsing: flag forms, booleans, repeats, `--`, and the errors a typo gets;
 * `k=v` lists; every `-p` form.
 */
import { describe, expect, it } from 'vitest';
import { all, isSet, keyValues, one, parseArgs, parsePublish, type FlagSpec } from '../../mesh/cli/args.js';
import { isShoalError } from '../../src/errors.js';

const SPECS: FlagSpec[] = [
  { name: 'replicas', short: 'r' },
  { name: 'name' },
  { name: 'detach', short: 'd', bool: true },
  { name: 'quiet', short: 'q', bool: true },
  { name: 'env', short: 'e', repeat: true },
  { name: 'publish', short: 'p', repeat: true },
  { name: 'label', short: 'l', repeat: true },
];

/** The parse as plain data: flags as an object, for toEqual. */
function parsed(argv: string[]): { flags: Record<string, string[]>; positional: string[]; rest: string[] } {
  const p = parseArgs(argv, SPECS);
  return { flags: Object.fromEntries(p.flags), positional: p.positional, rest: p.rest };
}

/** The message of the InvalidParameter error `fn` throws (fails if it throws anything else). */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(isShoalError(e), `not a ShoalError: ${String(e)}`).toBe(true);
    if (isShoalError(e)) {
      expect(e.kind).toBe('InvalidParameter');
      return e.message;
    }
  }
  throw new Error('expected an error, got none');
}

describe('parseArgs', () => {
  const good: Array<[string, string[], ReturnType<typeof parsed>]> = [
    ['no arguments', [], { flags: {}, positional: [], rest: [] }],
    ['positionals only', ['service', 'ls'], { flags: {}, positional: ['service', 'ls'], rest: [] }],
    ['--flag value', ['--replicas', '3'], { flags: { replicas: ['3'] }, positional: [], rest: [] }],
    ['--flag=value', ['--replicas=3'], { flags: { replicas: ['3'] }, positional: [], rest: [] }],
    ['--flag=value keeps later =', ['--label=a=b=c'], { flags: { label: ['a=b=c'] }, positional: [], rest: [] }],
    ['--flag= gives an empty value', ['--name='], { flags: { name: [''] }, positional: [], rest: [] }],
    ['-f value', ['-r', '3'], { flags: { replicas: ['3'] }, positional: [], rest: [] }],
    ['-fvalue', ['-r3'], { flags: { replicas: ['3'] }, positional: [], rest: [] }],
    ['a value that looks like a negative number', ['--replicas', '-1'], { flags: { replicas: ['-1'] }, positional: [], rest: [] }],
    ['a negative number is positional', ['-5', 'x'], { flags: {}, positional: ['-5', 'x'], rest: [] }],
    ['a lone dash is positional', ['-'], { flags: {}, positional: ['-'], rest: [] }],
    ['bool long', ['--detach'], { flags: { detach: ['true'] }, positional: [], rest: [] }],
    ['bool short', ['-d'], { flags: { detach: ['true'] }, positional: [], rest: [] }],
    ['bool does not take the next word', ['--detach', 'web'], { flags: { detach: ['true'] }, positional: ['web'], rest: [] }],
    ['bool =true', ['--detach=true'], { flags: { detach: ['true'] }, positional: [], rest: [] }],
    ['bool =false', ['--detach=false'], { flags: { detach: ['false'] }, positional: [], rest: [] }],
    ['repeatable flag collects values in order, long and short mixed', ['-e', 'A=1', '--env', 'B=2', '--env=C=3', '-eD=4'],
      { flags: { env: ['A=1', 'B=2', 'C=3', 'D=4'] }, positional: [], rest: [] }],
    ['flags and positionals interleaved', ['create', '--name', 'web', 'extra', '-p', '80', '-p', '8080:81', '-q'],
      { flags: { name: ['web'], publish: ['80', '8080:81'], quiet: ['true'] }, positional: ['create', 'extra'], rest: [] }],
    ['everything after -- is rest, verbatim', ['--name', 'web', '--', 'sleep', '--replicas', '-d', '--', 'x'],
      { flags: { name: ['web'] }, positional: [], rest: ['sleep', '--replicas', '-d', '--', 'x'] }],
    ['-- at the end gives an empty rest', ['web', '--'], { flags: {}, positional: ['web'], rest: [] }],
    ['-- right after a bool flag', ['-d', '--', 'echo'], { flags: { detach: ['true'] }, positional: [], rest: ['echo'] }],
  ];
  it.each(good)('%s', (_name, argv, want) => {
    expect(parsed(argv)).toEqual(want);
  });

  const bad: Array<[string, string[], string]> = [
    ['unknown long flag', ['--colour', 'blue'], 'unknown flag --colour'],
    ['unknown long flag with =', ['--colour=blue'], 'unknown flag --colour'],
    ['unknown short flag', ['-x'], 'unknown flag -x'],
    ['unknown short flag with a value', ['-xyz'], 'unknown flag -xyz'],
    ['missing value at the end', ['--replicas'], 'flag --replicas needs a value'],
    ['missing value (short)', ['web', '-r'], 'flag --replicas needs a value'],
    ['missing value before --', ['--name', '--', 'sleep'], 'flag --name needs a value'],
    ['value on a bool flag', ['--detach=yes'], 'flag --detach takes no value'],
    ['value glued to a short bool flag', ['-dx'], 'flag --detach takes no value'],
    ['non-repeatable flag given twice', ['--replicas', '1', '--replicas', '2'], 'flag --replicas given twice'],
    ['non-repeatable flag given twice, long and short', ['-r', '1', '--replicas=2'], 'flag --replicas given twice'],
    ['bool flag given twice', ['-d', '--detach'], 'flag --detach given twice'],
  ];
  it.each(bad)('refuses %s', (_name, argv, message) => {
    expect(errorOf(() => parseArgs(argv, SPECS))).toBe(message);
  });

  it('one/all/isSet read the parsed flags', () => {
    const p = parseArgs(['-e', 'A=1', '-e', 'B=2', '--name', 'web', '-d', '--quiet=false'], SPECS);
    expect(one(p, 'name')).toBe('web');
    expect(one(p, 'replicas')).toBeUndefined();
    expect(one(p, 'env')).toBe('A=1');
    expect(all(p, 'env')).toEqual(['A=1', 'B=2']);
    expect(all(p, 'publish')).toEqual([]);
    expect(isSet(p, 'detach')).toBe(true);
    expect(isSet(p, 'quiet')).toBe(false);
    expect(isSet(p, 'name')).toBe(false);
  });

  it('does not mutate argv', () => {
    const argv = ['--name', 'web', '--', 'sleep', '1'];
    const copy = [...argv];
    parseArgs(argv, SPECS);
    expect(argv).toEqual(copy);
  });
});

describe('keyValues', () => {
  it.each<[string[], Record<string, string>]>([
    [[], {}],
    [['a=1'], { a: '1' }],
    [['a=1', 'b=2'], { a: '1', b: '2' }],
    [['url=http://x/?q=1'], { url: 'http://x/?q=1' }],
    [['empty='], { empty: '' }],
    [['a=1', 'a=2'], { a: '2' }],
    [['with space=v v'], { 'with space': 'v v' }],
  ])('%j -> %j', (list, want) => {
    expect(keyValues(list, 'label')).toEqual(want);
  });

  it.each<[string, string]>([
    ['novalue', "label 'novalue' must be KEY=VALUE"],
    ['=v', "label '=v' must be KEY=VALUE"],
    ['', "label '' must be KEY=VALUE"],
  ])('refuses %j', (kv, message) => {
    expect(errorOf(() => keyValues(['ok=1', kv], 'label'))).toBe(message);
  });

  it('names what was being parsed in the error', () => {
    expect(errorOf(() => keyValues(['x'], 'env variable'))).toMatch(/^env variable 'x'/);
  });
});

describe('parsePublish', () => {
  it.each<[string, Record<string, string | number>]>([
    ['8080:80', { published: 8080, target: 80 }],
    ['8080:80/tcp', { published: 8080, target: 80, protocol: 'tcp' }],
    ['5353:53/udp', { published: 5353, target: 53, protocol: 'udp' }],
    ['80', { target: 80 }],
    ['53/udp', { target: 53, protocol: 'udp' }],
    ['1:65535', { published: 1, target: 65535 }],
    ['mode=host,published=8081,target=80,protocol=udp,name=http', { mode: 'host', published: 8081, target: 80, protocol: 'udp', name: 'http' }],
    ['target=80', { target: 80 }],
    ['target=80,published=0', { target: 80, published: 0 }],
    ['published=8080', { published: 8080 }],
    ['mode=ingress,target=443', { mode: 'ingress', target: 443 }],
  ])('%s', (s, want) => {
    expect(parsePublish(s)).toEqual(want);
  });

  it.each<[string, RegExp]>([
    ['', /-p '' is not PUBLISHED:TARGET\[\/PROTOCOL\]/],
    ['http', /-p 'http' is not PUBLISHED:TARGET/],
    [':80', /-p ':80' is not PUBLISHED:TARGET/],
    ['8080:', /-p '8080:' is not PUBLISHED:TARGET/],
    ['8080:80:90', /-p '8080:80:90' is not PUBLISHED:TARGET/],
    ['8080:80/sctp', /-p '8080:80\/sctp' is not PUBLISHED:TARGET/],
    ['8080:80/TCP', /is not PUBLISHED:TARGET/],
    ['-1:80', /is not PUBLISHED:TARGET/],
    ['0:80', /^-p published '0' is not a port number \(1-65535\)$/],
    ['70000:80', /^-p published '70000' is not a port number/],
    ['8080:0', /^-p target '0' is not a port number/],
    ['65536', /^-p target '65536' is not a port number/],
    ['target=0', /^-p target '0' is not a port number/],
    ['target=abc', /^-p target 'abc' is not a port number/],
    ['target=', /^-p target '' is not a port number/],
    ['target=8.5', /^-p target '8.5' is not a port number/],
    ['target=1e3', /^-p target '1e3' is not a port number/],
    ['target=80,published=65536', /^-p published '65536' is not a port number/],
    ['target=80,published=-1', /^-p published '-1' is not a port number/],
    ['target=80,colour=blue', /^-p option 'colour' is unknown \(use mode, published, target, protocol, name\)$/],
    ['target=80,junk', /^port option 'junk' must be KEY=VALUE$/],
    ['target=80,', /^port option '' must be KEY=VALUE$/],
  ])('refuses %j', (s, message) => {
    expect(errorOf(() => parsePublish(s))).toMatch(message);
  });
});
