/**
 * Reads task log files for `shoal service logs`: each file from its start, in chunks; with
 * `follow`, keeps polling for what is appended until cancelled.
 */
import { open } from 'node:fs/promises';

const CHUNK = 32 * 1024;
const POLL_MS = 200;

export interface LogFile { taskId: string; path: string }

/** Streams the files' contents to `send`; calls `end` when done (never, when following). Returns cancel. */
export function streamLogFiles(files: LogFile[], follow: boolean, send: (taskId: string, data: string) => void, end: () => void): () => void {
  let cancelled = false;
  const offsets = new Map(files.map((f) => [f.taskId, 0]));
  let timer: NodeJS.Timeout | undefined;

  const drain = async (f: LogFile): Promise<void> => {
    let fh;
    try {
      fh = await open(f.path, 'r');
    } catch {
      return; // no output yet (or never started)
    }
    try {
      const buf = Buffer.alloc(CHUNK);
      for (;;) {
        if (cancelled) return;
        const pos = offsets.get(f.taskId) ?? 0;
        const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
        if (bytesRead === 0) return;
        // Cut at the last newline so a multi-byte character or a line is not split, unless the chunk has none.
        const nl = buf.lastIndexOf(10, bytesRead - 1);
        const take = nl >= 0 && bytesRead === CHUNK ? nl + 1 : bytesRead;
        offsets.set(f.taskId, pos + take);
        send(f.taskId, buf.toString('utf8', 0, take));
      }
    } finally {
      await fh.close();
    }
  };

  const round = async (): Promise<void> => {
    for (const f of files) await drain(f);
    if (cancelled) return;
    if (!follow) { end(); return; }
    timer = setTimeout(() => { void round(); }, POLL_MS);
  };
  void round();
  return () => {
    cancelled = true;
    if (timer) clearTimeout(timer);
  };
}
