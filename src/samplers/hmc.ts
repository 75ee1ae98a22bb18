import type { Rng } from '../random.js';
import { copyParticle, emptyState, MoveKernel, ParticleState, potential, potentialGrad, Target } from './target.js';

export interface HmcParams {
  stepSize: number;
  leapfrogSteps: number;
  /** diagonal of the inverse mass matrix (one value per dimension; default identity) */
  inverseMass?: Float64Array;
}

/**
 * Hamiltonian Monte Carlo with a diagonal mass matrix (identity unless given), leapfrog integration and a
 * Metropolis correction (TSMC paper eqs. 16-17), run on all particles in
 * lockstep so every leapfrog step is one batched gradient evaluation.
 */
export function hmcKernel({ stepSize: eps, leapfrogSteps: L, inverseMass }: HmcParams): MoveKernel {
  return {
    name: 'hmc',
    async step(rng: Rng, target: Target, s: ParticleState, beta: number) {
      const { dim, lambda } = target;
      const n = s.count;
      const minv = unitMassIfNone(inverseMass, dim);
      const r = drawMomentum(rng, n, minv);
      const h0 = new Float64Array(n);
      for (let i = 0; i < n; i++) h0[i] = potential(s, i, beta, lambda) + 0.5 * kineticNorm(r, minv, i * dim, dim);
      const q = s.positions.slice();
      const g = new Float64Array(n * dim);
      for (let i = 0; i < n; i++) potentialGrad(s, i, dim, beta, lambda, g, i * dim);
      let ev = s as ParticleState;
      for (let l = 0; l < L; l++) {
        for (let o = 0; o < q.length; o += dim) {
          for (let j = 0; j < dim; j++) {
            r[o + j] -= 0.5 * eps * g[o + j];
            q[o + j] += eps * minv[j] * r[o + j];
          }
        }
        ev = { count: n, positions: q.slice(), ...(await target.evaluate(q, n)) };
        for (let i = 0; i < n; i++) potentialGrad(ev, i, dim, beta, lambda, g, i * dim);
        for (let k = 0; k < q.length; k++) r[k] -= 0.5 * eps * g[k];
      }
      const out = emptyState(n, dim);
      let accProb = 0;
      let moved = 0;
      let divergent = 0;
      for (let i = 0; i < n; i++) {
        const h1 = potential(ev, i, beta, lambda) + 0.5 * kineticNorm(r, minv, i * dim, dim);
        const logRatio = h0[i] - h1;
        if (!(Number.isFinite(h1)) || -logRatio > 1000) divergent++;
        const a = Number.isNaN(logRatio) ? 0 : Math.min(1, Math.exp(logRatio));
        accProb += a;
        const take = rng.uniform() < a;
        if (take) moved++;
        copyParticle(take ? ev : s, i, out, i, dim);
      }
      return { state: out, info: { acceptance: accProb / n, accepted: moved / n, divergent: divergent / n, gradientEvaluations: L } };
    },
  };
}

/** The diagonal inverse mass given, checked, or the identity's. */
export function unitMassIfNone(inverseMass: Float64Array | undefined, dim: number): Float64Array {
  const minv = inverseMass ?? new Float64Array(dim).fill(1);
  if (minv.length !== dim) throw new Error(`inverse mass has ${minv.length} values, expected ${dim}`);
  return minv;
}

/**
 * Momenta r ~ N(0, M) for n particles: standard normals over the square root
 * of the inverse mass. An inverse mass of 0 (infinite mass) holds its
 * coordinate: momentum 0, and every use of r is through M^-1 r, so the
 * coordinate neither moves nor enters the kinetic energy or the U-turn test
 * (auxiliary variables another move refreshes, as TSMC:E's starts).
 */
export function drawMomentum(rng: Rng, n: number, minv: Float64Array, into?: Float64Array): Float64Array {
  const dim = minv.length;
  const r = rng.fillNormal(into ?? new Float64Array(n * dim));
  for (let o = 0; o < r.length; o += dim) for (let j = 0; j < dim; j++) r[o + j] = minv[j] > 0 ? r[o + j] / Math.sqrt(minv[j]) : 0;
  return r;
}

/** r' M^-1 r of one particle's momentum, for a diagonal inverse mass. */
export function kineticNorm(r: Float64Array, minv: Float64Array, offset: number, dim: number): number {
  let s = 0;
  for (let j = 0; j < dim; j++) s += minv[j] * r[offset + j] * r[offset + j];
  return s;
}
