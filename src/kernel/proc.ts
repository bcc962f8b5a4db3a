/** Reading /proc about processes. */
import { readFileSync } from 'node:fs';

/**
 * Field 22 of /proc/PID/stat (start time in clock ticks since boot): a pid plus this names one
 * process, so a record of "pid N" is not mistaken for a later process that got the same pid.
 * Undefined when the process is gone.
 */
export function procStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After the ")" that ends the command name (which may hold spaces and parentheses).
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}
