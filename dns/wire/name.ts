/**
 * Domain names on the wire (RFC 1035 3.1, 4.1.4).
 *
 * Three representations meet here:
 * - wire: length-prefixed labels, maybe ending in a compression pointer;
 * - presentation: `web.app.` with `\.`, `\\` and `\DDD` escapes (zone lines, logs);
 * - key: the lookup form used by every map in `dns/`: ASCII-lowercased, no trailing dot,
 *   root is `''`, and only `.` and `\` inside a label are escaped so that one label
 *   `a.b` can never collide with two labels `a` `b`. Bytes >= 0x80 map 1:1 to latin1.
 */
import { MAX_LABEL, MAX_NAME_WIRE } from './constants.js';

/** Pointer hops allowed while following one name: far beyond any legitimate message. */
const MAX_POINTER_HOPS = 64;

/**
 * Where the name starting at `off` ends in the byte stream (after its terminating zero or its
 * first pointer), or -1 if it is malformed: out of bounds, a reserved label type, a pointer
 * that does not point strictly backwards, more than 255 bytes, or a pointer loop.
 * Never throws and never reads outside `[0, end)`.
 */
export function skipName(buf: Uint8Array, off: number, end: number): number {
  let p = off;
  let len = 0;
  let after = -1;
  let hops = 0;
  for (;;) {
    if (p >= end) return -1;
    const b = buf[p] as number;
    if (b === 0) {
      return after >= 0 ? after : p + 1;
    }
    const top = b & 0xc0;
    if (top === 0xc0) {
      if (p + 1 >= end) return -1;
      const target = ((b & 0x3f) << 8) | (buf[p + 1] as number);
      // Backwards-only pointers (plus the hop and length limits) make loops impossible to exploit.
      if (target >= p || ++hops > MAX_POINTER_HOPS) return -1;
      if (after < 0) after = p + 2;
      p = target;
      continue;
    }
    if (top !== 0) return -1;
    len += b + 1;
    if (len + 1 > MAX_NAME_WIRE) return -1;
    p += b + 1;
  }
}

const BACKSLASH = 0x5c;
const DOT = 0x2e;

/**
 * The key (see module doc) of the uncompressed or compressed name at `off`; undefined when
 * malformed. Used off the hot path (cache of upstream answers, decoding); queries build their
 * key in `query.ts` without following pointers.
 */
export function readNameKey(buf: Uint8Array, off: number, end: number): string | undefined {
  return readName(buf, off, end, true);
}

/** The presentation form (`Web.App.`, original case, escaped) of the name at `off`. */
export function readNamePresentation(buf: Uint8Array, off: number, end: number): string | undefined {
  const s = readName(buf, off, end, false);
  if (s === undefined) return undefined;
  return s === '' ? '.' : `${s}.`;
}

function readName(buf: Uint8Array, off: number, end: number, key: boolean): string | undefined {
  if (skipName(buf, off, end) < 0) return undefined;
  const labels: string[] = [];
  let p = off;
  for (;;) {
    const b = buf[p] as number;
    if (b === 0) break;
    if ((b & 0xc0) === 0xc0) {
      p = ((b & 0x3f) << 8) | (buf[p + 1] as number);
      continue;
    }
    let label = '';
    for (let i = p + 1; i <= p + b; i++) {
      let c = buf[i] as number;
      if (key) {
        if (c >= 0x41 && c <= 0x5a) c |= 0x20;
        if (c === DOT || c === BACKSLASH) label += '\\';
        label += String.fromCharCode(c);
      } else if (c === DOT || c === BACKSLASH) {
        label += `\\${String.fromCharCode(c)}`;
      } else if (c <= 0x20 || c >= 0x7f) {
        label += `\\${c.toString().padStart(3, '0')}`;
      } else {
        label += String.fromCharCode(c);
      }
    }
    labels.push(label);
    p += b + 1;
  }
  return labels.join('.');
}

/**
 * Splits a presentation or key name into raw labels (bytes), honouring `\.`, `\\` and `\DDD`.
 * Throws a `RangeError` on an invalid name (empty label, label > 63, name > 255 bytes): it is
 * for names Shoal itself configures, never for bytes from the network.
 */
export function nameLabels(name: string): Uint8Array[] {
  const labels: Uint8Array[] = [];
  if (name === '' || name === '.') return labels;
  const body = name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name;
  let cur: number[] = [];
  let total = 1;
  const flush = (): void => {
    if (cur.length === 0 || cur.length > MAX_LABEL) throw new RangeError(`invalid DNS label in '${name}'`);
    labels.push(Uint8Array.from(cur));
    total += cur.length + 1;
    cur = [];
  };
  for (let i = 0; i < body.length; i++) {
    const c = body.charCodeAt(i);
    if (c === BACKSLASH) {
      const d = body.slice(i + 1, i + 4);
      if (/^\d{3}$/.test(d) && Number(d) < 256) {
        cur.push(Number(d));
        i += 3;
      } else if (i + 1 < body.length) {
        cur.push(body.charCodeAt(i + 1) & 0xff);
        i += 1;
      } else {
        throw new RangeError(`dangling escape in DNS name '${name}'`);
      }
    } else if (c === DOT) {
      flush();
    } else {
      cur.push(c & 0xff);
    }
  }
  flush();
  if (total > MAX_NAME_WIRE) throw new RangeError(`DNS name longer than 255 bytes: '${name.slice(0, 40)}...'`);
  return labels;
}

/** Wire form of a name, uncompressed. Throws `RangeError` on an invalid name (see {@link nameLabels}). */
export function encodeName(name: string): Buffer {
  const labels = nameLabels(name);
  let size = 1;
  for (const l of labels) size += l.length + 1;
  const out = Buffer.allocUnsafe(size);
  let p = 0;
  for (const l of labels) {
    out[p++] = l.length;
    out.set(l, p);
    p += l.length;
  }
  out[p] = 0;
  return out;
}

/** The key of a name Shoal was given as text (`Web.App.` -> `web.app`). */
export function nameKey(name: string): string {
  return nameLabels(name).map(keyOfLabel).join('.');
}

/**
 * Writes names with RFC 1035 compression. One instance per message being built: it remembers
 * where every suffix it wrote (or was told about) starts. Comparison is case-insensitive, so a
 * later `WEB.app` reuses an earlier `web.app`; pointers only ever point backwards.
 */
export class NameCompressor {
  private readonly seen = new Map<string, number>();

  /** Forget everything (reuse for the next message). */
  reset(): void {
    this.seen.clear();
  }

  /** Records that the (uncompressed) name at `offset` in `buf` may be pointed to. */
  remember(buf: Uint8Array, offset: number, end: number): void {
    let p = offset;
    const parts: string[] = [];
    const starts: number[] = [];
    while (p < end) {
      const len = buf[p] as number;
      if (len === 0 || (len & 0xc0) !== 0) break;
      starts.push(p);
      parts.push(keyOfLabel(buf.subarray(p + 1, p + 1 + len)));
      p += len + 1;
    }
    for (let i = 0; i < parts.length; i++) {
      const start = starts[i] as number;
      if (start < 0x4000) this.seen.set(parts.slice(i).join('.'), start);
    }
  }

  /**
   * Writes `name` at `offset` in `buf`, compressed against earlier names; returns the offset
   * after it, or -1 if it does not fit before `limit` (nothing is remembered then).
   */
  write(buf: Uint8Array, offset: number, limit: number, name: string): number {
    const labels = nameLabels(name);
    const keys = labels.map(keyOfLabel);
    let p = offset;
    const added: Array<[string, number]> = [];
    for (let i = 0; i < labels.length; i++) {
      const suffix = keys.slice(i).join('.');
      const at = this.seen.get(suffix);
      if (at !== undefined) {
        if (p + 2 > limit) return -1;
        buf[p++] = 0xc0 | (at >> 8);
        buf[p++] = at & 0xff;
        for (const [k, v] of added) this.seen.set(k, v);
        return p;
      }
      const label = labels[i] as Uint8Array;
      if (p + 1 + label.length > limit) return -1;
      if (p < 0x4000) added.push([suffix, p]);
      buf[p++] = label.length;
      buf.set(label, p);
      p += label.length;
    }
    if (p + 1 > limit) return -1;
    buf[p++] = 0;
    for (const [k, v] of added) this.seen.set(k, v);
    return p;
  }
}

function keyOfLabel(l: Uint8Array): string {
  let s = '';
  for (let c of l) {
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c === DOT || c === BACKSLASH) s += '\\';
    s += String.fromCharCode(c);
  }
  return s;
}
