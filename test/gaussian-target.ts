import { CpuBackend } from '../src/kernels/cpu.js';
import { ControlPrior, TrajectoryTarget } from '../src/planners/problem.js';
import { inverse, logDet, Mat, solve } from './linalg.js';
import { model } from './helpers.js';

/**
 * The double integrator's cost is exactly quadratic in the controls, so with
 * the AR(1) prior its Boltzmann tilt is Gaussian: mean, covariance and log Z
 * in closed form.
 */
export function gaussianProblem(lambda: number, sigma = 0.3, gamma = 0.9, threads = 1) {
  const m = model('double-integrator');
  const backend = new CpuBackend(m, { threads });
  const d = m.horizon;
  const prior = new ControlPrior(d, 1, 'ar1', sigma, gamma);
  const target = new TrajectoryTarget(backend, prior, lambda);
  const basis = new Float64Array((d + 1) * d);
  for (let k = 0; k < d; k++) basis[(k + 1) * d + k] = 1;
  const { cost, grad } = backend.costGradSync({ controls: basis });
  const c = cost[0];
  const g = Array.from(grad.subarray(0, d));
  const H: Mat = Array.from({ length: d }, (_, k) => Array.from({ length: d }, (_, j) => grad[(k + 1) * d + j] - g[j]));
  // prior precision (I - gamma S)^T (I - gamma S) / sigma^2
  const P: Mat = Array.from({ length: d }, (_, i) => Array.from({ length: d }, (_, j) => {
    let s = 0;
    for (let t = 0; t < d; t++) {
      const a = (t === i ? 1 : 0) - (t - 1 === i ? gamma : 0);
      const b = (t === j ? 1 : 0) - (t - 1 === j ? gamma : 0);
      s += a * b;
    }
    return s / (sigma * sigma);
  }));
  const Lam: Mat = P.map((row, i) => row.map((v, j) => v + H[i][j] / lambda));
  const b = g.map((v) => -v / lambda);
  const mean = solve(Lam, b);
  const cov = inverse(Lam);
  const logZ = -c / lambda + 0.5 * b.reduce((s, v, i) => s + v * mean[i], 0) - 0.5 * logDet(Lam) + 0.5 * logDet(P);
  return { model: m, target, prior, mean, precision: Lam, sd: cov.map((row, i) => Math.sqrt(row[i])), logZ, dim: d };
}

export function moments(positions: Float64Array, dim: number) {
  const n = positions.length / dim;
  const mean = new Array<number>(dim).fill(0);
  const variance = new Array<number>(dim).fill(0);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j] += positions[i * dim + j] / n;
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) variance[j] += (positions[i * dim + j] - mean[j]) ** 2 / (n - 1);
  return { mean, variance };
}
