import * as tf from '@tensorflow/tfjs';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createBackend } from '../kernels/index.js';
import { buildStepGraphs } from '../kernels/graphs.js';
import { compileStepFunction } from '../kernels/js-source.js';
import { modelDefinition } from '../models/index.js';
import { resolveModel } from '../models/model.js';
import { choice, flag, num, ParamsOf, resolveParams } from '../params.js';
import { Rng } from '../random.js';
import { MppiPlanner } from '../planners/mppi/receding.js';
import { MPPI_PARAMS } from '../planners/mppi/mppi.js';
import type { RunParams } from '../run/setup.js';
import { lockstepEpisodes } from '../run/episodes.js';
import { loadCheckpoint, PriorError, PriorMeta, saveCheckpoint, writeFileAtomic } from '../learned/checkpoint.js';
import { initMlp, cloneMlp } from '../learned/mlp.js';
import { featureDim, PriorNetworks, stateFeatures, symlog } from '../learned/networks.js';
import { LearnedPrior, mismatch } from '../learned/runtime.js';
import { clipGradients, forward, readVariables, toVariables, useBackend } from './tensors.js';
import { TRAIN_BACKENDS } from './train-params.js';
import { Replay } from './trainer.js';
import { Demonstrations } from './demonstrations.js';
import { InputError } from '../input-error.js';

/** `train-value`'s parameters (`--set value.KEY=V`, and the named flags). */
export const VALUE_PARAMS = {
  sweeps: num(16, 'the most sweeps of value iteration: each extends the horizon the value sees by one plan (model.horizon steps); the run stops sooner when the closed-loop check passes on every seed', { min: 1, max: 1000, integer: true }),
  checkSeeds: num(8, 'closed-loop episodes of the check after each sweep from checkFrom (lockstep, from the start state, held-out seeds 10000...): the prior keeps the sweep that reached the goal most often, and a sweep that reaches it on all stops the run (0: no check, the last sweep is kept)', { min: 0, max: 1000, integer: true }),
  checkFrom: num(4, 'the first sweep checked (earlier values have not yet seen far enough to swing up)', { min: 1, max: 1000, integer: true }),
  checkDurationS: num(15, 'length of each check episode [s]', { min: 0.1, max: 3600 }),
  checkSamples: num(64, 'MPPI samples in the check (the controller it is meant for; the targets use mppi.samples)', { min: MPPI_PARAMS.samples.min, max: MPPI_PARAMS.samples.max, integer: true }),
  checkIterations: num(4, 'MPPI iterations in the check (the targets use mppi.iterations)', { min: MPPI_PARAMS.iterations.min, max: MPPI_PARAMS.iterations.max, integer: true }),
  states: num(3000, 'states valued per sweep (one plan each)', { min: 16, max: 1e6, integer: true }),
  keepFraction: num(0.5, 'share of the states drawn once from the prior\'s replay buffer; the rest are redrawn each sweep from where the previous sweep\'s plans ended', { min: 0, max: 1 }),
  perturb: num(0.25, 'std of the offset added to buffered states, as a fraction of each state\'s spread in the buffer', { min: 0, max: 100 }),
  boxFraction: num(0, 'share of the fixed states drawn uniformly from the box the buffer spans (widened by a fifth each side); 0 by default: on the acrobot a fifth of them there (spinning arms, every link fast) took the fit\'s capacity from the swing and the holding, and the checks were worse on every seed tried', { min: 0, max: 1 }),
  epochs: num(200, 'passes over the sweep\'s states when the value network is fitted', { min: 1, max: 1e5, integer: true }),
  batch: num(256, 'states per gradient step', { min: 1, max: 65536, integer: true }),
  learningRate: num(1e-3, 'Adam learning rate', { min: 0, max: 1, exclusive: true }),
  gradClip: num(20, 'global gradient-norm clip', { min: 0, max: 1e9, exclusive: true }),
  monotone: flag(true, 'never let a state\'s target fall below its bound from the last sweep (a cost-to-go of non-negative costs grows with the horizon; this keeps the planner from pulling the value down where it overshoots into the network\'s errors)'),
  monotoneBound: choice('value', ['value', 'target'] as const, 'the monotone bound: the last sweep\'s value network at every state (up to the last sweep\'s largest target), or the state\'s own target of the last sweep (the states drawn once only): the network\'s overshoot does not become a floor'),
  demoBound: flag(true, 'cap each buffered state\'s target by what the replay buffer\'s own episode (the teacher that made the prior) paid from it over the horizon this sweep\'s value stands for (sweep k: k plans; a record that ends sooner is closed by the current value): a controller that was run is feasible, so no optimal cost-to-go exceeds it, however the planner fared from there'),
  ceilingScale: num(4, 'targets are capped at this multiple of the most any buffered state\'s episode paid to its end (the worst cost-to-go the teacher demonstrated): a plan that ends where the network extrapolates reads symexp of a linear extrapolation, and one such target (1e20 and more) outweighs the fit of every state the controller visits, sweep after sweep; a state past the cap only has to look worse than every state worth going to (0: no cap)', { min: 0, max: 1e9 }),
  floor: num(0, 'the least cost-to-go: the value is never read below it (0 where every stage cost is non-negative, as for every bundled system)', { min: -1e12, max: 1e12 }),
  backend: choice('wasm', TRAIN_BACKENDS, 'TensorFlow.js backend for fitting: wasm (CPUs), webgpu (GPUs), cpu (pure JS, slowest)'),
} as const;
export type ValueParams = ParamsOf<typeof VALUE_PARAMS>;

export const resolveValueParams = (overrides: Record<string, unknown>): ValueParams => resolveParams('value', VALUE_PARAMS, overrides);

/** One sweep's figures, for the curve. */
export interface SweepPoint {
  sweep: number;
  /** the targets' 10th, 50th and 90th percentiles [cost] */
  targets: [number, number, number];
  targetMax: number;
  /** the fit's last-epoch mean squared error, in symlog units */
  fitLoss: number;
  /** the fitted value at the system's start state */
  startValue: number;
  /** targets lowered to the demonstrated cost (value.demoBound) */
  demoCapped?: number;
  /** targets lowered to the ceiling (value.ceilingScale) */
  ceilingCapped?: number;
  planS: number;
  /** the closed-loop check of this sweep's value (absent before checkFrom or without a check) */
  check?: CheckResult;
  wallS: number;
}

/** A sweep's closed-loop check: how many held-out episodes reached the goal. */
export interface CheckResult { successes: number; seeds: number; timeToGoalMedianS: number | null; wallS: number }

/** The first seed of the check's episodes: apart from the 0-based seeds benchmarks use, so the check is held out. */
export const CHECK_SEED_BASE = 10000;

export interface ValueIterationOptions {
  run: RunParams;
  value: ValueParams;
  /** the prior whose value is replaced: its policy, features and replay buffer are used */
  from: string;
  /** the replay buffer the states come from; default `from`/replay.bin (train-prior's `best/` has none: pass its run's) */
  replay?: string;
  out: string;
  resume: boolean;
  version: string;
  onSweep?: (p: { sweep: number; sweeps: number; point: SweepPoint; kept: number }) => void;
  /** within a sweep's check: episodes run so far */
  onCheck?: (done: number, total: number) => void;
  /** stops at once (SIGINT, SIGTERM): the sweep under way is dropped, the last sweep's checkpoint stays as it was */
  signal?: AbortSignal;
  /** within a sweep: states planned so far */
  onPlan?: (done: number, total: number) => void;
}

interface SweepState {
  sweepsDone: number;
  curve: SweepPoint[];
  /** the sweep whose value the prior in --out holds: the best checked one so far, else the last */
  kept?: number;
  /** the check passed on every seed: no more sweeps */
  passed?: boolean;
}

/** Where each sweep's own checkpoint goes: the run resumes from the last one, and the prior in --out is the kept one. */
const sweepDir = (out: string, sweep: number) => join(out, 'sweeps', String(sweep).padStart(3, '0'));

/**
 * Fitted value iteration with the planner as the improvement operator: each
 * sweep plans from a set of states with MPPI closed by the current value
 * (eq. (10)), takes each plan's cost as the new value there, and fits the
 * value network to those targets. After k sweeps the value is a cost-to-go
 * over k plans (undiscounted), of the costs of model.* alone, so no
 * hand-made shaping term has to reach past the horizon. The planner seeks
 * out states where the value undershoots; half of each sweep's states are
 * where the previous sweep's plans ended, so those errors are the next
 * sweep's data, and the value is never read below `floor`. The networks
 * other than Q come from the prior unchanged; V(x) = Q(x, mean pi_s(x)) as
 * the runtime reads it.
 */
export async function valueIteration(opts: ValueIterationOptions): Promise<{ meta: PriorMeta | undefined; curve: SweepPoint[]; kept: number | undefined; passed: boolean; wallS: number; backend: string; interrupted: boolean }> {
  const t0 = performance.now();
  const { run, value } = opts;
  const backendName = await useBackend(value.backend);
  const def = modelDefinition(run.system);
  const model = resolveModel(def, run.model);
  const base = loadCheckpoint(opts.from);
  const problem = mismatch(base.meta, model);
  if (problem) throw new PriorError(`prior '${opts.from}' ${problem}`);
  const n = model.stateDim;
  const m = model.controlDim;
  const reference = [...model.goal];
  const statePath = join(opts.out, 'value-state.json');
  const targetsPath = join(opts.out, 'value-targets.bin');
  const poolPath = join(opts.out, 'value-states.bin');
  const networks: PriorNetworks = { ...base.networks };
  let state: SweepState;
  /** the last sweep's targets of the states drawn once (the first `keep` of the pool), for monotoneBound: target */
  let lastTargets: Float64Array | undefined;
  let pool: number[][];
  const keep = Math.floor(value.states * value.keepFraction);
  const replayPath = opts.replay ?? join(opts.from, 'replay.bin');
  if (!existsSync(replayPath) || !statSync(replayPath).isFile()) {
    throw new InputError(opts.replay !== undefined
      ? `--replay '${opts.replay}' is not a file: pass a train-prior run's replay.bin`
      : `prior '${opts.from}' has no replay.bin: train-value draws its states from the replay buffer of the train-prior run that made the prior (for a run's best/, pass --replay RUN/replay.bin)`);
  }
  // read once: its states seed the pool, its episodes (value.demoBound) bound the targets
  const replay = Replay.load(replayPath, undefined, n, undefined);
  const buffered = replay.states();
  if (buffered.length === 0) throw new InputError(`replay buffer '${replayPath}' is empty`);
  const box = bufferBox(buffered);
  const demonstrations = new Demonstrations(replay, model);
  const demos = value.demoBound ? demonstrations : undefined;
  const ceiling = value.ceilingScale > 0 ? value.ceilingScale * demonstrations.largestCostToGo() : Infinity;
  // the states drawn once, with the buffer row each came from (-1: perturbed or from the box); the same draw on a resume
  const drawnOnce = fixedStates(new Rng(run.controller.seed), buffered, box, value);
  if (opts.resume) {
    if (!existsSync(statePath)) throw new InputError(`nothing to resume in '${opts.out}' (no value-state.json)`);
    try {
      state = JSON.parse(readFileSync(statePath, 'utf8')) as SweepState;
    } catch (e) {
      throw new InputError(`cannot resume '${opts.out}': value-state.json is not valid JSON (${(e as Error).message})`);
    }
    // runs from before the per-sweep checkpoints kept only the last sweep's, in --out
    const last = sweepDir(opts.out, state.sweepsDone);
    networks.q = loadCheckpoint(existsSync(join(last, 'meta.json')) ? last : opts.out).networks.q;
    pool = readRows(poolPath, n);
    // a run from before the targets were kept resumes with the bound starting again at its next sweep
    if (existsSync(targetsPath)) lastTargets = Float64Array.from(readRows(targetsPath, 1).flat());
    if (pool.length !== value.states) throw new InputError(`cannot resume '${opts.out}': it values ${pool.length} states per sweep, this run asks for ${value.states}`);
    if (drawnOnce.slice(0, keep).some((d, i) => d.x.some((v, j) => v !== pool[i][j]))) {
      throw new InputError(`cannot resume '${opts.out}': its states drawn once are not this run's draw (another seed, or the prior's replay buffer changed)`);
    }
  } else {
    if (existsSync(join(opts.out, 'meta.json'))) throw new InputError(`'${opts.out}' already holds a prior: pass --resume to continue it, or choose another --out`);
    pool = drawnOnce.map((d) => d.x);
    const f = featureDim(base.meta.features);
    networks.q = initMlp(new Rng(run.controller.seed + 1), [f + m, ...base.meta.hidden, 1], 0.1);
    state = { sweepsDone: 0, curve: [] };
  }
  /** the checkpoint's meta for the value of sweep `sweep`, with that sweep's check */
  const meta = (sweep: number): Omit<PriorMeta, 'format' | 'weights' | 'savedAt'> => ({
    ...base.meta, version: opts.version, gamma: 1, valueFloor: value.floor,
    training: {
      ...base.meta.training,
      valueIteration: { ...value, sweepsDone: state.sweepsDone, valueOfSweep: sweep, check: state.curve.find((p) => p.sweep === sweep)?.check ?? null, from: opts.from, replay: replayPath, mppi: run.planners.mppi, prior: run.prior, model: run.model },
    },
  });
  const graphs = buildStepGraphs(model, false);
  const step = compileStepFunction(graphs);
  const noise = new Array<number>(model.noiseDim).fill(0);
  const modelStep = (x: readonly number[], u: readonly number[]) => step(x, u, noise);
  const backend = await createBackend(model, run.controller.backend, { threads: run.controller.threads > 0 ? run.controller.threads : undefined });
  const qVars = toVariables(networks.q, 'valueQ');
  const x0 = [...def.x0];
  let saved: PriorMeta | undefined;
  try {
    for (let s = state.sweepsDone; s < value.sweeps && !state.passed && !opts.signal?.aborted; s++) {
      const ts = performance.now();
      const rng = new Rng(run.controller.seed * 7919 + s);
      const prior = LearnedPrior.fromNetworks({ ...base.meta, valueFloor: value.floor } as PriorMeta, { ...networks, q: cloneMlp(networks.q) });
      // the first sweep has no value yet: its targets are plain horizon costs
      const settings = { ...run.prior, path: '', value: true, valueWeight: s === 0 ? 0 : 1 };
      const planner = new MppiPlanner(model, backend, { ...run.planners.mppi } as never, new Rng(rng.uniform() * 2 ** 31), { prior, step: modelStep, settings });
      const targets = new Float64Array(pool.length);
      const ends: number[][] = [];
      for (let i = 0; i < pool.length && !opts.signal?.aborted; i++) {
        planner.reset();
        const plan = await planner.plan({ x0: pool[i], uPrev: new Array<number>(m).fill(0), reference });
        targets[i] = plan.cost;
        let x = pool[i];
        for (let t = 0; t < model.horizon; t++) x = modelStep(x, Array.from(plan.controls.subarray(t * m, (t + 1) * m)));
        // a plan that ends outside the widened box (a spinning arm) is not kept: its values would take the
        // network's capacity from the region the controller works in, and its own target still counts
        if (x.every((v, j) => v >= box.lo[j] && v <= box.hi[j])) ends.push(x);
        opts.onPlan?.(i + 1, pool.length);
        // planning never waits on I/O: let a signal's handler run between plans
        if (i % 16 === 15) await new Promise((resolve) => setImmediate(resolve));
      }
      if (opts.signal?.aborted) break;
      if (value.monotone && s > 0) {
        // with non-negative costs a cost-to-go over k + 1 plans is at least the one over k: a target below the
        // last value there is the planner exploiting the value's errors, not a shorter way. The bound is the
        // last value only up to the last sweep's largest target: above that the network extrapolates, and a
        // bound from there would ratchet its error up sweep by sweep.
        if (value.monotoneBound === 'value') {
          const last = prior.value(Float64Array.from(pool.flat()), pool.length, reference);
          const ceiling = state.curve[s - 1].targetMax;
          for (let i = 0; i < pool.length; i++) targets[i] = Math.max(targets[i], Math.min(last[i], ceiling));
        } else if (lastTargets) {
          // the states drawn once keep their place in the pool: each is bounded by its own last target, the planner's
          // data, so where the fit overshoots the overshoot is not carried into the next sweep's targets
          for (let i = 0; i < Math.min(keep, lastTargets.length); i++) targets[i] = Math.max(targets[i], lastTargets[i]);
        }
      }
      const demoCapped = demos ? capByDemonstrations(demos, drawnOnce, keep, targets, (s + 1) * model.horizon, s === 0 ? undefined : prior, reference) : undefined;
      if (!targets.every(Number.isFinite)) throw new Error(`sweep ${s + 1}: ${targets.filter((t) => !Number.isFinite(t)).length} plans have a non-finite cost (a state outside the model's range?)`);
      let ceilingCapped = 0;
      for (let i = 0; i < targets.length; i++) {
        if (targets[i] > ceiling) {
          targets[i] = ceiling;
          ceilingCapped++;
        }
      }
      lastTargets = targets.slice(0, keep);
      if (s === 0) {
        const low = targets.reduce((a, b) => Math.min(a, b), Infinity);
        if (low < value.floor) throw new Error(`a plan's cost ${low} is below value.floor ${value.floor}: this system's costs can be negative; set value.floor to a bound its cost-to-go never goes below`);
      }
      const planS = (performance.now() - ts) / 1000;
      const fitLoss = await fitValue(qVars, prior, pool, targets, value, rng, reference);
      await readVariables(qVars, networks.q);
      networks.qTarget = cloneMlp(networks.q);
      const fitted = LearnedPrior.fromNetworks({ ...base.meta, valueFloor: value.floor } as PriorMeta, networks);
      const sorted = Float64Array.from(targets).sort();
      const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
      const point: SweepPoint = {
        sweep: s + 1, targets: [at(0.1), at(0.5), at(0.9)], targetMax: sorted[sorted.length - 1], fitLoss, startValue: fitted.value(x0, 1, reference)[0],
        ...(demoCapped !== undefined ? { demoCapped } : {}),
        ...(Number.isFinite(ceiling) ? { ceilingCapped } : {}),
        planS, wallS: (performance.now() - ts) / 1000,
      };
      // where this sweep's plans ended: the next sweep values them (a planner exploits the value's errors there)
      pool.length = keep;
      for (let k = keep; k < value.states; k++) pool.push(ends.length ? ends[Math.floor(rng.uniform() * ends.length)] : fixed(rng, buffered, box, value, k).x);
      state.sweepsDone = s + 1;
      const own = sweepDir(opts.out, s + 1);
      saveCheckpoint(own, networks, meta(s + 1));
      if (value.checkSeeds > 0 && s + 1 >= value.checkFrom) {
        // a value fitted to more sweeps is not always a better controller (the planner's exploitation of its
        // errors moves around): the closed loop decides which sweep the prior keeps
        point.check = await closedLoopCheck(run, own, value, opts.signal, opts.onCheck);
        if (opts.signal?.aborted) break;
        point.wallS = (performance.now() - ts) / 1000;
        const best = state.curve.find((p) => p.sweep === state.kept)?.check;
        if (!best || point.check.successes >= best.successes) state.kept = s + 1;
        state.passed = point.check.successes === point.check.seeds;
      } else if (!state.curve.some((p) => p.check)) {
        state.kept = s + 1;
      }
      state.curve.push(point);
      if (point.check) saveCheckpoint(own, networks, meta(s + 1));
      saved = saveCheckpoint(opts.out, loadCheckpoint(sweepDir(opts.out, state.kept!)).networks, meta(state.kept!));
      writeRows(poolPath, pool);
      writeRows(targetsPath, Array.from(lastTargets!, (t) => [t]));
      writeFileAtomic(statePath, `${JSON.stringify(state)}\n`);
      opts.onSweep?.({ sweep: s + 1, sweeps: value.sweeps, point, kept: state.kept! });
    }
    // interrupted before its first sweep: nothing new to save (a resumed run's checkpoint is as it was)
    if (!opts.signal?.aborted) saved ??= saveCheckpoint(opts.out, networks, meta(state.kept ?? state.sweepsDone));
  } finally {
    backend.dispose();
    for (const l of qVars) {
      l.weight.dispose();
      l.bias.dispose();
    }
  }
  return { meta: saved, curve: state.curve, kept: state.kept, passed: state.passed === true, wallS: (performance.now() - t0) / 1000, backend: backendName, interrupted: opts.signal?.aborted === true };
}

/**
 * The controller the value is for, closed around the simulator in lockstep
 * from the system's start state, on held-out seeds: the run's parameters with
 * the sweep's prior and the check's MPPI sample and iteration counts.
 */
async function closedLoopCheck(run: RunParams, priorDir: string, value: ValueParams, signal?: AbortSignal, onEpisode?: (done: number, total: number) => void): Promise<CheckResult> {
  const t0 = performance.now();
  const params: RunParams = {
    ...run,
    controller: { ...run.controller, planner: 'mppi' },
    planners: { ...run.planners, mppi: { ...run.planners.mppi, samples: value.checkSamples, iterations: value.checkIterations } },
    prior: { ...run.prior, path: priorDir, value: true },
  };
  const outcome = await lockstepEpisodes(params, { seeds: value.checkSeeds, firstSeed: CHECK_SEED_BASE, durationS: value.checkDurationS, signal, onEpisode });
  return { successes: outcome.successes, seeds: value.checkSeeds, timeToGoalMedianS: outcome.timeToGoalS.median, wallS: (performance.now() - t0) / 1000 };
}

/** The buffer's box widened by a fifth of its width each side, and each state's spread. */
function bufferBox(buffered: number[][]): { lo: number[]; hi: number[]; spread: number[] } {
  const n = buffered[0].length;
  const lo = new Array<number>(n).fill(Infinity);
  const hi = new Array<number>(n).fill(-Infinity);
  const mean = new Array<number>(n).fill(0);
  const sq = new Array<number>(n).fill(0);
  for (const x of buffered) {
    x.forEach((v, j) => {
      lo[j] = Math.min(lo[j], v);
      hi[j] = Math.max(hi[j], v);
      mean[j] += v / buffered.length;
      sq[j] += (v * v) / buffered.length;
    });
  }
  const width = hi.map((h, j) => h - lo[j]);
  return {
    lo: lo.map((l, j) => l - 0.2 * width[j]),
    hi: hi.map((h, j) => h + 0.2 * width[j]),
    spread: mean.map((mu, j) => Math.sqrt(Math.max(0, sq[j] - mu * mu))),
  };
}

/**
 * The k-th fixed state: the first `boxFraction` uniform in the box, then buffered states, every other one perturbed;
 * with the buffer row of an unperturbed one (-1 otherwise).
 */
function fixed(rng: Rng, buffered: number[][], box: ReturnType<typeof bufferBox>, value: ValueParams, k: number): { x: number[]; row: number } {
  const keep = Math.floor(value.states * value.keepFraction);
  if (k < Math.round(keep * value.boxFraction)) return { x: box.lo.map((l, j) => l + (box.hi[j] - l) * rng.uniform()), row: -1 };
  const row = Math.floor(rng.uniform() * buffered.length);
  const x = buffered[row];
  return k % 2 === 0 ? { x: [...x], row } : { x: x.map((v, j) => v + value.perturb * box.spread[j] * rng.normal()), row: -1 };
}

/**
 * Lowers the targets of the buffered states drawn once to what their episode paid over `steps` (the horizon this
 * sweep's value stands for); a record shorter than that is closed by `closing`'s value at its end (no cap without
 * one: a partial sum alone is no bound). Returns how many targets it lowered.
 */
function capByDemonstrations(
  demos: Demonstrations, drawnOnce: { row: number }[], keep: number, targets: Float64Array, steps: number,
  closing: LearnedPrior | undefined, reference: number[],
): number {
  const caps: { i: number; cost: number; end?: number[] }[] = [];
  for (let i = 0; i < keep; i++) {
    const d = drawnOnce[i].row >= 0 ? demos.costFrom(drawnOnce[i].row, steps) : undefined;
    if (d && (!d.end || closing)) caps.push({ i, cost: d.cost, end: d.end });
  }
  const open = caps.filter((c) => c.end);
  const closed = open.length && closing ? closing.value(Float64Array.from(open.flatMap((c) => c.end!)), open.length, reference) : new Float64Array(0);
  open.forEach((c, k) => (c.cost += closed[k]));
  let lowered = 0;
  for (const { i, cost } of caps) {
    if (Number.isFinite(cost) && cost < targets[i]) {
      targets[i] = cost;
      lowered++;
    }
  }
  return lowered;
}

/** The states every sweep values: `keepFraction` of them fixed, the rest (until a sweep has ended somewhere) more of the same mix. */
function fixedStates(rng: Rng, buffered: number[][], box: ReturnType<typeof bufferBox>, value: ValueParams): { x: number[]; row: number }[] {
  return Array.from({ length: value.states }, (_, k) => fixed(rng, buffered, box, value, k));
}

/** Fits Q(x, mean pi_s(x)) to symlog(target) by Adam on shuffled batches; the last epoch's mean loss. */
async function fitValue(qVars: ReturnType<typeof toVariables>, prior: LearnedPrior, states: number[][], targets: Float64Array, value: ValueParams, rng: Rng, reference: number[]): Promise<number> {
  const count = states.length;
  const flat = Float64Array.from(states.flat());
  const features = stateFeatures(prior.meta.features, flat, count, reference);
  const { mean } = prior.policy(flat, count, reference);
  const f = features.length / count;
  const m = mean.length / count;
  const inputs = new Float32Array(count * (f + m));
  for (let i = 0; i < count; i++) {
    inputs.set(features.subarray(i * f, (i + 1) * f), i * (f + m));
    inputs.set(mean.subarray(i * m, (i + 1) * m), i * (f + m) + f);
  }
  const optimizer = tf.train.adam(value.learningRate);
  const tIn = tf.tensor2d(inputs, [count, f + m]);
  // symlog in f64 first: a target past f32's range (a spinning arm over many plans) stays a finite regression target
  const tY = tf.tensor1d(Float32Array.from(targets, symlog));
  const B = Math.min(value.batch, count);
  let last = NaN;
  try {
    for (let e = 0; e < value.epochs; e++) {
      const order = Int32Array.from({ length: count }, (_, i) => i);
      for (let i = count - 1; i > 0; i--) {
        const j = Math.floor(rng.uniform() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      const losses: tf.Tensor[] = [];
      for (let b = 0; b + B <= count; b += B) {
        losses.push(tf.tidy(() => {
          const idx = tf.tensor1d(order.subarray(b, b + B), 'int32');
          const xb = tf.gather(tIn, idx) as tf.Tensor2D;
          const yb = tf.gather(tY, idx);
          const { value: loss, grads } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(tf.reshape(forward(qVars, xb), [-1]), yb))) as tf.Scalar, qVars.flatMap((l) => [l.weight, l.bias]));
          optimizer.applyGradients(clipGradients(grads, value.gradClip) as never);
          return loss;
        }));
      }
      // one read per epoch: the backend stays busy between reads
      const epochLoss = tf.tidy(() => tf.mean(tf.stack(losses)));
      for (const l of losses) l.dispose();
      last = ((await epochLoss.data()) as Float32Array)[0];
      epochLoss.dispose();
    }
  } finally {
    tIn.dispose();
    tY.dispose();
    optimizer.dispose();
  }
  return last;
}

function writeRows(path: string, rows: number[][]): void {
  const flat = Float64Array.from(rows.flat());
  writeFileAtomic(path, Buffer.from(flat.buffer));
}

function readRows(path: string, n: number): number[][] {
  if (!existsSync(path)) throw new InputError(`nothing to resume: ${path} is missing`);
  const bytes = readFileSync(path);
  if (bytes.length % (8 * n) !== 0) throw new InputError(`${path} has ${bytes.length} bytes, not whole rows of ${n} states (truncated?)`);
  const all = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  return Array.from({ length: all.length / n }, (_, i) => Array.from(all.subarray(i * n, (i + 1) * n)));
}
