import assert from 'node:assert/strict';
import { GpuTsmcPlanner } from '../src/planners/tsmc/gpu.js';
import { buildPlanner, PlannerSpec } from '../src/controller/planner-spec.js';
import type { PlanRequest } from '../src/planners/receding.js';
import { MPC_TSMC_PARAMS } from '../src/planners/tsmc/receding.js';
import { PHILOX_WGSL, philox4x32, philoxNormals } from '../src/kernels/philox.js';
import { gpuContext, WebGpuBackend } from '../src/kernels/webgpu.js';
import { webgpuMissing } from './support/webgpu.js';
import { untrainedPendulumPrior } from './support/priors.js';
import { resolveParams } from '../src/params.js';
import { MODELS } from '../src/models/index.js';
import { MPPI_PARAMS } from '../src/planners/mppi/mppi.js';
import { controlScaling, toControls, toNormalised } from '../src/models/controls.js';
import { runLoop } from '../src/run/loop.js';
import { assemble, resolveRunParams } from '../src/run/setup.js';
import { readParamsFile } from '../src/run/params-file.js';
import { gaussianProblem, moments } from './gaussian-target.js';
import { cpu, model } from './helpers.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { saveCheckpoint } from '../src/learned/checkpoint.js';
import { boundedControls, defaultFeatures, initNetworks, NETWORK_NAMES, PriorNetworks } from '../src/learned/networks.js';
import { PRIOR_PARAMS } from '../src/learned/params.js';
import { LearnedPrior } from '../src/learned/runtime.js';
import { resolveModel } from '../src/models/model.js';
import { Rng } from '../src/random.js';
import { compileStepFunction } from '../src/kernels/js-source.js';
import { buildStepGraphs } from '../src/kernels/graphs.js';
import type { ParamsOf } from '../src/params.js';

describe('Philox 4x32-10 (TypeScript reference)', () => {
  it('matches the Random123 known-answer vectors', () => {
    const hex = (w: number[]) => w.map((v) => v.toString(16).padStart(8, '0')).join(' ');
    assert.equal(hex(philox4x32([0, 0, 0, 0], [0, 0])), '6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    assert.equal(hex(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff])), '408f276d 41c83b0e a20bc7c6 6d5451fd');
    assert.equal(hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])), 'd16cfe09 94fdcceb 5001e420 24126ea1');
  });
});

/** WebGPU must be present where CI asks for it (TEMPERED_MPC_REQUIRE_WEBGPU=1); elsewhere a missing adapter skips. */
describe('GPU-resident planners (WebGPU, f32)', function () {
  let available = true;
  before(async function () {
    const missing = await webgpuMissing();
    available = missing === undefined;
    if (!available) console.log(`      skipping GPU planner tests: ${missing}`);
  });
  beforeEach(function () {
    if (!available) this.skip();
  });

  /** 4 x `blocks` normals for each of `streams` counters (stream, block, 7, 9) under key (seed, 1), from the shader's generator. */
  async function gpuNormals(streams: number, blocks: number, seed: number): Promise<Float32Array> {
    const { device } = await gpuContext();
    const code = `${PHILOX_WGSL}
@group(0) @binding(0) var<storage, read_write> out: array<vec4<f32>>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x >= ${streams}u) { return; }
  for (var b = 0u; b < ${blocks}u; b = b + 1u) { out[gid.x * ${blocks}u + b] = philox_normals(vec4<u32>(gid.x, b, 7u, 9u), vec2<u32>(${seed}u, 1u)); }
}`;
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
    const size = streams * blocks * 16;
    const buf = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const read = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] }));
    pass.dispatchWorkgroups(Math.ceil(streams / 64));
    pass.end();
    enc.copyBufferToBuffer(buf, 0, read, 0, size);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const out = new Float32Array(read.getMappedRange().slice(0));
    read.unmap();
    buf.destroy();
    read.destroy();
    return out;
  }

  it('the shader\'s generator equals the reference and passes distribution checks (mean, variance, correlation between streams)', async () => {
    const streams = 64;
    const blocks = 256;
    const seed = 12345;
    const z = await gpuNormals(streams, blocks, seed);
    const per = blocks * 4;
    for (const s of [0, 17, 63]) {
      for (const b of [0, 100, 255]) {
        const want = philoxNormals([s, b, 7, 9], [seed, 1]);
        for (let l = 0; l < 4; l++) assert.ok(Math.abs(z[s * per + b * 4 + l] - want[l]) < 1e-4 * (1 + Math.abs(want[l])), `stream ${s} block ${b} lane ${l}`);
      }
    }
    const N = z.length;
    let mean = 0;
    for (const v of z) mean += v / N;
    let variance = 0;
    let fourth = 0;
    for (const v of z) {
      variance += (v - mean) ** 2 / (N - 1);
      fourth += v ** 4 / N;
    }
    // N = 65536 draws: the standard errors are 0.004 (mean), 0.0055 (variance), 0.037 (fourth moment, 3 for a normal)
    assert.ok(Math.abs(mean) < 0.02, `mean ${mean}`);
    assert.ok(Math.abs(variance - 1) < 0.03, `variance ${variance}`);
    assert.ok(Math.abs(fourth - 3) < 0.2, `fourth moment ${fourth}`);
    // neighbouring streams (as neighbouring MPPI samples draw them) are uncorrelated: se 1/sqrt(1024) = 0.031
    let worst = 0;
    for (let s = 0; s + 1 < streams; s++) {
      let c = 0;
      for (let k = 0; k < per; k++) c += z[s * per + k] * z[(s + 1) * per + k];
      worst = Math.max(worst, Math.abs(c / per));
    }
    assert.ok(worst < 0.15, `largest correlation between neighbouring streams ${worst}`);
    // and the same stream under another seed differs
    const other = await gpuNormals(streams, blocks, seed + 1);
    assert.ok(other.some((v, i) => v !== z[i]));
  });

  const spec = (over: Partial<PlannerSpec> & { params?: Record<string, number | string> }): PlannerSpec => ({
    system: 'pendulum', model: {}, planner: 'mppi', backend: 'webgpu', threads: 1, seed: 1,
    ...over,
    params: (over.planner === 'tsmc' ? resolveParams('tsmc', MPC_TSMC_PARAMS, over.params ?? {}) : resolveParams('mppi', MPPI_PARAMS, over.params ?? {})) as Record<string, number | string>,
  });

  it('MPPI on the double integrator finds the exact quadratic optimum, as the CPU planner does', async () => {
    const m = model('double-integrator');
    const params = { samples: 2048, iterations: 40, elites: 128, sigmaMin: 0.002 };
    const gpu = await buildPlanner(spec({ system: 'double-integrator', params }));
    const cpuPlanner = await buildPlanner(spec({ system: 'double-integrator', params, backend: 'cpu' }));
    const req: PlanRequest = { x0: [1, 0], uPrev: [0], reference: [0, 0] };
    // the optimum of the quadratic cost J(U) = c + g.U + U'HU/2, from its exact gradient at the basis vectors
    const d = m.horizon;
    const basis = new Float64Array((d + 1) * d);
    for (let k = 0; k < d; k++) basis[(k + 1) * d + k] = 1;
    const backend = cpu(m);
    const { cost, grad } = backend.costGradSync({ controls: basis, x0: req.x0 });
    const H = Array.from({ length: d }, (_, k) => Array.from({ length: d }, (_, j) => grad[(k + 1) * d + j] - grad[j]));
    const { solve } = await import('./linalg.js');
    const uStar = solve(H, Array.from(grad.subarray(0, d), (v) => -v));
    const jStar = backend.costSync({ controls: Float64Array.from(uStar), x0: req.x0 })[0];
    assert.ok(jStar < cost[0]);
    const g = await gpu.planner.plan(req);
    const c = await cpuPlanner.planner.plan(req);
    const jGpu = backend.costSync({ controls: g.controls, x0: req.x0 })[0];
    const jCpu = backend.costSync({ controls: c.controls, x0: req.x0 })[0];
    // both within 0.1% of the zero plan's excess cost over the optimum, measured from the zero plan's cost
    const gap = cost[0] - jStar;
    assert.ok((jGpu - jStar) / gap < 1e-3, `GPU plan cost ${jGpu}, optimum ${jStar}, zero plan ${cost[0]}`);
    assert.ok((jCpu - jStar) / gap < 1e-3, `CPU plan cost ${jCpu}, optimum ${jStar}`);
    const worst = Math.max(...Array.from(g.controls, (u, k) => Math.abs(u - uStar[k])));
    assert.ok(worst < 0.03 * Math.max(...uStar.map(Math.abs)), `largest control error ${worst}`);
    // the GPU's own cost figure agrees with the f64 evaluation of its plan
    assert.ok(Math.abs(g.cost - jGpu) / jGpu < 1e-3, `reported ${g.cost}, evaluated ${jGpu}`);
  });

  it('one submit and one read-back per tick; under a deadline at most J + 1 submits, still one read-back', async () => {
    const built = await buildPlanner(spec({ params: { samples: 512, iterations: 5 } }));
    const req: PlanRequest = { x0: [0.1, 0], uPrev: [0], reference: [Math.PI, 0] };
    for (let k = 0; k < 3; k++) {
      const r = await built.planner.plan(req);
      assert.equal(r.info.gpuSubmits, 1);
      assert.equal(r.info.gpuReadbacks, 1);
      assert.equal(r.info.gpuWaits, 0);
      assert.equal(r.info.iterations, 5);
      // up: the header (x0, uPrev, reference and settings); down: the plan and the status figures
      assert.ok(r.info.gpuKiBUp < 0.1 && r.info.gpuKiBDown < 0.5, JSON.stringify(r.info));
    }
    const timed = await built.planner.plan({ ...req, deadline: performance.now() + 10_000 });
    assert.equal(timed.info.gpuSubmits, 5 + 1);
    assert.equal(timed.info.gpuReadbacks, 1);
    assert.equal(timed.info.iterations, 5);
    const late = await built.planner.plan({ ...req, deadline: performance.now() });
    assert.equal(late.info.iterations, 1, 'a deadline already passed still runs one iteration');
    assert.equal(late.info.gpuSubmits, 2);
    assert.equal(late.info.gpuReadbacks, 1);
    // today's path for comparison: the CPU planner with GPU rollouts reads back every iteration
    const service = await buildPlanner(spec({ params: { samples: 512, iterations: 5 }, gpuPath: 'rollouts' }));
    const s = await service.planner.plan(req);
    assert.equal(s.info.gpuReadbacks, 5 + 1);
  });

  it('is reproducible from its seed, and the seed matters', async () => {
    const req: PlanRequest = { x0: [0.1, 0], uPrev: [0], reference: [Math.PI, 0] };
    const run = async (seed: number) => {
      const built = await buildPlanner(spec({ seed, params: { samples: 256, iterations: 3, noiseCorrelation: 0.5, sigmaWarmStart: 'carry' } }));
      const out: number[] = [];
      for (let k = 0; k < 3; k++) out.push(...(await built.planner.plan({ ...req, shiftSteps: 1 })).controls);
      return out;
    };
    assert.deepEqual(await run(4), await run(4));
    assert.notDeepEqual(await run(4), await run(5));
  });

  /** A pendulum prior with seeded random weights, spread so its units leave their linear range (a stand-in for a trained one; docs/results.md checks trained ones). */
  function randomPrior(spoil?: (n: PriorNetworks) => void): string {
    const m = resolveModel(MODELS.get('pendulum')!);
    const rng = new Rng(21);
    const features = defaultFeatures(m);
    const networks = initNetworks(rng, { stateDim: 2, controlDim: 1, features, hidden: [16, 16] });
    for (const name of NETWORK_NAMES) for (const layer of networks[name].layers) for (let k = 0; k < layer.bias.length; k++) layer.bias[k] = 0.3 * rng.normal();
    spoil?.(networks);
    const dir = mkdtempSync(join(tmpdir(), 'gpu-prior-'));
    const sc = controlScaling(m);
    saveCheckpoint(dir, networks, {
      version: 'test', system: 'pendulum', stateNames: ['theta', 'omega'], controlNames: ['u'], stateDim: 2, controlDim: 1, horizon: m.horizon, dtS: m.dtS,
      reference: [...m.goal], features, controlCenter: Array.from(sc.center), controlScale: Array.from(sc.scale), bounded: boundedControls(m),
      hidden: [16, 16], valueTransform: 'symlog', gamma: 0.99, training: {}, episodes: 0, updates: 0,
    });
    return dir;
  }
  const priorSettings = (path: string, over: Partial<ParamsOf<typeof PRIOR_PARAMS>>) => ({ ...resolveParams('prior', PRIOR_PARAMS, { path }), ...over });

  it('a learned prior\'s policy drawn on the GPU: its first sequence is the policy\'s mean rolled through the model, as the CPU\'s LearnedPrior.rollout', async () => {
    const dir = randomPrior();
    try {
      // two samples, both the policy's mean (its std scaled by 0): one elite moves the mean onto it, so the plan is that sequence
      const built = await buildPlanner(spec({ params: { samples: 2, iterations: 1, elites: 1 }, prior: priorSettings(dir, { policySamples: 2, policyStdScale: 0, value: false }) }));
      const req: PlanRequest = { x0: [0.4, -0.3], uPrev: [0], reference: [Math.PI, 0] };
      const r = await built.planner.plan(req);
      const m = built.model;
      const prior = LearnedPrior.load(dir, m);
      const step = compileStepFunction(buildStepGraphs(m, false));
      const z = prior.rollout(new Rng(1), (x, u) => step(x, u, []), req.x0, req.reference, 1, m.horizon)!;
      const u = toControls(z, controlScaling(m));
      const worst = Math.max(...Array.from(r.controls, (v, k) => Math.abs(v - u[k])));
      assert.ok(worst < 1e-3 * m.controlLimits.upper[0], `GPU policy sequence differs from the CPU's by ${worst}`);
      assert.ok(new Set(Array.from(u, (v) => v.toFixed(3))).size > 5, 'the policy\'s sequence varies along the horizon');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the learned value closes each rollout on the GPU: the plan\'s cost is its CPU cost plus valueWeight x V(last state); seeded; one submit and one read-back a tick, nothing uploaded but the header', async () => {
    const dir = randomPrior();
    try {
      const settings = priorSettings(dir, { policySamples: 8, value: true, valueWeight: 2, policyStdScale: 2 });
      const built = await buildPlanner(spec({ seed: 3, params: { samples: 128, iterations: 2 }, prior: settings }));
      const m = built.model;
      const req: PlanRequest = { x0: [0.4, -0.3], uPrev: [0], reference: [Math.PI, 0] };
      const r = await built.planner.plan(req);
      const prior = LearnedPrior.load(dir, m);
      const step = compileStepFunction(buildStepGraphs(m, false));
      let x: number[] = [...req.x0];
      for (let t = 0; t < m.horizon; t++) x = step(x, [r.controls[t]], []);
      const rolled = await cpu(m).cost({ x0: req.x0, uPrev: req.uPrev, reference: req.reference, controls: Float64Array.from(toNormalised(r.controls, controlScaling(m))) });
      const expected = rolled[0] + 2 * prior.value(x, 1, req.reference)[0];
      assert.ok(Math.abs(r.cost - expected) < 1e-3 * Math.abs(expected), `GPU cost ${r.cost} vs CPU ${expected}`);
      assert.equal(r.diagnostics?.notice, undefined);
      // the next ticks: one submit, one read-back, the header the only upload
      const info = (await built.planner.plan({ ...req, shiftSteps: 1 })).info;
      assert.equal(info.gpuSubmits, 1);
      assert.equal(info.gpuReadbacks, 1);
      assert.ok((info.gpuKiBUp as number) * 1024 <= 4 * (13 + 2 * 2 + 1) + 1e-9, `uploaded ${info.gpuKiBUp} KiB`);
      // seeded: the same seed repeats the plans, another does not
      const again = await buildPlanner(spec({ seed: 3, params: { samples: 128, iterations: 2 }, prior: settings }));
      assert.deepEqual((await again.planner.plan(req)).controls, r.controls);
      const other = await buildPlanner(spec({ seed: 4, params: { samples: 128, iterations: 2 }, prior: settings }));
      assert.notDeepEqual((await other.planner.plan(req)).controls, r.controls);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the CPU and GPU MPPI of one seed draw the same noise and policy samples: their plans differ by f32 rounding only, tick after tick (another seed: far apart)', async () => {
    // H = 10: the pendulum's step (a variational integrator) solves for the next angle with asin, whose slope near the
    // torque limits turns f32 rounding into visible differences over longer horizons (at H = 30 plans can part by 1e-1)
    const m = resolveModel(MODELS.get('pendulum')!, { horizon: 10 });
    const dir = untrainedPendulumPrior(m);
    try {
      const settings = priorSettings(dir, { policySamples: 8, value: true, valueWeight: 1, policyStdScale: 2 });
      const params = { samples: 64, iterations: 3, noiseCorrelation: 0.5, sigmaWarmStart: 'carry' as const };
      const planners = async (cpuSeed: number) => [
        (await buildPlanner({ ...spec({ seed: cpuSeed, model: { horizon: 10 }, params, prior: settings }), backend: 'cpu', threads: 1 })).planner,
        (await buildPlanner(spec({ seed: 3, model: { horizon: 10 }, params, prior: settings }))).planner,
      ];
      const req: PlanRequest = { x0: [0.4, -0.3], uPrev: [0], reference: [Math.PI, 0], shiftSteps: 1 };
      const gap = async (cpuSeed: number) => {
        const [a, b] = await planners(cpuSeed);
        let worst = 0;
        for (let k = 0; k < 3; k++) {
          const [ra, rb] = [await a.plan(req), await b.plan(req)];
          for (let i = 0; i < ra.controls.length; i++) worst = Math.max(worst, Math.abs(ra.controls[i] - rb.controls[i]));
        }
        return worst / m.controlLimits.upper[0];
      };
      const same = await gap(3);
      const other = await gap(4);
      // measured: 8e-7 of the torque limit with the same seed, 0.58 with another
      assert.ok(same < 1e-4, `same seed: plans differ by ${same} of the torque limit`);
      assert.ok(other > 1000 * same, `another seed: plans differ by ${other}, the same seed's by ${same}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a learned network whose output is not finite is planned without, with the reason, and the plan stays finite', async () => {
    // an input weight of 1e30: the first layer overflows, and everything after it
    const dir = randomPrior((n) => { n.policy.layers[0].weight[0] = 1e30; n.q.layers[0].weight[0] = 1e30; });
    try {
      const built = await buildPlanner(spec({ params: { samples: 64, iterations: 2 }, prior: priorSettings(dir, { policySamples: 8, value: true }) }));
      const r = await built.planner.plan({ x0: [0.4, -0.3], uPrev: [0], reference: [Math.PI, 0] });
      assert.match(String(r.diagnostics?.notice), /the learned value went non-finite; planned without it/);
      assert.match(String(r.diagnostics?.notice), /the learned policy went non-finite; planned without its samples/);
      assert.ok(Number.isFinite(r.cost) && Array.from(r.controls).every(Number.isFinite));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a sample count whose buffers the adapter cannot hold, naming the setting, and keeps planning after it is lowered', async function () {
    const built = await buildPlanner(spec({ system: 'pusher-slider', params: { samples: 1 << 20, iterations: 1 } }));
    const m = built.model;
    const { device } = await gpuContext();
    if (2 ** 20 * m.horizon * m.controlDim * 4 <= Math.min(device.limits.maxBufferSize, device.limits.maxStorageBufferBindingSize)) this.skip();
    const req: PlanRequest = { x0: [...m.x0], uPrev: new Array<number>(m.controlDim).fill(0), reference: [...m.goal] };
    await assert.rejects(built.planner.plan(req), /mppi\.samples = 1048576 \(x \d+ controls per sample\) needs \d+ MB in one GPU buffer, more than this adapter's \d+ MB: lower it, or use backend cpu/);
    built.planner.updateParams({ samples: 64 });
    assert.ok(Number.isFinite((await built.planner.plan(req)).cost));
  });

  it('TSMC samples the double integrator\'s exact Gaussian target: mean within 0.2 sd, variance ratios 0.8-1.25, log Z', async () => {
    const g = gaussianProblem(1);
    const backend = await WebGpuBackend.create(g.model);
    const params = resolveParams('tsmc', MPC_TSMC_PARAMS, {
      particles: 1000, lambda: 1, kernel: 'hmc', stepSize: 0.2, leapfrogSteps: 10, polishSteps: 0, priorSigma: 0.3, priorGamma: 0.9,
    });
    const planner = await GpuTsmcPlanner.create(g.model, backend, params, 7);
    const r = await planner.plan({ x0: [1, 0], uPrev: [0], reference: [0, 0] });
    assert.equal(r.info.beta, 1);
    const { mean, variance } = moments(await planner.particles(), g.dim);
    for (let k = 0; k < g.dim; k++) {
      assert.ok(Math.abs(mean[k] - g.mean[k]) < 0.2 * g.sd[k], `coordinate ${k}: mean ${mean[k]} vs ${g.mean[k]} (sd ${g.sd[k]})`);
      const ratio = variance[k] / g.sd[k] ** 2;
      assert.ok(ratio > 0.8 && ratio < 1.25, `coordinate ${k}: variance ratio ${ratio}`);
    }
    assert.ok(Math.abs(r.info.logZ - g.logZ) < 0.2, `log Z ${r.info.logZ} vs exact ${g.logZ}`);
  });

  it('TSMC: one submit and one read-back of 12 numbers per tempering level, and the plan read back once', async () => {
    const built = await buildPlanner(spec({ planner: 'tsmc', params: {} }));
    const req: PlanRequest = { x0: [0.1, 0], uPrev: [0], reference: [Math.PI, 0] };
    for (let k = 0; k < 3; k++) {
      const r = await built.planner.plan({ ...req, shiftSteps: 1 });
      const levels = r.info.levels;
      assert.ok(levels >= 1 && r.info.beta === 1);
      // the tick's set-up, one per level, the plan
      assert.equal(r.info.gpuSubmits, levels + 2);
      assert.equal(r.info.gpuReadbacks, levels + 1);
      const d = built.model.horizon * built.model.controlDim;
      assert.equal(r.info.gpuKiBDown * 1024, levels * 12 * 4 + (1 + d) * 4);
    }
  });

  it('TSMC refuses to plan when every particle\'s cost is non-finite, with the reason (the controller then holds its safe command)', async () => {
    const built = await buildPlanner(spec({ planner: 'tsmc', params: {} }));
    await assert.rejects(built.planner.plan({ x0: [NaN, 0], uPrev: [0], reference: [Math.PI, 0] }), /every particle has a non-finite energy/);
  });

  it('every model\'s GPU planners compile and plan: finite costs and controls, MPPI\'s within the limits', async function () {
    this.timeout(300_000);
    for (const system of MODELS.keys()) {
      const m = model(system);
      const req: PlanRequest = { x0: [...m.x0], uPrev: new Array<number>(m.controlDim).fill(0), reference: [...m.goal], shiftSteps: 1 };
      for (const planner of ['mppi', 'tsmc'] as const) {
        const built = await buildPlanner(spec({ system, planner, params: planner === 'mppi' ? { samples: 128 } : { particles: 32, kernel: 'hmc', polishSteps: 10 } }));
        for (let k = 0; k < 2; k++) {
          const r = await built.planner.plan(req);
          assert.ok(Number.isFinite(r.cost), `${system} ${planner}: cost ${r.cost}`);
          assert.equal(r.controls.length, m.horizon * m.controlDim);
          // MPPI clips its samples to the limits; TSMC's particles may lie beyond them (the model saturates, and the controller clamps what it publishes)
          r.controls.forEach((u, i) => {
            const j = i % m.controlDim;
            const inside = u >= m.controlLimits.lower[j] - 1e-6 && u <= m.controlLimits.upper[j] + 1e-6;
            assert.ok(Number.isFinite(u) && (planner === 'tsmc' || inside), `${system} ${planner}: control ${i} = ${u}`);
          });
        }
      }
    }
  });

  for (const planner of ['mppi', 'tsmc'] as const) {
    it(`pendulum closed loop (lockstep): GPU and CPU ${planner} both swing up, times to goal within a tick on most seeds`, async function () {
      this.timeout(300_000);
      const times: Record<string, number[]> = { cpu: [], webgpu: [] };
      for (const backend of ['cpu', 'webgpu'] as const) {
        for (let seed = 0; seed < 4; seed++) {
          const params = resolveRunParams('pendulum', {
            ...readParamsFile('launch/config/pendulum.yaml'),
            'controller.planner': planner, 'controller.backend': backend, 'controller.seed': seed, 'controller.threads': 1,
          });
          const { session, sim } = await assemble(params, { lockstep: true });
          const { summary } = await runLoop(sim, session, { durationS: 8, lockstep: true, keepRecords: false });
          session.dispose();
          assert.ok(summary.success, `${backend} seed ${seed} did not swing up`);
          times[backend].push(summary.timeToGoalS!);
        }
      }
      const close = times.cpu.filter((t, i) => Math.abs(t - times.webgpu[i]) <= 0.1 + 1e-9).length;
      assert.ok(close >= 3, `times to goal: cpu ${times.cpu}, webgpu ${times.webgpu}`);
    });
  }
});
