import assert from 'node:assert/strict';
import { CpuBackend } from '../src/kernels/cpu.js';
import { webgpuMissing } from './support/webgpu.js';
import { WebGpuBackend } from '../src/kernels/webgpu.js';
import { MODELS } from '../src/models/index.js';
import { Rng } from '../src/random.js';
import { cpu, model, testControls } from './helpers.js';
import { ControlPrior, TrajectoryTarget } from '../src/planners/problem.js';
import { runTsmc } from '../src/planners/tsmc/tsmc.js';

describe('CPU worker pool', () => {
  it('gives bit-identical results on 1 and 2 threads for a large batch', () => {
    const m = model('acrobot');
    const U = testControls(m, 300, 11);
    const one = cpu(m, 1).costGradSync({ controls: U });
    const two = new CpuBackend(m, { threads: 2 }).costGradSync({ controls: U });
    assert.deepEqual(two.cost, one.cost);
    assert.deepEqual(two.grad, one.grad);
  });

  it('batches started in the background finish in any order with the results of a synchronous call', () => {
    const m = model('acrobot');
    const backend = new CpuBackend(m, { threads: 2 });
    const batches = [testControls(m, 40, 1), testControls(m, 31, 2), testControls(m, 64, 3)];
    const want = batches.map((U) => cpu(m).costGradSync({ controls: U }));
    const pending = batches.map((U) => backend.submitCostGrad({ controls: U }));
    for (const i of [2, 0, 1]) {
      const got = pending[i].result();
      assert.deepEqual(got.cost, want[i].cost, `batch ${i} costs`);
      assert.deepEqual(got.grad, want[i].grad, `batch ${i} gradients`);
    }
  });

  it('TSMC (NUTS, particle groups overlapping rollouts and bookkeeping) gives the same particles on 1 and 2 threads', async () => {
    const m = model('acrobot', { horizon: 40 });
    const run = async (threads: number) => {
      const prior = new ControlPrior(m.horizon, 1, 'ar1', 0.3, 0.9);
      const target = new TrajectoryTarget(new CpuBackend(m, { threads }), prior, 1);
      const rng = new Rng(3);
      const s = await runTsmc(rng, target, prior.sample(rng, 64), {
        kernel: 'nuts', stepSize: 0.05, leapfrogSteps: 10, maxTreeDepth: 4, rho: 0.5, targetAcceptance: 0.65, movesPerLevel: 1, resampling: 'systematic', maxLevels: 4,
      }, undefined, performance.now() + 60_000);
      return s.particles.positions;
    };
    assert.deepEqual(await run(2), await run(1));
  });

  it('rejects batches of the wrong shape with a message naming the problem', () => {
    const m = model('pendulum');
    assert.throws(() => cpu(m).costSync({ controls: new Float64Array(31) }), /controls has 31 values, expected a positive multiple of horizon\*controlDim = 30\*1/);
    assert.throws(() => cpu(m).costSync({ controls: new Float64Array(30), x0: [1] }), /x0 has 1 entries, expected 2/);
    assert.throws(() => cpu(m).costSync({ controls: new Float64Array(30), noise: new Float64Array(30) }), /takes no noise/);
  });
});

/** WebGPU must be present where CI asks for it (TEMPERED_MPC_REQUIRE_WEBGPU=1); elsewhere a missing adapter skips. */
describe('WebGPU kernels (f32) against the f64 CPU kernels', function () {
  let available = true;
  before(async function () {
    const missing = await webgpuMissing();
    available = missing === undefined;
    if (!available) console.log(`      skipping WebGPU tests: ${missing}`);
  });

  for (const name of MODELS.keys()) {
    it(`${name}: cost (per sample) and gradient (max-norm) match to 1e-3 relative`, async function () {
      if (!available) this.skip();
      const m = model(name);
      const U = testControls(m, 5, 21);
      const noise = m.noiseDim ? new Rng(5).fillNormal(new Float64Array(5 * m.horizon * m.noiseDim), 0.3) : undefined;
      const gpu = await WebGpuBackend.create(m);
      const ref = cpu(m).costGradSync({ controls: U, noise });
      const got = await gpu.costGrad({ controls: U, noise });
      const cost = await gpu.cost({ controls: U, noise });
      for (let s = 0; s < 5; s++) {
        const rel = Math.abs(got.cost[s] - ref.cost[s]) / Math.abs(ref.cost[s]);
        assert.ok(rel < 1e-3, `sample ${s} cost ${got.cost[s]} vs ${ref.cost[s]}`);
        assert.ok(Math.abs(cost[s] - ref.cost[s]) / Math.abs(ref.cost[s]) < 1e-3);
      }
      // Relative error of each sample's gradient vector in the max-norm.
      const per = m.horizon * m.controlDim;
      for (let s = 0; s < 5; s++) {
        let diff = 0;
        let size = 0;
        for (let i = s * per; i < (s + 1) * per; i++) {
          diff = Math.max(diff, Math.abs(got.grad[i] - ref.grad[i]));
          size = Math.max(size, Math.abs(ref.grad[i]));
        }
        assert.ok(diff / size < 1e-3, `sample ${s}: gradient error ${diff} against |g| ${size}`);
      }
      const traj = await gpu.trajectories({ controls: U, noise });
      const refTraj = cpu(m).trajectoriesSync({ controls: U, noise });
      const stateError = Math.max(0, ...traj.states.map((v, i) => Math.abs(v - refTraj.states[i])));
      const stateSize = Math.max(1, ...refTraj.states.map(Math.abs));
      assert.ok(stateError / stateSize < 1e-3, `trajectory error ${stateError} against |x| ${stateSize}`);
    });
  }
});
