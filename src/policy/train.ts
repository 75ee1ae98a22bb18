import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../input-error.js';
import { choice, num, ParamsOf, resolveParams, text } from '../params.js';
import { loadCheckpoint, saveCheckpoint, writeFileAtomic, PriorMeta } from '../learned/checkpoint.js';
import { initMlp } from '../learned/mlp.js';
import { LOG_STD_RANGE, PriorNetworks } from '../learned/networks.js';
import { Rng } from '../random.js';
import { nutsKernel, NutsWorkspace } from '../samplers/nuts.js';
import { quantile } from '../samplers/stats.js';
import { temperedSmc, TemperedState } from '../samplers/tempering.js';
import { ClosedLoop, RolloutNoise, drawFromPrior, fromPriorPolicy, layerSizes, policyShape, PolicyShape, priorStd, toPriorPolicy } from './closed-loop.js';
import { ClosedLoopEvaluator, ClosedLoopPool } from './pool.js';
import { disturbedStates, type Model } from '../models/model.js';
import { composedMove, drawPhysicalStarts, heldStartsMass, PolicyTarget, startsRefresh, toModelStarts } from './target.js';
import { POLICY_TASKS, PolicyTask, startRegionProblem, taskModel } from './tasks.js';
import { goalCatch, PolicyCatch } from './catch.js';
import { costTrack } from './track.js';
import { IlqgTeacher } from './teacher.js';

export const POLICY_METHODS = ['tsmc-d', 'tsmc-e', 'gradient'] as const;
export type PolicyMethod = (typeof POLICY_METHODS)[number];

/**
 * train-policy's settings, declared once (--set KEY=value, the checkpoint's
 * record of its training). particles, batch, lambda and stepSize default to
 * the task's own (PolicyTask.defaults) where not given.
 */
export const POLICY_TRAIN_PARAMS = {
  method: choice('tsmc-d', POLICY_METHODS, 'tsmc-d: the B starts fixed (TSMC paper eqs. (21)-(22)); tsmc-e: each particle carries its starts, refreshed by Metropolis-Hastings (eqs. (23)-(29)); gradient: multi-start Adam on tsmc-d\'s energy (the baseline)'),
  particles: num(256, 'particles N (gradient: independent starts)', { min: 2, max: 1e6, integer: true }),
  batch: num(1, 'initial states B per energy evaluation', { min: 1, max: 1e6, integer: true }),
  seed: num(0, 'seed of the starts, the initial particles and every level\'s draws', { min: 0, max: 2 ** 31 - 1, integer: true }),
  lambda: num(100, 'temperature lambda of the Boltzmann tilt p0(theta) exp(-E(theta) / lambda)', { min: 0, max: 1e12, exclusive: true }),
  stepSize: num(0.001, 'initial NUTS step size (adapted towards targetAcceptance)', { min: 0, max: 100, exclusive: true }),
  maxTreeDepth: num(5, 'NUTS maximum tree depth', { min: 1, max: 12, integer: true }),
  movesPerLevel: num(2, 'NUTS moves per tempering level', { min: 1, max: 100, integer: true }),
  rho: num(0.8, 'target ESS fraction after each reweighting', { min: 0, max: 1, exclusive: true }),
  targetAcceptance: num(0.65, 'adapt the step size towards this acceptance (0 = fixed)', { min: 0, max: 0.99 }),
  maxLevels: num(1000, 'stop after this many tempering levels (or Adam blocks of 50 iterations)', { min: 1, max: 100000, integer: true }),
  priorScale: num(1, 'multiplies the prior\'s stds over the weights (Glorot) and biases (0.1)', { min: 0, max: 100, exclusive: true }),
  init: text('', 'a policy checkpoint (train-policy --out) of this task\'s shape whose weights centre the prior, so the initial particles (gradient: the starts) are drawn around it: to refine a policy, e.g. on a longer horizon (with a smaller priorScale); empty: the prior is centred on zero', { maxLength: 4096 }),
  iterations: num(2000, 'gradient: Adam iterations per start (set it to TSMC\'s gradient evaluations per particle for an equal budget)', { min: 1, max: 1e7, integer: true }),
  learningRate: num(0.003, 'gradient: Adam\'s learning rate', { min: 0, max: 10, exclusive: true }),
  backend: choice('cpu', ['cpu', 'webgpu'] as const, 'where the rollouts and their gradients run: cpu (f64, --threads) or webgpu (f32, one invocation per particle and start)'),
  catch: choice('none', ['none', 'lqr'] as const, 'lqr: the LQR at the goal balances inside the task\'s catch region and the network swings up into it, trained with the catch in the closed loop (src/policy/catch.ts); none: the network alone, as the paper\'s policy'),
  track: text('', 'a run\'s MCAP log (run --out DIR writes DIR/run.mcap) from the task\'s start that the training rollouts\' costs track step by step, the goal after the run entered its goal region: a controller\'s swing-up as shaping (src/policy/track.ts); the policy still sees only its error from the goal. CPU only; empty: the goal', { maxLength: 4096 }),
  teacher: choice('none', ['none', 'ilqg'] as const, 'gradient, a task with one start: ilqg: rounds of policy iteration with iLQG as the teacher: each round the best policy\'s closed loop is improved by iLQG on the task\'s own cost, and the round\'s rollouts track that path (src/policy/teacher.ts); the checkpoint keeps the policy of least own cost. none: the energy alone'),
  teacherEvery: num(4000, 'train.teacher: Adam iterations per round', { min: 50, max: 1e7, integer: true }),
  teacherIterations: num(3000, 'train.teacher: iLQG iterations per round at most (it stops earlier where no step lowers the cost)', { min: 1, max: 1e6, integer: true }),
  processNoise: num(0, 'white noise on the joint rates in every training rollout, std per sqrt(s) as sim.processNoise with processNoiseOn rates: one fixed draw per start and step (common random numbers; with a point start, give --batch B for B draws); 0: none. CPU only', { min: 0, max: 100 }),
  measurementNoise: num(0, 'noise on every state the policy sees in the training rollouts (the dynamics keep the true state), std as sim.measurementNoise: one fixed draw per start, step and state, as train.processNoise; 0: none. CPU only', { min: 0, max: 100 }),
  policyStd: num(0.1, 'the std the checkpoint\'s sampling policy gets around the trained policy, as MPPI\'s prior (normalised control units)', { min: Math.exp(LOG_STD_RANGE[0]), max: Math.exp(LOG_STD_RANGE[1]) }),
} as const;

export type PolicyTrainSettings = ParamsOf<typeof POLICY_TRAIN_PARAMS>;

/** The settings for a task: the schema's defaults, the task's own, then the user's (checked by the schema). */
export function resolvePolicySettings(task: PolicyTask, given: Readonly<Record<string, unknown>>): PolicyTrainSettings {
  return resolveParams('train-policy', POLICY_TRAIN_PARAMS, given, task.defaults);
}

/** One tempering level (or a block of Adam iterations), as the progress line, the curve and the checkpoint keep it. */
export interface PolicyLevel {
  level: number;
  beta: number;
  ess: number;
  acceptance: number;
  stepSize: number;
  /** energy quantiles over the particles after the level's moves: min, p10, p25, median, p75, p90, max */
  energy: number[];
  gradientEvaluations: number;
  wallS: number;
  /** of wallS, the time in the rollouts and their gradients (the rest is the sampler's own work); absent in levels saved before it was kept */
  rolloutS?: number;
  /** TSMC: how many initial particles the population still descends from (1: collapsed onto one particle's line); absent for Adam's blocks and levels saved before it was kept */
  lineages?: number;
  /** train.teacher: the lesson that began a round with this block (the energies of a round are its tracking energies; the policies' own costs are the lessons') */
  lesson?: { policyCost: number; teacherCost: number; teacherIterations: number; wallS: number };
}

interface BestPolicy {
  theta: Float64Array;
  energy: number;
}

export interface PolicyTrainResult {
  levels: PolicyLevel[];
  /** the least energy at any level's end (what the checkpoint holds) */
  best: BestPolicy;
  /** gradient evaluations per particle, all levels */
  gradientEvaluations: number;
  wallS: number;
  /** of wallS, the time in the rollouts and their gradients, the first evaluation (and a GPU's shader compile) included */
  rolloutS: number;
  finished: boolean;
  /** with a teacher and training noise (best.energy then being the cost judged under that noise: IlqgTeacher.cost), the best policy's cost without noise */
  noiseFreeCost?: number;
}

const STATE_FILE = 'training/state.json';
const PARTICLES_FILE = 'training/particles.bin';
/** each particle's initial ancestor (Int32), so a resumed run counts lineages as the uninterrupted one */
const ROOTS_FILE = 'training/roots.bin';

interface SavedState {
  task: string;
  settings: PolicyTrainSettings;
  model: Readonly<Record<string, number>>;
  beta: number;
  stepSize: number;
  logZ: number;
  levels: PolicyLevel[];
  wallS: number;
  finished: boolean;
  /** the least energy at any level's end and its policy's weights (absent in runs saved before it was kept) */
  best?: { energy: number; theta: number[] };
}

/** Bytes the run holds at its peak: the particles with NUTS's per-particle vectors (about 13 + 2 depth of them), and one batch of closed-loop rollouts. */
export function memoryEstimate(loop: ClosedLoop, dim: number, s: Pick<PolicyTrainSettings, 'particles' | 'batch' | 'maxTreeDepth'>): number {
  const perStep = loop.model.stateDim + loop.model.controlDim + loop.sizes.reduce((a, b) => a + b, 0);
  return 8 * (s.particles * dim * (13 + 2 * s.maxTreeDepth) + (loop.horizon + 1) * s.batch * perStep);
}

/**
 * Trains a feedback policy for `task` by TSMC:D, TSMC:E or the gradient
 * baseline, writing the best particle as a prior checkpoint in `out` after
 * every level (with the sampler's state, so `resume` continues where a run
 * stopped: each level draws from its own stream, seeded by the seed and the
 * level, so a resumed run repeats an uninterrupted one).
 */
export async function trainPolicy(task: PolicyTask, settings: PolicyTrainSettings, opts: {
  out: string; resume: boolean; version: string; signal?: AbortSignal; onLevel?: (l: PolicyLevel) => void;
  /** threads for the rollouts (default 1); results do not depend on it. A task that is not registered runs on this thread. */
  threads?: number;
  /** the task's model parameters changed (e.g. dtS and horizon to match a controller's step) */
  model?: Readonly<Record<string, number>>;
}): Promise<PolicyTrainResult> {
  const model = taskModel(task, opts.model);
  const shape = policyShape(model, task.hidden, task.rawScale, policyCatch(task, settings, model));
  const noise = rolloutNoise(task, settings, model);
  const track = costTrack(task, settings, model);
  const loop = new ClosedLoop(model, shape, model.horizon, model.goal, noise, track);
  const teacher = policyTeacher(task, settings, model, shape, noise);
  // refused before any thread or GPU buffer is made
  const bytes = memoryEstimate(loop, settings.method === 'tsmc-e' ? loop.parameters + settings.batch * model.stateDim : loop.parameters, settings);
  if (bytes > 0.5 * totalmem()) {
    throw new InputError(`--particles ${settings.particles} with --batch ${settings.batch} needs about ${(bytes / 2 ** 30).toFixed(1)} GiB, more than half this machine's ${(totalmem() / 2 ** 30).toFixed(1)} GiB: use fewer particles or starts`);
  }
  const registered = POLICY_TASKS.includes(task);
  let evaluator: ClosedLoopEvaluator | undefined;
  if (settings.backend === 'webgpu') {
    const { WebGpuBackend } = await import('../kernels/webgpu.js');
    const { GpuClosedLoop } = await import('./gpu.js');
    evaluator = await GpuClosedLoop.create(await WebGpuBackend.create(model), loop);
  } else if (registered && (opts.threads ?? 1) > 1) {
    evaluator = new ClosedLoopPool(loop, { task: task.name, model: opts.model ?? {}, catch: shape.catch, noise, track }, opts.threads!);
  }
  try {
    return await train(task, settings, opts, model, shape, loop, evaluator, teacher);
  } finally {
    evaluator?.dispose();
  }
}

async function train(
  task: PolicyTask, settings: PolicyTrainSettings, opts: Parameters<typeof trainPolicy>[2],
  model: Model, shape: PolicyShape, loop: ClosedLoop, evaluator: ClosedLoopEvaluator | undefined, teacher: IlqgTeacher | undefined,
): Promise<PolicyTrainResult> {
  const std = priorStd(loop.sizes, settings.priorScale);
  const mean = settings.init ? initialPolicy(settings.init, model, shape) : undefined;
  const setupRng = new Rng(settings.seed);
  const physical = drawPhysicalStarts(setupRng, task.starts, settings.batch);
  const carried = settings.method === 'tsmc-e';
  const target = new PolicyTarget(loop, settings.lambda, std, settings.batch, carried ? undefined : toModelStarts(model, physical), evaluator, mean);
  mkdirSync(join(opts.out, 'training'), { recursive: true });
  const statePath = join(opts.out, STATE_FILE);
  let saved: SavedState | undefined;
  let positions: Float64Array;
  if (opts.resume && existsSync(statePath)) {
    saved = JSON.parse(readFileSync(statePath, 'utf8')) as SavedState;
    // how far to go (maxLevels, iterations) may change: the levels already run do not depend on it
    const same = (a: PolicyTrainSettings) => JSON.stringify({ ...a, maxLevels: 0, iterations: 0 });
    // a setting added since the run was saved is taken at its default, which the run had in effect
    const savedSettings = { ...resolvePolicySettings(task, {}), ...saved.settings };
    if (saved.task !== task.name || same(savedSettings) !== same(settings) || JSON.stringify(saved.model) !== JSON.stringify(opts.model ?? {})) {
      throw new InputError(`--resume: ${opts.out} holds a run of task ${saved.task} with other settings (${JSON.stringify({ ...saved.settings, model: saved.model })}); resume with the same ones, or give a new --out`);
    }
    const bin = readFileSync(join(opts.out, PARTICLES_FILE));
    positions = new Float64Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length));
    if (positions.length !== settings.particles * target.dim) throw new InputError(`--resume: ${join(opts.out, PARTICLES_FILE)} holds ${positions.length} values, expected ${settings.particles * target.dim} (truncated or from another run)`);
    if (saved.best && !(Array.isArray(saved.best.theta) && saved.best.theta.length === target.parameters)) {
      throw new InputError(`--resume: ${statePath}'s best policy has ${Array.isArray(saved.best.theta) ? saved.best.theta.length : 'no'} weights, expected ${target.parameters} (edited or from another run)`);
    }
  } else {
    positions = new Float64Array(settings.particles * target.dim);
    const theta = drawFromPrior(setupRng, std, settings.particles, mean);
    for (let i = 0; i < settings.particles; i++) {
      positions.set(theta.subarray(i * target.parameters, (i + 1) * target.parameters), i * target.dim);
      if (carried) positions.set(toModelStarts(model, drawPhysicalStarts(setupRng, task.starts, settings.batch)), i * target.dim + target.parameters);
    }
  }
  const logStdBias = headBiasFor(settings.policyStd);
  const metaBase = checkpointMeta(task, model, shape, { ...settings, ...(opts.model ? { model: opts.model } : {}) }, opts.version);
  // the checkpoint holds the least energy seen at any level's end, not the last level's best: Adam can climb out of a good basin (on the cart double pendulum it does)
  let best: BestPolicy | undefined = saved?.best ? { energy: saved.best.energy, theta: Float64Array.from(saved.best.theta) } : undefined;
  const offer = (positions: Float64Array, energy: Float64Array, levels: number) => {
    const i = bestOf(energy);
    if (best && Number.isFinite(best.energy) && !(energy[i] < best.energy)) return;
    best = { energy: energy[i], theta: positions.slice(i * target.dim, i * target.dim + target.parameters) };
    saveCheckpoint(opts.out, policyNetworks(best.theta, loop.sizes, logStdBias, new Rng(0)), { ...metaBase, updates: levels });
  };
  const startMs = performance.now() - 1000 * (saved?.wallS ?? 0);
  const levels: PolicyLevel[] = saved?.levels ?? [];
  const resumedRolloutS = levels.reduce((a, l) => a + (l.rolloutS ?? 0), 0);
  const rolloutS = () => resumedRolloutS + target.rolloutMs / 1000;
  const persist = (s: Omit<SavedState, 'task' | 'settings' | 'model' | 'levels' | 'wallS'>, particles: Float64Array) => {
    writeFileAtomic(join(opts.out, PARTICLES_FILE), particles);
    const kept = best && { energy: best.energy, theta: Array.from(best.theta) };
    writeFileAtomic(statePath, `${JSON.stringify({ task: task.name, settings, model: opts.model ?? {}, levels, wallS: (performance.now() - startMs) / 1000, best: kept, ...s } satisfies SavedState)}\n`);
  };

  if (settings.method === 'gradient') {
    const rounds = teacher && { teacher, priorStd: std, trackFirst: settings.track !== '' && !saved, init: mean };
    const run = await adamBaseline(target, positions, settings, { levels, startMs, saved, persist, offer, onLevel: opts.onLevel, signal: opts.signal, rounds });
    const kept = best ?? run.best;
    return { ...run, best: kept, rolloutS: rolloutS(), ...(teacher && loop.noise ? { noiseFreeCost: teacher.noiseFreeCost(kept.theta) } : {}) };
  }
  // every level's moves work in the same arrays (at N = 16000 fresh ones cost more than the moves' arithmetic)
  const workspace = new NutsWorkspace();
  const kernelFor = (stepSize: number, inverseMass?: Float64Array) => {
    const nuts = nutsKernel({ stepSize, maxTreeDepth: settings.maxTreeDepth, inverseMass: carried ? heldStartsMass(target, inverseMass) : inverseMass, workspace });
    return carried ? composedMove([nuts, startsRefresh((rng, count) => toModelStarts(model, drawPhysicalStarts(rng, task.starts, count)))]) : nuts;
  };
  const smc = temperedSmc(target, kernelFor, {
    rho: settings.rho, resampling: 'systematic', movesPerLevel: settings.movesPerLevel, maxLevels: settings.maxLevels,
    stepSize: settings.stepSize, targetAcceptance: settings.targetAcceptance,
  });
  let state: TemperedState = await smc.init(positions, saved?.beta ?? 0, saved ? savedRoots(join(opts.out, ROOTS_FILE), settings.particles) : undefined);
  if (saved) state = { ...state, stepSize: saved.stepSize, logZ: saved.logZ };
  let finished = saved?.finished ?? false;
  while (!finished && !opts.signal?.aborted) {
    if (levels.length >= settings.maxLevels) break;
    const levelStart = performance.now();
    const rolloutMs = target.rolloutMs;
    state = await smc.step(new Rng(levelSeed(settings.seed, levels.length)), state);
    const info = state.levels[state.levels.length - 1];
    const level: PolicyLevel = {
      level: levels.length + 1, beta: state.beta, ess: info.ess, acceptance: info.acceptance, stepSize: info.stepSize,
      energy: energyQuantiles(state.particles.energy), gradientEvaluations: info.gradientEvaluations, wallS: (performance.now() - levelStart) / 1000,
      rolloutS: (target.rolloutMs - rolloutMs) / 1000, lineages: info.lineages,
    };
    levels.push(level);
    finished = state.beta >= 1;
    offer(state.particles.positions, state.particles.energy, levels.length);
    writeFileAtomic(join(opts.out, ROOTS_FILE), state.roots);
    persist({ beta: state.beta, stepSize: state.stepSize, logZ: state.logZ, finished }, state.particles.positions);
    opts.onLevel?.(level);
    // a level on one thread never waits on I/O: let a signal's handler run before the next
    await new Promise((resolve) => setImmediate(resolve));
  }
  const last = bestOf(state.particles.energy);
  return {
    levels, best: best ?? { theta: state.particles.positions.slice(last * target.dim, last * target.dim + target.parameters), energy: state.particles.energy[last] },
    gradientEvaluations: levels.reduce((s, l) => s + l.gradientEvaluations, 0), wallS: (performance.now() - startMs) / 1000, rolloutS: rolloutS(), finished,
  };
}

/** A resumed run's ancestry (absent or not N of them, as in runs saved before it was kept: each particle its own again). */
function savedRoots(path: string, particles: number): Int32Array | undefined {
  if (!existsSync(path)) return undefined;
  const bin = readFileSync(path);
  const roots = new Int32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length));
  return roots.length === particles && roots.every((r) => r >= 0 && r < particles) ? roots : undefined;
}

/**
 * The baseline: multi-start Adam on the same energy (TSMC:D's fixed starts,
 * the prior as a regulariser, as the tempered target at beta = 1 has it),
 * from the same initial particles, in blocks of iterations reported as levels.
 */
async function adamBaseline(target: PolicyTarget, positions: Float64Array, s: PolicyTrainSettings, ctx: {
  levels: PolicyLevel[]; startMs: number; saved?: SavedState; signal?: AbortSignal;
  persist: (st: Omit<SavedState, 'task' | 'settings' | 'model' | 'levels' | 'wallS'>, particles: Float64Array) => void;
  /** the block's particles, for the run's best */
  offer: (positions: Float64Array, energy: Float64Array, levels: number) => void;
  onLevel?: (l: PolicyLevel) => void;
  /** train.teacher: its rounds (the first tracks train.track's log where one is given) */
  rounds?: { teacher: IlqgTeacher; priorStd: Float64Array; trackFirst: boolean; init?: Float64Array };
}): Promise<Omit<PolicyTrainResult, 'rolloutS'>> {
  const { dim } = target;
  const N = s.particles;
  const BLOCK = 50;
  const blocks = Math.ceil(s.iterations / BLOCK);
  // Adam's moments are not checkpointed: a resumed run restarts them (said in the docs)
  const m1 = new Float64Array(N * dim);
  const m2 = new Float64Array(N * dim);
  let iteration = ctx.levels.length * BLOCK;
  // Adam's step count, from the round's start (its bias correction restarts with its moments)
  let roundStart = iteration;
  const [b1, b2] = [0.9, 0.999];
  const rounds = ctx.rounds;
  /** the round's policy of least own cost at any block's end: the next round's lesson starts from it; before the first, train.init's policy itself (the starts are only drawn around it, and a swing-up does not survive every draw) */
  let roundBest: BestPolicy | undefined;
  if (rounds?.init && !ctx.saved) {
    const energy = rounds.teacher.cost(rounds.init);
    if (Number.isFinite(energy)) roundBest = { energy, theta: Float64Array.from(rounds.init) };
  }
  /** each particle's own cost (a round's energies are its tracking energies, and Adam's path through a round is not monotone), offered for the run's best and the round's */
  const offerOwnCosts = () => {
    const own = new Float64Array(N);
    for (let i = 0; i < N; i++) own[i] = rounds!.teacher.cost(positions.subarray(i * dim, i * dim + target.parameters));
    ctx.offer(positions, own, ctx.levels.length);
    const i = bestOf(own);
    if (!roundBest || own[i] < roundBest.energy || !Number.isFinite(roundBest.energy)) roundBest = { energy: own[i], theta: positions.slice(i * dim, i * dim + target.parameters) };
  };
  /**
   * A round: the lesson from the last round's best policy (by own cost; not
   * the run's best, which would repeat its lesson when a round does not beat
   * it), its path as the track, every start drawn around that policy afresh
   * (the first is the policy).
   */
  const beginRound = async (): Promise<PolicyLevel['lesson']> => {
    const begun = performance.now();
    offerOwnCosts();
    const best = roundBest!;
    roundBest = undefined;
    const lesson = await rounds!.teacher.lesson(best.theta, ctx.signal);
    // a policy whose own rollout diverged teaches nothing: the round keeps the last path
    if (lesson.track) target.setTrack(lesson.track);
    target.recentre(best.theta);
    const drawn = drawFromPrior(new Rng(levelSeed(s.seed, ctx.levels.length) ^ 0x5bd1e995), rounds!.priorStd, N, best.theta);
    for (let i = 0; i < N; i++) positions.set(i === 0 ? best.theta : drawn.subarray(i * target.parameters, (i + 1) * target.parameters), i * dim);
    m1.fill(0);
    m2.fill(0);
    roundStart = iteration;
    return { policyCost: lesson.policyCost, teacherCost: lesson.teacherCost, teacherIterations: lesson.teacherIterations, wallS: (performance.now() - begun) / 1000 };
  };
  // train.init's policy is a candidate for the run's best too: a run that never beats it keeps it
  if (roundBest) ctx.offer(roundBest.theta, Float64Array.of(roundBest.energy), ctx.levels.length);
  let lesson = rounds && !rounds.trackFirst ? await beginRound() : undefined;
  let ev = await target.evaluate(positions, N);
  while (ctx.levels.length < blocks && !ctx.signal?.aborted) {
    if (rounds && !lesson && iteration - roundStart >= s.teacherEvery) {
      lesson = await beginRound();
      // a lesson cut short by a signal starts no round: a resumed run begins a new one here
      if (ctx.signal?.aborted) break;
      ev = await target.evaluate(positions, N);
    }
    const blockStart = performance.now();
    const rolloutMs = target.rolloutMs;
    const until = Math.min(s.iterations, iteration + BLOCK);
    const done = until - iteration;
    for (; iteration < until; iteration++) {
      const t = iteration - roundStart + 1;
      for (let k = 0; k < N * dim; k++) {
        const g = ev.energyGrad[k] / s.lambda + ev.priorGrad[k];
        if (!Number.isFinite(g)) continue;
        m1[k] = b1 * m1[k] + (1 - b1) * g;
        m2[k] = b2 * m2[k] + (1 - b2) * g * g;
        positions[k] -= s.learningRate * (m1[k] / (1 - b1 ** t)) / (Math.sqrt(m2[k] / (1 - b2 ** t)) + 1e-8);
      }
      ev = await target.evaluate(positions, N);
    }
    const level: PolicyLevel = {
      level: ctx.levels.length + 1, beta: 1, ess: N, acceptance: 1, stepSize: s.learningRate,
      energy: energyQuantiles(ev.energy), gradientEvaluations: done, wallS: (performance.now() - blockStart) / 1000,
      rolloutS: (target.rolloutMs - rolloutMs) / 1000, ...(lesson ? { lesson } : {}),
    };
    lesson = undefined;
    ctx.levels.push(level);
    // with a teacher the energies are distances from a path: the run's best is chosen by own cost
    if (rounds) {
      offerOwnCosts();
    } else {
      ctx.offer(positions, ev.energy, ctx.levels.length);
    }
    ctx.persist({ beta: 1, stepSize: s.learningRate, logZ: 0, finished: ctx.levels.length >= blocks }, positions);
    ctx.onLevel?.(level);
    await new Promise((resolve) => setImmediate(resolve));
  }
  const best = bestOf(ev.energy);
  const theta = positions.slice(best * dim, best * dim + target.parameters);
  return {
    levels: ctx.levels, best: { theta, energy: ev.energy[best] },
    gradientEvaluations: ctx.levels.reduce((a, l) => a + l.gradientEvaluations, 0), wallS: (performance.now() - ctx.startMs) / 1000,
    finished: ctx.levels.length >= blocks,
  };
}

/** The policy's catch when train.catch asks for one, refused with one line for a task without a catch region or a goal the LQR cannot hold. */
export function policyCatch(task: PolicyTask, settings: Pick<PolicyTrainSettings, 'catch'>, model: Model): PolicyCatch | undefined {
  if (settings.catch === 'none') return undefined;
  if (!task.catchRadii) throw new InputError(`train.catch = lqr: task ${task.name} declares no catch region (its tasks.ts entry has no catchRadii)`);
  return goalCatch(model, task.catchRadii, 'train.catch = lqr');
}

/** Why train.teacher's rounds cannot run with these settings, as the one line to refuse with; undefined where they can (or no teacher is asked for). */
export function teacherProblem(task: PolicyTask, settings: Pick<PolicyTrainSettings, 'teacher' | 'method' | 'backend'>): string | undefined {
  if (settings.teacher === 'none') return undefined;
  const what = `train.teacher = ${settings.teacher}`;
  if (settings.method !== 'gradient') return `${what} runs with --method gradient: each round changes the energy, which tempering's sequence of targets cannot follow (refine its policy with --method ${settings.method} --init DIR after)`;
  if (settings.backend !== 'cpu') return `${what} runs on the CPU closed loop only: set train.backend to cpu`;
  return startRegionProblem(task, what, 'the teacher plans from the one state a task starts at');
}

/** The teacher train.teacher asks for, refused with one line where its rounds cannot run. */
function policyTeacher(task: PolicyTask, settings: PolicyTrainSettings, model: Model, shape: PolicyShape, noise: RolloutNoise | undefined): IlqgTeacher | undefined {
  const problem = teacherProblem(task, settings);
  if (problem) throw new InputError(problem);
  return settings.teacher === 'none' ? undefined : new IlqgTeacher(task, model, shape, settings.teacherIterations, noise);
}

/** The training rollouts' noise when train.processNoise or train.measurementNoise asks for it, refused with one line where it cannot be added as the simulator adds it. */
export function rolloutNoise(task: PolicyTask, settings: Pick<PolicyTrainSettings, 'processNoise' | 'measurementNoise' | 'backend' | 'seed'>, model: Model): RolloutNoise | undefined {
  const given = (['processNoise', 'measurementNoise'] as const).filter((key) => settings[key] > 0);
  if (given.length === 0) return undefined;
  const what = given.map((key) => `train.${key} = ${settings[key]}`).join(' and ');
  const keys = given.map((key) => `train.${key}`).join(' and ');
  if (settings.backend !== 'cpu') throw new InputError(`${what} runs on the CPU closed loop only: set train.backend to cpu, or ${keys} to 0`);
  // the simulator adds it to the physical state: the same draws in model units only where the two are one
  if (model.def.physical) throw new InputError(`${what}: ${task.system}'s model state is not its physical state, where the simulator adds the noise`);
  let states: readonly number[] = [];
  if (settings.processNoise > 0) {
    const rates = disturbedStates(model.def, 'rates');
    if (typeof rates === 'string') throw new InputError(`train.processNoise = ${settings.processNoise}: ${rates}`);
    states = rates;
  }
  // a stream of its own: the starts and the initial particles draw from `seed` itself
  return { std: settings.processNoise, states, measurementStd: settings.measurementNoise, seed: settings.seed * 7919 + 17 };
}

/** train.init's policy checked against the task (with its model overrides) before anything runs; throws the refusal. */
export function checkInitialPolicy(task: PolicyTask, dir: string, modelOverrides?: Readonly<Record<string, number>>): void {
  const model = taskModel(task, modelOverrides);
  initialPolicy(dir, model, policyShape(model, task.hidden, task.rawScale));
}

/** The weights of train.init's policy, refused with one line unless it is a policy of this task's system, features and layers. */
function initialPolicy(dir: string, model: Model, shape: PolicyShape): Float64Array {
  const what = `train.init '${dir}'`;
  let checkpoint: ReturnType<typeof loadCheckpoint>;
  try {
    checkpoint = loadCheckpoint(dir);
  } catch (e) {
    // the checkpoint's own reason, said as the setting the user gave
    if (e instanceof InputError) throw new InputError(`${what}: ${e.message}`);
    throw e;
  }
  const { meta, networks } = checkpoint;
  if (meta.system !== model.name) throw new InputError(`${what} is a policy for ${meta.system}, this task's system is ${model.name}`);
  const { theta, sizes } = fromPriorPolicy(networks.policy);
  const want = layerSizes(shape);
  if (sizes.join('x') !== want.join('x')) throw new InputError(`${what} has layers ${sizes.join(' x ')}, this task's policy ${want.join(' x ')}`);
  if (JSON.stringify(meta.features) !== JSON.stringify(shape.features)) throw new InputError(`${what} reads other state features than this task's policy (${JSON.stringify(meta.features)})`);
  if (!theta.every(Number.isFinite)) throw new InputError(`${what} has non-finite weights`);
  return theta;
}

function levelSeed(seed: number, level: number): number {
  return (Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(level + 1, 0x85ebca6b)) >>> 0;
}

/** The particle of least finite energy (a diverged rollout's NaN never wins); 0 when none is finite. */
function bestOf(energy: Float64Array): number {
  let best = -1;
  for (let i = 0; i < energy.length; i++) if (Number.isFinite(energy[i]) && (best < 0 || energy[i] < energy[best])) best = i;
  return Math.max(0, best);
}

function energyQuantiles(e: Float64Array): number[] {
  const finite = Float64Array.from(e).filter(Number.isFinite);
  if (!finite.length) return new Array<number>(7).fill(NaN);
  return [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1].map((q) => quantile(finite, q));
}

/** The log-std head's bias that makes gaussianHead's std `std` (normalised units, inside LOG_STD_RANGE). */
export function headBiasFor(std: number): number {
  const [lo, hi] = LOG_STD_RANGE;
  const u = (2 * (Math.log(std) - lo)) / (hi - lo) - 1;
  return Math.atanh(Math.max(-0.999999, Math.min(0.999999, u)));
}

/**
 * The checkpoint's networks: the policy as the sampling policy and as the
 * adaptive prior; the value networks have zero output weights (Q = 0) and
 * the metadata says there is no value (`hasValue: false`), so a planner
 * asked to bootstrap from it refuses.
 */
function policyNetworks(theta: Float64Array, sizes: readonly number[], logStdBias: number, rng: Rng): PriorNetworks {
  const policy = toPriorPolicy(theta, sizes, logStdBias);
  const [d, ...rest] = sizes;
  const hidden = rest.slice(0, -1);
  const m = rest[rest.length - 1];
  const q = () => initMlp(rng, [d + m, ...hidden, 1], 0);
  return { policy, prior: toPriorPolicy(theta, sizes, logStdBias), q: q(), qLambda: q(), qTarget: q(), qLambdaTarget: q() };
}

function checkpointMeta(task: PolicyTask, model: Model, shape: PolicyShape, settings: Record<string, unknown>, version: string): Omit<PriorMeta, 'format' | 'weights' | 'savedAt'> {
  return {
    version,
    system: model.name,
    stateNames: [...model.def.stateNames],
    controlNames: [...model.def.controlNames],
    stateDim: model.stateDim,
    controlDim: model.controlDim,
    horizon: model.horizon,
    dtS: model.dtS,
    reference: [...model.goal],
    features: shape.features,
    controlCenter: Array.from(shape.controlCenter),
    controlScale: Array.from(shape.controlScale),
    bounded: [...shape.bounded],
    hidden: [...shape.hidden],
    ...(shape.catch ? { catch: shape.catch } : {}),
    valueTransform: 'symlog',
    gamma: 1,
    hasValue: false,
    training: { trainer: 'train-policy', task: task.name, ...settings },
    episodes: 0,
    updates: 0,
  };
}
