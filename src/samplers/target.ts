/**
 * What the samplers need from a problem: for a batch of positions (row-major,
 * count x dim), the energy E and prior potential U0 = -log p0 (up to a
 * constant), with gradients. The tempered target at inverse temperature beta
 * has potential V = beta E / lambda + U0 (TSMC paper eq. 15).
 */
export interface Evaluation {
  energy: Float64Array;
  energyGrad: Float64Array;
  prior: Float64Array;
  priorGrad: Float64Array;
}

export interface Target {
  readonly dim: number;
  readonly lambda: number;
  /**
   * `lent`: arrays the caller lends for the result (at least count, and
   * count x dim, long), which a target may fill and return views of instead
   * of fresh arrays; a caller that lends them keeps the result only until it
   * lends them again. Targets that ignore it return arrays of the caller's own.
   */
  evaluate(positions: Float64Array, count: number, lent?: Evaluation): Promise<Evaluation>;
  /**
   * Starts an evaluation and returns before it is done where the target can
   * run it in the background (rollouts on worker threads), so a sampler can
   * do its bookkeeping for other particles meanwhile. The positions must stay
   * unchanged until `result` is awaited. Targets without it are evaluated
   * when `result` is called.
   */
  submit?(positions: Float64Array, count: number, lent?: Evaluation): PendingEvaluation;
}

export interface PendingEvaluation {
  result(): Promise<Evaluation>;
}

/** The target's own `submit`, or an evaluation deferred to `result`. */
export function submitEvaluation(target: Target, positions: Float64Array, count: number, lent?: Evaluation): PendingEvaluation {
  return target.submit ? target.submit(positions, count, lent) : { result: () => target.evaluate(positions, count, lent) };
}

/** A batch of particles with their cached evaluations. */
export interface ParticleState extends Evaluation {
  count: number;
  positions: Float64Array;
}

export async function initParticles(target: Target, positions: Float64Array): Promise<ParticleState> {
  const count = positions.length / target.dim;
  if (!Number.isInteger(count) || count < 1) throw new Error(`positions must hold a whole number of ${target.dim}-vectors`);
  return { count, positions, ...(await target.evaluate(positions, count)) };
}

export function potential(s: Evaluation, i: number, beta: number, lambda: number): number {
  const e = s.energy[i];
  // beta = 0 ignores the energy entirely (0 * Inf would be NaN)
  return (beta === 0 ? 0 : (beta / lambda) * e) + s.prior[i];
}

/** dV/dtheta for particle i into out[offset..] */
export function potentialGrad(s: Evaluation, i: number, dim: number, beta: number, lambda: number, out: Float64Array, offset = 0): void {
  const k = beta / lambda;
  const base = i * dim;
  for (let j = 0; j < dim; j++) out[offset + j] = (k === 0 ? 0 : k * s.energyGrad[base + j]) + s.priorGrad[base + j];
}

/** Copies particle i of `from` into slot j of `to`. */
export function copyParticle(from: ParticleState, i: number, to: ParticleState, j: number, dim: number): void {
  to.positions.set(from.positions.subarray(i * dim, (i + 1) * dim), j * dim);
  to.energyGrad.set(from.energyGrad.subarray(i * dim, (i + 1) * dim), j * dim);
  to.priorGrad.set(from.priorGrad.subarray(i * dim, (i + 1) * dim), j * dim);
  to.energy[j] = from.energy[i];
  to.prior[j] = from.prior[i];
}

export function emptyState(count: number, dim: number): ParticleState {
  return {
    count,
    positions: new Float64Array(count * dim),
    energy: new Float64Array(count),
    energyGrad: new Float64Array(count * dim),
    prior: new Float64Array(count),
    priorGrad: new Float64Array(count * dim),
  };
}

/** Diagnostics every move kernel reports. */
export interface MoveInfo {
  /** mean Metropolis acceptance probability */
  acceptance: number;
  /** fraction of particles that moved */
  accepted: number;
  /** trajectories abandoned for a huge energy error or a non-finite value */
  divergent: number;
  /** potential-gradient evaluations per particle */
  gradientEvaluations: number;
}

export interface MoveKernel {
  readonly name: string;
  step(rng: import('../random.js').Rng, target: Target, state: ParticleState, beta: number): Promise<{ state: ParticleState; info: MoveInfo }>;
}
