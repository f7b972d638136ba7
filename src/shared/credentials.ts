/**
 * Which token a client presents: its role's own variable (GRPO_WORKER_TOKEN, GRPO_LEARNER_TOKEN),
 * else the shared GRPO_TOKEN of a single-machine set-up. The coordinator side is
 * src/coordinator/auth.ts; docs/protocol.md ("Credentials") describes both.
 */
import type { Role } from './protocol.js';

export const ROLE_TOKEN_ENV: Readonly<Record<Role, string>> = { worker: 'GRPO_WORKER_TOKEN', learner: 'GRPO_LEARNER_TOKEN' };

/** The token a client of `role` sends when none is given explicitly; null = none. */
export function roleToken(role: Role, env: NodeJS.ProcessEnv = process.env): string | null {
  return env[ROLE_TOKEN_ENV[role]] || env.GRPO_TOKEN || null;
}
