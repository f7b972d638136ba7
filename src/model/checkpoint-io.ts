/**
 * The file operations of checkpoint.ts's crash-safe writes and its reads: files created new and
 * fsynced (named in the error when a write fails), directory fsync, stat that tells "absent" from
 * failure, and JSON read with coded errors.
 */
import type { Stats } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { GrpoError } from '../shared/errors.js';
import { writeFailure } from '../shared/write-error.js';

/** Pretty-printed JSON (2 spaces) with a final newline. */
export function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value, null, 2) + '\n', 'utf8');
}

/** Creates `path` (which must not exist), writes the chunks, fsyncs; returns the size in bytes. */
export async function writeSynced(path: string, chunks: Uint8Array[]): Promise<number> {
  try {
    return await writeSyncedNow(path, chunks);
  } catch (err) {
    throw writeFailure(path, err, 'checkpoint file'); // name the file: a failed write(2) does not
  }
}

async function writeSyncedNow(path: string, chunks: Uint8Array[]): Promise<number> {
  const fh = await open(path, 'wx');
  let size = 0;
  try {
    for (const chunk of chunks) {
      let done = 0;
      while (done < chunk.length) done += (await fh.write(chunk, done, chunk.length - done)).bytesWritten;
      size += chunk.length;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return size;
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** stat, with null for a path that does not exist; other failures (permissions, I/O) propagate. */
export async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

export async function exists(path: string): Promise<boolean> {
  return (await statOrNull(path)) !== null;
}

export async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new GrpoError('GRPO_ERR_CHECKPOINT_INCOMPLETE', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new GrpoError('GRPO_ERR_CHECKPOINT_CONFIG', `${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}
