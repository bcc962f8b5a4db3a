/**
 * What the kernel-lab scripts share: one `ok - <id>: ...` / `not ok - <id>: ...` line per
 * check with the seconds since start, assertions, and running a tool to completion.
 * test/helpers/kernel-lab.ts reads these lines on the host.
 */
import { spawn } from 'node:child_process';

let failures = 0;
const t0 = performance.now();

/** Seconds since the script started, one decimal. */
export const secs = (): string => ((performance.now() - t0) / 1000).toFixed(1);

/** How many checks failed so far. */
export const failedChecks = (): number => failures;

/** Runs one check; `fn` returns what to print after `ok - <id>: `, or throws what failed. */
export async function check(id: string, fn: () => Promise<string>): Promise<void> {
  try {
    console.log(`ok - ${id}: ${await fn()} [${secs()}s]`);
  } catch (e) {
    failures++;
    console.log(`not ok - ${id}: ${e instanceof Error ? e.message : String(e)} [${secs()}s]`);
  }
}

export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

/** Runs `cmd` to completion; its stdout, or an error with its exit code and stderr. */
export function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err.trim()}`))));
  });
}

/** `ipvsadm -Ln` in netns `netns` as sorted `TCP addr:port sched` / `... -> addr:port Forward Weight` lines. */
export async function ipvsadm(netns: string): Promise<string[]> {
  const text = await run('nsenter', [`--net=/run/netns/${netns}`, 'ipvsadm', '-Ln']);
  const out: string[] = [];
  let svc = '';
  for (const line of text.split('\n')) {
    const s = /^(TCP|UDP|SCTP|FWM)\s+(\S+)\s+(.*\S)\s*$/.exec(line);
    if (s) {
      svc = `${s[1]} ${s[2]} ${s[3]}`;
      out.push(svc);
      continue;
    }
    const d = /^\s+->\s+(\d\S+)\s+(\S+)\s+(\d+)/.exec(line);
    if (d) out.push(`${svc} -> ${d[1]} ${d[2]} ${d[3]}`);
  }
  return out.sort();
}
