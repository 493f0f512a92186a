/**
 * Crash-safe file writes.
 *
 * A checkpoint, config or summary is written to a temporary file in the same directory, flushed to
 * disk, and renamed over the destination. rename(2) within one file system is atomic, so a reader (or
 * a run that was killed mid-write) sees either the old complete file or the new complete file, never
 * a half-written one. The temporary lives in the same directory because a rename across file systems
 * is a copy, not atomic.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/** Bytes to write: a string (UTF-8), one byte array, or chunks written back to back (no concatenation copy). */
export type FileData = string | Uint8Array | readonly Uint8Array[];

function writeAll(fd: number, chunk: Uint8Array): void {
  let off = 0;
  while (off < chunk.byteLength) {
    off += fs.writeSync(fd, chunk, off, chunk.byteLength - off);
  }
}

/** Best effort: makes the rename itself durable. Some platforms/file systems cannot fsync a directory. */
function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Not fatal: the data is already synced; only the directory entry may lag after a power loss.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Writes `data` to `file` atomically: temp file `file.tmp-<pid>-<hex>` in the same directory, fsync,
 * rename. On any failure the temporary file is removed and the error rethrown; `file` is untouched.
 * The parent directory must exist.
 */
export function writeFileAtomic(file: string, data: FileData): void {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  let fd: number | undefined;
  try {
    // 'wx': never clobber a file we did not create (a name clash would be another writer's temp).
    fd = fs.openSync(tmp, 'wx', 0o644);
    if (typeof data === 'string') {
      writeAll(fd, Buffer.from(data, 'utf8'));
    } else if (data instanceof Uint8Array) {
      writeAll(fd, data);
    } else {
      for (const chunk of data) writeAll(fd, chunk);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // The original error is the one worth reporting.
      }
    }
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // Same: keep the original error.
    }
    throw err;
  }
  fsyncDir(path.dirname(file));
}

/** Writes `obj` as pretty-printed JSON (2-space indent, trailing newline), atomically. */
export function writeJsonAtomic(file: string, obj: unknown): void {
  writeFileAtomic(file, JSON.stringify(obj, null, 2) + '\n');
}

/**
 * Appends `obj` as one compact JSON line (JSON Lines). A single O_APPEND write, so concurrent
 * appenders do not interleave within a line. Note that JSON has no NaN/Infinity: such numbers are
 * written as `null`, which pandas and most plotting tools read back as missing values.
 */
export function appendJsonLine(file: string, obj: unknown): void {
  const line = JSON.stringify(obj);
  if (line === undefined) throw new TypeError(`appendJsonLine: value is not JSON-serialisable (${typeof obj})`);
  fs.appendFileSync(file, line + '\n');
}
