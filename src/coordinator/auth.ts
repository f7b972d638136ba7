/**
 * Credentials by role, checked on the HTTP upgrade before any WebSocket frame is read.
 * Clients send `Authorization: Bearer <token>`. The coordinator knows one token per role:
 *
 *   worker  = GRPO_WORKER_TOKEN, else the shared token (--token / GRPO_TOKEN)
 *   learner = GRPO_LEARNER_TOKEN, else the shared token
 *
 * A connection may say Hello only as a role whose token it presented (server.ts checks it), so a
 * worker host that leaks its credential cannot open a learner session. With one shared token
 * (single machine) both roles accept it, as before. Tokens are compared through their SHA-256
 * digests with timingSafeEqual, so the comparison takes the same time whatever the guess.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { GrpoError } from '../shared/errors.js';
import type { Role } from '../shared/protocol.js';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** The token each role must present; null = that role needs none (loopback only). */
export interface RoleTokens {
  worker: string | null;
  learner: string | null;
}

/**
 * The tokens in force. `shared` is the option (--token), else env GRPO_TOKEN; each role's own
 * variable wins over it. Running a role without a token is allowed only on a loopback address.
 */
export function resolveTokens(shared: string | null | undefined, host: string, env: NodeJS.ProcessEnv = process.env): RoleTokens {
  const fallback = shared ?? env.GRPO_TOKEN ?? null;
  const tokens: RoleTokens = { worker: env.GRPO_WORKER_TOKEN ?? fallback, learner: env.GRPO_LEARNER_TOKEN ?? fallback };
  for (const role of ['worker', 'learner'] as const) {
    if (tokens[role] === '') throw new GrpoError('GRPO_ERR_CONFIG', `the ${role} token is empty; set a non-empty --token, GRPO_TOKEN or GRPO_${role.toUpperCase()}_TOKEN`);
    if (tokens[role] === null && !LOOPBACK.has(host)) {
      throw new GrpoError(
        'GRPO_ERR_CONFIG',
        `coordinator binds ${host} without a ${role} token: anyone who can reach it could join as a ${role}; set --token or GRPO_TOKEN (or GRPO_WORKER_TOKEN and GRPO_LEARNER_TOKEN), or bind 127.0.0.1`,
      );
    }
  }
  return tokens;
}

/** The single token of a one-token set-up (both roles), for callers that only know one. */
export function resolveToken(option: string | null | undefined, host: string, env: NodeJS.ProcessEnv = process.env): string | null {
  return resolveTokens(option, host, { ...env, GRPO_WORKER_TOKEN: undefined, GRPO_LEARNER_TOKEN: undefined }).worker;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** What a presented credential allows. */
export interface Grant {
  roles: ReadonlySet<Role>;
  /** The learner's own credential, distinct from the workers': may take the learner slot from a stale session. */
  learnerCredential: boolean;
}

export class TokenCheck {
  private readonly expected: { worker: Buffer | null; learner: Buffer | null };
  private readonly distinct: boolean; // the learner token is not also the workers'

  constructor(tokens: RoleTokens | string | null) {
    const t = typeof tokens === 'object' && tokens !== null ? tokens : { worker: tokens, learner: tokens };
    this.expected = { worker: t.worker === null ? null : digest(t.worker), learner: t.learner === null ? null : digest(t.learner) };
    this.distinct = t.learner !== null && t.learner !== t.worker;
  }

  get enabled(): boolean {
    return this.expected.worker !== null || this.expected.learner !== null;
  }

  /** The roles the request's bearer token opens, or null when it opens none (refuse the upgrade). */
  grant(req: IncomingMessage): Grant | null {
    const header = req.headers.authorization;
    const m = typeof header === 'string' ? /^Bearer\s+(.+)$/i.exec(header.trim()) : null;
    const presented = m === null ? null : digest(m[1]);
    const roles = new Set<Role>();
    let learnerCredential = false;
    for (const role of ['worker', 'learner'] as const) {
      const want = this.expected[role];
      if (want === null) roles.add(role);
      else if (presented !== null && timingSafeEqual(presented, want)) {
        roles.add(role);
        if (role === 'learner' && this.distinct) learnerCredential = true;
      }
    }
    return roles.size === 0 ? null : { roles, learnerCredential };
  }

  /** True when the request opens at least one role. */
  allows(req: IncomingMessage): boolean {
    return this.grant(req) !== null;
  }
}

/**
 * Answers an upgrade request with a plain HTTP error and closes the socket. The socket is
 * destroyed once the answer is written (or after 1 s): a client that keeps sending after its
 * refused request must not leave a half-open socket behind, which would keep the HTTP server's
 * close() from ever completing (the exit-13 shutdown of issue 16).
 */
export function refuseUpgrade(socket: Duplex, status: number, reason: string): void {
  const body = JSON.stringify({ error: reason });
  const kill = setTimeout(() => socket.destroy(), 1_000);
  kill.unref();
  socket.on('close', () => clearTimeout(kill));
  socket.resume(); // discard whatever follows the request instead of buffering it
  socket.end(
    `HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Bad Request'}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'WWW-Authenticate: Bearer\r\n' +
      'Connection: close\r\n\r\n' +
      body,
    () => socket.destroy(),
  );
}
