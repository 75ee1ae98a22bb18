import * as tf from '@tensorflow/tfjs';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Model } from '../models/model.js';
import { controlScaling } from '../models/controls.js';
import { Rng } from '../random.js';
import type { RunParams } from '../run/setup.js';
import { loadCheckpoint, PriorMeta, saveCheckpoint, writeFileAtomic } from '../learned/checkpoint.js';
import { boundedControls, defaultFeatures, featureDim, initNetworks, NETWORK_NAMES, PriorNetworks, StateFeatures, stateFeatures } from '../learned/networks.js';
import { LearnedPrior } from '../learned/runtime.js';
import { PercentileScale } from './scale.js';
import { adaptivePriorKl, clipGradients, entropyRows, forward, head, klRows, NetVariables, polyak, readVariables, symexpT, symlogT, toVariables, useBackend } from './tensors.js';
import { parseLambda, TrainParams } from './train-params.js';
import { actEpisode, acting, actingModels, episodeStart, Transition } from './acting.js';
import { LearnerChannel } from './remote.js';
import { openQueue, QueuedJob } from '../queue/redis.js';
import { InputError } from '../input-error.js';

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

/** The replay buffer of (x, u, cost, x', a_bar_0, sigma_0), each row's episode and the acting planner's estimate of the cost-to-go at x, as flat arrays. */
export class Replay {
  readonly x: Float64Array;
  readonly z: Float64Array;
  readonly cost: Float64Array;
  readonly next: Float64Array;
  readonly abar: Float64Array;
  readonly sigma: Float64Array;
  readonly episode: Int32Array;
  /** the acting planner's own cost-to-go estimate at x (its plan's cost; NaN: none), for train.valueMix */
  readonly estimate: Float64Array;
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
    this.estimate = new Float64Array(capacity).fill(NaN);
  }

  push(x: readonly number[], z: ArrayLike<number>, cost: number, next: readonly number[], abar: readonly number[], sigma: readonly number[], episode: number, estimate = NaN): void {
    const i = this.head;
    this.x.set(x, i * this.n);
    this.z.set(z, i * this.m);
    this.cost[i] = cost;
    this.next.set(next, i * this.n);
    this.abar.set(abar, i * this.m);
    this.sigma.set(sigma, i * this.m);
    this.episode[i] = episode;
    this.estimate[i] = estimate;
    this.head = (this.head + 1) % this.capacity;
    this.size = Math.min(this.size + 1, this.capacity);
  }

  /**
   * Rows of episodes acted at once (actors on workers) interleave: at most
   * this many rows lie between one step of an episode and its next.
   */
  interleave = 1;

  /** The states (x) of the rows held, one row each, in storage order (row i is states()[i]). */
  states(): number[][] {
    return Array.from({ length: this.size }, (_, i) => Array.from(this.x.subarray(i * this.n, (i + 1) * this.n)));
  }

  /** The oldest row the buffer holds (a full ring's next to be overwritten). */
  get oldest(): number {
    return this.size < this.capacity ? 0 : this.head;
  }

  /** The row of the step k steps after row i's in the same episode, if the buffer holds it. */
  after(i: number, k: number): number | undefined {
    if (k === 0) return i;
    let seen = 0;
    for (let r = 1; r <= k * this.interleave; r++) {
      // past the newest row
      if ((this.head - 1 - i + this.capacity) % this.capacity < r) return undefined;
      const j = (i + r) % this.capacity;
      if (this.episode[j] === this.episode[i] && ++seen === k) return j;
    }
    return undefined;
  }

  save(path: string): void {
    const header = Float64Array.of(this.capacity, this.n, this.m, this.size, this.head);
    const parts = [header, this.x, this.z, this.cost, this.next, this.abar, this.sigma, Float64Array.from(this.episode), this.estimate];
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
    // buffers written before the planner's estimates were kept end after the episodes
    const withoutEstimates = 5 + capacity * (2 * n + 3 * m + 2);
    const expected = withoutEstimates + capacity;
    if ((all.length !== expected && all.length !== withoutEstimates) || !(size >= 0 && size <= capacity)) throw new InputError(`replay buffer '${path}' has ${all.length} values, expected ${expected} (truncated?)`);
    const r = new Replay(capacity, n, m);
    let o = 5;
    for (const a of [r.x, r.z, r.cost, r.next, r.abar, r.sigma]) {
      a.set(all.subarray(o, o + a.length));
      o += a.length;
    }
    r.episode.set(all.subarray(o, o + capacity));
    if (all.length === expected) r.estimate.set(all.subarray(o + capacity, o + 2 * capacity));
    r.size = size;
    r.head = head;
    return r;
  }
}

/** The window of episodes whose networks `best/` holds: the last `checkpointEvery` before a checkpoint. */
export interface BestWindow {
  /** the window's last episode (1-based), whose networks were saved */
  episode: number;
  episodes: number;
  endInGoal: number;
  meanCost: number;
}

interface TrainState {
  episodesDone: number;
  updates: number;
  curve: EpisodePoint[];
  best?: BestWindow;
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
  /** episodes acted by workers through a BullMQ queue instead of here */
  remote?: RemoteActors;
}

export interface RemoteActors {
  url: string;
  /** episodes under way at once */
  actors: number;
  /** an actor's transitions that may be not yet learned from when it plans (0: each plan sees the networks its last step led to) */
  maxLag: number;
  log(line: string): void;
}

export interface TrainResult {
  meta: PriorMeta;
  curve: EpisodePoint[];
  wallS: number;
  backend: string;
  /** stopped early by the signal (the checkpoint holds the episodes done) */
  interrupted: boolean;
  /** with actors: how many, and how stale the networks they planned with were (updates behind the learner when their transition was learned from) */
  actors?: { count: number; maxLag: number; staleness: { mean: number; max: number } };
  /** the checkpoint in `best/`: the networks at the end of the window of episodes that ended in the goal most often */
  best?: BestWindow & { dir: string };
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
  const { def, model, periodS } = actingModels(run, train);
  const scaling = controlScaling(model);
  const n = model.stateDim;
  const m = model.controlDim;
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
  const current = () => LearnedPrior.fromNetworks(metaBase() as PriorMeta, networks);
  // the planner that acts (the E-step) here: every step in a single process, a planner for reanalyze with actors elsewhere
  const act = await acting(run, train, current());
  const gamma = train.gamma;
  const bestDir = join(opts.out, 'best');
  const writeCheckpoint = async () => {
    for (const k of NETWORK_NAMES) await readVariables(vars[k], networks[k]);
    const meta = saveCheckpoint(opts.out, networks, metaBase());
    // a loop can learn and then collapse (the acting planner's own data, bootstrapped targets): the networks of the
    // window of episodes that ended in the goal most often are kept apart, so a late collapse does not lose them
    const window = state.curve.slice(-train.checkpointEvery);
    const here: BestWindow = { episode: state.episodesDone, episodes: window.length, endInGoal: window.filter((p) => p.endsInGoal).length, meanCost: window.reduce((a, p) => a + p.meanCost, 0) / Math.max(1, window.length) };
    if (window.length && betterWindow(here, state.best)) {
      saveCheckpoint(bestDir, networks, metaBase());
      state.best = here;
    }
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
    const estimateShare = new Float32Array(B);
    const estimate = new Float32Array(B);
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
      const mix = bootstrapEstimate(replay, last, train.valueMix);
      estimateShare[b] = mix.share;
      estimate[b] = mix.estimate;
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
      // TRT-SMC's value targets: the bootstrap mixes the target network with the planner's own estimate there (train.valueMix);
      // at 1 (every MPPI run) the network alone, with no tensor work for a zero share
      const tShare = train.valueMix < 1 ? tf.tensor1d(estimateShare) : undefined;
      const tEstimate = tShare && tf.tensor1d(estimate);
      const bootstrap = (v: NetVariables) => (tShare ? tf.add(tf.mul(tf.sub(1, tShare), costOf(v)), tf.mul(tShare, tEstimate!)) : costOf(v));
      const targetQ = symlogT(tf.add(tRet, tf.mul(tDisc, bootstrap(vars.qTarget))));
      const klB = klRows(sB.mean, sB.logStd, pB.mean, pB.logStd);
      const penalty = Number.isFinite(lambda) ? tf.mul(lambda / scales.kl.divisor, klB) : tf.zerosLike(klB);
      const targetQLambda = symlogT(tf.add(tRet, tf.mul(tDisc, tf.add(bootstrap(vars.qLambdaTarget), penalty))));
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
    const fresh = await act.planner(Math.floor(rng.uniform() * 2 ** 31));
    for (let r = 0; r < Math.min(train.reanalyzeCount, replay.size); r++) {
      const i = Math.floor(rng.uniform() * replay.size);
      fresh.reset();
      await fresh.plan({ x0: Array.from(replay.x.subarray(i * n, (i + 1) * n)), uPrev: new Array<number>(m).fill(0), reference });
      const first = fresh.firstStep!()!;
      replay.abar.set(first.mean, i * m);
      replay.sigma.set(first.sigma, i * m);
    }
  };

  /** An episode under way, as the learner sees it: its random stream (the start's, then the updates'), its figures so far. */
  interface Episode { e: number; rng: Rng; point: EpisodePoint; inGoal: boolean; startedMs: number; steps: number }
  const begin = (e: number): Episode & { start: number[] } => {
    const { rng, start } = episodeStart(run, act, train.startSpread, e);
    return { e, rng, start, inGoal: false, startedMs: performance.now(), steps: 0, point: { episode: e + 1, meanCost: 0, goalS: 0, endsInGoal: false, updates: 0, qLoss: 0, priorLoss: 0, policyLoss: 0, wallS: 0 } };
  };
  /** Learns from one transition (Algorithm 2's inner loop); true when the networks changed. */
  const learn = async (tr: Transition, ep: Episode): Promise<boolean> => {
    // an estimate that is not finite crosses the queue as null: none
    replay.push(tr.x, tr.z, tr.cost, tr.next, tr.abar, tr.sigma, tr.episode, Number.isFinite(tr.estimate) ? tr.estimate : NaN);
    ep.point.meanCost += tr.cost / act.ticks;
    ep.inGoal = tr.inGoal;
    if (tr.inGoal) ep.point.goalS += periodS;
    if (replay.size < Math.min(train.batch, 64)) return false;
    // the state scales fitted to the first data, before the first update (the networks have seen nothing yet)
    if (state.updates === 0) fitScales(features, replay.x, replay.size, reference);
    for (let k = 0; k < train.updatesPerStep; k++) {
      const l = await update(ep.rng);
      ep.point.qLoss += l.q;
      ep.point.priorLoss += l.prior;
      ep.point.policyLoss += l.policy;
      ep.point.updates++;
      if (train.reanalyzeEvery > 0 && state.updates % train.reanalyzeEvery === 0) await reanalyze(ep.rng);
    }
    act.guide.prior = current();
    return true;
  };
  let meta: PriorMeta | undefined;
  const finish = async (ep: Episode) => {
    const point = ep.point;
    if (point.updates) {
      point.qLoss /= point.updates;
      point.priorLoss /= point.updates;
      point.policyLoss /= point.updates;
    }
    point.endsInGoal = ep.inGoal;
    point.wallS = (performance.now() - ep.startedMs) / 1000;
    state.curve.push(point);
    state.episodesDone++;
    if (state.episodesDone % train.checkpointEvery === 0 || state.episodesDone === train.episodes || opts.signal?.aborted) meta = await writeCheckpoint();
    opts.onEpisode?.({ episode: state.episodesDone, episodes: train.episodes, point });
  };
  /**
   * Episodes acted by workers (train-prior --queue): up to `actors` episode
   * jobs at once on the BullMQ queue; transitions learned from in arrival
   * order, each acknowledged after the networks it led to are published.
   */
  const learnFromActors = async (remote: RemoteActors): Promise<NonNullable<TrainResult['actors']>> => {
    const channel = await LearnerChannel.open(remote.url, { run, train, maxLag: remote.maxLag });
    // between two steps of an episode, each other actor may have sent up to maxLag + 1 steps
    replay.interleave = 1 + (remote.actors - 1) * (remote.maxLag + 1);
    await channel.publish(state.updates, metaBase() as PriorMeta, networks);
    const queue = await openQueue<QueuedJob, unknown>(remote.url, (up, why) => remote.log(up ? 'Redis is back' : `Redis is unreachable (${why}): waiting for it`));
    const inflight = new Map<number, Episode>();
    const jobs = new Map<number, string>();
    const staleness: number[] = [];
    let next = state.episodesDone;
    const fill = async () => {
      while (inflight.size < remote.actors && next < train.episodes && !opts.signal?.aborted) {
        const ep = begin(next++);
        inflight.set(ep.e, ep);
        const id = `train-${channel.run}-e${ep.e}`;
        jobs.set(ep.e, id);
        const argv = ['train-actor', `--run=${channel.run}`, `--episode=${ep.e}`, `--start=${ep.start.join(',')}`];
        await queue.add('train-actor', { kind: 'train-actor', argv, cell: ep.e }, { jobId: id, attempts: 1 });
      }
    };
    try {
      await fill();
      let quietS = 0;
      while (inflight.size && !opts.signal?.aborted) {
        const tr = await channel.next(1);
        if (!tr) {
          // an actor that failed fails the run: its episode is half learned from
          for (const [e, id] of jobs) {
            const job = await queue.getJob(id);
            if (job && await job.isFailed()) throw new Error(`the actor of episode ${e + 1} failed: ${job.failedReason}`);
          }
          if (++quietS % 15 === 0 && (await queue.getWorkersCount()) === 0) remote.log(`no worker takes jobs from the queue: start one (tempered-mpc worker --queue URL)`);
          continue;
        }
        quietS = 0;
        const ep = inflight.get(tr.episode);
        if (!ep) throw new Error(`a transition of episode ${tr.episode + 1}, which is not under way`);
        // a worker lost mid-episode and its job run again by another would send the episode's first steps twice
        if (tr.t !== ep.steps) throw new Error(`episode ${tr.episode + 1} sent step ${tr.t + 1} after ${ep.steps}: its actor was lost mid-episode and started again (continue from the last checkpoint with --resume)`);
        ep.steps++;
        staleness.push(state.updates - tr.version);
        if (await learn(tr, ep)) await channel.publish(state.updates, metaBase() as PriorMeta, networks);
        await channel.acknowledge(tr.episode);
        if (tr.t === act.ticks - 1) {
          inflight.delete(ep.e);
          jobs.delete(ep.e);
          await finish(ep);
          await fill();
        }
      }
    } finally {
      // waiting jobs are taken back; running actors see the run stop
      for (const id of jobs.values()) await queue.remove(id).catch(() => 0);
      await channel.close();
      await queue.close();
    }
    const mean = staleness.length ? staleness.reduce((a, b) => a + b, 0) / staleness.length : 0;
    return { count: remote.actors, maxLag: remote.maxLag, staleness: { mean, max: staleness.length ? Math.max(...staleness) : 0 } };
  };
  let actors: TrainResult['actors'];
  try {
    if (opts.remote) actors = await learnFromActors(opts.remote);
    else {
      for (let e = state.episodesDone; e < train.episodes && !opts.signal?.aborted; e++) {
        const ep = begin(e);
        // the learner takes each transition before the next plan, which sees the networks it led to
        await actEpisode(act, run, e, ep.start, () => state.updates, async (tr) => {
          await learn(tr, ep);
        });
        await finish(ep);
        // the tensor work never waits on I/O: let a signal's handler run between episodes
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    // the last episodes since a periodic checkpoint are written too (a signal between episodes ends the loop at its top)
    if (!meta || meta.episodes !== state.episodesDone) meta = await writeCheckpoint();
  } finally {
    act.dispose();
    for (const k of NETWORK_NAMES) for (const l of vars[k]) {
      l.weight.dispose();
      l.bias.dispose();
    }
    for (const o of Object.values(optimizers)) o.dispose();
  }
  return { meta, curve: state.curve, wallS: (performance.now() - t0) / 1000, backend: backendName, interrupted: opts.signal?.aborted === true, actors, best: state.best && { ...state.best, dir: bestDir } };
}

/** More of the window's episodes ended in the goal (its share, windows may differ in length), or as many at a lower mean cost. */
export function betterWindow(a: BestWindow, b: BestWindow | undefined): boolean {
  if (!b) return true;
  const share = a.endInGoal / a.episodes - b.endInGoal / b.episodes;
  return share > 1e-12 || (Math.abs(share) <= 1e-12 && a.meanCost < b.meanCost);
}

/** The largest estimate the bootstrap takes: the target networks' own outputs are capped there too (e^40 in symlog units). */
const ESTIMATE_CAP = Math.expm1(40);

/**
 * The bootstrap of a TD target whose last observed row is `last`: the share
 * 1 - valueMix given to the acting planner's estimate at the state after it
 * (TRT-SMC's V-hat = sigma V_theta + (1 - sigma) V_SMC), and that estimate;
 * share 0 where the buffer holds no row after it in the episode or the
 * planner gave none there.
 */
export function bootstrapEstimate(replay: Replay, last: number, valueMix: number): { share: number; estimate: number } {
  if (valueMix >= 1) return { share: 0, estimate: 0 };
  const after = replay.after(last, 1);
  const e = after === undefined ? NaN : replay.estimate[after];
  return Number.isFinite(e) ? { share: 1 - valueMix, estimate: Math.min(e, ESTIMATE_CAP) } : { share: 0, estimate: 0 };
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

