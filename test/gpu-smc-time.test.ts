import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { buildPlanner } from '../src/controller/planner-spec.js';
import { controlScaling } from '../src/models/controls.js';
import { LearnedPrior } from '../src/learned/runtime.js';
import { resolveModel } from '../src/models/model.js';
import { pendulum as pendulumDef } from '../src/models/pendulum.js';
import type { PlanRequest } from '../src/planners/receding.js';
import type { SmcTimePlanner } from '../src/planners/spo/receding.js';
import { smcOverTime } from '../src/planners/spo/smc.js';
import { SPO_VARIANT } from '../src/planners/spo/index.js';
import { TRTSMC_VARIANT } from '../src/planners/trtsmc/index.js';
import { trustRegion } from '../src/planners/trtsmc/trust-region.js';
import { Rng } from '../src/random.js';
import { resolveRunParams } from '../src/run/setup.js';
import { skipWithoutWebGpu } from './support/webgpu.js';
import { untrainedPendulumPrior } from './support/priors.js';

/**
 * The GPU-resident SPO and TRT-SMC against the CPU's smcOverTime: the GPU
 * records every step's proposals (actions, log pi/q) and ancestor draws; the
 * CPU replays them through its own loop (f64 model and networks) and must
 * reach the same weights, statistics, q-hat, command and value estimate to
 * f32 tolerance. A prior with seeded untrained networks stands in for a
 * trained one (the same shapes and code paths; docs/results.md runs trained ones).
 */
describe('SPO and TRT-SMC on the GPU (the whole pass in WGSL)', function () {
  this.timeout(300_000);
  const model = resolveModel(pendulumDef, { horizon: 10 });
  const req: PlanRequest = { x0: [0.4, -0.3], uPrev: [0.1], reference: [...model.goal] };
  let dir: string;
  before(async function () {
    if (await skipWithoutWebGpu(this, 'GPU SMC-over-time tests')) return;
    dir = untrainedPendulumPrior(model);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const build = async (name: string, over: Record<string, unknown>, backend: 'cpu' | 'webgpu', seed = 3) => {
    const params = resolveRunParams('pendulum', { planner: name, 'model.horizon': 10, 'prior.path': dir, threads: 1, plannerThread: 'main', ...over });
    return (await buildPlanner({ system: 'pendulum', model: params.model, planner: name, params: params.planner, prior: params.prior, backend, threads: 1, seed })).planner;
  };

  /** The GPU planner itself (its history), built through the registry's descriptor as the controller builds it, and the CPU planner of the same settings. */
  const pair = async (name: 'spo' | 'trtsmc', over: Record<string, unknown>) => {
    const cpu = await build(name, over, 'cpu') as SmcTimePlanner;
    const { GpuSmcTimePlanner } = await import('../src/planners/spo/gpu.js');
    const { WebGpuBackend } = await import('../src/kernels/webgpu.js');
    const gpu = await GpuSmcTimePlanner.create(model, await WebGpuBackend.create(model), { ...cpu.params }, 3, cpu.guide, name === 'spo' ? SPO_VARIANT : TRTSMC_VARIANT);
    return { cpu, gpu };
  };

  const near = (gpu: ArrayLike<number>, cpu: ArrayLike<number>, tol: number, what: string) => {
    assert.equal(gpu.length, cpu.length, what);
    for (let i = 0; i < cpu.length; i++) {
      if (cpu[i] === -Infinity) assert.equal(gpu[i], -Infinity, `${what}[${i}]`);
      else assert.ok(Math.abs(gpu[i] - cpu[i]) <= tol * Math.max(1, Math.abs(cpu[i])), `${what}[${i}]: GPU ${gpu[i]} vs CPU ${cpu[i]}`);
    }
  };

  for (const [name, over] of [
    // SPO with eta from the dual (eq. (7)) and multinomial resampling every 2 steps
    ['spo', { 'spo.particles': 16, 'spo.klBound': 1, 'spo.resampling': 'multinomial', 'spo.resampleEvery': 2, 'spo.policyStdScale': 2, 'spo.warmStart': false }],
    // TRT-SMC with the twisted proposal on (beta by bisection), revived resampling, systematic every 3 steps
    ['trtsmc', { 'trtsmc.particles': 16, 'trtsmc.alpha': 0.3, 'trtsmc.atoms': 8, 'trtsmc.eta': 1, 'trtsmc.resampleEvery': 3, 'trtsmc.policyStdScale': 1, 'trtsmc.warmStart': false }],
  ] as const) {
    it(`${name}: the CPU's loop, replaying the GPU's proposals and ancestor draws, reaches the GPU's weights, statistics, q-hat, command and value to f32 tolerance`, async () => {
      const { cpu, gpu } = await pair(name, over);
      const r = await gpu.plan(req);
      const h = await gpu.history();
      const K = 16;
      assert.equal(r.info.depth, 10);
      assert.equal(h.actions.length, 10);
      assert.ok(h.resampled.filter(Boolean).length >= 3, 'the pass resampled');
      const replayWith = (eta: number, klBound: number) => {
        let t = 0;
        return smcOverTime(cpu.problem(req), {
          particles: K, depth: 10, resampleEvery: cpu.params.resampleEvery, resampling: cpu.params.resampling, eta, klBound,
          revive: name === 'trtsmc',
          resampleIndices: () => h.resampled[t - 1]!,
        }, () => {
          const step = t++;
          return { actions: h.actions[step], logCorrection: h.logCorrections[step] };
        }, new Rng(0));
      };
      const gpuEta = r.info.eta as number;
      if (cpu.params.klBound > 0) {
        // the dual is flat at its minimum: golden section on f32 values finds it to within about 1% (seen: 0.0166 against 0.0165)
        const own = replayWith(cpu.params.eta, cpu.params.klBound).eta;
        assert.ok(Math.abs(gpuEta / own - 1) < 0.02, `eta from the dual: GPU ${gpuEta}, CPU ${own}`);
      } else {
        assert.equal(gpuEta, Math.fround(cpu.params.eta));
      }
      // the rest at the GPU's eta
      const replay = replayWith(gpuEta, 0);
      assert.equal(replay.resamples, r.info.resamples);
      assert.deepEqual(Array.from(h.ancestors), Array.from(replay.ancestors));
      near(h.logWeights, replay.logWeights, 2e-3, 'log weights');
      near(h.backedUp, replay.backedUp, 2e-3, 'backed-up statistics');
      near(h.backedUpBaseline, replay.backedUpBaseline, 2e-3, 'their baselines');
      const variant = name === 'spo' ? SPO_VARIANT : TRTSMC_VARIANT;
      const q = variant.rootWeights(replay);
      near(r.diagnostics!.series!.q_hat, q, 1e-3, 'q-hat');
      near([r.cost], [replay.valueSmc], 1e-3, 'V(x0) from the SMC estimate');
      const command = q.reduce((acc, w, j) => acc + w * replay.rootActions[j], 0);
      const s = controlScaling(model);
      near([r.controls[0]], [s.center[0] + s.scale[0] * command], 1e-3, 'the command (q-hat\'s mean)');
      near(r.diagnostics!.series!.ess_ratio, replay.essRatios, 2e-3, 'ESS / K');
      if (name === 'trtsmc') {
        // the twisted proposal at the last step: the chosen atom's probability is one of the CPU trust region's over the same Q, whose KL meets the bound
        const B = 8;
        let checked = 0;
        for (let i = 0; i < K; i++) {
          if (!Number.isFinite(h.logCorrections[9][i]) || h.logCorrections[9][i] === 0) continue;
          const row = h.atomQ.subarray(i * B, (i + 1) * B);
          const tr = trustRegion(row, 0.3);
          assert.ok(Math.abs(tr.kl - tr.bound) < 1e-3, `KL ${tr.kl} vs bound ${tr.bound}`);
          const chosen = Math.exp(-h.logCorrections[9][i]) / B;
          assert.ok(tr.probs.some((pk) => Math.abs(pk - chosen) <= 2e-3 * Math.max(...tr.probs)), `particle ${i}: GPU chose an atom of probability ${chosen}, the CPU's are ${Array.from(tr.probs, (v) => v.toFixed(4))}`);
          checked++;
        }
        assert.ok(checked >= K / 2, `${checked} particles checked`);
        assert.ok((r.info.beta as number) > 0 && Number.isFinite(r.info.beta as number), `mean beta ${r.info.beta}`);
      }
    });
  }

  it('seeded and repeatable, one submit and one read-back per tick, the warm start following the shifted plan; a deadline stops the pass with a notice', async () => {
    for (const name of ['spo', 'trtsmc']) {
      const over = { [`${name}.particles`]: 32 };
      const a = await build(name, over, 'webgpu', 5);
      const b = await build(name, over, 'webgpu', 5);
      const c = await build(name, over, 'webgpu', 6);
      const ra = await a.plan(req);
      assert.deepEqual(Array.from((await b.plan(req)).controls), Array.from(ra.controls), `${name}: same seed, same plan`);
      assert.notDeepEqual(Array.from((await c.plan(req)).controls), Array.from(ra.controls), `${name}: another seed, another plan`);
      assert.equal(ra.info.gpuSubmits, 1);
      assert.equal(ra.info.gpuReadbacks, 1);
      assert.ok(ra.controls.every((u) => Number.isFinite(u) && Math.abs(u) <= 2 + 1e-6));
      assert.ok(Math.abs(ra.diagnostics!.series!.q_hat.reduce((x, y) => x + y, 0) - 1) < 1e-4, 'q-hat sums to 1');
      // the second tick: more of the same, nothing uploaded beyond the header
      const second = await a.plan({ ...req, shiftSteps: 1 });
      assert.equal(second.info.gpuReadbacks, 1);
      assert.ok((second.info.gpuKiBUp as number) < 0.2, `${second.info.gpuKiBUp} KiB up`);
      const late = await a.plan({ ...req, deadline: performance.now() - 1 });
      assert.equal(late.info.depth, 1);
      assert.match(late.diagnostics!.notice!, /the deadline stopped the pass at depth 1 of 10/);
      assert.equal(late.info.gpuReadbacks, 1);
      assert.equal(late.controls.length, 10, 'the policy continues the plan to the horizon');
    }
    // the std train-prior distils is floored by distilStdMin, as on the CPU: 32 actions within [-1, 1] cannot spread by 1.5
    for (const name of ['spo', 'trtsmc']) {
      const floored = await build(name, { [`${name}.particles`]: 32, [`${name}.distilStdMin`]: 1.5 }, 'webgpu', 5);
      await floored.plan(req);
      assert.deepEqual(floored.firstStep!()!.sigma, [1.5], name);
    }
    // the guide: particle 0 follows the last plan shifted by one step, with no proposal correction
    const { gpu } = await pair('spo', { 'spo.particles': 8, 'spo.resampleEvery': 100 });
    const first = await gpu.plan(req);
    await gpu.plan({ ...req, shiftSteps: 1 });
    const h = await gpu.history();
    const s = controlScaling(model);
    for (let t = 0; t < 9; t++) {
      const planned = (first.controls[t + 1] - s.center[0]) / s.scale[0];
      assert.ok(Math.abs(h.actions[t][0] - planned) < 1e-5, `step ${t}: guide ${h.actions[t][0]} vs plan ${planned}`);
      assert.equal(h.logCorrections[t][0], 0);
    }
  });

  it('draws around the previous plan (warmStartShare) and the mean particle, in both members, as the CPU draws them', async () => {
    const m = model.controlDim;
    for (const name of ['spo', 'trtsmc'] as const) {
      const K = 8;
      const stdScale = 0.2;
      const { cpu, gpu } = await pair(name, {
        [`${name}.particles`]: K, [`${name}.resampleEvery`]: 100, [`${name}.warmStartShare`]: 0.5, [`${name}.warmStartStdScale`]: stdScale, [`${name}.policyStdScale`]: 2,
        // TRT-SMC at alpha 0 (the acrobot's tuning): the proposal is the policy, no atom's Q is evaluated
        ...(name === 'trtsmc' ? { 'trtsmc.alpha': 0, 'trtsmc.atoms': 4 } : {}),
      });
      const first = await gpu.plan(req);
      await gpu.plan({ ...req, shiftSteps: 1 });
      const h = await gpu.history();
      const s = controlScaling(model);
      const problem = cpu.problem(req);
      // each particle's states from its recorded actions (no resampling: particles keep their places), and the policy there
      let checked = 0;
      let policyDraws = 0;
      for (let i = 1; i < K; i++) {
        let x = [...req.x0];
        for (let t = 0; t < 10; t++) {
          const { mean, std } = problem.policyValue(Float64Array.from(x), 1);
          const z = h.actions[t][i * m];
          const lc = h.logCorrections[t][i];
          if (i <= 4 && Math.abs(z) < 1 - 1e-6) {
            // the last plan shifted by one step, its last step repeated
            const guide = (first.controls[Math.min(t + 1, 9)] - s.center[0]) / s.scale[0];
            const e = (z - guide) / (stdScale * std[0]);
            const expected = -0.5 * ((z - mean[0]) / std[0]) ** 2 + 0.5 * e * e + Math.log(stdScale);
            assert.ok(Math.abs(e) < 6, `${name} particle ${i} step ${t}: ${e} policy stds x ${stdScale} from the guide`);
            assert.ok(Math.abs(lc - expected) <= 2e-3 * Math.max(1, Math.abs(expected)), `${name} particle ${i} step ${t}: log pi / q ${lc} vs ${expected}`);
            checked++;
          }
          if (i > 4 && i < K - 1 && Math.abs(z) < 1 - 1e-6) {
            // the policy's own draw at 2x its std (SPO's, and TRT-SMC's uniform choice among its atoms at alpha 0): log pi / pi_wide
            const e = (z - mean[0]) / (2 * std[0]);
            const expected = -1.5 * e * e + Math.log(2);
            assert.ok(Math.abs(lc - expected) <= 2e-3 * Math.max(1, Math.abs(expected)), `${name} particle ${i} step ${t}: log pi / q ${lc} vs ${expected}`);
            policyDraws++;
          }
          if (i === K - 1) {
            assert.ok(Math.abs(z - Math.min(1, Math.max(-1, mean[0]))) < 1e-4, `${name} step ${t}: the mean particle ${z} vs the policy's mean ${mean[0]}`);
            assert.ok(Math.abs(lc - Math.log(2)) < 1e-5, `${name} step ${t}: the mean particle's correction ${lc}`);
          }
          x = problem.step(x, problem.toPhysical([z]));
        }
      }
      assert.ok(checked >= 30, `${name}: ${checked} draws around the guide checked`);
      assert.ok(policyDraws >= 10, `${name}: ${policyDraws} draws from the policy checked`);
      if (name === 'trtsmc') assert.equal(first.info.beta, 0, 'alpha 0: the mean inverse temperature');
    }
  });

  it('a prior whose output is not finite at the state: the tick is refused with the reason (the controller then commands its safe command)', async () => {
    const cpu = await build('spo', { 'spo.particles': 8 }, 'cpu') as SmcTimePlanner;
    const networks = structuredClone(cpu.guide.prior.networks);
    networks.policy.layers[1].bias.fill(Number.POSITIVE_INFINITY);
    const broken = { ...cpu.guide, prior: LearnedPrior.fromNetworks(cpu.guide.prior.meta, networks) };
    const { GpuSmcTimePlanner } = await import('../src/planners/spo/gpu.js');
    const { WebGpuBackend } = await import('../src/kernels/webgpu.js');
    const gpu = await GpuSmcTimePlanner.create(model, await WebGpuBackend.create(model), { ...cpu.params }, 3, broken, SPO_VARIANT);
    await assert.rejects(gpu.plan(req), /spo: the learned prior's output is not finite at the current state/);
  });

  it('names the settings that exceed the adapter\'s dispatch limit', async () => {
    const planner = await build('trtsmc', { 'trtsmc.particles': 4096, 'trtsmc.atoms': 1024 }, 'webgpu');
    await assert.rejects(planner.plan(req), /trtsmc\.particles x trtsmc\.atoms = 4096 x 1024 exceeds this adapter's dispatch limit/);
  });
});
