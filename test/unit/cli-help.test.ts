/**
 * The CLI's conventions, without a manager: `--help`/`-h` on every command of the table (every
 * flag listed with a description, exit 0), the exit status of every kind of mistake (2 usage,
 * 1 bad value), `--version`, and the bash completion script run by a real bash.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fullTable, runCli } from '../../mesh/cli/main.js';
import { VERSION } from '../../mesh/version.js';

/** A manager address nothing listens on: commands must fail before they would call it. */
const ENV = { SHOAL_HOST: 'https://127.0.0.1:9', SHOAL_TOKEN: `SHOAL-1-${'a'.repeat(52)}-${'b'.repeat(26)}`, SHOAL_DATA_DIR: '/nonexistent-shoal' };

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await runCli(argv, { out: (s) => { out += s; }, err: (s) => { err += s; }, env: ENV });
  return { code, out, err };
}

const table = fullTable();

describe('--help', () => {
  it('the table has every command, each with a summary', () => {
    const names = table.map((c) => c.name);
    for (const n of ['network create', 'network ls', 'network inspect', 'network rm', 'network prune', 'service create', 'service ls', 'service ps',
      'service logs', 'service inspect', 'service rm', 'service scale', 'service update', 'node ls', 'node inspect', 'node update', 'node rm', 'node prune',
      'info', 'events', 'version', 'completion', 'down', 'join-token', 'up', 'manager', 'agent']) expect(names).toContain(n);
    for (const c of table) expect(c.summary, c.name).toBeTruthy();
  });

  it('every flag of every command has a one-line description', () => {
    const missing = table.flatMap((c) => [...c.flags, ...(c.globals ?? [])].filter((f) => !f.help || f.help.includes('\n')).map((f) => `${c.name} --${f.name}`));
    expect(missing).toEqual([]);
  });

  it.each(table.map((c) => [c.name]))('shoal %s --help lists its usage and every flag', async (name) => {
    const c = table.find((x) => x.name === name);
    for (const help of ['--help', '-h']) {
      const r = await run(...name.split(' '), help);
      expect(r.code, r.err).toBe(0);
      expect(r.err).toBe('');
      expect(r.out).toContain(`Usage:  ${c?.usage.split('\n')[0]}`);
      for (const f of [...(c?.flags ?? []), ...(c?.globals ?? [])]) {
        expect(r.out).toContain(`--${f.name}`);
        expect(r.out).toContain(f.help);
        if (f.short) expect(r.out).toContain(`-${f.short}, --${f.name}`);
      }
      expect(r.out).toContain('-h, --help');
    }
  });

  it('help also comes after other flags, and as `shoal help CMD`', async () => {
    expect((await run('service', 'create', '--name', 'x', '--help')).out).toContain('Usage:  shoal service create [OPTIONS] IMAGE [COMMAND] [ARG...]');
    expect((await run('help', 'service', 'create')).out).toContain('Usage:  shoal service create');
    expect((await run('help', 'network')).out).toContain('Usage:  shoal network COMMAND');
  });

  it('-h after the image or after -- belongs to the task, not to shoal', async () => {
    // Not help: the command runs (and fails to reach the manager, exit 1).
    expect((await run('service', 'create', 'alpine', 'ls', '-h')).code).toBe(1);
    expect((await run('service', 'create', '--', 'ls', '-h')).code).toBe(1);
    // A flag value that is literally -h is a value.
    expect((await run('service', 'create', '--name', '-h', '--', 'true')).code).toBe(1);
  });

  it('group help lists the subcommands with their summaries', async () => {
    for (const g of ['network', 'service', 'node']) {
      const r = await run(g, '--help');
      expect(r.code).toBe(0);
      for (const c of table.filter((x) => x.name.startsWith(`${g} `))) expect(r.out).toMatch(new RegExp(`\\n  ${c.name.slice(g.length + 1)} +${c.summary?.replace(/[()]/g, '\\$&')}`));
    }
  });

  it('top-level help lists every command and the exit status convention', async () => {
    const r = await run('--help');
    expect(r.code).toBe(0);
    for (const c of table.filter((x) => !x.name.includes(' '))) expect(r.out).toContain(`  ${c.name} `);
    expect(r.out).toContain('Exit status: 0 success; 1 error');
    expect(r.out).toContain('2 usage');
  });
});

describe('version', () => {
  it('matches package.json', () => {
    expect(VERSION).toBe((JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version);
  });

  it('--version and -v print it; `version` prints the client and says why the server is unknown', async () => {
    expect(await run('--version')).toEqual({ code: 0, out: `shoal version ${VERSION}\n`, err: '' });
    expect((await run('-v')).out).toBe(`shoal version ${VERSION}\n`);
    const v = await run('version');
    expect(v.code).toBe(0);
    expect(v.out).toMatch(new RegExp(`^Client: shoal ${VERSION.replace(/\./g, '\\.')} \\(node v\\d+`));
    expect(v.out).toMatch(/\nServer: unknown \(cannot reach the manager at https:\/\/127\.0\.0\.1:9/);
  });
});

interface Case { argv: string[]; code: number; err: RegExp }

/** Every mistake one can make without a manager: exit 2 for the shape of the line, 1 for a value. */
const mistakes: Case[] = [
  { argv: [], code: 2, err: /^$/ },
  { argv: ['frobnicate'], code: 2, err: /^shoal: unknown command 'frobnicate' \(see 'shoal --help'\)$/ },
  { argv: ['service'], code: 2, err: /^$/ },
  { argv: ['service', 'frob'], code: 2, err: /^shoal: unknown command 'service frob' \(see 'shoal service --help'\)$/ },
  { argv: ['network', 'ls', '--colour'], code: 2, err: /^shoal: unknown flag --colour \(see 'shoal network ls --help'\)$/ },
  { argv: ['network', 'ls', '-x'], code: 2, err: /unknown flag -x/ },
  { argv: ['network', 'create', '--subnet'], code: 2, err: /flag --subnet needs a value \(see 'shoal network create --help'\)/ },
  { argv: ['network', 'create'], code: 2, err: /expected 1 argument, got 0: usage: shoal network create \[OPTIONS\] NETWORK/ },
  { argv: ['network', 'create', 'a', 'b'], code: 2, err: /expected 1 argument, got 2/ },
  { argv: ['network', 'ls', 'extra'], code: 2, err: /expected 0 arguments, got 1/ },
  { argv: ['network', 'ls', '--internal'], code: 2, err: /unknown flag --internal/ },
  { argv: ['network', 'create', '--internal=yes', 'n'], code: 2, err: /flag --internal takes no value/ },
  { argv: ['service', 'create'], code: 2, err: /service create needs an IMAGE or -- CMD/ },
  { argv: ['service', 'create', '--name', 'x'], code: 2, err: /service create needs an IMAGE or -- CMD/ },
  { argv: ['service', 'create', 'web', '--', 'sleep', '1'], code: 2, err: /give either IMAGE \[COMMAND\] or -- CMD, not 'web -- \.\.\.' \(the service name goes in --name\)/ },
  { argv: ['service', 'create', '--replicas', '1', '--replicas', '2', '--', 'x'], code: 2, err: /flag --replicas given twice/ },
  { argv: ['service', 'rm', '-q', 'web'], code: 2, err: /unknown flag -q/ },
  { argv: ['service', 'logs'], code: 2, err: /expected 1 argument, got 0/ },
  { argv: ['service', 'inspect'], code: 2, err: /missing argument: usage: shoal service inspect/ },
  { argv: ['service', 'ps'], code: 2, err: /missing argument/ },
  { argv: ['service', 'ls', '-q', '--format', '{{.ID}}'], code: 2, err: /--quiet and --format cannot be used together/ },
  { argv: ['node', 'update'], code: 2, err: /expected 1 argument/ },
  { argv: ['completion'], code: 2, err: /expected the shell's name \(bash or zsh\)/ },
  { argv: ['completion', 'fish'], code: 2, err: /completion for 'fish' is not available \(bash, zsh\)/ },
  { argv: ['info', 'extra'], code: 2, err: /expected no arguments, got 'extra'/ },
  { argv: ['version', '--colour'], code: 2, err: /unknown flag --colour \(see 'shoal version --help'\)/ },
  { argv: ['events', '--bogus'], code: 2, err: /unknown flag --bogus \(see 'shoal events --help'\)/ },
  { argv: ['up', '--bogus'], code: 2, err: /unknown flag --bogus \(see 'shoal up --help'\)/ },
  { argv: ['agent', '--name'], code: 2, err: /flag --name needs a value/ },
  // Values: exit 1.
  { argv: ['service', 'ls', '--format', 'yaml'], code: 1, err: /--format must be json, table, or a template such as '\{\{\.Name\}\}' \(got 'yaml'\)/ },
  { argv: ['service', 'ls', '--format', '{{.Nmae}}'], code: 1, err: /there is no field 'Nmae' \(fields: ID, Name, Mode, Replicas, Image, Ports/ },
  { argv: ['network', 'ls', '--format', '{{.Nmae}}'], code: 1, err: /fields: ID, Name, Driver, Scope/ },
  { argv: ['node', 'ls', '--format', 'table {{.Hostnme}}'], code: 1, err: /there is no field 'Hostnme'/ },
  { argv: ['service', 'ps', 'web', '--format', '{{.Nod}}'], code: 1, err: /fields: ID, Name, Image, Node, DesiredState, CurrentState/ },
  { argv: ['service', 'inspect', 'web', '--format', '{{.Spec.Name'], code: 1, err: /is not closed/ },
  { argv: ['service', 'ls', '--filter', 'colour=red'], code: 1, err: /--filter 'colour' is not a filter of service ls \(known: id, name, label, mode\)/ },
  { argv: ['service', 'ps', 'web', '--filter', 'state=running'], code: 1, err: /known: id, name, node, desired-state/ },
  { argv: ['network', 'ls', '-f', 'type=custom'], code: 1, err: /known: id, name, driver, label, scope/ },
  { argv: ['node', 'ls', '--filter', 'role=boss'], code: 1, err: /must be one of manager, worker/ },
  { argv: ['service', 'logs', 'web', '--since', 'yesterday'], code: 1, err: /--since 'yesterday' is neither a duration/ },
  { argv: ['service', 'logs', 'web', '--tail', '-3'], code: 1, err: /--tail must be a whole number \(0 or more\), got '-3'/ },
  { argv: ['service', 'logs', 'web', '--tail', 'ten'], code: 1, err: /--tail must be a whole number/ },
  { argv: ['events', '--since', 'soon'], code: 1, err: /--since 'soon' is neither/ },
  { argv: ['events', '--filter', 'container=x'], code: 1, err: /known: type, event, name, id, service, node, network/ },
  { argv: ['events', '--filter', 'type=volume'], code: 1, err: /must be one of network, service, task, node/ },
  { argv: ['service', 'create', '-p', '80:abc', '--', 'true'], code: 1, err: /-p '80:abc'/ },
  { argv: ['service', 'create', '--replicas', 'x', '--', 'true'], code: 1, err: /--replicas must be a whole number/ },
  { argv: ['network', 'create', '-o', '=x', 'n'], code: 1, err: /-o '=x' must be KEY=VALUE/ },
  { argv: ['join-token'], code: 1, err: /no join token in \/nonexistent-shoal/ },
  { argv: ['down', 'now'], code: 2, err: /expected no arguments, got 'now'/ },
  { argv: ['agent', '--join', 'https://127.0.0.1:9', '--token', 't', '--ingress-subnet', '10.9.0.0/16'], code: 2, err: /--ingress-subnet is not a flag of shoal agent \(only of shoal up and shoal manager\)/ },
  { argv: ['manager', '--isolation', 'none'], code: 2, err: /--isolation is not a flag of shoal manager/ },
  { argv: ['service', 'ls'], code: 1, err: /cannot reach the manager at https:\/\/127\.0\.0\.1:9/ },
];

describe('exit status and messages', () => {
  it.each(mistakes)('$argv -> $code', async (c) => {
    const r = await run(...c.argv);
    expect(r.code, r.err).toBe(c.code);
    expect(r.err.trimEnd()).toMatch(c.err);
    expect(r.err.trim().split('\n').length).toBeLessThanOrEqual(1); // one sentence, never a stack
  });
});

describe('bash completion (a real bash runs the generated script)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-completion-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function complete(line: string): Promise<string[]> {
    const script = join(dir, 'shoal.bash');
    writeFileSync(script, (await run('completion', 'bash')).out);
    const words = line.split(' ');
    const r = spawnSync('bash', ['--norc', '-c', `source ${script}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _shoal; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '' } });
    expect(r.stderr).toBe('');
    return r.stdout.split('\n').filter(Boolean).sort();
  }

  it.each<[string, string[]]>([
    ['shoal ser', ['service']],
    ['shoal n', ['network', 'node']],
    ['shoal ', ['--help', '--version', 'agent', 'ca', 'completion', 'down', 'events', 'info', 'join-token', 'manager', 'network', 'node', 'service', 'token', 'up', 'version']],
    ['shoal service ', ['create', 'inspect', 'logs', 'ls', 'ps', 'rm', 'rollback', 'scale', 'update']],
    ['shoal service l', ['logs', 'ls']],
    ['shoal service create --endpoint-mode ', ['dnsrr', 'vip']],
    ['shoal service create --lb-scheduler w', ['wrr']],
    ['shoal network create -d ', ['bridge', 'macvlan', 'overlay']],
    ['shoal network create --inte', ['--internal']],
    ['shoal service ls --fo', ['--format']],
    ['shoal service ls --format ', ['json', 'table']],
    ['shoal service logs --t', ['--tail', '--timestamps', '--token']],
    ['shoal node update --availability ', ['active', 'drain', 'pause']],
    ['shoal up --lb-dataplane ', ['auto', 'ipvs', 'nftables', 'none']],
    ['shoal events --s', ['--since']],
    ['shoal service create --name ', []], // a free value: nothing to offer
    ['shoal frob --', []],
  ])('%j', async (line, want) => {
    expect(await complete(line)).toEqual(want);
  });

  it('zsh gets the same script through bashcompinit, and a real zsh completes with it', async () => {
    const z = (await run('completion', 'zsh')).out;
    expect(z).toMatch(/^#compdef shoal\n/);
    expect(z).toContain((await run('completion', 'bash')).out);
    const script = join(dir, 'shoal.zsh');
    writeFileSync(script, z);
    // As zsh's _bash_complete calls it: its own (1-based) arrays, COMP_CWORD = CURRENT - 1. zsh's
    // compgen does not filter by prefix (compadd does), so each answer is the whole candidate set.
    const cases: Array<[string[], number, string]> = [
      [['shoal', 'ser'], 1, 'ca network node service token info events version completion down join-token up manager agent --help --version'],
      [['shoal', 'service', 'l'], 2, 'create ls ps logs inspect rm scale update rollback'],
      [['shoal', 'service', 'create', '--endpoint-mode', ''], 4, 'vip dnsrr'],
      [['shoal', 'network', 'ls', '--fo'], 3, '--filter -f --format --quiet -q --host -H --token --data-dir --help -h'],
    ];
    const body = cases.map(([w, c]) => `COMP_WORDS=(${w.map((x) => `'${x}'`).join(' ')}); COMP_CWORD=${c}; _shoal; echo "\${COMPREPLY[@]}"`).join('; ');
    const r = spawnSync('zsh', ['-f', '-c', `source ${script} && print -r -- \${_comps[shoal]} && ${body}`], { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '' } });
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n').filter(Boolean)).toEqual(['_bash_complete -F _shoal', ...cases.map((c) => c[2])]); // registered for shoal
  });
});
