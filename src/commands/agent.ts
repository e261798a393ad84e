import { spawn } from 'node:child_process';
import type { Context } from '../cli/context.js';
import { dynamicSecretRef, seconds } from '../cli/flags.js';
import { usageError } from '../errors.js';
import { render } from '../io/format.js';
import { checkOutputPath, writeFileAtomic } from '../io/output.js';
import type { IssuedLease } from '../io/lease-view.js';
import { type AgentEvent, jsonLine, textLine } from '../agent/events.js';
import { runAgent } from '../agent/loop.js';
import { leaseSessions } from '../agent/sessions.js';
import { issuedLeasePrintable } from './dynamic/shared.js';
import { STORE_VARIABLES } from './run.js';

export interface AgentCommandOptions {
  path?: string;
  recordUid?: string;
  output?: string;
  format?: string;
  ttl?: string;
  exec?: string;
  drain?: string;
  logFormat?: string;
}

const FILE_FORMATS = ['json', 'yaml', 'env', 'dotenv'];
const LOG_FORMATS = ['text', 'json'];
const DEFAULT_DRAIN_SECONDS = 300;

/**
 * `sy agent (--path P | --record-uid ID) --output FILE [--format F] [--ttl T] [--exec CMD]
 * [--drain D] [--log-format text|json]`: keeps one lease fresh in FILE for an application
 * that runs longer than a lease (src/agent/loop.ts), until SIGTERM or SIGINT, which revoke
 * its leases and exit 0.
 */
export async function agentCommand(ctx: Context, options: AgentCommandOptions): Promise<void> {
  const ref = dynamicSecretRef(options);
  const file = options.output;
  if (file === undefined) throw usageError('agent_needs_output', 'sy agent writes the lease to a file: give --output FILE.');
  const format = options.format ?? 'json';
  if (!FILE_FORMATS.includes(format)) {
    throw usageError('invalid_format', `--format must be one of ${FILE_FORMATS.join(', ')} for sy agent, not ${JSON.stringify(format)}.`);
  }
  const logFormat = options.logFormat ?? 'text';
  if (!LOG_FORMATS.includes(logFormat)) {
    throw usageError('invalid_log_format', `--log-format must be text or json, not ${JSON.stringify(options.logFormat)}.`);
  }
  const ttlSeconds = seconds(options.ttl, '--ttl');
  const drainMs = (seconds(options.drain, '--drain') ?? DEFAULT_DRAIN_SECONDS) * 1000;
  checkOutputPath(file);

  const emit = (event: AgentEvent) => {
    ctx.io.stderr.write(`${logFormat === 'json' ? jsonLine(event, Date.now()) : `sy agent: ${textLine(event)}`}\n`);
  };
  const controller = new AbortController();
  const stop = (signal: NodeJS.Signals) => () => {
    if (controller.signal.aborted) return;
    emit({ event: 'stopping', signal });
    controller.abort();
  };
  const handlers = (['SIGTERM', 'SIGINT'] as const).map((signal) => [signal, stop(signal)] as const);
  for (const [signal, handler] of handlers) process.on(signal, handler);

  const publish = async (lease: IssuedLease) => {
    const started = Date.now();
    const text = await render(issuedLeasePrintable(lease), { format, toTerminal: false, color: false });
    writeFileAtomic(file, text);
    emit({ event: 'written', lease_id: lease.lease_id, file, ms: Date.now() - started });
    if (options.exec !== undefined) {
      const execStarted = Date.now();
      const status = await runExec(options.exec, ctx.env);
      emit({ event: 'exec', lease_id: lease.lease_id, status, ms: Date.now() - execStarted });
    }
  };

  // A long-running process logs its own events: no spinner or notice on its stderr.
  ctx.io.quiet = true;
  const service = await ctx.leases();
  try {
    const summary = await runAgent(
      { ref, ttlSeconds, drainMs },
      { service, publish, sessions: leaseSessions, now: Date.now, sleep, emit },
      controller.signal,
    );
    emit({ event: 'stopped', ...summary });
  } finally {
    for (const [signal, handler] of handlers) process.off(signal, handler);
    await service.close();
  }
}

/** Waits, or returns at once when the agent is stopped. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * `--exec`: a shell command run after each new lease is written (e.g. `kill -HUP $(cat app.pid)`),
 * without what opens the store. Its output goes to the agent's stderr: stdout carries no data here.
 */
function runExec(command: string, env: NodeJS.ProcessEnv): Promise<number> {
  const childEnv = { ...env };
  for (const name of STORE_VARIABLES) delete childEnv[name];
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', command], { stdio: ['ignore', 2, 2], env: childEnv });
    child.on('error', () => resolve(127));
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
