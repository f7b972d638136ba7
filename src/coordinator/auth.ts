/**
 * Shared-token authentication, checked on the HTTP upgrade before any WebSocket frame is read.
 * Clients send `Authorization: Bearer <token>`. Tokens are compared through their SHA-256
 * digests with timingSafeEqual, so the comparison takes the same time whatever the guess.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { GrpoError } from '../shared/errors.js';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/**
 * The token in force: the option, else env GRPO_TOKEN, else none. Running without a token is
 * allowed only on a loopback address.
 */
export function resolveToken(option: string | null | undefined, host: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const token = option ?? env.GRPO_TOKEN ?? null;
  if (token === '') throw new GrpoError('GRPO_ERR_CONFIG', 'the coordinator token is empty; set a non-empty --token or GRPO_TOKEN');
  if (token === null && !LOOPBACK.has(host)) {
    throw new GrpoError(
      'GRPO_ERR_CONFIG',
      `coordinator binds ${host} without a token: anyone who can reach it could join; set --token or GRPO_TOKEN, or bind 127.0.0.1`,
    );
  }
  return token;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export class TokenCheck {
  private readonly expected: Buffer | null;

  constructor(token: string | null) {
    this.expected = token === null ? null : digest(token);
  }

  get enabled(): boolean {
    return this.expected !== null;
  }

  /** True when the request carries the right bearer token (or no token is configured). */
  allows(req: IncomingMessage): boolean {
    if (this.expected === null) return true;
    const header = req.headers.authorization;
    if (typeof header !== 'string') return false;
    const m = /^Bearer\s+(.+)$/i.exec(header.trim());
    if (m === null) return false;
    return timingSafeEqual(digest(m[1]), this.expected);
  }
}

/** Answers an upgrade request with a plain HTTP error and closes the socket. */
export function refuseUpgrade(socket: Duplex, status: number, reason: string): void {
  const body = JSON.stringify({ error: reason });
  socket.end(
    `HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Bad Request'}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'WWW-Authenticate: Bearer\r\n' +
      'Connection: close\r\n\r\n' +
      body,
  );
}
