import type { TrajectoryTarget } from './problem.js';

/** Projected Adam on the trajectory cost from every start at once (the multi-start gradient baseline). */
export async function projectedAdam(
  target: TrajectoryTarget, start: Float64Array, count: number, bounded: (k: number) => boolean,
  steps: number, lr: number, progress: (f: number) => void = () => undefined,
  /** performance.now() time after which no further step starts */
  deadline?: number,
  /**
   * Per-start step-size backoff: a step that raises the energy is undone and
   * that start's rate halved (it regrows by 1.2x per good step, up to lr).
   * A polish needs it: near an unstable equilibrium one full-size step in
   * every coordinate undoes a good plan, and a fixed rate never refines below
   * its own size.
   */
  backoff = false,
) {
  const dim = target.dim;
  const z = start.slice();
  const m1 = new Float64Array(z.length);
  const m2 = new Float64Array(z.length);
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  const best = z.slice();
  const bestE = new Float64Array(count).fill(Infinity);
  const rate = new Float64Array(count).fill(lr);
  const bestGrad = backoff ? new Float64Array(z.length) : undefined;
  for (let t = 1; t <= steps; t++) {
    if (deadline !== undefined && t > 1 && performance.now() >= deadline) break;
    const { energy, energyGrad } = await target.evaluate(z, count);
    for (let i = 0; i < count; i++) {
      const row = [i * dim, (i + 1) * dim] as const;
      if (energy[i] < bestE[i]) {
        bestE[i] = energy[i];
        best.set(z.subarray(...row), row[0]);
        bestGrad?.set(energyGrad.subarray(...row), row[0]);
        if (backoff) rate[i] = Math.min(lr, 1.2 * rate[i]);
      } else if (backoff) {
        // undo the step: back to the best point and its gradient, half the rate
        z.set(best.subarray(...row), row[0]);
        energyGrad.set(bestGrad!.subarray(...row), row[0]);
        rate[i] *= 0.5;
      }
    }
    const c1 = 1 - b1 ** t;
    const c2 = 1 - b2 ** t;
    for (let i = 0; i < count; i++) {
      for (let j = 0; j < dim; j++) {
        const k = i * dim + j;
        const g = energyGrad[k];
        m1[k] = b1 * m1[k] + (1 - b1) * g;
        m2[k] = b2 * m2[k] + (1 - b2) * g * g;
        const v = z[k] - (rate[i] * (m1[k] / c1)) / (Math.sqrt(m2[k] / c2) + eps);
        z[k] = bounded(j) ? Math.min(1, Math.max(-1, v)) : v;
      }
    }
    if (t % Math.max(1, Math.floor(steps / 50)) === 0) progress(t / steps);
  }
  const final = await target.energies(z, count);
  for (let i = 0; i < count; i++) {
    if (final[i] < bestE[i]) {
      bestE[i] = final[i];
      best.set(z.subarray(i * dim, (i + 1) * dim), i * dim);
    }
  }
  return { z: best, energy: bestE };
}
