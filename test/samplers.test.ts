import assert from 'node:assert/strict';
import { CpuBackend } from '../src/kernels/cpu.js';
import type { RolloutBackend, RolloutRequest } from '../src/kernels/backend.js';
import { ControlPrior, TrajectoryTarget } from '../src/planners/problem.js';
import { leapfrogStepsAt, moveKernel, runTsmc } from '../src/planners/tsmc/tsmc.js';
import { Rng } from '../src/random.js';
import { resample } from '../src/samplers/resampling.js';
import { initParticles, type MoveKernel, type Target } from '../src/samplers/target.js';
import { temperedSmc } from '../src/samplers/tempering.js';
import { nutsKernel, NutsWorkspace } from '../src/samplers/nuts.js';
import { gaussianProblem, moments } from './gaussian-target.js';
import { cholesky, inverse } from './linalg.js';
import { model } from './helpers.js';

type Problem = ReturnType<typeof gaussianProblem>;

function assertMatches(p: Problem, positions: Float64Array, what: string) {
  const { mean, variance } = moments(positions, p.dim);
  const meanErr = Math.max(...mean.map((v, j) => Math.abs(v - p.mean[j]) / p.sd[j]));
  const ratios = variance.map((v, j) => v / p.sd[j] ** 2);
  assert.ok(meanErr < 0.2, `${what}: mean off by ${meanErr.toFixed(3)} posterior sd`);
  assert.ok(Math.min(...ratios) > 0.8 && Math.max(...ratios) < 1.25, `${what}: variance ratios ${Math.min(...ratios).toFixed(3)}..${Math.max(...ratios).toFixed(3)}`);
}

/** Exact draws from the closed-form Gaussian target. */
function exactSamples(p: Problem, rng: Rng, n: number): Float64Array {
  const cov = inverse(p.precision);
  const l = cholesky(cov);
  const out = new Float64Array(n * p.dim);
  for (let i = 0; i < n; i++) {
    const z = Array.from({ length: p.dim }, () => rng.normal());
    for (let a = 0; a < p.dim; a++) {
      let s = p.mean[a];
      for (let b = 0; b <= a; b++) s += l[a][b] * z[b];
      out[i * p.dim + a] = s;
    }
  }
  return out;
}

describe('tempered SMC is exact on a Gaussian target (double integrator, AR(1) prior)', () => {
  // NUTS on 2 threads evaluates one particle group on the worker while this thread does the other's bookkeeping
  const cases = [
    { kernel: 'hmc', threads: 1, massMatrix: 'identity' }, { kernel: 'nuts', threads: 1, massMatrix: 'identity' },
    { kernel: 'nuts', threads: 2, massMatrix: 'identity' }, { kernel: 'nuts', threads: 2, massMatrix: 'diagonal' }, { kernel: 'hmc', threads: 1, massMatrix: 'diagonal' },
  ] as const;
  for (const { kernel, threads, massMatrix } of cases) {
    it(`${kernel} rejuvenation (${threads} thread${threads > 1 ? 's' : ''}, ${massMatrix} mass): weighted mean, variances and log Z match the closed form`, async () => {
      const p = gaussianProblem(1, 0.3, 0.9, threads);
      const rng = new Rng(42);
      const s = await runTsmc(rng, p.target, p.prior.sample(rng, 1000), {
        kernel, stepSize: 0.1, leapfrogSteps: 10, maxTreeDepth: 6, rho: 0.8, targetAcceptance: 0, movesPerLevel: 2, resampling: 'systematic', maxLevels: 100, massMatrix,
      });
      assert.equal(s.beta, 1);
      assertMatches(p, s.particles.positions, `TSMC/${kernel}`);
      // Monte Carlo error of log Z at N = 1000 is a few hundredths here
      assert.ok(Math.abs(s.logZ - p.logZ) < 0.2, `log Z ${s.logZ} vs closed form ${p.logZ}`);
      for (const level of s.levels) {
        assert.ok(level.ess >= 0.8 * 1000 * 0.999 || level.beta === 1, `ESS ${level.ess} at beta ${level.beta}`);
        assert.ok(level.acceptance > 0.5);
      }
      // resampling only ever loses lines; moves that mix keep many
      assert.ok(s.levels.every((l, k) => l.lineages <= (k ? s.levels[k - 1].lineages : 1000)), `lineages ${s.levels.map((l) => l.lineages)}`);
      assert.equal(new Set(s.roots).size, s.levels.at(-1)!.lineages);
      assert.ok(s.levels.at(-1)!.lineages > 50, `lineages ${s.levels.at(-1)!.lineages}`);
    });
  }
});

describe('tempered SMC\'s lineages', () => {
  it('count the initial particles the population descends from: with moves that never move, every particle is its root\'s copy, and a sharp target leaves a few', async () => {
    const n = 200;
    const initial = Float64Array.from({ length: n }, (_, i) => -1 + (2 * i + 1) / n);
    const target: Target = { dim: 1, lambda: 1, evaluate: async (x, count) => ({ energy: Float64Array.from(x.subarray(0, count), (v) => 1e4 * v * v), energyGrad: new Float64Array(count), prior: new Float64Array(count), priorGrad: new Float64Array(count) }) };
    const still: MoveKernel = { name: 'still', step: async (_rng, _t, state) => ({ state, info: { acceptance: 0, accepted: 0, divergent: 0, gradientEvaluations: 0 } }) };
    const smc = temperedSmc(target, () => still, { rho: 0.8, resampling: 'systematic', movesPerLevel: 1, maxLevels: 100, stepSize: 1, targetAcceptance: 0 });
    const rng = new Rng(3);
    let state = await smc.init(initial);
    assert.deepEqual(Array.from(state.roots), Array.from({ length: n }, (_, i) => i));
    while (state.beta < 1) state = await smc.step(rng, state);
    for (let i = 0; i < n; i++) assert.equal(state.particles.positions[i], initial[state.roots[i]]);
    const lineages = state.levels.map((l) => l.lineages);
    assert.ok(lineages.every((c, k) => c >= 1 && c <= (k ? lineages[k - 1] : n)), `lineages ${lineages}`);
    assert.equal(lineages.at(-1), new Set(state.roots).size);
    // exp(-1e4 x^2) on a grid of spacing 0.01: a handful of points near 0 carry the weight
    assert.ok(lineages.at(-1)! <= 5, `lineages ${lineages}`);
    // ancestry carried on (a resumed run) counts on from it
    const resumed = await smc.init(state.particles.positions, state.beta, state.roots);
    assert.deepEqual(Array.from(resumed.roots), Array.from(state.roots));
  });
});

describe('move kernels leave the Gaussian target invariant', () => {
  for (const [kernel, stepSize] of [['hmc', 0.15], ['nuts', 0.15], ['mala', 0.1]] as const) {
    it(`${kernel}: exact samples stay exact after 20 moves`, async () => {
      const p = gaussianProblem(1);
      const rng = new Rng(7);
      const k = moveKernel({ kernel, stepSize, leapfrogSteps: 8, maxTreeDepth: 6 });
      let state = await initParticles(p.target, exactSamples(p, rng, 2000));
      assertMatches(p, state.positions, 'exact draws');
      let moved = 0;
      for (let i = 0; i < 20; i++) {
        const r = await k.step(rng, p.target, state, 1);
        state = r.state;
        moved += r.info.accepted;
      }
      assert.ok(moved / 20 > 0.5, 'the chain actually moves');
      assertMatches(p, state.positions, kernel);
    });
  }
});

describe('NUTS in a kept workspace', () => {
  it('moves exactly as with fresh arrays, move after move, whatever the particle count, and what it returns is its own', async () => {
    const p = gaussianProblem(1);
    const run = async (workspace?: NutsWorkspace) => {
      const rng = new Rng(11);
      const out: Float64Array[] = [];
      for (const count of [300, 120, 300]) {
        const k = nutsKernel({ stepSize: 0.15, maxTreeDepth: 6, workspace });
        let state = await initParticles(p.target, exactSamples(p, rng, count));
        for (let i = 0; i < 3; i++) {
          state = (await k.step(rng, p.target, state, 0.5 + 0.25 * i)).state;
          out.push(state.positions);
        }
      }
      return out;
    };
    const fresh = await run();
    const kept = await run(new NutsWorkspace());
    assert.equal(kept.length, fresh.length);
    kept.forEach((positions, m) => assert.deepEqual(Array.from(positions), Array.from(fresh[m]), `move ${m}`));
    // a later move did not write into an earlier move's result
    assert.ok(new Set(kept.map((x) => x.buffer)).size === kept.length);
  });
});

describe('HMC path length', () => {
  it('is leapfrogSteps when fixed; adapted, it keeps the integration time, within 1 and 2^maxTreeDepth - 1 steps', () => {
    const p = { kernel: 'hmc' as const, stepSize: 0.2, leapfrogSteps: 10, maxTreeDepth: 5 };
    assert.equal(leapfrogStepsAt(p, 0.01), 10);
    const adapted = { ...p, pathLength: 'adapted' as const, integrationTime: 2 };
    assert.equal(leapfrogStepsAt(adapted, 0.2), 10);
    assert.equal(leapfrogStepsAt(adapted, 0.1), 20);
    assert.equal(leapfrogStepsAt(adapted, 0.01), 31);
    assert.equal(leapfrogStepsAt(adapted, 10), 1);
  });

  it('adapted, TSMC still samples the Gaussian target exactly', async () => {
    const p = gaussianProblem(1);
    const rng = new Rng(3);
    const s = await runTsmc(rng, p.target, p.prior.sample(rng, 400), {
      kernel: 'hmc', stepSize: 0.2, leapfrogSteps: 5, maxTreeDepth: 4, pathLength: 'adapted', rho: 0.8, targetAcceptance: 0.75, movesPerLevel: 2, resampling: 'systematic', maxLevels: 100,
    });
    const { mean, variance } = moments(s.particles.positions, p.dim);
    for (let k = 0; k < p.dim; k++) {
      assert.ok(Math.abs(mean[k] - p.mean[k]) < 0.25 * p.sd[k], `coordinate ${k}: mean ${mean[k]} vs ${p.mean[k]}`);
      const ratio = variance[k] / p.sd[k] ** 2;
      assert.ok(ratio > 0.75 && ratio < 1.33, `coordinate ${k}: variance ratio ${ratio}`);
    }
  });
});

describe('resampling', () => {
  for (const scheme of ['systematic', 'multinomial'] as const) {
    it(`${scheme} is unbiased: mean offspring counts are N w_i`, () => {
      const rng = new Rng(3);
      const w = Float64Array.of(0.05, 0.3, 0.01, 0.14, 0.5);
      const reps = 20000;
      const counts = new Float64Array(w.length);
      for (let r = 0; r < reps; r++) for (const a of resample(rng, w, scheme)) counts[a]++;
      for (let i = 0; i < w.length; i++) {
        const expected = w.length * w[i];
        const mean = counts[i] / reps;
        // binomial standard error of the mean count, 5 sigma
        const se = Math.sqrt((w.length * w[i] * (1 - w[i])) / reps);
        assert.ok(Math.abs(mean - expected) < 5 * se + 1e-9, `particle ${i}: ${mean} vs ${expected}`);
      }
    });
  }

  it('systematic resampling keeps floor(N w_i) or ceil(N w_i) copies', () => {
    const rng = new Rng(4);
    const w = Float64Array.of(0.05, 0.3, 0.01, 0.14, 0.5);
    for (let r = 0; r < 200; r++) {
      const c = new Array<number>(5).fill(0);
      for (const a of resample(rng, w, 'systematic')) c[a]++;
      c.forEach((k, i) => assert.ok(k === Math.floor(5 * w[i]) || k === Math.ceil(5 * w[i])));
    }
  });

  it('refuses all-zero weights with a clear message', () => {
    assert.throws(() => resample(new Rng(1), new Float64Array(3), 'systematic'), /weights are all zero/);
  });
});

describe('non-finite energies', () => {
  it('are infinite cost: counted in diagnostics, never propagated', async () => {
    const m = model('double-integrator');
    const real = new CpuBackend(m, { threads: 1 });
    // A plant model that returns NaN whenever the first control is large, as a diverging simulation would.
    const flaky: RolloutBackend = {
      kind: 'cpu',
      model: m,
      cost: async (req: RolloutRequest) => poison(req, await real.cost(req)),
      costGrad: async (req: RolloutRequest) => {
        const r = await real.costGrad(req);
        return { cost: poison(req, r.cost), grad: r.grad };
      },
      trajectories: (req) => real.trajectories(req),
      dispose: () => undefined,
    };
    function poison(req: RolloutRequest, cost: Float64Array) {
      return cost.map((c, i) => (req.controls[i * m.horizon] > 0.3 ? NaN : c));
    }
    const prior = new ControlPrior(m.horizon, 1, 'ar1', 0.3, 0.9);
    const target = new TrajectoryTarget(flaky, prior, 1);
    const rng = new Rng(5);
    const s = await runTsmc(rng, target, prior.sample(rng, 400), {
      kernel: 'hmc', stepSize: 0.1, leapfrogSteps: 5, maxTreeDepth: 4, rho: 0.8, targetAcceptance: 0.75, movesPerLevel: 1, resampling: 'systematic', maxLevels: 100,
    });
    assert.ok(s.levels[0].nonFinite > 0, 'the first level saw NaN energies');
    assert.ok(target.nonFinite > 0);
    assert.ok(Number.isFinite(s.logZ));
    for (const e of s.particles.energy) assert.ok(Number.isFinite(e), 'no particle with a NaN energy survives');
    for (let i = 0; i < s.particles.count; i++) assert.ok(s.particles.positions[i * m.horizon] <= 0.3);
  });
});
