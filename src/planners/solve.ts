import type { RolloutBackend } from '../kernels/backend.js';
import { inGoalRegion, Model } from '../models/model.js';
import { num, ParamsOf, resolveParams, Schema } from '../params.js';
import { Rng } from '../random.js';
import type { LevelInfo } from '../samplers/tempering.js';
import { initParticles, MoveInfo } from '../samplers/target.js';
import { mppi } from './mppi/mppi.js';
import { rows } from '../arrays.js';
import { projectedAdam } from './gradient.js';
import { ControlPrior, RolloutContext, TrajectoryTarget } from './problem.js';
import { boundedCoordinates, toControls } from '../models/controls.js';
import { MOVE_PARAMS, moveKernel, runTsmc, SAMPLING_PARAMS, TSMC_PARAMS } from './tsmc/tsmc.js';
import type { ModelDefinition } from '../models/model.js';
import { InputError } from '../input-error.js';

/** Trajectory optimisers: TSMC and the TSMC paper's baselines (§V), all started from the same prior particles. */
export const SOLVE_SCHEMAS = {
  tsmc: TSMC_PARAMS,
  mppi: {
    ...SAMPLING_PARAMS,
    iterations: num(64, 'MPPI planning steps per particle', { min: 1, integer: true }),
    samples: num(64, 'perturbations per particle and step', { min: 2, integer: true }),
    sigma: num(0.3, 'perturbation std (normalised control units)', { min: 0, exclusive: true }),
  },
  mala: {
    ...SAMPLING_PARAMS,
    steps: num(5000, 'MALA steps per particle (100x the NUTS baseline\'s steps, as in the paper)', { min: 1, integer: true }),
    stepSize: num(0.02, 'initial Langevin step size (normalised control units)', { min: 0, exclusive: true }),
    targetAcceptance: num(0.57, 'step size adapted towards this acceptance during the first half of the steps (0 = fixed)', { min: 0, max: 0.99 }),
  },
  nuts: {
    ...SAMPLING_PARAMS,
    ...MOVE_PARAMS,
    steps: num(50, 'NUTS (or HMC) moves per particle, targeting p* directly', { min: 1, integer: true }),
    targetAcceptance: num(0.75, 'step size adapted towards this acceptance during the first half of the steps (0 = fixed)', { min: 0, max: 0.99 }),
  },
  gradient: {
    ...SAMPLING_PARAMS,
    steps: num(300, 'projected Adam iterations per start', { min: 1, integer: true }),
    learningRate: num(0.05, 'Adam learning rate (normalised control units)', { min: 0, exclusive: true }),
  },
} as const satisfies Record<string, Schema>;

/** An offline trajectory optimiser (`solve --planner`, `bench to --methods`): not a receding-horizon planner of the registry, though two share a name with one. */
export type SolveMethod = keyof typeof SOLVE_SCHEMAS;
export const SOLVE_METHODS = Object.keys(SOLVE_SCHEMAS) as SolveMethod[];

export function parseSolveMethod(name: string): SolveMethod {
  if (!(SOLVE_METHODS as string[]).includes(name)) throw new InputError(`unknown planner '${name}' (known: ${SOLVE_METHODS.join(', ')})`);
  return name as SolveMethod;
}

/** Defaults for a method on a system: the schema's, then the model's own (its tuning.solve: the keys this method has), then the caller's overrides. */
export function resolveSolveParams<P extends SolveMethod>(planner: P, def: ModelDefinition, overrides: Record<string, unknown> = {}) {
  const schema = SOLVE_SCHEMAS[planner] as Schema;
  const systemDefaults = Object.fromEntries(Object.entries(def.tuning?.solve ?? {}).filter(([k]) => Object.hasOwn(schema, k)));
  return resolveParams(planner, schema, overrides, systemDefaults) as ParamsOf<(typeof SOLVE_SCHEMAS)[P]>;
}

export interface SolveDiagnostics {
  levels: Pick<LevelInfo, 'beta' | 'stepSize' | 'ess' | 'acceptance' | 'energyMin' | 'energyMedian' | 'energyMax' | 'nonFinite' | 'divergent' | 'gradientEvaluations'>[];
  logZ: number | null;
  /** mean acceptance of the MCMC baselines' final moves */
  acceptance?: number;
  rollouts: number;
  nonFiniteEnergies: number;
}

export interface SolveResult {
  system: string;
  planner: SolveMethod;
  backend: string;
  particles: number;
  seed: number;
  wallMs: number;
  bestCost: number;
  goalReached: boolean | null;
  costs: number[];
  samples: number[][];
  bestControls: number[][];
  bestStates: number[][];
  diagnostics: SolveDiagnostics;
  params: Record<string, number | string>;
}

export interface SolveOptions {
  planner: SolveMethod;
  params: Record<string, number | string>;
  seed: number;
  context?: RolloutContext;
  /** called after each tempering level or iteration with a fraction done and a short note */
  onProgress?: (fraction: number, note: string) => void;
}

/** The initial particles every method starts from: draws from the prior with the run's seed. */
export function initialParticles(model: Model, params: Record<string, number | string>, seed: number) {
  const prior = new ControlPrior(model.horizon, model.controlDim, params.prior as 'ar1' | 'gaussian', params.priorSigma as number, params.priorGamma as number);
  const rng = new Rng(seed);
  return { prior, rng, positions: prior.sample(rng, params.particles as number) };
}

export async function solve(backend: RolloutBackend, opts: SolveOptions): Promise<SolveResult> {
  const { model } = backend;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- values were checked against the planner's schema
  const p = opts.params as Record<string, any>;
  const { prior, rng, positions } = initialParticles(model, p, opts.seed);
  const target = new TrajectoryTarget(backend, prior, p.lambda, opts.context);
  const dim = target.dim;
  const N = p.particles;
  const bounded = boundedCoordinates(model);
  const progress = opts.onProgress ?? (() => undefined);
  const t0 = performance.now();
  let finalZ: Float64Array;
  let finalE: Float64Array;
  const diagnostics: SolveDiagnostics = { levels: [], logZ: null, rollouts: 0, nonFiniteEnergies: 0 };
  let rollouts = 0;
  const countingCost = async (z: Float64Array, n: number) => {
    rollouts += n;
    return target.energies(z, n);
  };

  switch (opts.planner) {
    case 'tsmc': {
      const s = await runTsmc(rng, target, positions, {
        kernel: p.kernel as 'nuts' | 'hmc', stepSize: p.stepSize, leapfrogSteps: p.leapfrogSteps, maxTreeDepth: p.maxTreeDepth, pathLength: p.pathLength,
        rho: p.rho, targetAcceptance: p.targetAcceptance, movesPerLevel: p.movesPerLevel, massMatrix: p.massMatrix,
        resampling: p.resampling as 'systematic' | 'multinomial', maxLevels: p.maxLevels,
      }, (st) => progress(st.beta, `level ${st.levels.length}, beta ${st.beta.toExponential(2)}`));
      finalZ = s.particles.positions;
      finalE = s.particles.energy;
      diagnostics.levels = s.levels;
      diagnostics.logZ = s.logZ;
      rollouts = s.levels.reduce((a, l) => a + l.gradientEvaluations, 0) * N;
      break;
    }
    case 'mppi': {
      const r = await mppi(rng, countingCost, positions, dim, model.controlDim, bounded, {
        samples: p.samples, iterations: p.iterations, elites: 0, temperature: p.lambda,
        sigmaMin: p.sigma, sigmaMax: p.sigma, adaptSigma: false, noiseCorrelation: 0,
      });
      finalZ = r.best;
      finalE = r.bestCost;
      break;
    }
    case 'mala':
    case 'nuts': {
      const kernelAt = (stepSize: number) => moveKernel(opts.planner === 'mala'
        ? { kernel: 'mala', stepSize, leapfrogSteps: 1, maxTreeDepth: 1 }
        : { kernel: p.kernel as 'nuts' | 'hmc', stepSize, leapfrogSteps: p.leapfrogSteps, maxTreeDepth: p.maxTreeDepth });
      let state = await initParticles(target, positions);
      let last: MoveInfo | undefined;
      let evals = 0;
      let stepSize = p.stepSize;
      for (let k = 0; k < p.steps; k++) {
        const r = await kernelAt(stepSize).step(rng, target, state, 1);
        state = r.state;
        last = r.info;
        evals += r.info.gradientEvaluations;
        // warm-up: adapt the step size over the first half, then keep it fixed
        if (p.targetAcceptance > 0 && k < p.steps / 2) stepSize *= Math.exp(Math.max(-2, Math.min(1, 2 * (r.info.acceptance - p.targetAcceptance))));
        if (k % Math.max(1, Math.floor(p.steps / 50)) === 0) progress(k / p.steps, `step ${k}/${p.steps}`);
      }
      finalZ = state.positions;
      finalE = state.energy;
      diagnostics.acceptance = last?.acceptance;
      rollouts = evals * N;
      break;
    }
    case 'gradient': {
      const r = await projectedAdam(target, positions, N, bounded, p.steps, p.learningRate, (f) => progress(f, 'adam'));
      finalZ = r.z;
      finalE = r.energy;
      rollouts = p.steps * N;
      break;
    }
  }
  const wallMs = performance.now() - t0;
  diagnostics.rollouts = rollouts;
  diagnostics.nonFiniteEnergies = target.nonFinite;

  const controls = toControls(finalZ, target.scaling);
  let bestIndex = 0;
  for (let i = 1; i < N; i++) if (finalE[i] < finalE[bestIndex]) bestIndex = i;
  const bestControls = controls.slice(bestIndex * dim, (bestIndex + 1) * dim);
  const { states } = await backend.trajectories({ ...opts.context, controls: bestControls });
  const n = model.stateDim;
  const bestStates = rows(states, n);
  const reference = opts.context?.reference ? Array.from(opts.context.reference) : [...model.goal];
  const goal = n ? inGoalRegion(model, bestStates[model.horizon], reference) : undefined;
  return {
    system: model.name,
    planner: opts.planner,
    backend: backend.kind,
    particles: N,
    seed: opts.seed,
    wallMs,
    bestCost: finalE[bestIndex],
    goalReached: goal ?? null,
    costs: Array.from(finalE),
    samples: rows(controls, dim),
    bestControls: rows(bestControls, model.controlDim),
    bestStates,
    diagnostics,
    params: opts.params,
  };
}


