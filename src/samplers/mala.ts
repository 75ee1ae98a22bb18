import type { Rng } from '../random.js';
import { copyParticle, emptyState, MoveKernel, ParticleState, potential, potentialGrad, Target } from './target.js';

/**
 * Metropolis-adjusted Langevin: one gradient step plus noise, Metropolis
 * corrected for the asymmetric proposal. Batched over particles.
 */
export function malaKernel({ stepSize: eps }: { stepSize: number }): MoveKernel {
  return {
    name: 'mala',
    async step(rng: Rng, target: Target, s: ParticleState, beta: number) {
      const { dim, lambda } = target;
      const n = s.count;
      const h = 0.5 * eps * eps;
      const g0 = new Float64Array(n * dim);
      for (let i = 0; i < n; i++) potentialGrad(s, i, dim, beta, lambda, g0, i * dim);
      const q = new Float64Array(n * dim);
      for (let k = 0; k < q.length; k++) q[k] = s.positions[k] - h * g0[k] + eps * rng.normal();
      const prop: ParticleState = { count: n, positions: q, ...(await target.evaluate(q, n)) };
      const g1 = new Float64Array(n * dim);
      for (let i = 0; i < n; i++) potentialGrad(prop, i, dim, beta, lambda, g1, i * dim);
      const out = emptyState(n, dim);
      let accProb = 0;
      let moved = 0;
      let divergent = 0;
      for (let i = 0; i < n; i++) {
        let fwd = 0; // |q' - q + h g(q)|^2
        let bwd = 0; // |q - q' + h g(q')|^2
        for (let j = 0; j < dim; j++) {
          const k = i * dim + j;
          const d = q[k] - s.positions[k];
          fwd += (d + h * g0[k]) ** 2;
          bwd += (-d + h * g1[k]) ** 2;
        }
        const v1 = potential(prop, i, beta, lambda);
        const logRatio = potential(s, i, beta, lambda) - v1 + (fwd - bwd) / (4 * h);
        if (!Number.isFinite(v1)) divergent++;
        const a = Number.isNaN(logRatio) ? 0 : Math.min(1, Math.exp(logRatio));
        accProb += a;
        const take = rng.uniform() < a;
        if (take) moved++;
        copyParticle(take ? prop : s, i, out, i, dim);
      }
      return { state: out, info: { acceptance: accProb / n, accepted: moved / n, divergent: divergent / n, gradientEvaluations: 1 } };
    },
  };
}
