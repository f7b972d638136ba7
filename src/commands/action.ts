/**
 * The one wrapper every subcommand's action goes through, and the one way a command stops on a
 * signal:
 *
 *   cmd.action(commandAction(io, trainCommand));   // trainCommand(opts, io, signal)
 *
 * The first SIGINT or SIGTERM logs `shutdown_requested` and aborts the command's signal, so a
 * training command finishes its step and checkpoints, a worker finishes its batch, a coordinator
 * closes its connections. The handlers are removed at that moment, so a second signal gets
 * Node's default and exits at once. They are also removed when the command returns or throws, so
 * in-process runs (tests) leave no listener behind. Errors pass through to cli.ts, which prints
 * them coded.
 */
import type { ProtocolLogger } from '../shared/protocol.js';
import type { CommandIO } from './io.js';

export const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

/**
 * Runs `fn` with an AbortSignal that the first of `SHUTDOWN_SIGNALS` aborts (see the file
 * comment); the handlers are gone when it settles.
 */
export async function runUntilSignal<T>(log: ProtocolLogger, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const remove = (): void => {
    for (const s of SHUTDOWN_SIGNALS) process.off(s, onSignal);
  };
  function onSignal(name: NodeJS.Signals): void {
    remove();
    log('info', 'shutdown_requested', { signal: name });
    abort.abort();
  }
  for (const s of SHUTDOWN_SIGNALS) process.on(s, onSignal);
  try {
    return await fn(abort.signal);
  } finally {
    remove();
  }
}

/** A commander action that builds the command's IO and runs it until it ends or a signal stops it. */
export function commandAction<O>(
  io: () => CommandIO,
  run: (opts: O, io: CommandIO, signal: AbortSignal) => Promise<unknown>,
): (opts: O) => Promise<void> {
  return async (opts) => {
    const cio = io();
    await runUntilSignal(cio.log, (signal) => run(opts, cio, signal));
  };
}
