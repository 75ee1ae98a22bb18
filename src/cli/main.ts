#!/usr/bin/env node
import { benchFuzzCommand } from './bench-fuzz.js';
import { benchLqrCommand } from './bench-lqr.js';
import { benchTelemetryCommand } from './bench-telemetry.js';
import { benchSoakCommand } from './bench-soak.js';
import { benchRolloutCommand } from './bench-rollout.js';
import { benchMpcCommand } from './bench-mpc.js';
import { benchPriorCommand } from './bench-prior.js';
import { benchPolicyCommand } from './bench-policy.js';
import { benchPlannerCommand } from './bench-planner.js';
import { benchToCommand } from './bench-to.js';
import { Command, helpText, parseCommandArgs } from './command.js';
import { shutdown } from '../shutdown.js';
import { plannerThreadsClosed } from '../controller/planner-thread.js';
import { InputError } from '../input-error.js';
import { isModelFile, loadSystem } from '../models/index.js';
import { identifyCommand } from './identify.js';
import { paramsCommand } from './params.js';
import { rolloutCommand } from './rollout.js';
import { runCommand } from './run.js';
import { solveCommand } from './solve.js';
import { sweepCommand } from './sweep.js';
import { workerCommand } from './worker.js';
import { trainActorCommand } from './train-actor.js';
import { systemsCommand } from './systems.js';
import { trainPriorCommand } from './train-prior.js';
import { trainValueCommand } from './train-value.js';
import { trainPolicyCommand } from './train-policy.js';

const COMMANDS: Command[] = [runCommand, systemsCommand, paramsCommand, rolloutCommand, solveCommand, benchRolloutCommand, benchToCommand, benchMpcCommand, benchPlannerCommand, benchFuzzCommand, benchSoakCommand, benchLqrCommand, benchTelemetryCommand, benchPriorCommand, benchPolicyCommand, trainPriorCommand, trainValueCommand, trainPolicyCommand, identifyCommand, sweepCommand, workerCommand, trainActorCommand];

function overview(): string {
  return [
    'usage: tempered-mpc COMMAND [options]   (tempered-mpc COMMAND --help for details)',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(16)} ${c.summary}`),
  ].join('\n');
}

/** Finds the longest command name matching the leading words (e.g. "bench rollout"). */
function findCommand(argv: string[]): { cmd: Command; rest: string[] } | undefined {
  for (const words of [2, 1]) {
    const name = argv.slice(0, words).join(' ');
    const cmd = COMMANDS.find((c) => c.name === name);
    if (cmd) return { cmd, rest: argv.slice(words) };
  }
  return undefined;
}

export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    console.log(overview());
    return 0;
  }
  const found = findCommand(argv);
  if (!found) {
    const group = COMMANDS.filter((c) => c.name.startsWith(`${argv[0]} `));
    // `bench --help`: the group's commands
    if (group.length && (argv.length === 1 || argv[1] === '--help' || argv[1] === '-h')) {
      console.log([`usage: tempered-mpc ${argv[0]} COMMAND [options]   (tempered-mpc ${argv[0]} COMMAND --help for details)`, '', 'commands:', ...group.map((c) => `  ${c.name.padEnd(16)} ${c.summary}`)].join('\n'));
      return argv.length === 1 ? 2 : 0;
    }
    const hint = group.length ? `; try: ${group.map((c) => c.name).join(', ')}` : '';
    console.error(`tempered-mpc: error: unknown command '${argv.slice(0, group.length ? 2 : 1).join(' ')}'${hint} (see tempered-mpc --help)`);
    return 2;
  }
  const { cmd, rest } = found;
  shutdown.install(cmd.interruptible === true, (code) => process.exit(code), cmd.interruptGraceS, undefined, cmd.interruptFinishing);
  try {
    const { values, positionals } = parseCommandArgs(cmd, rest);
    if (values.help) {
      console.log(helpText(cmd));
      return 0;
    }
    // a model file is loaded once, before the command resolves anything that depends on the model
    if (typeof values.system === 'string' && isModelFile(values.system)) await loadSystem(values.system);
    await cmd.run(values, positionals);
    return shutdown.signalExitCode ?? 0;
  } catch (e) {
    const input = e instanceof InputError;
    const message = (e as Error).message ?? String(e);
    console.error(`tempered-mpc ${cmd.name}: error: ${message.split('\n')[0]}`);
    if (!input && process.env.TEMPERED_MPC_DEBUG) console.error((e as Error).stack);
    return shutdown.signalExitCode ?? (input ? 2 : 1);
  }
}

// A closed pipe (e.g. `| head`) ends output quietly instead of crashing.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

// A job a sweep runs ends with its runner: the runner's end closes the job's stdin (a killed worker leaves no orphan running on).
if (process.env.TEMPERED_MPC_EXIT_WITH_PARENT === '1') {
  process.stdin.on('end', () => process.exit(143));
  process.stdin.resume();
}

// Every way out ends here: a planner thread or socket left open cannot keep the process alive (a disposed planner thread is let finish its plan first, at most 2 s).
main(process.argv.slice(2)).then(async (code) => {
  await plannerThreadsClosed();
  await Promise.all([written(process.stdout), written(process.stderr)]);
  process.exit(code);
});

/**
 * Resolves once everything written to the stream has been taken by the OS.
 * Writes to a pipe can be asynchronous, and process.exit drops what a reader
 * slower than the command (`--json | node -e ...`) has not taken past the
 * pipe's 64 KiB. A closed pipe ends it too (the EPIPE handler above).
 */
function written(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => stream.write('', () => resolve()));
}
