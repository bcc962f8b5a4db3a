/**
 * The framing shared by log segments and snapshots:
 *
 *     magic u32le 'SHL1' | length u32le | crc32 u32le of (length bytes + payload) | payload
 *
 * One frame is one group commit (a JSON array of records), written with a single write and
 * fsync'd before the next frame is written. So after a crash only the last frame of the last
 * segment can be damaged; a damaged frame with a valid frame anywhere after it is corruption.
 */
import { crc32 } from 'node:zlib';

const MAGIC = 0x314c4853; // "SHL1" read as little-endian u32
const MAGIC_BYTES = Buffer.from('SHL1', 'latin1');
export const FRAME_HEADER_BYTES = 12;

/** Frames a UTF-8 string payload. */
export function encodeFrame(payload: string): Buffer {
  const len = Buffer.byteLength(payload);
  const buf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + len);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt32LE(len, 4);
  buf.write(payload, FRAME_HEADER_BYTES, 'utf8');
  buf.writeUInt32LE(crc32(buf.subarray(FRAME_HEADER_BYTES), crc32(buf.subarray(4, 8))), 8);
  return buf;
}

type FrameAt = { ok: true; payload: Buffer; end: number } | { ok: false; reason: string };

/** Decodes the frame starting at `offset`, or says why there is none. */
export function frameAt(buf: Buffer, offset: number): FrameAt {
  const left = buf.length - offset;
  if (left < FRAME_HEADER_BYTES) return { ok: false, reason: `${left} stray bytes, shorter than a frame header` };
  if (buf.readUInt32LE(offset) !== MAGIC) return { ok: false, reason: 'bad frame magic' };
  const len = buf.readUInt32LE(offset + 4);
  const end = offset + FRAME_HEADER_BYTES + len;
  if (end > buf.length) return { ok: false, reason: `frame of ${len} bytes runs past the end of the file` };
  const payload = buf.subarray(offset + FRAME_HEADER_BYTES, end);
  if (crc32(payload, crc32(buf.subarray(offset + 4, offset + 8))) !== buf.readUInt32LE(offset + 8)) {
    return { ok: false, reason: 'frame checksum mismatch' };
  }
  return { ok: true, payload, end };
}

export interface ScanResult {
  payloads: Buffer[];
  /** End of the last valid frame: where a torn tail would be cut. */
  validEnd: number;
  /** The first damaged frame, if any. */
  damage?: {
    offset: number;
    reason: string;
    /** A valid frame starts somewhere after the damage: the damage is not a torn tail. */
    validFrameAfter: boolean;
  };
}

/** Reads frames from the start of `buf` until the end or the first damaged frame. */
export function scanFrames(buf: Buffer): ScanResult {
  const payloads: Buffer[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const f = frameAt(buf, offset);
    if (!f.ok) {
      return { payloads, validEnd: offset, damage: { offset, reason: f.reason, validFrameAfter: hasValidFrameAfter(buf, offset + 1) } };
    }
    payloads.push(f.payload);
    offset = f.end;
  }
  return { payloads, validEnd: offset };
}

/**
 * Whether any valid frame starts at or after `from`. This is what separates a torn tail (only
 * garbage or zeros after the damage) from a damaged record in the middle of the log.
 */
function hasValidFrameAfter(buf: Buffer, from: number): boolean {
  for (let pos = buf.indexOf(MAGIC_BYTES, from); pos >= 0; pos = buf.indexOf(MAGIC_BYTES, pos + 1)) {
    if (frameAt(buf, pos).ok) return true;
  }
  return false;
}
