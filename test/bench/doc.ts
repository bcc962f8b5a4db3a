/**
 * The benchmarks' result files (docs/bench-*.md): one section per machine, between
 * `<!-- MARK:host:machine -->` and `<!-- /MARK -->`, replaced on each run, appended when new.
 */
import { readFile, writeFile } from 'node:fs/promises';

/** Writes `section` (which starts with `key` and ends with `end`) into `path`; `header` starts a new file. */
export async function writeSection(path: string, key: string, end: string, section: string, header: string): Promise<void> {
  let doc: string;
  try {
    doc = await readFile(path, 'utf8');
  } catch {
    doc = header;
  }
  const start = doc.indexOf(key);
  const stop = start < 0 ? -1 : doc.indexOf(end, start);
  doc = start >= 0 && stop >= 0
    ? doc.slice(0, start) + section + doc.slice(stop + end.length)
    : `${doc.trimEnd()}\n\n${section}\n`;
  await writeFile(path, doc);
  console.log(`wrote ${path}`);
}
