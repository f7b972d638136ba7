/**
 * Task knobs are validated once against a strict zod schema: unknown keys and bad values fail
 * with GRPO_ERR_TASK_OPTIONS naming the key, the problem and the valid keys, and the resolved
 * options (defaults filled in) are frozen.
 */
import type { z } from 'zod';
import { GrpoError } from '../shared/errors.js';

export function parseTaskOptions<S extends z.ZodType<Record<string, unknown>>>(
  taskName: string,
  schema: S,
  raw: unknown,
  validKeys: readonly string[],
): Readonly<z.infer<S>> {
  const r = schema.safeParse(raw ?? {});
  if (!r.success) {
    const issue = r.error.issues[0];
    const keys = `valid keys: ${validKeys.join(', ')}`;
    const what =
      issue.code === 'unrecognized_keys'
        ? `unknown option(s) ${issue.keys.join(', ')}`
        : `${issue.path.join('.') || 'options'}: ${issue.message}`;
    throw new GrpoError('GRPO_ERR_TASK_OPTIONS', `task ${taskName}: ${what}; ${keys}`);
  }
  return Object.freeze(r.data);
}
