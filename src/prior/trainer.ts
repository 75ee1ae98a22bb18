import * as tf from '@tensorflow/tfjs';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBackend } from '../kernels/index.js';
import { compileStageCostFunction, compileStepFunction } from '../kernels/js-source.js';
import { buildStepGraphs } from '../kernels/graphs.js';
import { modelDefinition } from '../models/index.js';
import { fromPhysical, inGoalRegion, Model, resolveModel } from '../models/model.js';
import { choice, num, ParamsOf, resolveParams, text } from '../params.js';
import { controlScaling, toNormalised } from '../models/controls.js';
import { Rng } from '../random.js';
import { plannerDescriptor } from '../planners/registry.js';
import type { RecedingPlanner } from '../planners/receding.js';
import { controlPeriodS, RunParams } from '../run/setup.js';
import { Simulator } from '../../sim/simulator.js';
import { loadCheckpoint, PriorMeta, saveCheckpoint, writeFileAtomic } from '../learned/checkpoint.js';
import { boundedControls, defaultFeatures, featureDim, initNetworks, NETWORK_NAMES, PriorNetworks, StateFeatures, stateFeatures } from '../learned/networks.js';
import { LearnedPrior } from '../learned/runtime.js';
import { PercentileScale } from './scale.js';
import { adaptivePriorKl, clipGradients, entropyRows, forward, head, klRows, NetVariables, polyak, readVariables, symexpT, symlogT, toVariables, TRAIN_BACKENDS, useBackend } from './tensors.js';
import { InputError } from '../input-error.js';

/** `train-prior`'s parameters (keys of `--set train.KEY=V`, and the named flags). */
export const TRAIN_PARAMS = {
  episodes: num(40, 'closed-loop episodes against the simulator', { min: 1, max: 1e6, integer: true }),
  episodeS: num(8, 'length of one episode [s]', { min: 0.1, max: 3600 }),
  startSpread: num(0.3, 'std of the random offset added to each physical state of the system\'s x0 at an episode\'s start', { min: 0, max: 100 }),
  kl: choice('reverse', ['reverse', 'forward'] as const, 'how the adaptive prior is fitted to the planner: reverse KL (eq. (8)/(12), mode-seeking) or forward KL (eq. (9)/(13), covering)'),
  lambda: text('1', 'KL weight lambda of eqs. (17)/(18): 0 recovers TD-MPC2\'s update, inf BMPC\'s imitation', { maxLength: 32 }),
  entropy: num(1e-4, 'entropy weight alpha of eq. (18)', { min: 0, max: 100 }),
  gamma: num(0.97, 'discount per model step', { min: 0, max: 1, exclusive: true }),
  nStep: num(5, 'steps of observed cost before the TD target bootstraps (eq. (15) with n steps)', { min: 1, max: 1000, integer: true }),
  batch: num(256, 'transitions per update', { min: 1, max: 65536, integer: true }),
  updatesPerStep: num(1, 'gradient updates per environment step (1 / n_d2u)', { min: 0, max: 100, integer: true }),
  learningRate: num(1e-3, 'Adam learning rate', { min: 0, max: 1, exclusive: true }),
  gradClip: num(20, 'global gradient-norm clip per network', { min: 0, max: 1e9, exclusive: true }),
  tau: num(0.01, 'Polyak rate of the target networks', { min: 0, max: 1, exclusive: true }),
  width: num(64, 'units per hidden layer (sized for the control rate: the planner runs the networks on the CPU every plan)', { min: 1, max: 4096, integer: true }),
  depth: num(2, 'hidden layers', { min: 1, max: 8, integer: true }),
  policySamples: num(32, 'MPPI samples drawn from the sampling policy during training (n_pi)', { min: 0, max: 1 << 20, integer: true }),
  reanalyzeEvery: num(0, 'lazy reanalyze: every this many updates, re-plan a few buffered states with the current networks (0 = off)', { min: 0, max: 1e6, integer: true }),
  reanalyzeCount: num(8, 'states re-planned per reanalyze', { min: 1, max: 4096, integer: true }),
  capacity: num(100000, 'replay buffer size [transitions], allocated at start', { min: 1, max: 2e6, integer: true }),
  checkpointEvery: num(10, 'episodes between checkpoints (the last episode always writes one)', { min: 1, max: 1e6, integer: true }),
  teacherModel: text('', 'model overrides (key=value,...) for the planner that acts while training, e.g. "wEnergy=10,terminalLqr=1": a teacher with hand-made cost terms whose behaviour the prior learns from, while its value learns the costs of model.* (empty: the planner uses model.* itself, with the value)', { maxLength: 1024 }),
  backend: choice('wasm', TRAIN_BACKENDS, 'TensorFlow.js backend for training: wasm (CPUs), webgpu (GPUs), cpu (pure JS, slowest)'),
} as const;
export type TrainParams = ParamsOf<typeof TRAIN_PARAMS>;

/** lambda as text: a non-negative number or `inf`. */
export function parseLambda(text: string): number {
  const t = text.trim().toLowerCase();
  if (t === 'inf' || t === 'infinity') return Infinity;
  const v = Number(t);
  if (t === '' || !Number.isFinite(v) || v < 0) throw new InputError(`train.lambda must be a non-negative number or inf, got ${JSON.stringify(text)}`);
  return v;
}

export function resolveTrainParams(overrides: Record<string, unknown>): TrainParams {
  const p = resolveParams('train', TRAIN_PARAMS, overrides);
  parseLambda(p.lambda);
  parseOverrideList('train.teacherModel', p.teacherModel);
  return p;
}

/** "a=1,b=2" as {a: 1, b: 2}. */
export function parseOverrideList(label: string, text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = item.indexOf('=');
    const v = Number(item.slice(eq + 1));
    if (eq <= 0 || item.slice(eq + 1).trim() === '' || !Number.isFinite(v)) throw new InputError(`${label} must be key=number pairs separated by commas, got ${JSON.stringify(item)}`);
    out[item.slice(0, eq).trim()] = v;
  }
  return out;
}

/** One episode's figures, for the learning curve. */
export interface EpisodePoint {
  episode: number;
  /** mean stage cost per step */
  meanCost: number;
  /** seconds spent in the goal region */
  goalS: number;
  /** in the goal region at the end */
  endsInGoal: boolean;
  updates: number;
  /** mean losses over the episode's updates */
  qLoss: number;
  priorLoss: number;
  policyLoss: number;
  wallS: number;
}

export interface TrainProgress {
  episode: number;
  episodes: number;
  point: EpisodePoint;
}

/** The replay buffer of (x, u, cost, x', a_bar_0, sigma_0) with each row's episode, as flat arrays. */
class Replay {
  readonly x: Float64Array;
  readonly z: Float64Array;
  readonly cost: Float64Array;
  readonly next: Float64Array;
  readonly abar: Float64Array;
  readonly sigma: Float64Array;
  readonly episode: Int32Array;
  size = 0;
  private head = 0;

  constructor(readonly capacity: number, readonly n: number, readonly m: number) {
    this.x = new Float64Array(capacity * n);
    this.z = new Float64Array(capacity * m);
    this.cost = new Float64Array(capacity);
    this.next = new Float64Array(capacity * n);
    this.abar = new Float64Array(capacity * m);
    this.sigma = new Float64Array(capacity * m);
    this.episode = new Int32Array(capacity);
  }

  push(x: readonly number[], z: ArrayLike<number>, cost: number, next: readonly number[], abar: readonly number[], sigma: readonly number[], episode: number): void {
    const i = this.head;
    this.x.set(x, i * this.n);
    this.z.set(z, i * this.m);
    this.cost[i] = cost;
    this.next.set(next, i * this.n);
    this.abar.set(abar, i * this.m);
    this.sigma.set(sigma, i * this.m);
    this.episode[i] = episode;
    this.head = (this.head + 1) % this.capacity;
    this.size = Math.min(this.size + 1, this.capacity);
  }

  /** Row k steps after row i, if it exists and belongs to the same episode. */
  after(i: number, k: number): number | undefined {
    const j = (i + k) % this.capacity;
    if (k >= this.size || (this.head - 1 - i + this.capacity) % this.capacity < k) return undefined;
    return this.episode[j] === this.episode[i] ? j : undefined;
  }

  save(path: string): void {
    const header = Float64Array.of(this.capacity, this.n, this.m, this.size, this.head);
    const parts = [header, this.x, this.z, this.cost, this.next, this.abar, this.sigma, Float64Array.from(this.episode)];
    writeFileAtomic(path, Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))));
  }

  /** A buffer `save` wrote; `capacity` and `m` undefined take the file's own. */
  static load(path: string, capacity: number | undefined, n: number, m: number | undefined): Replay {
    const bytes = readFileSync(path);
    if (bytes.length < 40 || bytes.length % 8 !== 0) throw new InputError(`replay buffer '${path}' has ${bytes.length} bytes: not a replay buffer (truncated?)`);
    const all = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    const [cap, nn, mm, size, head] = all.subarray(0, 5);
    capacity ??= cap;
    m ??= mm;
    if (cap !== capacity || nn !== n || mm !== m) throw new InputError(`replay buffer '${path}' holds ${cap} x (${nn} states, ${mm} controls), this run needs ${capacity} x (${n}, ${m})`);
    const expected = 5 + capacity * (2 * n + 3 * m + 2);
    if (all.length !== expected || !(size >= 0 && size <= capacity)) throw new InputError(`replay buffer '${path}' has ${all.length} values, expected ${expected} (truncated?)`);
    const r = new Replay(capacity, n, m);
    let o = 5;
    for (const a of [r.x, r.z, r.cost, r.next, r.abar, r.sigma]) {
      a.set(all.subarray(o, o + a.length));
      o += a.length;
    }
    r.episode.set(all.subarray(o, o + capacity));
    r.size = size;
    r.head = head;
    return r;
  }
}

/** The states (x) of a replay buffer that `Replay.save` wrote, one row each, whatever its capacity. */
export function readReplayStates(path: string, n: number): number[][] {
  const r = Replay.load(path, undefined, n, undefined);
  return Array.from({ length: r.size }, (_, i) => Array.from(r.x.subarray(i * n, (i + 1) * n)));
}

interface TrainState {
  episodesDone: number;
  updates: number;
  curve: EpisodePoint[];
  scales: Record<'prior' | 'kl' | 'q', ReturnType<PercentileScale['toJSON']>>;
  rngSeed: number;
}

export interface TrainOptions {
  run: RunParams;
  train: TrainParams;
  out: string;
  resume: boolean;
  version: string;
  onEpisode?: (p: TrainProgress) => void;
  /** stops training after the episode under way, with a checkpoint (SIGINT, SIGTERM) */
  signal?: AbortSignal;
}

export interface TrainResult {
  meta: PriorMeta;
  curve: EpisodePoint[];
  wallS: number;
  backend: string;
  /** stopped early by the signal (the checkpoint holds the episodes done) */
  interrupted: boolean;
}

/**
 * PO-MPC's Algorithm 2 without a learned world model (the plant model is
 * known): episodes of the acting planner (MPPI; SPO or TRT-SMC for their EM loop) guided by the current networks against the
 * noisy simulator fill a replay buffer of (x, u, cost, x', a_bar_0,
 * sigma_0); after each step, updates of the value Q (n-step TD toward
 * the target network, eqs. (14)/(15)), the adaptive prior (reverse or
 * forward KL to the planner's first-step distribution, eqs. (12)/(13)),
 * Q^lambda (eqs. (16)/(17)) and the sampling policy (eq. (18)), each loss
 * term divided by max(1, S) of its percentile scale, gradients clipped,
 * targets by Polyak averaging. Costs replace rewards: Q is a cost-to-go,
 * minimised.
 */
export async function trainPrior(opts: TrainOptions): Promise<TrainResult> {
  const t0 = performance.now();
  const { run, train } = opts;
  const lambda = parseLambda(train.lambda);
  const backendName = await useBackend(train.backend);
  const def = modelDefinition(run.system);
  const model = resolveModel(def, run.model);
  const periodS = controlPeriodS(run.controller.rateHz, model.dtS);
  if (Math.abs(periodS - model.dtS) > 1e-9 * model.dtS) {
    throw new InputError(`train-prior needs one model step per control period (a transition is a model step): rateHz ${run.controller.rateHz} gives ${periodS} s, the model's dtS is ${model.dtS} s`);
  }
  // the planner that acts: on the prior's own model with its value, or a teacher with its own cost terms
  const teacherOverrides = parseOverrideList('train.teacherModel', train.teacherModel);
  const teacher = Object.keys(teacherOverrides).length ? resolveModel(def, { ...run.model, ...teacherOverrides }, 'train.teacherModel') : model;
  if (teacher.horizon !== model.horizon || teacher.dtS !== model.dtS) throw new InputError('train.teacherModel may change cost terms, not the horizon or the step');
  const n = model.stateDim;
  const m = model.controlDim;
  const graphs = buildStepGraphs(model, false);
  const stageCost = compileStageCostFunction(graphs);
  const step = compileStepFunction(graphs);
  const noise = new Array<number>(model.noiseDim).fill(0);
  const scaling = controlScaling(model);
  const bounded = boundedControls(model);
  const reference = [...model.goal];
  const hidden = new Array<number>(train.depth).fill(train.width);

  // networks, scales and buffer: fresh, or where a previous run stopped
  const statePath = join(opts.out, 'train-state.json');
  const replayPath = join(opts.out, 'replay.bin');
  let networks: PriorNetworks;
  let features: StateFeatures;
  let state: TrainState;
  let replay: Replay;
  if (opts.resume) {
    if (!existsSync(statePath)) throw new InputError(`nothing to resume in '${opts.out}' (no train-state.json)`);
    const loaded = loadCheckpoint(opts.out);
    const problem = resumeMismatch(loaded.meta, model, hidden);
    if (problem) throw new InputError(`cannot resume '${opts.out}': ${problem}`);
    networks = loaded.networks;
    features = loaded.meta.features;
    state = JSON.parse(readFileSync(statePath, 'utf8')) as TrainState;
    replay = Replay.load(replayPath, train.capacity, n, m);
  } else {
    if (existsSync(join(opts.out, 'meta.json'))) throw new InputError(`'${opts.out}' already holds a prior: pass --resume to continue it, or choose another --out`);
    features = defaultFeatures(model);
    networks = initNetworks(new Rng(run.controller.seed), { stateDim: n, controlDim: m, features, hidden });
    state = { episodesDone: 0, updates: 0, curve: [], scales: { prior: new PercentileScale().toJSON(), kl: new PercentileScale().toJSON(), q: new PercentileScale().toJSON() }, rngSeed: run.controller.seed };
    replay = new Replay(train.capacity, n, m);
  }
  const scales = { prior: PercentileScale.fromJSON(state.scales.prior), kl: PercentileScale.fromJSON(state.scales.kl), q: PercentileScale.fromJSON(state.scales.q) };
  const vars = Object.fromEntries(NETWORK_NAMES.map((k) => [k, toVariables(networks[k], k, !k.endsWith('Target'))])) as Record<keyof PriorNetworks, NetVariables>;
  const optimizers = { q: tf.train.adam(train.learningRate), qLambda: tf.train.adam(train.learningRate), prior: tf.train.adam(train.learningRate), policy: tf.train.adam(train.learningRate) };
  const metaBase = (): Omit<PriorMeta, 'format' | 'weights' | 'savedAt'> => ({
    version: opts.version, system: model.name, stateNames: [...def.stateNames], controlNames: [...def.controlNames], stateDim: n, controlDim: m,
    horizon: model.horizon, dtS: model.dtS, reference, features, controlCenter: Array.from(scaling.center), controlScale: Array.from(scaling.scale), bounded,
    hidden, valueTransform: 'symlog', gamma: train.gamma, training: { ...train, planner: run.controller.planner, [run.controller.planner]: run.planners[run.controller.planner], sim: run.sim, model: run.model },
    episodes: state.episodesDone, updates: state.updates,
  });
  const threads = { threads: run.controller.threads > 0 ? run.controller.threads : undefined };
  const backend = await createBackend(teacher, run.controller.backend, threads);
  const settings = { ...run.prior, path: '', policySamples: train.policySamples, value: teacher === model };
  const current = () => LearnedPrior.fromNetworks(metaBase() as PriorMeta, networks);
  const guide = { prior: current(), step: (x: readonly number[], u: readonly number[]) => step(x, u, noise), settings };
  // the planner that acts (the E-step): any registered planner that reports its first-step distribution, guided by the current networks
  const acting = plannerDescriptor(run.controller.planner);
  const actor = async (seed: number): Promise<RecedingPlanner> => {
    const p = await acting.build({ model: teacher, backend, params: { ...run.planners[acting.name] }, seed, rng: new Rng(seed), guide });
    if (!p.firstStep) throw new InputError(`planner ${acting.name} reports no first-step distribution, so train-prior cannot distil it (use mppi, spo or trtsmc)`);
    return p;
  };
  const gamma = train.gamma;
  const writeCheckpoint = async () => {
    for (const k of NETWORK_NAMES) await readVariables(vars[k], networks[k]);
    const meta = saveCheckpoint(opts.out, networks, metaBase());
    state.scales = { prior: scales.prior.toJSON(), kl: scales.kl.toJSON(), q: scales.q.toJSON() };
    replay.save(replayPath);
    writeFileAtomic(statePath, `${JSON.stringify(state)}\n`);
    return meta;
  };

  /** One update of all four networks on a batch (Algorithm 2, lines 12-27). */
  const update = async (rng: Rng): Promise<{ q: number; prior: number; policy: number }> => {
    const B = Math.min(train.batch, replay.size);
    const f = featureDim(features);
    const xs = new Float64Array(B * n);
    const boot = new Float64Array(B * n);
    const zs = new Float64Array(B * m);
    const ret = new Float32Array(B);
    const disc = new Float32Array(B);
    const abar = new Float32Array(B * m);
    const logSigma = new Float32Array(B * m);
    for (let b = 0; b < B; b++) {
      const i = Math.floor(rng.uniform() * replay.size);
      let g = 0;
      let k = 0;
      let last = i;
      for (; k < train.nStep; k++) {
        const j = replay.after(i, k);
        if (j === undefined) break;
        g += gamma ** k * replay.cost[j];
        last = j;
      }
      xs.set(replay.x.subarray(i * n, (i + 1) * n), b * n);
      boot.set(replay.next.subarray(last * n, (last + 1) * n), b * n);
      zs.set(replay.z.subarray(i * m, (i + 1) * m), b * m);
      ret[b] = g;
      disc[b] = gamma ** k;
      for (let j = 0; j < m; j++) {
        abar[b * m + j] = replay.abar[i * m + j];
        logSigma[b * m + j] = Math.log(Math.max(1e-6, replay.sigma[i * m + j]));
      }
    }
    const noiseRows = () => tf.tensor2d(Float32Array.from({ length: B * m }, () => rng.normal()), [B, m]);
    // what the step reads back, kept past the tidy and read asynchronously after it
    const kept: { q?: tf.Tensor; prior?: tf.Tensor; policy?: tf.Tensor; priorKl?: tf.Tensor; kl?: tf.Tensor; qa?: tf.Tensor } = {};
    tf.tidy(() => {
      const tF = tf.tensor2d(Float32Array.from(stateFeatures(features, xs, B, reference)), [B, f]);
      const tB = tf.tensor2d(Float32Array.from(stateFeatures(features, boot, B, reference)), [B, f]);
      const tZ = tf.tensor2d(Float32Array.from(zs), [B, m]);
      const tRet = tf.tensor1d(ret);
      const tDisc = tf.tensor1d(disc);
      const tAbar = tf.tensor2d(abar, [B, m]);
      const tLogSigma = tf.tensor2d(logSigma, [B, m]);
      const mask = tf.tensor2d([bounded.map((b) => (b ? 1 : 0))], [1, m]);
      const clipBounded = (a: tf.Tensor2D) => tf.add(tf.mul(mask, tf.clipByValue(a, -1, 1)), tf.mul(tf.sub(1, mask), a)) as tf.Tensor2D;
      const q = (v: NetVariables, feats: tf.Tensor2D, z: tf.Tensor2D) => tf.reshape(forward(v, tf.concat([feats, z], 1) as tf.Tensor2D), [-1]) as tf.Tensor1D;
      // TD targets (no gradient): a~ from pi_s at the bootstrap state
      const sB = head(forward(vars.policy, tB), bounded);
      const pB = head(forward(vars.prior, tB), bounded);
      const aB = clipBounded(tf.add(sB.mean, tf.mul(tf.exp(sB.logStd), noiseRows())) as tf.Tensor2D);
      // targets in cost units, regressed in symlog units; a target network's output is capped at e^40 before it
      // leaves symlog units, so states far outside the data (a spinning acrobot) cannot overflow f32
      const costOf = (v: NetVariables) => symexpT(tf.clipByValue(q(v, tB, aB), -40, 40));
      const targetQ = symlogT(tf.add(tRet, tf.mul(tDisc, costOf(vars.qTarget))));
      const klB = klRows(sB.mean, sB.logStd, pB.mean, pB.logStd);
      const penalty = Number.isFinite(lambda) ? tf.mul(lambda / scales.kl.divisor, klB) : tf.zerosLike(klB);
      const targetQLambda = symlogT(tf.add(tRet, tf.mul(tDisc, tf.add(costOf(vars.qLambdaTarget), penalty))));
      const fit = (name: keyof typeof optimizers, loss: () => tf.Scalar): tf.Tensor => {
        const { value, grads } = tf.variableGrads(loss, vars[name].flatMap((l) => [l.weight, l.bias]));
        optimizers[name].applyGradients(clipGradients(grads, train.gradClip) as never);
        return tf.keep(value);
      };
      kept.q = fit('q', () => tf.mean(tf.square(tf.sub(q(vars.q, tF, tZ), targetQ))) as tf.Scalar);
      if (Number.isFinite(lambda)) fit('qLambda', () => tf.mean(tf.square(tf.sub(q(vars.qLambda, tF, tZ), targetQLambda))) as tf.Scalar).dispose();
      // adaptive prior toward the planner's first-step Gaussian (eq. (12) or (13))
      kept.prior = fit('prior', () => {
        const kl = adaptivePriorKl(train.kl, vars.prior, tF, tAbar, tLogSigma, bounded);
        kept.priorKl = tf.keep(kl);
        return tf.div(tf.mean(kl), scales.prior.divisor) as tf.Scalar;
      });
      // sampling policy (eq. (18)): lambda KL to the prior + Q^lambda of a reparameterised draw - alpha H
      const pF = head(forward(vars.prior, tF), bounded);
      const eps = noiseRows();
      kept.policy = fit('policy', () => {
        const s = head(forward(vars.policy, tF), bounded);
        const kl = klRows(s.mean, s.logStd, pF.mean, pF.logStd);
        kept.kl = tf.keep(kl);
        if (!Number.isFinite(lambda)) return tf.mean(kl) as tf.Scalar;
        const a = clipBounded(tf.add(s.mean, tf.mul(tf.exp(s.logStd), eps)) as tf.Tensor2D);
        const qa = symexpT(q(vars.qLambda, tF, a)) as tf.Tensor1D;
        kept.qa = tf.keep(qa);
        const terms = tf.sub(tf.add(tf.mul(lambda / scales.kl.divisor, kl), tf.div(qa, scales.q.divisor)), tf.mul(train.entropy, entropyRows(s.logStd)));
        return tf.mean(terms) as tf.Scalar;
      });
    });
    polyak(vars.qTarget, vars.q, train.tau);
    polyak(vars.qLambdaTarget, vars.qLambda, train.tau);
    const read = async (t: tf.Tensor | undefined) => {
      if (!t) return undefined;
      const v = (await t.data()) as Float32Array;
      t.dispose();
      return v;
    };
    const [qLoss, priorLoss, policyLoss, priorKl, kl, qa] = await Promise.all([kept.q, kept.prior, kept.policy, kept.priorKl, kept.kl, kept.qa].map(read));
    scales.prior.update(priorKl!);
    scales.kl.update(kl!);
    if (qa) scales.q.update(qa);
    // the planner reads the policy and the value at the next plan
    await readVariables(vars.policy, networks.policy);
    await readVariables(vars.q, networks.q);
    const out = { q: qLoss![0], prior: priorLoss![0], policy: policyLoss![0] };
    state.updates++;
    return out;
  };

  /** Lazy reanalyze: re-plan some buffered states with the current networks and store their first-step distribution anew. */
  const reanalyze = async (rng: Rng) => {
    const fresh = await actor(Math.floor(rng.uniform() * 2 ** 31));
    for (let r = 0; r < Math.min(train.reanalyzeCount, replay.size); r++) {
      const i = Math.floor(rng.uniform() * replay.size);
      fresh.reset();
      await fresh.plan({ x0: Array.from(replay.x.subarray(i * n, (i + 1) * n)), uPrev: new Array<number>(m).fill(0), reference });
      const first = fresh.firstStep!()!;
      replay.abar.set(first.mean, i * m);
      replay.sigma.set(first.sigma, i * m);
    }
  };

  let meta: PriorMeta | undefined;
  try {
    const ticks = Math.max(1, Math.round(train.episodeS / periodS));
    for (let e = state.episodesDone; e < train.episodes && !opts.signal?.aborted; e++) {
      const te = performance.now();
      const rng = new Rng(run.controller.seed * 104729 + e);
      const x0Physical = run.sim.x0.length ? run.sim.x0 : [...(def.physical ? def.physical.toPhysical(def.x0 as number[], model.params as never) as number[] : def.x0)];
      const start = x0Physical.map((v) => v + train.startSpread * rng.normal());
      const sim = new Simulator(def, periodS, { ...run.sim, x0: start }, run.controller.seed + 1 + e, { ...run.model, ...run.simModel });
      // each episode's random streams come from the run's seed and the episode's number, so a resumed run draws what an uninterrupted one would have
      const planner = await actor(run.controller.seed * 7919 + e);
      let uPrev = new Array<number>(m).fill(0);
      let x = fromPhysical(model, sim.measure());
      const point: EpisodePoint = { episode: e + 1, meanCost: 0, goalS: 0, endsInGoal: false, updates: 0, qLoss: 0, priorLoss: 0, policyLoss: 0, wallS: 0 };
      let inGoal = false;
      for (let t = 0; t < ticks; t++) {
        const plan = await planner.plan({ x0: x, uPrev, reference });
        const u = Array.from(plan.controls.subarray(0, m));
        const first = planner.firstStep!()!;
        const c = stageCost(x, u, uPrev, reference);
        sim.advance(u);
        const next = fromPhysical(model, sim.measure());
        replay.push(x, toNormalised(u, scaling), c, next, first.mean, first.sigma, e);
        point.meanCost += c / ticks;
        inGoal = inGoalRegion(model, fromPhysical(model, sim.state), reference) ?? false;
        if (inGoal) point.goalS += periodS;
        x = next;
        uPrev = u;
        if (replay.size < Math.min(train.batch, 64)) continue;
        // the state scales fitted to the first data, before the first update (the networks have seen nothing yet)
        if (state.updates === 0) fitScales(features, replay.x, replay.size, reference);
        for (let k = 0; k < train.updatesPerStep; k++) {
          const l = await update(rng);
          point.qLoss += l.q;
          point.priorLoss += l.prior;
          point.policyLoss += l.policy;
          point.updates++;
          if (train.reanalyzeEvery > 0 && state.updates % train.reanalyzeEvery === 0) await reanalyze(rng);
        }
        guide.prior = current();
      }
      if (point.updates) {
        point.qLoss /= point.updates;
        point.priorLoss /= point.updates;
        point.policyLoss /= point.updates;
      }
      point.endsInGoal = inGoal;
      point.wallS = (performance.now() - te) / 1000;
      state.curve.push(point);
      state.episodesDone = e + 1;
      if (state.episodesDone % train.checkpointEvery === 0 || state.episodesDone === train.episodes || opts.signal?.aborted) meta = await writeCheckpoint();
      opts.onEpisode?.({ episode: e + 1, episodes: train.episodes, point });
      // the tensor work never waits on I/O: let a signal's handler run between episodes
      await new Promise((resolve) => setImmediate(resolve));
    }
    // the last episodes since a periodic checkpoint are written too (a signal between episodes ends the loop at its top)
    if (!meta || meta.episodes !== state.episodesDone) meta = await writeCheckpoint();
  } finally {
    backend.dispose();
    for (const k of NETWORK_NAMES) for (const l of vars[k]) {
      l.weight.dispose();
      l.bias.dispose();
    }
    for (const o of Object.values(optimizers)) o.dispose();
  }
  return { meta, curve: state.curve, wallS: (performance.now() - t0) / 1000, backend: backendName, interrupted: opts.signal?.aborted === true };
}

/** Each raw feature's scale: the spread of its difference from the reference in the data (at least 1e-3). */
function fitScales(features: StateFeatures, x: Float64Array, rows: number, reference: readonly number[]): void {
  const n = reference.length;
  for (let j = 0; j < n; j++) {
    if (!features.raw[j]) continue;
    let sum = 0;
    let sq = 0;
    for (let i = 0; i < rows; i++) {
      const e = x[i * n + j] - reference[j];
      sum += e;
      sq += e * e;
    }
    const mean = sum / rows;
    features.scale[j] = Math.max(1e-3, Math.sqrt(Math.max(0, sq / rows - mean * mean)));
  }
}

function resumeMismatch(meta: PriorMeta, model: Model, hidden: number[]): string | undefined {
  if (meta.system !== model.name) return `it trains a prior for '${meta.system}', not '${model.name}'`;
  if (meta.horizon !== model.horizon) return `it trains for a horizon of ${meta.horizon} steps, this run plans ${model.horizon}`;
  if (meta.hidden.join(',') !== hidden.join(',')) return `its networks have hidden layers [${meta.hidden.join(', ')}], this run asks for [${hidden.join(', ')}]`;
  return undefined;
}

