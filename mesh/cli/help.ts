/**
 * `--help` for every command, generated from the command table: the top-level list, a group's
 * subcommands (`shoal service --help`) and one command's usage with every flag
 * (`shoal service create --help`). Nothing here is written by hand per command, so a flag
 * added to the table is documented the moment it exists.
 */
import type { FlagSpec } from './args.js';

/** One command as help and completion see it (`network create`, `events`, `up`). */
export interface CommandInfo {
  /** `group sub` or a single word. */
  name: string;
  usage: string;
  summary?: string;
  flags: readonly FlagSpec[];
  completes?: 'network' | 'service' | 'node';
  /** Flags it takes besides its own (the manager-connection flags), listed under "Global options". */
  globals?: readonly FlagSpec[];
}

/** What a group is about, for the top-level list. */
export const GROUP_SUMMARY: Record<string, string> = {
  network: 'Manage networks',
  node: 'Manage nodes',
  service: 'Manage services',
};

export const HELP_FLAG: FlagSpec = { name: 'help', short: 'h', bool: true, help: 'print this help' };

/** The exit status convention, printed by `shoal --help` and documented in the README. */
export const EXIT_CODES = 'Exit status: 0 success; 1 error (the manager refused, it cannot be reached, or a value is wrong); 2 usage (unknown command or flag, a flag without its value, wrong number of arguments).';

/** `-p, --publish PORT` */
function flagLabel(f: FlagSpec): string {
  const long = `--${f.name}${f.bool ? '' : ` ${f.value ?? f.name.toUpperCase().replace(/-/g, '_')}`}`;
  return f.short ? `-${f.short}, ${long}` : `    ${long}`;
}

function flagHelp(f: FlagSpec): string {
  const text = f.help ?? '';
  const choices = f.choices && !f.choices.every((c) => text.includes(c)) ? ` (${f.choices.join(', ')})` : '';
  return `${text}${choices}${f.repeat && !/repeatable/.test(text) ? ' [repeatable]' : ''}`;
}

/** Two columns: labels padded to the longest (capped so one long flag does not push all). */
function columns(rows: ReadonlyArray<[string, string]>): string {
  const width = Math.min(32, Math.max(0, ...rows.map(([l]) => l.length)));
  return rows.map(([l, h]) => (l.length > width ? `  ${l}\n  ${' '.repeat(width)}   ${h}` : `  ${l.padEnd(width)}   ${h}`).trimEnd()).join('\n');
}

export function flagTable(flags: readonly FlagSpec[]): string {
  return columns(flags.map((f) => [flagLabel(f), flagHelp(f)]));
}

/** `shoal service create --help` */
export function commandHelp(c: CommandInfo): string {
  const usage = c.usage.replace(/^shoal /, '').replace(/\n\s+shoal /g, '\n        shoal ');
  let out = `\nUsage:  shoal ${usage}\n\n${c.summary ?? ''}\n`;
  out += `\nOptions:\n${flagTable([...c.flags, HELP_FLAG])}\n`;
  if (c.globals?.length) out += `\nGlobal options:\n${flagTable(c.globals)}\n`;
  return out;
}

/** `shoal service --help`: the group's subcommands. */
export function groupHelp(group: string, table: readonly CommandInfo[]): string {
  const subs = table.filter((c) => c.name.startsWith(`${group} `));
  return `\nUsage:  shoal ${group} COMMAND\n\n${GROUP_SUMMARY[group] ?? ''}\n\nCommands:\n${columns(subs.map((c) => [c.name.slice(group.length + 1), c.summary ?? '']))}\n\nRun 'shoal ${group} COMMAND --help' for more information on a command.\n`;
}

/** `shoal --help` */
export function topHelp(table: readonly CommandInfo[], globals: readonly FlagSpec[]): string {
  const groups = [...new Set(table.filter((c) => c.name.includes(' ')).map((c) => c.name.split(' ')[0] as string))].sort();
  const singles = table.filter((c) => !c.name.includes(' '));
  return `\nUsage:  shoal [OPTIONS] COMMAND

A Swarm-style service discovery and L4 routing mesh for Linux.

Management commands:
${columns(groups.map((g) => [g, GROUP_SUMMARY[g] ?? '']))}

Commands:
${columns(singles.map((c) => [c.name, c.summary ?? '']))}

Global options:
${flagTable([...globals, { name: 'version', short: 'v', bool: true, help: 'print the version' }, HELP_FLAG])}

${EXIT_CODES}
Run 'shoal COMMAND --help' for more information on a command.
`;
}

/**
 * True when `argv` asks for help: `--help` or `-h` before any `--`, not as some flag's value
 * (and, with `stopAtArgument`, before the first argument: after it the words are the task's).
 */
export function wantsHelp(argv: readonly string[], flags: readonly FlagSpec[], stopAtArgument = false): boolean {
  const valued = new Set(flags.filter((f) => !f.bool).flatMap((f) => [`--${f.name}`, ...(f.short ? [`-${f.short}`] : [])]));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
    if (valued.has(a)) i++;
    else if (stopAtArgument && !a.startsWith('-')) return false;
  }
  return false;
}
