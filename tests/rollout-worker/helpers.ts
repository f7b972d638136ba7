/** Test helpers shared by the reward pool and remote reward tests. */
import { expect } from 'vitest';
import { isGrpoError, type GrpoError } from '../../src/shared/errors.js';

/** The GrpoError a promise rejects with (fails the test if it resolves or rejects with anything else). */
export async function rejection(p: Promise<unknown>): Promise<GrpoError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(isGrpoError(err), `expected a GrpoError, got ${String(err)}`).toBe(true);
  return err as GrpoError;
}
