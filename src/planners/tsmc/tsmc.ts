import { choice, num } from '../../params.js';
import type { Rng } from '../../random.js';
import { hmcKernel } from '../../samplers/hmc.js';
import { malaKernel } from '../../samplers/mala.js';
import { nutsKernel } from '../../samplers/nuts.js';
import type { ResamplingScheme } from '../../samplers/resampling.js';
import { MassMatrix, temperedSmc, TemperedState } from '../../samplers/tempering.js';
import type { MoveKernel, Target } from '../../samplers/target.js';

/** Parameters shared by every sampling planner (declared once, composed below). */
export const SAMPLING_PARAMS = {
  particles: num(100, 'number of particles N', { min: 2, max: 65536, integer: true }),
  lambda: num(0.1, 'temperature lambda of the Boltzmann tilt p0 exp(-E/lambda)', { min: 0, max: 1e12, exclusive: true }),
  prior: choice('ar1', ['ar1', 'gaussian'] as const, 'prior over normalised control sequences'),
  priorGamma: num(0.9, 'AR(1) prior coefficient gamma', { min: 0, max: 0.999 }),
  priorSigma: num(0.3, 'prior noise sigma (normalised control units)', { min: 0, max: 100, exclusive: true }),
} as const;

export const MOVE_PARAMS = {
  kernel: choice('nuts', ['nuts', 'hmc'] as const, 'rejuvenation kernel: NUTS (the paper\'s choice) or fixed-length HMC; backend webgpu always moves with HMC'),
  stepSize: num(0.2, 'leapfrog step size epsilon (normalised control units)', { min: 0, max: 100, exclusive: true }),
  leapfrogSteps: num(10, 'HMC leapfrog steps L per move', { min: 1, max: 1000, integer: true }),
  maxTreeDepth: num(5, 'NUTS maximum tree depth (at most 2^depth - 1 leapfrog steps per move)', { min: 1, max: 12, integer: true }),
  pathLength: choice('fixed', ['fixed', 'adapted'] as const, 'HMC: leapfrogSteps per move (fixed), or as many as keep the integration time leapfrogSteps x stepSize as configured while the step size adapts, at most 2^maxTreeDepth - 1 (adapted)'),
} as const;

export const TSMC_PARAMS = {
  ...SAMPLING_PARAMS,
  ...MOVE_PARAMS,
  rho: num(0.8, 'target ESS fraction after each reweighting', { min: 0, max: 1, exclusive: true }),
  targetAcceptance: num(0.65, 'adapt the step size between moves towards this acceptance (0 = keep stepSize fixed)', { min: 0, max: 0.99 }),
  movesPerLevel: num(2, 'rejuvenation moves per tempering level', { min: 0, max: 100, integer: true }),
  resampling: choice('systematic', ['systematic', 'multinomial'] as const, 'resampling scheme'),
  massMatrix: choice('identity', ['identity', 'diagonal'] as const, 'mass matrix of the moves: identity, or diagonal with the particle population\'s variance at each level (the target\'s own scales; measured worse on the acrobot, whose scales are not axis-aligned); backend webgpu always moves with identity mass'),
  maxLevels: num(1000, 'safety cap on tempering levels', { min: 1, max: 100000, integer: true }),
} as const;

export interface MoveParams {
  kernel: 'nuts' | 'hmc' | 'mala';
  stepSize: number;
  leapfrogSteps: number;
  maxTreeDepth: number;
  /** diagonal of the inverse mass matrix (default identity) */
  inverseMass?: Float64Array;
  /** HMC: 'adapted' keeps L x stepSize at `integrationTime` (default 'fixed': L = leapfrogSteps) */
  pathLength?: 'fixed' | 'adapted';
  /** the integration time an adapted path keeps: the configured leapfrogSteps x stepSize */
  integrationTime?: number;
}

/** HMC's leapfrog steps at this step size: fixed, or adapted to keep the integration time (1 to 2^maxTreeDepth - 1). */
export function leapfrogStepsAt(p: MoveParams, stepSize: number): number {
  if (p.pathLength !== 'adapted' || p.integrationTime === undefined) return p.leapfrogSteps;
  return Math.min(2 ** p.maxTreeDepth - 1, Math.max(1, Math.round(p.integrationTime / stepSize)));
}

export function moveKernel(p: MoveParams): MoveKernel {
  switch (p.kernel) {
    case 'nuts': return nutsKernel({ stepSize: p.stepSize, maxTreeDepth: p.maxTreeDepth, inverseMass: p.inverseMass });
    case 'hmc': return hmcKernel({ stepSize: p.stepSize, leapfrogSteps: leapfrogStepsAt(p, p.stepSize), inverseMass: p.inverseMass });
    case 'mala': return malaKernel({ stepSize: p.stepSize });
  }
}

export interface TsmcParams extends MoveParams {
  rho: number;
  targetAcceptance: number;
  movesPerLevel: number;
  resampling: ResamplingScheme;
  maxLevels: number;
  massMatrix?: MassMatrix;
}

/** TSMC on any target, from given initial particles (prior samples, or carried-over particles when warm-starting). */
export async function runTsmc(
  rng: Rng, target: Target, initial: Float64Array, p: TsmcParams, onLevel?: (s: TemperedState) => void, deadline?: number, startBeta = 0,
  expectedLevelMs = 0,
): Promise<TemperedState> {
  // an adapted path keeps the integration time of the parameters as given (a warm start passes a carried step size)
  const integrationTime = p.integrationTime ?? p.leapfrogSteps * p.stepSize;
  const smc = temperedSmc(target, (stepSize, inverseMass) => moveKernel({ ...p, integrationTime, stepSize, inverseMass }), {
    rho: p.rho, resampling: p.resampling, movesPerLevel: p.movesPerLevel, maxLevels: p.maxLevels, massMatrix: p.massMatrix,
    stepSize: p.stepSize, targetAcceptance: p.targetAcceptance,
  });
  return smc.run(rng, initial, onLevel, deadline, startBeta, expectedLevelMs);
}
