/**
 * Coded errors. Every error that crosses a module boundary, a process or the wire is a
 * GrpoError with a stable `GRPO_ERR_...` code; receivers branch on `code`, never on text.
 * The full list of codes with their meaning is in docs/errors.md.
 */
export type ErrorCode = `GRPO_ERR_${Uppercase<string>}`;

export class GrpoError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'GrpoError';
  }

  /** The form carried on the wire and in logs. */
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function isGrpoError(err: unknown, code?: ErrorCode): err is GrpoError {
  return err instanceof GrpoError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a GrpoError, keeping an existing code. */
export function toGrpoError(err: unknown, fallback: ErrorCode): GrpoError {
  if (err instanceof GrpoError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new GrpoError(fallback, message, { cause: err });
}

/** For exhaustive `switch` statements over discriminated unions. */
export function assertNever(x: never, what = 'value'): never {
  throw new GrpoError('GRPO_ERR_INTERNAL', `unexpected ${what}: ${JSON.stringify(x)}`);
}
