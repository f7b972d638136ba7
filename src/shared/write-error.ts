/**
 * One coded error for every failed write of a run's output (checkpoints, metrics.jsonl, the CSV,
 * training_stats.json, summary.json): GRPO_ERR_CHECKPOINT_WRITE naming the file and the cause in
 * words. Node's own messages leave the path out for a failed write(2) ("ENOSPC: no space left on
 * device, write"), and an uncoded error reached the user as GRPO_ERR_INTERNAL with a stack.
 */
import { GrpoError } from './errors.js';

const CAUSES: Readonly<Record<string, string>> = {
  ENOSPC: 'the disk is full (ENOSPC)',
  EDQUOT: 'the disk quota is used up (EDQUOT)',
  EACCES: 'permission denied (EACCES)',
  EPERM: 'operation not permitted (EPERM)',
  EROFS: 'the file system is read-only (EROFS)',
};

/** `err` as GRPO_ERR_CHECKPOINT_WRITE naming `path`; a GrpoError passes through unchanged. */
export function writeFailure(path: string, err: unknown, what = 'file'): GrpoError {
  if (err instanceof GrpoError) return err;
  const e = err as NodeJS.ErrnoException;
  const cause = (e?.code !== undefined && CAUSES[e.code]) || (e instanceof Error ? e.message : String(err));
  return new GrpoError('GRPO_ERR_CHECKPOINT_WRITE', `cannot write ${what} ${path}: ${cause}`, { cause: err });
}

/** Runs a synchronous write, converting its failure with writeFailure. */
export function guardWrite<T>(path: string, what: string, write: () => T): T {
  try {
    return write();
  } catch (err) {
    throw writeFailure(path, err, what);
  }
}
