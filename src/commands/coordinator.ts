/**
 * `grpo coordinator`: the hub of a distributed run. HTTP (`GET /healthz`, `GET /metrics` with the
 * process metrics) and WebSocket on one port; binds 127.0.0.1 unless --host says otherwise (a
 * non-loopback host needs a token).
 *
 *   grpo coordinator --port 7070 [--host 0.0.0.0] [--token T | GRPO_TOKEN=T] [--config FILE]
 *                    [--heartbeat-ms MS] [--lease-ms MS] [--max-payload-bytes B] [--weights-chunk-bytes B]
 *
 * Prints `coordinator listening on ws://host:port` on stdout and runs until SIGTERM or SIGINT,
 * then closes every connection (workers and the learner reconnect to the next coordinator).
 */
import { Command } from 'commander';
import { startCoordinator, type CoordinatorHandle, type CoordinatorOptions } from '../coordinator/main.js';
import { resolveConfig, type Config, type ConfigKey } from '../shared/config.js';
import { addConfigOptions, flagsToRawConfig } from '../shared/config-flags.js';
import { PROTOCOL_DEFAULTS, type ProtocolLogger } from '../shared/protocol.js';
import { commandAction } from './action.js';
import { processIO, type CommandIO } from './io.js';

export const COORDINATOR_KEYS: readonly ConfigKey[] = [
  'host',
  'port',
  'token',
  'heartbeat_ms',
  'lease_ms',
  'max_payload_bytes',
  'weights_chunk_bytes',
];

/** Peers silent for this many heartbeats are dropped (the protocol default is 2 s -> 20 s). */
export const PEER_TIMEOUT_HEARTBEATS = 10;

/** The coordinator options of a config (the config keys map onto PROTOCOL_DEFAULTS' knobs). */
export function coordinatorOptions(c: Config, log: ProtocolLogger): Partial<CoordinatorOptions> {
  return {
    host: c.host,
    port: c.port,
    token: c.token, // null: GRPO_TOKEN, else no auth (loopback only)
    heartbeatMs: c.heartbeat_ms,
    peerTimeoutMs: Math.max(PROTOCOL_DEFAULTS.peerTimeoutMs, PEER_TIMEOUT_HEARTBEATS * c.heartbeat_ms),
    leaseMs: c.lease_ms,
    maxPayloadBytes: c.max_payload_bytes,
    weightsChunkBytes: c.weights_chunk_bytes,
    log,
  };
}

export interface CoordinatorCommandOptions {
  config?: string;
  [flag: string]: unknown;
}

/** Starts the coordinator and resolves with its handle once it listens (used by tests too). */
export async function startCoordinatorCommand(opts: CoordinatorCommandOptions, io: CommandIO): Promise<CoordinatorHandle> {
  const config = resolveConfig({ file: opts.config, flags: flagsToRawConfig(opts, COORDINATOR_KEYS) });
  const coord = await startCoordinator({ ...coordinatorOptions(config, io.log), processMetrics: true });
  io.out(`coordinator listening on ${coord.url}`);
  return coord;
}

/** Runs the coordinator until `signal` aborts, then closes it and prints its work counters. */
export async function coordinatorCommand(opts: CoordinatorCommandOptions, io: CommandIO, signal: AbortSignal): Promise<void> {
  const coord = await startCoordinatorCommand(opts, io);
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
  const ledger = coord.stats().ledger;
  await coord.close();
  io.log('info', 'coordinator_stopped', { ...ledger });
  io.out(
    `coordinator stopped: ${ledger.enqueued} groups enqueued, ${ledger.completed} completed, ${ledger.admitted} admitted, ` +
      `${ledger.redispatched} re-dispatched, ${ledger.exhausted} given up`,
  );
}

export function registerCoordinatorCommand(program: Command, io: () => CommandIO = processIO): void {
  const cmd = new Command('coordinator').description('the hub: leases prompt groups to workers, forwards results and weights (HTTP /healthz + WebSocket on one port)');
  addConfigOptions(cmd, COORDINATOR_KEYS);
  cmd.action(commandAction(io, coordinatorCommand));
  program.addCommand(cmd);
}
