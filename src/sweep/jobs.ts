import { isModelFile, loadSystem } from '../models/index.js';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchMpcCommand } from '../cli/bench-mpc.js';
import { benchToCommand } from '../cli/bench-to.js';
import { Command, parseCommandArgs } from '../cli/command.js';
import { trainPriorCommand } from '../cli/train-prior.js';
import { trainActorCommand } from '../cli/train-actor.js';
import { InputError } from '../input-error.js';
import type { JobInput } from '../queue/redis.js';
import { SOLVE_METHODS } from '../planners/solve.js';

/** A figure a job reports; `timing` ones depend on the machine, the others only on the job's inputs (lockstep runs are deterministic). */
export interface MetricDef {
  doc: string;
  timing?: true;
}

export type Metrics = Record<string, number | null>;

/** A command a sweep cell can run, and how its result reads as metrics. */
export interface JobKind {
  command: string;
  cli: Command;
  /** a job of the project's own making (train-prior's actors), not one a sweep spec may name */
  internal?: true;
  /** whether the job may start over on another worker when its own stops (false: what it did so far is already used) */
  restartable: boolean;
  /** whether each cell can take its own seed (else the command runs its own seeds) */
  seeded: boolean;
  seedArgs(seed: number): string[];
  /** options a spec's args may not give: the sweep gives them to each cell itself */
  reserved: string[];
  /** whether the command reads a ROS 2 parameter file (--params), and so has a run's parameters for a best.yaml */
  runParams: boolean;
  metrics: Record<string, MetricDef>;
  /** the metrics from the command's --json output */
  read(json: Record<string, unknown>): Metrics;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const at = (o: unknown, ...path: string[]): unknown => path.reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), o);
const median = (v: number[]): number | null => {
  if (!v.length) return null;
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * The commands a sweep runs. `bench prior` is not one: its comparisons are a
 * sweep of `bench mpc` over prior.path, mppi.samples and the prior's switches.
 */
export const JOB_KINDS: Record<string, JobKind> = {
  'bench mpc': {
    command: 'bench mpc', restartable: true, cli: benchMpcCommand, seeded: true, runParams: true,
    seedArgs: (s) => [`--seed=${s}`, '--seeds=1'],
    reserved: ['out', 'json', 'seed'],
    metrics: {
      successes: { doc: 'runs that reached the goal and held it' },
      seeds: { doc: 'runs' },
      successRate: { doc: 'successes / seeds' },
      timeToGoalS: { doc: 'median time to the goal of the successful runs [s]' },
      finalError: { doc: 'median final distance to the goal' },
      deadlineMisses: { doc: 'plans not ready within the budget (0 in lockstep)' },
      solveMsP50: { doc: 'median solve time [ms]', timing: true },
      solveMsP99: { doc: 'worst run\'s p99 solve time [ms]', timing: true },
    },
    read: (j) => ({
      successes: num(j.successes), seeds: num(j.seeds),
      successRate: num(j.successes) !== null && num(j.seeds) ? (j.successes as number) / (j.seeds as number) : null,
      timeToGoalS: num(at(j, 'timeToGoalS', 'median')),
      finalError: median(((j.runs as { finalError?: unknown }[] | undefined) ?? []).map((r) => num(r.finalError)).filter((v): v is number => v !== null)),
      deadlineMisses: num(j.deadlineMisses),
      solveMsP50: num(at(j, 'solveMs', 'p50')), solveMsP99: num(at(j, 'solveMs', 'p99')),
    }),
  },
  'bench to': {
    command: 'bench to', restartable: true, cli: benchToCommand, seeded: true, runParams: false,
    seedArgs: (s) => [`--seed=${s}`],
    reserved: ['out', 'json', 'seed'],
    metrics: Object.fromEntries(SOLVE_METHODS.flatMap((m) => [
      [`${m}.best`, { doc: `${m}: the best final particle's trajectory cost` }],
      [`${m}.median`, { doc: `${m}: the median final particle's cost` }],
      [`${m}.goalReached`, { doc: `${m}: 1 if its best trajectory ends in the goal region` }],
      [`${m}.wallS`, { doc: `${m}: wall time [s]`, timing: true }],
    ])),
    read: (j) => {
      const out: Metrics = {};
      for (const s of (j.summary as Record<string, unknown>[] | undefined) ?? []) {
        const m = String(s.method);
        out[`${m}.best`] = num(s.best);
        out[`${m}.median`] = num(s.median);
        out[`${m}.goalReached`] = typeof s.goalReached === 'boolean' ? Number(s.goalReached) : null;
        out[`${m}.wallS`] = num(s.wallS);
      }
      return out;
    },
  },
  'train-prior': {
    command: 'train-prior', restartable: true, cli: trainPriorCommand, seeded: true, runParams: true,
    seedArgs: (s) => [`--seed=${s}`],
    reserved: ['out', 'json', 'seed', 'resume'],
    metrics: {
      episodes: { doc: 'episodes trained' },
      lastMeanCost: { doc: 'mean stage cost per step over the last (up to 10) episodes' },
      lastEndInGoal: { doc: 'of the last (up to 10) episodes, those that ended in the goal region' },
      wallS: { doc: 'training wall time [s]', timing: true },
    },
    read: (j) => ({
      episodes: num(j.episodes), lastMeanCost: num(at(j, 'lastEpisodes', 'meanCost')), lastEndInGoal: num(at(j, 'lastEpisodes', 'endInGoal')), wallS: num(j.wallS),
    }),
  },
  'train-actor': {
    command: 'train-actor', restartable: false, cli: trainActorCommand, internal: true, seeded: false, runParams: false,
    seedArgs: () => [],
    reserved: ['out', 'json'],
    metrics: { ticks: { doc: 'steps acted' } },
    read: (j) => ({ ticks: num(j.ticks) }),
  },
};

/** The jobs a sweep spec may name. */
export const SWEEP_JOBS = Object.values(JOB_KINDS).filter((k) => !k.internal).map((k) => k.command);

export function jobKind(name: string, fail: (message: string) => Error = (m) => new InputError(m)): JobKind {
  const kind = Object.hasOwn(JOB_KINDS, name) ? JOB_KINDS[name] : undefined;
  if (!kind) throw fail(`unknown job '${name}' (a sweep runs: ${Object.keys(JOB_KINDS).join(', ')})`);
  return kind;
}

/** The options the runner gives every job (runJob). */
const RUNNER_OPTIONS = ['out', 'json'];


/**
 * Checks a job's command line by the command's own rules (its options and the
 * parameters' schemas), without running it: a sweep refuses a bad cell
 * before queueing it, and a worker refuses a job it was not sent by a sweep.
 */
export async function checkJob(job: JobInput, scratch: string): Promise<void> {
  const kind = jobKind(job.kind);
  const words = kind.command.split(' ');
  if (!Array.isArray(job.argv) || job.argv.some((a) => typeof a !== 'string') || words.some((w, i) => job.argv[i] !== w)) {
    throw new InputError(`the job's command line does not start with '${kind.command}'`);
  }
  const { values } = parseCommandArgs(kind.cli, job.argv.slice(words.length));
  for (const r of RUNNER_OPTIONS) if (values[r] !== undefined) throw new InputError(`--${r} is the runner's to give, not the job's`);
  if (values.params !== undefined) throw new InputError('--params travels as the job\'s parameter text, not as a path');
  if (job.paramsText !== undefined) {
    if (!kind.runParams) throw new InputError(`${kind.command} reads no parameter file`);
    values.params = writeParamsFile(scratch, job.paramsText);
  }
  if (typeof values.system === 'string' && isModelFile(values.system)) await loadSystem(values.system);
  await kind.cli.check?.(values);
}

/** A folder for checking jobs, removed by the caller. */
export const scratchFolder = (): string => mkdtempSync(join(tmpdir(), 'tempered-mpc-sweep-'));
export const removeFolder = (path: string): void => rmSync(path, { recursive: true, force: true });

function writeParamsFile(folder: string, text: string): string {
  const path = join(folder, 'params.yaml');
  writeFileSync(path, text);
  return path;
}

/** What running one job gave. */
export interface JobResult {
  metrics: Metrics;
  wallS: number;
  /** where it ran: host:pid */
  worker: string;
  /** its output folder on that host */
  out: string;
}

export class JobFailure extends Error {}

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface RunJobOptions {
  /** the job's output folder (made) */
  out: string;
  /** heap limit of the job's process */
  maxMemoryMb: number;
  /** kills the job's process */
  signal?: AbortSignal;
  worker: string;
  /** more environment for the job's process */
  env?: Record<string, string>;
}

/**
 * Runs one job in a child process of its own (the CLI itself), so a crash,
 * a runaway allocation (--max-old-space-size) or an OOM kill ends the job,
 * not the runner. The child ends with its parent (its stdin closes).
 */
export function runJob(job: JobInput, opts: RunJobOptions): Promise<JobResult> {
  const kind = jobKind(job.kind);
  mkdirSync(opts.out, { recursive: true });
  const argv = [...job.argv, `--out=${opts.out}`, '--json'];
  if (job.paramsText !== undefined) argv.push(`--params=${writeParamsFile(opts.out, job.paramsText)}`);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [`--max-old-space-size=${opts.maxMemoryMb}`, CLI, ...argv], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env, TEMPERED_MPC_EXIT_WITH_PARENT: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      // the last lines say why a job failed
      stderr = (stderr + d.toString()).slice(-4096);
    });
    const kill = () => child.kill('SIGKILL');
    opts.signal?.addEventListener('abort', kill, { once: true });
    child.on('error', (e) => reject(new JobFailure(`could not start: ${e.message}`)));
    child.on('close', (code, signal) => {
      opts.signal?.removeEventListener('abort', kill);
      const wallS = (performance.now() - t0) / 1000;
      const lastError = stderr.split('\n').map((l) => l.trim()).filter(Boolean).at(-1) ?? '';
      if (signal) return reject(new JobFailure(`killed by ${signal}${signal === 'SIGKILL' && !opts.signal?.aborted ? ' (out of memory?)' : ''}${lastError ? `: ${lastError}` : ''}`));
      if (code !== 0) return reject(new JobFailure(`exit ${code}${/heap out of memory/i.test(stderr) ? `: out of memory (over ${opts.maxMemoryMb} MB)` : lastError ? `: ${lastError}` : ''}`));
      const line = stdout.trim().split('\n').at(-1) ?? '';
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        return reject(new JobFailure(`its output is not the JSON line it should end with: '${line.slice(0, 80)}'`));
      }
      resolve({ metrics: kind.read(json as Record<string, unknown>), wallS, worker: opts.worker, out: opts.out });
    });
  });
}
