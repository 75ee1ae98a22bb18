import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Controller } from '../src/controller/controller.js';
import { loadCheckpoint, PriorError } from '../src/learned/checkpoint.js';
import { LearnedPrior } from '../src/learned/runtime.js';
import { lqr } from '../src/models/lqr.js';
import { fromPhysical, inGoalRegion } from '../src/models/model.js';
import { ClosedLoop, drawFromPrior, fromPriorPolicy, policyShape, priorStd, toPriorPolicy } from '../src/policy/closed-loop.js';
import { PolicyTask, policyTask, taskModel } from '../src/policy/tasks.js';
import { checkInitialPolicy, policyCatch, resolvePolicySettings, rolloutNoise, teacherProblem, trainPolicy } from '../src/policy/train.js';
import { IlqgTeacher, JUDGED_ROLLOUTS } from '../src/policy/teacher.js';
import { FeedbackBuilder } from '../src/controller/feedback.js';
import { goalCatch, type PolicyCatch } from '../src/policy/catch.js';
import { buildStepGraphs } from '../src/kernels/graphs.js';
import { compileStepFunction } from '../src/kernels/js-source.js';
import { nutsKernel } from '../src/samplers/nuts.js';
import { initParticles } from '../src/samplers/target.js';
import { MppiPlanner } from '../src/planners/mppi/receding.js';
import { CpuBackend } from '../src/kernels/cpu.js';
import { resolveParams } from '../src/params.js';
import { PRIOR_PARAMS } from '../src/learned/params.js';
import { buildPlanner } from '../src/controller/planner-spec.js';
import { MPPI_PARAMS } from '../src/planners/mppi/mppi.js';
import { Rng } from '../src/random.js';
import { InputError } from '../src/input-error.js';
import { gaussianProblem } from './gaussian-target.js';
import { model } from './helpers.js';
import { webgpuMissing } from './support/webgpu.js';
import { closedLoopFor, ClosedLoopPool, runJob } from '../src/policy/pool.js';
import { drawPhysicalStarts, mixtureCounts, PolicyTarget, toModelStarts } from '../src/policy/target.js';
import { gridStarts } from '../src/cli/bench-policy.js';
import { costTrack, trackReference } from '../src/policy/track.js';
import { writeRos2Bag } from './support/ros2-bag.js';

/** A linear-quadratic task: the double integrator, a linear policy (no hidden layer), starts uniform on [-1, 1]^2. */
const LQ_TASK: PolicyTask = {
  name: 'lq-test',
  summary: 'double integrator, linear feedback',
  system: 'double-integrator',
  model: { horizon: 80 },
  starts: { kind: 'box', lower: [-1, -1], upper: [1, 1] },
  rawScale: [1, 1],
  hidden: [],
  defaults: { particles: 64, batch: 16, lambda: 1e-4, stepSize: 0.05 },
  episodeS: 8,
};

const version = 'test';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'policy-'));
}

/** Mean and std per parameter of the particles in a run's training/particles.bin (first `dim` of every `stride` values). */
function particleMoments(out: string, stride: number, from: number, dim: number): { mean: number[]; sd: number[]; values: number[][] } {
  const bin = readFileSync(join(out, 'training/particles.bin'));
  const p = new Float64Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length));
  const count = p.length / stride;
  const values = Array.from({ length: dim }, (_, j) => Array.from({ length: count }, (__, i) => p[i * stride + from + j]));
  const mean = values.map((v) => v.reduce((a, b) => a + b, 0) / v.length);
  const sd = values.map((v, j) => Math.sqrt(v.reduce((a, b) => a + (b - mean[j]) ** 2, 0) / v.length));
  return { mean, sd, values };
}

/** |exact gradient - central differences| / |central differences| of a closed loop's mean cost at theta (asserting the cost depends on theta). */
function gradientError(loop: ClosedLoop, theta: Float64Array, starts: ArrayLike<number>, B: number): number {
  const grad = new Float64Array(loop.parameters);
  loop.evaluate(theta, starts, B, { grad });
  const fd = new Float64Array(loop.parameters);
  for (let k = 0; k < loop.parameters; k++) {
    const h = 1e-6 * Math.max(1, Math.abs(theta[k]));
    const plus = theta.slice();
    plus[k] += h;
    const minus = theta.slice();
    minus[k] -= h;
    fd[k] = (loop.evaluate(plus, starts, B) - loop.evaluate(minus, starts, B)) / (2 * h);
  }
  const norm = (v: Float64Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  assert.ok(norm(fd) > 1e-3, 'the cost depends on the policy');
  return norm(grad.map((g, k) => g - fd[k])) / norm(fd);
}

describe('policies in the differentiable closed loop', () => {
  for (const [name, overrides, T] of [['pendulum', {}, 20], ['acrobot', { dtS: 0.04 }, 40], ['cart-double-pendulum', {}, 30], ['double-integrator', {}, 30]] as const) {
    it(`${name}: the closed-loop gradient equals central differences to 1e-6 (f64)`, () => {
      const m = model(name, overrides);
      const loop = new ClosedLoop(m, policyShape(m, [8, 8]), T, m.goal);
      const rng = new Rng(3);
      const theta = drawFromPrior(rng, priorStd(loop.sizes, 0.5), 1);
      const B = 3;
      const starts = Float64Array.from({ length: B * m.stateDim }, () => 0.3 * rng.normal());
      const rel = gradientError(loop, theta, starts, B);
      assert.ok(rel < 1e-6, `relative error ${rel.toExponential(2)}`);
    });
  }

  it('the sparse-reward pendulum task: its terminal-only cost has the exact gradient too', () => {
    const m = taskModel(policyTask('sparse-pendulum'), { horizon: 12 });
    const loop = new ClosedLoop(m, policyShape(m, [8]), m.horizon, m.goal);
    const rng = new Rng(5);
    // starts near the goal, where the sigmoid is not flat
    const starts = Float64Array.from([Math.PI - 0.05, 0.01, Math.PI + 0.08, -0.02]);
    const theta = drawFromPrior(rng, priorStd(loop.sizes, 0.2), 1);
    const grad = new Float64Array(loop.parameters);
    loop.evaluate(theta, starts, 2, { grad });
    let worst = 0;
    for (let k = 0; k < loop.parameters; k++) {
      const h = 1e-6;
      const plus = theta.slice();
      plus[k] += h;
      const minus = theta.slice();
      minus[k] -= h;
      const fd = (loop.evaluate(plus, starts, 2) - loop.evaluate(minus, starts, 2)) / (2 * h);
      worst = Math.max(worst, Math.abs(fd - grad[k]) / Math.max(1e-6, Math.abs(fd)));
    }
    assert.ok(worst < 1e-4, `worst relative error ${worst.toExponential(2)}`);
  });

  it('a policy checkpoint\'s network gives back the parameters (f32) and its mean is the policy', () => {
    const m = model('acrobot', { dtS: 0.04 });
    const shape = policyShape(m, [8, 8]);
    const loop = new ClosedLoop(m, shape, 1, m.goal);
    const theta = drawFromPrior(new Rng(2), priorStd(loop.sizes), 1);
    const back = fromPriorPolicy(toPriorPolicy(theta, loop.sizes, 0));
    assert.deepEqual(back.sizes, loop.sizes);
    back.theta.forEach((v, k) => assert.equal(v, Math.fround(theta[k])));
  });
});

describe('a policy\'s LQR catch and noisy training rollouts', function () {
  this.timeout(120000);
  const acrobot = () => taskModel(policyTask('acrobot'), { horizon: 40 });

  it('the closed-loop gradient with the catch and with rollout noise equals central differences to 1e-6 (f64)', () => {
    const m = acrobot();
    const task = policyTask('acrobot');
    const balance = goalCatch(m, task.catchRadii!, 'test');
    const rng = new Rng(4);
    // one start inside the catch's gate, one on its edge, one far out: the gate's slope and the saturated LQR both enter
    const starts = Float64Array.from([Math.PI - 0.2, 0.1, 0.5, -0.3, Math.PI + 0.55, -0.4, 2, 1, 1, 0.5, 0, 0]);
    const noises = { none: undefined, process: { std: 0.5, states: [2, 3], seed: 3 }, measurement: { std: 0, states: [], measurementStd: 0.05, seed: 3 }, both: { std: 0.5, states: [2, 3], measurementStd: 0.05, seed: 3 } };
    for (const [name, noise] of Object.entries(noises)) {
      const loop = new ClosedLoop(m, policyShape(m, [8, 8], task.rawScale, balance), m.horizon, m.goal, noise);
      const theta = drawFromPrior(rng, priorStd(loop.sizes, 0.5), 1);
      const rel = gradientError(loop, theta, starts, 3);
      assert.ok(rel < 1e-6, `relative error ${rel.toExponential(2)} (noise: ${name})`);
    }
  });

  it('the catch holds the acrobot\'s upright where the network alone lets it fall', () => {
    const m = taskModel(policyTask('acrobot'), { horizon: 100 });
    const task = policyTask('acrobot');
    // inside the saturated LQR's basin at this step, which is small (from 0.1 rad off on the first link alone it does not catch)
    const start = [Math.PI + 0.05, -0.05, 0, 0];
    const final = (balance?: PolicyCatch) => {
      const loop = new ClosedLoop(m, policyShape(m, task.hidden, task.rawScale, balance), m.horizon, m.goal);
      // a network that commands nothing: all weights and biases 0
      const finalStates = new Float64Array(m.stateDim);
      loop.evaluate(new Float64Array(loop.parameters), start, 1, { finalStates });
      const e = Array.from(finalStates, (v, i) => (i < 2 ? Math.atan2(Math.sin(v - m.goal[i]), Math.cos(v - m.goal[i])) : v - m.goal[i]));
      return Math.hypot(...e);
    };
    assert.ok(final(goalCatch(m, task.catchRadii!, 'test')) < 0.05, 'held at the upright after 4 s');
    assert.ok(final() > 1, 'fell without the catch');
  });

  it('a checkpoint trained with the catch acts as the closed loop trained it (bench policy, fallback, MPPI\'s prior); a malformed catch is refused', async () => {
    const task: PolicyTask = { ...LQ_TASK, catchRadii: [0.5, 0.5] };
    const out = tmp();
    try {
      const settings = resolvePolicySettings(task, { particles: 4, batch: 2, maxLevels: 1, catch: 'lqr' });
      const run = await trainPolicy(task, settings, { out, resume: false, version });
      const m = taskModel(task);
      const prior = LearnedPrior.load(out, m, 'policy');
      assert.ok(prior.meta.catch, 'the checkpoint holds the catch');
      const loop = new ClosedLoop(taskModel(task, { horizon: 1 }), policyShape(m, task.hidden, task.rawScale, prior.meta.catch), 1, m.goal);
      const step = compileStepFunction(buildStepGraphs(m, false));
      for (const x of [[0.1, -0.2], [0.4, 0.3], [-1, 0.5]]) {
        const finalStates = new Float64Array(2);
        loop.evaluate(run.best.theta, x, 1, { finalStates });
        const viaPrior = step(x, prior.command(x, m.goal)!, []);
        finalStates.forEach((v, i) => assert.ok(Math.abs(v - viaPrior[i]) < 1e-5, `x1 at [${x}]: ${v} against ${viaPrior[i]}`));
      }
      const metaPath = join(out, 'meta.json');
      const meta = JSON.parse(readFileSync(metaPath, 'utf8'));
      writeFileSync(metaPath, JSON.stringify({ ...meta, catch: { ...meta.catch, gain: [[1]] } }));
      assert.throws(() => loadCheckpoint(out), (e: Error) => e instanceof PriorError && /meta.json's catch gain must be 1 rows of 2 finite numbers/.test(e.message));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('rollout noise: fixed draws per start (the energy is a function of theta), a start\'s draws whatever the batch', () => {
    const m = acrobot();
    const shape = policyShape(m, [8], policyTask('acrobot').rawScale);
    const noisy = new ClosedLoop(m, shape, m.horizon, m.goal, { std: 0.3, states: [2, 3], seed: 1 });
    const quiet = new ClosedLoop(m, shape, m.horizon, m.goal);
    const theta = drawFromPrior(new Rng(1), priorStd(noisy.sizes), 1);
    const start = [0.5, 0, 0, 0];
    const two = new Float64Array(2);
    noisy.evaluate(theta, [...start, ...start], 2, { perStart: two });
    assert.notEqual(two[0], two[1], 'each start its own draws');
    assert.equal(noisy.evaluate(theta, start, 1), two[0], 'start 0\'s draws do not depend on the batch');
    assert.equal(noisy.evaluate(theta, start, 1), two[0], 'and repeat');
    assert.notEqual(quiet.evaluate(theta, start, 1), two[0]);
  });

  it('measurement noise: the policy sees the state plus its draw, the dynamics the true state', () => {
    const m = acrobot();
    const shape = policyShape(m, [8], policyTask('acrobot').rawScale);
    const std = 0.2;
    const measured = new ClosedLoop(m, shape, m.horizon, m.goal, { std: 0, states: [], measurementStd: std, seed: 1 });
    const quiet = new ClosedLoop(m, shape, m.horizon, m.goal);
    const theta = drawFromPrior(new Rng(1), priorStd(measured.sizes), 1);
    const start = [0.5, 0, 0, 0];
    const { states, controls } = measured.rollout(theta, start);
    // the same draws, as the loop takes them: one stream, start 0's T x n first
    const draws = new Rng(1 + 1).fillNormal(new Float64Array(m.horizon * m.stateDim)).map((v) => v * std);
    const sees = (t: number) => Array.from(states.subarray(t * m.stateDim, (t + 1) * m.stateDim), (v, j) => v + draws[t * m.stateDim + j]);
    // the policy's control at step t is the quiet loop's control from the seen state, one step long
    const one = new ClosedLoop(m, shape, 1, m.goal);
    for (const t of [0, 1, 17]) assert.equal(one.rollout(theta, sees(t)).controls[0], controls[t], `step ${t}`);
    // and the true states follow the model from those controls: the quiet loop from the same start differs
    assert.notDeepEqual(Array.from(quiet.rollout(theta, start).states), Array.from(states));
    const twice = measured.rollout(theta, start);
    assert.deepEqual(Array.from(twice.states), Array.from(states), 'fixed draws');
  });

  it('refuses a catch the task has no region for, and rollout noise on WebGPU or where the model state is not the physical one', () => {
    const at = (name: string, given: Record<string, unknown>) => {
      const task = policyTask(name);
      const settings = resolvePolicySettings(task, given);
      const m = taskModel(task);
      return () => { policyCatch(task, settings, m); rolloutNoise(task, settings, m); };
    };
    assert.throws(at('pendulum-swingup', { catch: 'lqr' }), (e: Error) => e instanceof InputError && /train.catch = lqr: task pendulum-swingup declares no catch region/.test(e.message));
    assert.doesNotThrow(at('acrobot', { catch: 'lqr', backend: 'webgpu' }));
    assert.throws(at('acrobot', { processNoise: 0.1, backend: 'webgpu' }), /train.processNoise = 0.1 runs on the CPU closed loop only/);
    assert.throws(at('acrobot', { processNoise: 0.1, measurementNoise: 0.01, backend: 'webgpu' }), /train.processNoise = 0.1 and train.measurementNoise = 0.01 runs on the CPU closed loop only: set train.backend to cpu, or train.processNoise and train.measurementNoise to 0/);
    assert.throws(at('pendulum', { measurementNoise: 0.01 }), /train.measurementNoise = 0.01: pendulum's model state is not its physical state/);
    assert.throws(at('pendulum', { processNoise: 0.1 }), /train.processNoise = 0.1: pendulum's model state is not its physical state/);
    assert.doesNotThrow(at('acrobot', { catch: 'lqr', processNoise: 0.1 }));
  });
});

describe('held coordinates in NUTS (inverse mass 0)', () => {
  it('a coordinate with inverse mass 0 never moves; the others still sample their target', async () => {
    const p = gaussianProblem(1);
    const rng = new Rng(4);
    const n = 400;
    const start = new Float64Array(n * p.dim);
    for (let i = 0; i < start.length; i++) start[i] = p.mean[i % p.dim] + p.sd[i % p.dim] * rng.normal();
    let s = await initParticles(p.target, start);
    const minv = Float64Array.from({ length: p.dim }, (_, j) => (j === p.dim - 1 ? 0 : 1));
    const held = Array.from({ length: n }, (_, i) => start[i * p.dim + p.dim - 1]);
    for (let k = 0; k < 5; k++) s = (await nutsKernel({ stepSize: 0.3, maxTreeDepth: 4, inverseMass: minv }).step(rng, p.target, s, 1)).state;
    held.forEach((v, i) => assert.equal(s.positions[i * p.dim + p.dim - 1], v));
    const moved = Array.from({ length: n }, (_, i) => s.positions[i * p.dim]);
    assert.ok(moved.some((v, i) => v !== start[i * p.dim]), 'the free coordinates move');
  });
});

describe('the policy target', () => {
  it('an evaluation into lent arrays equals a fresh one and fills them (TSMC:D and TSMC:E)', async () => {
    const m = model('pendulum', {});
    const loop = new ClosedLoop(m, policyShape(m, [8, 8]), 20, m.goal);
    const rng = new Rng(9);
    const [count, batch] = [4, 3];
    const starts = Float64Array.from({ length: batch * m.stateDim }, () => 0.5 * rng.normal());
    const std = priorStd(loop.sizes, 0.5);
    for (const target of [new PolicyTarget(loop, 2, std, batch, starts), new PolicyTarget(loop, 2, std, batch, undefined)]) {
      const positions = new Float64Array(count * target.dim);
      const thetas = drawFromPrior(rng, std, count);
      for (let i = 0; i < count; i++) {
        positions.set(thetas.subarray(i * target.parameters, (i + 1) * target.parameters), i * target.dim);
        if (target.carried) positions.set(starts, i * target.dim + target.parameters);
      }
      const fresh = await target.evaluate(positions, count);
      // longer than needed and full of stale values, as a kept workspace's arrays are
      const lent = { energy: new Float64Array(count + 2).fill(7), energyGrad: new Float64Array((count + 2) * target.dim).fill(7), prior: new Float64Array(count + 2).fill(7), priorGrad: new Float64Array((count + 2) * target.dim).fill(7) };
      const into = await target.evaluate(positions, count, lent);
      for (const key of ['energy', 'energyGrad', 'prior', 'priorGrad'] as const) assert.deepEqual(Array.from(into[key]), Array.from(fresh[key]), `${target.carried ? 'E' : 'D'}: ${key}`);
      assert.equal(into.priorGrad.buffer, lent.priorGrad.buffer);
      assert.equal(into.energyGrad.buffer, lent.energyGrad.buffer);
    }
  });
});

describe('the closed loop on worker threads', () => {
  it('a pool of threads gives exactly this thread\'s costs and gradients, also into a lent array', async () => {
    const spec = { task: 'acrobot', model: { horizon: 30 } };
    const loop = closedLoopFor(spec);
    const rng = new Rng(2);
    const count = 5;
    const job = { thetas: drawFromPrior(rng, priorStd(loop.sizes, 0.5), count), starts: toModelStarts(loop.model, [[0.2, -0.1, 0, 0.3]]), perPolicyStarts: false, count, batch: 1 };
    const here = runJob(loop, job);
    const pool = new ClosedLoopPool(loop, spec, 2);
    try {
      const gradInto = new Float64Array((count + 2) * loop.parameters).fill(7);
      for (const there of [await pool.evaluate(job), await pool.evaluate({ ...job, gradInto })]) {
        assert.deepEqual(Array.from(there.energy), Array.from(here.energy));
        assert.deepEqual(Array.from(there.grad), Array.from(here.grad));
      }
      assert.deepEqual(Array.from(gradInto.subarray(0, count * loop.parameters)), Array.from(here.grad));
    } finally {
      pool.dispose();
    }
  });
});

describe('train.track: a recorded run as the closed loop\'s cost reference', function () {
  this.timeout(120000);
  const acrobotTask = policyTask('acrobot');
  /** An acrobot run as a ROS 2 bag at 50 Hz: q1 eased from hanging to upright over 2 s (q2 at rest), then held there; `from` and `to` move its ends. */
  async function acrobotLog(path: string, from = 0, to = Math.PI): Promise<number[][]> {
    const states: number[][] = [];
    for (let k = 0; k <= 200; k++) {
      const s = Math.min(1, (k * 0.02) / 2);
      const ease = s * s * (3 - 2 * s);
      const rate = s < 1 ? (to - from) * 6 * s * (1 - s) / 2 : 0;
      states.push([from + (to - from) * ease, 0, rate, 0]);
    }
    await writeRos2Bag(path, ['q1', 'q2'], states.map((y, k) => ({ timeS: 5 + k * 0.02, position: y.slice(0, 2), velocity: y.slice(2) })),
      states.map((_, k) => ({ timeS: 5 + k * 0.02, u: [0] })));
    return states;
  }

  it('the closed-loop gradient against a per-step reference equals central differences; a track that is the goal throughout changes nothing', () => {
    const m = model('cart-double-pendulum');
    const T = 30;
    const rng = new Rng(6);
    const shape = policyShape(m, [8, 8]);
    const track = Float64Array.from({ length: (T + 1) * m.stateDim }, (_, i) => m.goal[i % m.stateDim] + 0.5 * rng.normal());
    const tracked = new ClosedLoop(m, shape, T, m.goal, undefined, track);
    const plain = new ClosedLoop(m, shape, T, m.goal);
    const theta = drawFromPrior(rng, priorStd(plain.sizes, 0.5), 1);
    const starts = Float64Array.from({ length: 3 * m.stateDim }, () => 0.3 * rng.normal());
    const rel = gradientError(tracked, theta, starts, 3);
    assert.ok(rel < 1e-6, `relative error ${rel.toExponential(2)}`);
    assert.notEqual(tracked.evaluate(theta, starts, 3), plain.evaluate(theta, starts, 3));
    const atGoal = new ClosedLoop(m, shape, T, m.goal, undefined, Float64Array.from({ length: (T + 1) * m.stateDim }, (_, i) => m.goal[i % m.stateDim]));
    const [g1, g2] = [new Float64Array(plain.parameters), new Float64Array(plain.parameters)];
    assert.equal(atGoal.evaluate(theta, starts, 3, { grad: g1 }), plain.evaluate(theta, starts, 3, { grad: g2 }));
    assert.deepEqual(Array.from(g1), Array.from(g2));
    assert.throws(() => new ClosedLoop(m, shape, T, m.goal, undefined, track.subarray(1)), /track holds 185 values, expected 31 steps of 6 states/);
  });

  it('the reference: the log\'s state nearest each step until it enters the goal region, the goal after; threads carry it', async () => {
    const dir = tmp();
    try {
      const path = join(dir, 'swing.mcap');
      const states = await acrobotLog(path);
      const m = taskModel(acrobotTask);
      const track = trackReference(acrobotTask, m, path);
      assert.equal(track.length, (m.horizon + 1) * 4);
      // the log is at 0.02 s, the task's step 0.04 s: step t is sample 2t
      const arrival = states.findIndex((y) => inGoalRegion(m, y) === true);
      assert.ok(arrival > 50 && arrival < 100, `arrival at sample ${arrival}`);
      for (let t = 0; t <= m.horizon; t++) {
        const expected = 2 * t < arrival ? states[2 * t] : m.goal;
        for (let j = 0; j < 4; j++) assert.ok(Math.abs(track[t * 4 + j] - expected[j]) < 1e-12, `step ${t}, state ${j}: ${track[t * 4 + j]} against ${expected[j]}`);
      }
      // the same costs and gradients on worker threads as here
      const spec = { task: 'acrobot', model: {}, track };
      const loop = closedLoopFor(spec);
      const job = { thetas: drawFromPrior(new Rng(8), priorStd(loop.sizes, 0.5), 3), starts: toModelStarts(m, [[0, 0, 0, 0]]), perPolicyStarts: false, count: 3, batch: 1 };
      const here = runJob(loop, job);
      assert.notDeepEqual(Array.from(here.energy), Array.from(runJob(closedLoopFor({ task: 'acrobot', model: {} }), job).energy));
      const pool = new ClosedLoopPool(loop, spec, 2);
      try {
        const there = await pool.evaluate(job);
        assert.deepEqual(Array.from(there.energy), Array.from(here.energy));
        assert.deepEqual(Array.from(there.grad), Array.from(here.grad));
      } finally {
        pool.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a task with a start region, a log from elsewhere or one that never reaches the goal, WebGPU, a missing file', async () => {
    const dir = tmp();
    try {
      const good = join(dir, 'good.mcap');
      await acrobotLog(good);
      const elsewhere = join(dir, 'elsewhere.mcap');
      await acrobotLog(elsewhere, 0.5);
      const short = join(dir, 'short.mcap');
      await acrobotLog(short, 0, 2);
      const at = (name: string, given: Record<string, unknown>) => () => {
        const task = policyTask(name);
        costTrack(task, resolvePolicySettings(task, given), taskModel(task));
      };
      assert.throws(at('pendulum', { track: good }), (e: Error) => e instanceof InputError && /train.track = .*good.mcap: task pendulum starts from a region/.test(e.message));
      assert.throws(at('acrobot', { track: elsewhere }), (e: Error) => e instanceof InputError && /the log starts at \[0.5, 0, 0, 0\], task acrobot at \[0, 0, 0, 0\]/.test(e.message));
      assert.throws(at('acrobot', { track: short }), (e: Error) => e instanceof InputError && /the log never enters acrobot's goal region/.test(e.message));
      assert.throws(at('acrobot', { track: good, backend: 'webgpu' }), (e: Error) => e instanceof InputError && /train.track runs on the CPU closed loop only/.test(e.message));
      assert.throws(at('acrobot', { track: join(dir, 'none.mcap') }), (e: Error) => e instanceof InputError && /none.mcap: no such file/.test(e.message));
      assert.throws(at('acrobot', { track: dir }), (e: Error) => e instanceof InputError && /: not a file \(an MCAP log is one file/.test(e.message));
      assert.doesNotThrow(at('acrobot', { track: good }));
      assert.equal(costTrack(acrobotTask, resolvePolicySettings(acrobotTask, {}), taskModel(acrobotTask)), undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('train.teacher = ilqg: policy iteration with iLQG as the teacher', function () {
  this.timeout(300000);
  const acrobotTask = policyTask('acrobot');
  /** A task's model at horizon T, its teacher of `iterations`, a plain closed loop and a policy drawn from the prior with `seed`. */
  function teaching(task: PolicyTask, T: number, iterations: number, seed: number) {
    const m = taskModel(task, { horizon: T });
    const shape = policyShape(m, task.hidden, task.rawScale);
    const plain = new ClosedLoop(m, shape, T, m.goal);
    return { m, shape, plain, teacher: new IlqgTeacher(task, m, shape, iterations), theta: drawFromPrior(new Rng(seed), priorStd(plain.sizes, 1), 1) };
  }

  it('a lesson: the policy\'s own cost from the start, and iLQG\'s cheaper path from its closed loop, starting at the start', async () => {
    const { m, shape, plain, teacher, theta } = teaching(acrobotTask, 30, 200, 4);
    const lesson = await teacher.lesson(theta);
    assert.equal(lesson.policyCost, plain.evaluate(theta, [0, 0, 0, 0], 1));
    assert.equal(teacher.cost(theta), lesson.policyCost);
    assert.ok(lesson.teacherIterations > 0 && lesson.teacherCost < lesson.policyCost, `${lesson.policyCost} -> ${lesson.teacherCost} in ${lesson.teacherIterations}`);
    assert.equal(lesson.track!.length, 31 * 4);
    assert.deepEqual(Array.from(lesson.track!.subarray(0, 4)), [0, 0, 0, 0]);
    // the path is scored as train.track's: set on a loop or given at its making, the same costs
    const tracked = new ClosedLoop(m, shape, 30, m.goal, undefined, lesson.track);
    plain.setTrack(lesson.track);
    assert.equal(plain.evaluate(theta, [0, 0, 0, 0], 1), tracked.evaluate(theta, [0, 0, 0, 0], 1));
    plain.setTrack(undefined);
    assert.equal(plain.evaluate(theta, [0, 0, 0, 0], 1), lesson.policyCost);
  });

  it('with training noise a policy\'s own cost is the mean over its noise-free rollout and draws of its own (the lesson\'s path still from its noise-free loop)', async () => {
    const { m, shape, plain, theta } = teaching(acrobotTask, 30, 50, 4);
    const noise = { std: 0.3, states: [2, 3], measurementStd: 0.02, seed: 9 };
    const teacher = new IlqgTeacher(acrobotTask, m, shape, 50, noise);
    const draws = JUDGED_ROLLOUTS - 1;
    const quiet = plain.evaluate(theta, [0, 0, 0, 0], 1);
    // not the training's draws (seed 9; its measurement noise 10): a stream of its own
    const judged = (seed: number) => (quiet + draws * new ClosedLoop(m, shape, 30, m.goal, { ...noise, seed }).evaluate(theta, new Float64Array(4 * draws), draws)) / JUDGED_ROLLOUTS;
    const cost = teacher.cost(theta);
    assert.equal(cost, judged(11));
    assert.notEqual(cost, judged(9));
    assert.notEqual(cost, quiet);
    assert.equal(teacher.noiseFreeCost(theta), quiet);
    const lesson = await teacher.lesson(theta);
    assert.equal(lesson.policyCost, cost);
    const unperturbed = await new IlqgTeacher(acrobotTask, m, shape, 50).lesson(theta);
    assert.deepEqual(Array.from(lesson.track!), Array.from(unperturbed.track!));
  });

  it('a lesson runs iLQG in slices of 200 ms that repeat one uninterrupted run exactly; a signal ends it after the slice under way', async () => {
    const { m, plain: loop, teacher, theta } = teaching(policyTask('cart-double-pendulum'), 100, 250, 5);
    const lesson = await teacher.lesson(theta);
    assert.ok(lesson.teacherIterations > 200, `${lesson.teacherIterations} iterations: a case of several 200 ms slices`);
    const own = loop.rollout(theta, m.x0);
    const whole = new FeedbackBuilder(m).optimise(Array.from(m.x0), own.controls, [0], m.goal, { iterations: 250 });
    assert.equal(whole.iterations, lesson.teacherIterations);
    assert.equal(whole.cost, lesson.teacherCost);
    assert.deepEqual(Array.from(whole.states), Array.from(lesson.track!));
    const stop = new AbortController();
    stop.abort();
    const cut = await teacher.lesson(theta, stop.signal);
    assert.ok(cut.teacherIterations > 0 && cut.teacherIterations < lesson.teacherIterations, `cut after ${cut.teacherIterations} iterations`);
    assert.ok(cut.teacherCost < cut.policyCost && cut.teacherCost > lesson.teacherCost, `cut ${cut.teacherCost}, whole ${lesson.teacherCost}`);
  });

  it('rounds: each begins with a lesson; the checkpoint keeps the least own cost, not a tracking energy; threads carry each round\'s path', async () => {
    const outs = [tmp(), tmp()];
    try {
      const settings = resolvePolicySettings(acrobotTask, { method: 'gradient', particles: 3, iterations: 150, teacher: 'ilqg', teacherEvery: 50, teacherIterations: 100, learningRate: 0.01 });
      const runs = [];
      for (const [k, threads] of [1, 2].entries()) runs.push(await trainPolicy(acrobotTask, settings, { out: outs[k], resume: false, version, threads, model: { horizon: 30 } }));
      const [one, two] = runs;
      assert.deepEqual(one.levels.map((l) => l.lesson !== undefined), [true, true, true]);
      const m = taskModel(acrobotTask, { horizon: 30 });
      const teacher = new IlqgTeacher(acrobotTask, m, policyShape(m, acrobotTask.hidden, acrobotTask.rawScale), 1);
      assert.equal(one.best.energy, teacher.cost(one.best.theta), 'the best is kept by its own cost');
      assert.ok(one.best.energy <= Math.min(...one.levels.map((l) => l.lesson!.policyCost)), 'no round\'s start was better');
      // each round's tracking energy is a distance from its path, not a cost the checkpoint compares
      assert.notEqual(one.levels[0].energy[0], one.levels[0].lesson!.policyCost);
      const { theta } = fromPriorPolicy(loadCheckpoint(outs[0]).networks.policy);
      theta.forEach((w, k) => assert.ok(Math.abs(w - one.best.theta[k]) < 1e-6 * (1 + Math.abs(w)), `weight ${k}`));
      // the workers score against each round's new path: the same run on two threads
      assert.deepEqual(two.levels.map((l) => l.energy), one.levels.map((l) => l.energy));
      assert.equal(two.best.energy, one.best.energy);
      // from train.init the first lesson starts from its policy itself, not only from starts drawn (wide here) around it
      const initCost = teacher.cost(theta);
      const refined = await trainPolicy(acrobotTask, { ...settings, init: outs[0], priorScale: 3, iterations: 50 }, { out: outs[1], resume: false, version, model: { horizon: 30 } });
      assert.ok(refined.levels[0].lesson!.policyCost <= initCost, `first lesson from ${refined.levels[0].lesson!.policyCost}, the init's own cost ${initCost}`);
      assert.ok(refined.best.energy <= initCost, `kept ${refined.best.energy}`);
    } finally {
      for (const out of outs) rmSync(out, { recursive: true, force: true });
    }
  });

  it('a resumed run begins a new round where it stopped, from its saved starts; another teacher setting is refused', async () => {
    const out = tmp();
    try {
      const settings = resolvePolicySettings(acrobotTask, { method: 'gradient', particles: 2, iterations: 150, teacher: 'ilqg', teacherEvery: 100, teacherIterations: 50, learningRate: 0.01 });
      const stop = new AbortController();
      const first = await trainPolicy(acrobotTask, settings, { out, resume: false, version, signal: stop.signal, model: { horizon: 20 }, onLevel: (l) => l.level === 1 && stop.abort() });
      assert.equal(first.levels.length, 1);
      const resumed = await trainPolicy(acrobotTask, settings, { out, resume: true, version, model: { horizon: 20 } });
      assert.deepEqual(resumed.levels.map((l) => l.lesson !== undefined), [true, true, false]);
      assert.ok(resumed.best.energy <= first.best.energy);
      await assert.rejects(trainPolicy(acrobotTask, { ...settings, teacherEvery: 50 }, { out, resume: true, version, model: { horizon: 20 } }), /--resume: .* other settings/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('refuses TSMC, WebGPU and a task with a start region, with one line each', async () => {
    const refused = (name: string, given: Record<string, unknown>, why: RegExp) => {
      const task = policyTask(name);
      assert.match(teacherProblem(task, resolvePolicySettings(task, { teacher: 'ilqg', ...given }))!, why);
    };
    refused('acrobot', { method: 'tsmc-d' }, /^train.teacher = ilqg runs with --method gradient: each round changes the energy/);
    refused('acrobot', { method: 'gradient', backend: 'webgpu' }, /^train.teacher = ilqg runs on the CPU closed loop only/);
    refused('pendulum', { method: 'gradient' }, /^train.teacher = ilqg: task pendulum starts from a region/);
    assert.equal(teacherProblem(acrobotTask, resolvePolicySettings(acrobotTask, { teacher: 'ilqg', method: 'gradient' })), undefined);
    await assert.rejects(trainPolicy(acrobotTask, resolvePolicySettings(acrobotTask, { teacher: 'ilqg' }), { out: tmp(), resume: false, version }), (e: Error) => e instanceof InputError && /--method gradient/.test(e.message));
  });
});

describe('start distributions: a mixture drawn stratified', () => {
  it('each part gets its share of the starts (largest remainders), in order; draws and grids stay in their region', () => {
    assert.deepEqual(mixtureCounts([0.5, 0.5], 8), [4, 4]);
    assert.deepEqual(mixtureCounts([1, 1, 1], 10), [4, 3, 3]);
    assert.deepEqual(mixtureCounts([0.2, 0.8], 3), [1, 2]);
    assert.deepEqual(mixtureCounts([0.9, 0.1], 1), [1, 0]);
    const mu = policyTask('acrobot-hold').starts;
    assert.equal(mu.kind, 'mixture');
    const inBox = (y: number[]) => y.every((v, j) => Math.abs(v - [Math.PI, 0, 0, 0][j]) <= [0.5, 0.5, 2, 2][j]);
    const drawn = drawPhysicalStarts(new Rng(3), mu, 8);
    assert.deepEqual(drawn.slice(0, 4), Array(4).fill([0, 0, 0, 0]), 'the first half hanging');
    assert.ok(drawn.slice(4).every(inBox), 'the second half near the upright');
    assert.equal(new Set(drawn.slice(4).map((y) => y.join())).size, 4, 'four different draws');
    const grid = gridStarts(mu, 20);
    assert.deepEqual(grid.slice(0, 10), Array(10).fill([0, 0, 0, 0]));
    assert.ok(grid.length > 10 && grid.slice(10).every(inBox), `grid: ${grid.length} starts`);
  });
});

describe('TSMC:D and TSMC:E (policy optimisation)', function () {
  this.timeout(120_000);

  it('TSMC:D on a linear-quadratic problem: the particles concentrate on the LQR gain', async () => {
    const out = tmp();
    try {
      const settings = resolvePolicySettings(LQ_TASK, { priorScale: 3, rho: 0.5, seed: 1 });
      const r = await trainPolicy(LQ_TASK, settings, { out, resume: false, version });
      assert.ok(r.finished, 'tempering reached beta = 1');
      const m = taskModel(LQ_TASK);
      const { K } = lqr((x, u) => m.def.step(x, u, [], m.params as never), [0, 0], [0], [1, 0.1], [0.01]);
      // the linear policy u = w . x + b: w should be -K, b zero
      const { mean, sd } = particleMoments(out, 3, 0, 3);
      for (let j = 0; j < 2; j++) {
        assert.ok(Math.abs(mean[j] + K[0][j]) < 0.03 * Math.abs(K[0][j]), `gain ${j}: particles ${mean[j].toFixed(4)}, LQR ${(-K[0][j]).toFixed(4)}`);
        assert.ok(sd[j] < 0.05 * Math.abs(K[0][j]), `gain ${j}: spread ${sd[j].toFixed(4)}`);
      }
      assert.ok(Math.abs(mean[2]) < 0.02, `bias ${mean[2]}`);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('TSMC:E: with a large lambda the carried starts stay distributed as mu; with a small one they tilt to cheap starts', async () => {
    const B = 8;
    const runs: Record<string, number> = {};
    for (const lambda of [1e9, 0.1]) {
      const out = tmp();
      try {
        const settings = resolvePolicySettings(LQ_TASK, { method: 'tsmc-e', lambda, batch: B, particles: 64, maxLevels: 12, priorScale: 3, seed: 2 });
        const levels: number[] = [];
        await trainPolicy(LQ_TASK, settings, { out, resume: false, version, onLevel: (l) => levels.push(l.acceptance) });
        const { values } = particleMoments(out, 3 + 2 * B, 3, 2 * B);
        const all = values.flat();
        const meanSquare = all.reduce((a, v) => a + v * v, 0) / all.length;
        runs[lambda] = meanSquare;
        if (lambda === 1e9) {
          // uniform on [-1, 1]: mean 0, E[x^2] = 1/3
          const mean = all.reduce((a, v) => a + v, 0) / all.length;
          assert.ok(Math.abs(mean) < 0.05, `mean of the carried starts ${mean.toFixed(4)}`);
          assert.ok(Math.abs(meanSquare - 1 / 3) < 0.03, `E[x0^2] of the carried starts ${meanSquare.toFixed(4)}, mu's 1/3`);
          // the refresh accepts (nearly) every proposal here: no two particles share a start, as copies made by resampling would
          assert.equal(new Set(all).size, all.length, 'every carried start was redrawn after the last resampling');
        }
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    }
    assert.ok(runs[0.1] < 0.8 * runs[1e9], `a small lambda prefers cheap (small) starts: E[x0^2] ${runs[0.1].toFixed(4)} vs ${runs[1e9].toFixed(4)}`);
  });

  it('a resumed run repeats the uninterrupted one; the checkpoint loads as a prior whose mean is the trained policy', async () => {
    const whole = tmp();
    const parts = tmp();
    try {
      const settings = resolvePolicySettings(LQ_TASK, { particles: 16, batch: 4, maxLevels: 4, priorScale: 3, lambda: 0.01 });
      const full = await trainPolicy(LQ_TASK, settings, { out: whole, resume: false, version });
      const stop = new AbortController();
      await trainPolicy(LQ_TASK, settings, { out: parts, resume: false, version, signal: stop.signal, onLevel: (l) => l.level === 2 && stop.abort() });
      const resumed = await trainPolicy(LQ_TASK, settings, { out: parts, resume: true, version });
      assert.equal(resumed.levels.length, full.levels.length);
      assert.deepEqual(readFileSync(join(parts, 'training/particles.bin')), readFileSync(join(whole, 'training/particles.bin')));
      // the population's ancestry carries over: the same lineages per level
      assert.deepEqual(resumed.levels.map((l) => l.lineages), full.levels.map((l) => l.lineages));
      assert.ok(full.levels.every((l) => l.lineages! >= 1 && l.lineages! <= 16), `lineages ${full.levels.map((l) => l.lineages)}`);
      // where the time went: each level's rollouts within its wall time; the resumed run's total counts the levels before
      for (const l of resumed.levels) assert.ok(l.rolloutS! > 0 && l.rolloutS! <= l.wallS, `level ${l.level}: rollouts ${l.rolloutS} s of ${l.wallS} s`);
      assert.ok(resumed.rolloutS >= resumed.levels.reduce((a, l) => a + l.rolloutS!, 0) && resumed.rolloutS <= resumed.wallS, `run: rollouts ${resumed.rolloutS} s of ${resumed.wallS} s`);
      await assert.rejects(trainPolicy(LQ_TASK, { ...settings, lambda: 0.02 }, { out: parts, resume: true, version }), /--resume: .* other settings/);
      const statePath = join(parts, 'training/state.json');
      const good = readFileSync(statePath, 'utf8');
      writeFileSync(statePath, JSON.stringify({ ...JSON.parse(good), best: { energy: 1, theta: [1, 2] } }));
      await assert.rejects(trainPolicy(LQ_TASK, settings, { out: parts, resume: true, version }), (e: Error) => e instanceof InputError && /best policy has 2 weights, expected 3/.test(e.message));
      // a run saved before a setting existed resumes with it at its default, and not with another value
      const older = JSON.parse(good);
      delete older.settings.measurementNoise;
      writeFileSync(statePath, JSON.stringify(older));
      await assert.rejects(trainPolicy(LQ_TASK, { ...settings, measurementNoise: 0.1 }, { out: parts, resume: true, version }), /--resume: .* other settings/);
      // how far to go may change: one more level
      const further = await trainPolicy(LQ_TASK, { ...settings, maxLevels: 5 }, { out: parts, resume: true, version });
      assert.equal(further.levels.length, 5);

      const m = taskModel(LQ_TASK);
      const prior = LearnedPrior.load(whole, m, 'policy');
      assert.equal(prior.meta.hasValue, false);
      const w = full.best.theta;
      for (const x of [[0.3, -0.2], [-1, 0.5]]) {
        const u = prior.command(x, m.goal)!;
        assert.ok(Math.abs(u[0] - (w[0] * x[0] + w[1] * x[1] + w[2])) < 1e-5 * (1 + Math.abs(u[0])), `u at [${x}]`);
      }
      assert.equal(prior.command([NaN, 0], m.goal), null, 'a non-finite output gives no command');
    } finally {
      rmSync(whole, { recursive: true, force: true });
      rmSync(parts, { recursive: true, force: true });
    }
  });

  it('the checkpoint keeps the least energy seen at any block\'s end, not the last block\'s', async () => {
    const out = tmp();
    try {
      // lambda this large leaves Adam only the prior's pull towards zero weights, so the particles drawn wide leave their better gains for the zero policy's cost
      const settings = resolvePolicySettings(LQ_TASK, { method: 'gradient', particles: 4, batch: 4, iterations: 400, learningRate: 0.05, priorScale: 3, lambda: 1e11 });
      const run = await trainPolicy(LQ_TASK, settings, { out, resume: false, version });
      const blockBests = run.levels.map((l) => l.energy[0]);
      const least = Math.min(...blockBests);
      assert.ok(blockBests[blockBests.length - 1] > least, `the case this checks: the last block (${blockBests.at(-1)}) is worse than the best (${least})`);
      assert.equal(run.best.energy, least);
      const { theta } = fromPriorPolicy(loadCheckpoint(out).networks.policy);
      theta.forEach((w, k) => assert.ok(Math.abs(w - run.best.theta[k]) < 1e-6 * (1 + Math.abs(w)), `weight ${k}: checkpoint ${w}, best ${run.best.theta[k]}`));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('train.init centres the prior on a trained policy: with a flat energy the particles are drawn around its weights; another shape or system is refused', async () => {
    const first = tmp();
    const around = tmp();
    try {
      await trainPolicy(LQ_TASK, resolvePolicySettings(LQ_TASK, { particles: 16, batch: 4, maxLevels: 2, priorScale: 3, lambda: 0.01 }), { out: first, resume: false, version });
      const { theta } = fromPriorPolicy(loadCheckpoint(first).networks.policy);
      assert.ok(Math.abs(theta[0]) > 0.3, `the trained gain is away from zero (${theta[0]}), so a centred prior shows`);
      // lambda this large makes the energy irrelevant: the target is the prior itself, N(theta_init, (0.1 sigma_Glorot)^2)
      const settings = resolvePolicySettings(LQ_TASK, { particles: 512, batch: 2, lambda: 1e11, priorScale: 0.1, init: first, seed: 3 });
      await trainPolicy(LQ_TASK, settings, { out: around, resume: false, version });
      const { mean, sd } = particleMoments(around, 3, 0, 3);
      const std = priorStd([2, 1], 0.1);
      for (let j = 0; j < 3; j++) {
        assert.ok(Math.abs(mean[j] - theta[j]) < 0.25 * std[j], `parameter ${j}: particles' mean ${mean[j].toFixed(4)}, init ${theta[j].toFixed(4)}`);
        assert.ok(Math.abs(sd[j] / std[j] - 1) < 0.15, `parameter ${j}: spread ${sd[j].toFixed(4)}, prior ${std[j].toFixed(4)}`);
      }
      const refused = (task: PolicyTask, pattern: RegExp) => assert.rejects(trainPolicy(task, resolvePolicySettings(task, { particles: 4, batch: 1, maxLevels: 1, init: first }), { out: tmp(), resume: false, version }),
        (e: Error) => e instanceof InputError && pattern.test(e.message) && !e.message.includes('\n'));
      await refused({ ...LQ_TASK, hidden: [4] }, /train\.init '.*' has layers 2 x 1, this task's policy 2 x 4 x 1/);
      await refused(policyTask('pendulum'), /train\.init '.*' is a policy for double-integrator, this task's system is pendulum/);
    } finally {
      rmSync(first, { recursive: true, force: true });
      rmSync(around, { recursive: true, force: true });
    }
  });

  it('the sparse pendulum\'s shaping task (pendulum-swingup) trains a policy that initialises it; not another system\'s task', async () => {
    const out = tmp();
    try {
      const task = policyTask('pendulum-swingup');
      await trainPolicy(task, resolvePolicySettings(task, { particles: 4, batch: 2, maxLevels: 1 }), { out, resume: false, version, model: { horizon: 3 } });
      assert.doesNotThrow(() => checkInitialPolicy(policyTask('sparse-pendulum'), out));
      assert.throws(() => checkInitialPolicy(policyTask('acrobot'), out), /is a policy for pendulum, this task's system is acrobot/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('refuses a policy for another system, impossible sizes, unknown settings', async () => {
    const out = tmp();
    try {
      const settings = resolvePolicySettings(LQ_TASK, { particles: 4, batch: 2, maxLevels: 1 });
      await trainPolicy(LQ_TASK, settings, { out, resume: false, version });
      assert.throws(() => LearnedPrior.load(out, model('pendulum'), 'policy'), (e: Error) => e instanceof PriorError && /trained for system 'double-integrator', not 'pendulum'/.test(e.message) && !e.message.includes('\n'));
      await assert.rejects(trainPolicy(LQ_TASK, resolvePolicySettings(LQ_TASK, { method: 'tsmc-e', particles: 1e6, batch: 1e6 }), { out, resume: false, version }),
        (e: Error) => e instanceof InputError && /--particles 1000000 with --batch 1000000 needs about [\d.]+ GiB/.test(e.message));
      assert.throws(() => resolvePolicySettings(LQ_TASK, { lamda: 1 }), /unknown train-policy parameter 'lamda' \(did you mean 'lambda'\?\)/);
      assert.throws(() => resolvePolicySettings(LQ_TASK, { particles: 1 }), /train-policy.particles/);
      assert.throws(() => policyTask('pendulumm'), /unknown task 'pendulumm': known tasks are/);
      // a policy-only checkpoint as a planner's prior: fine for its samples, refused where the planner would read its value
      const spec = (value: boolean) => ({
        system: 'double-integrator', model: { horizon: 20 }, planner: 'mppi', params: {}, backend: 'cpu' as const, threads: 1, seed: 0,
        prior: { ...resolveParams('prior', PRIOR_PARAMS, { path: out }), value },
      });
      await assert.rejects(buildPlanner(spec(true)), /prior '.*' holds a policy only \(train-policy\), no learned value, and planner mppi would bootstrap from its value: set prior.value false/);
      const built = await buildPlanner(spec(false));
      built.backend.dispose();
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

describe('fallback: policy in the controller', function () {
  this.timeout(60_000);
  const pendulum = model('pendulum');

  /** A real MPPI planner that throws on every call from `from` on. */
  function failingFrom(from: number) {
    const real = new MppiPlanner(pendulum, new CpuBackend(pendulum, { threads: 1 }), resolveParams('mppi', MPPI_PARAMS, { samples: 32, iterations: 1 }), new Rng(1));
    let calls = 0;
    return {
      name: 'mppi' as const,
      reset: () => real.reset(),
      updateParams: (c: Record<string, unknown>) => real.updateParams(c),
      plan: (req: Parameters<typeof real.plan>[0]) => (calls++ >= from ? Promise.reject(new Error('rollout backend lost')) : real.plan(req)),
    };
  }

  it('a failed planner with no plan to follow: the policy commands with a fresh state, the safe command without one', async () => {
    const out = tmp();
    try {
      const task = policyTask('pendulum');
      await trainPolicy(task, resolvePolicySettings(task, { particles: 4, batch: 2, maxLevels: 1 }), { out, resume: false, version });
      const policy = LearnedPrior.load(out, pendulum, 'policy');
      const c = new Controller(pendulum, failingFrom(0), { periodS: 0.1, budgetMs: 1000, staleTimeoutS: 0.3, enforceDeadline: false, fallbackPolicy: policy });
      const x = [2.5, 0.05];
      c.onState(x, 0);
      const r = await c.tick(0);
      assert.equal(r.mode, 'fallback');
      assert.match(r.reason, /planner error: rollout backend lost; no previous plan: fallback policy/);
      // the controller plans and commands in model units (the pendulum's second state is omega * dtS there)
      const expected = policy.command(fromPhysical(pendulum, x), pendulum.goal)!;
      assert.deepEqual(r.control, expected.map((v) => Math.min(1, Math.max(-1, v))));
      assert.notDeepEqual(r.control, c.safeCommand);
      // no fresh state: the safe command, whatever the policy says
      const stale = await c.tick(0.5);
      assert.equal(stale.mode, 'stale');
      assert.deepEqual(stale.control, c.safeCommand);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('a policy that gives no finite command (stand-in: returns null) leaves the safe command, with the reason', async () => {
    const c = new Controller(pendulum, failingFrom(0), {
      periodS: 0.1, budgetMs: 1000, staleTimeoutS: 0.3, enforceDeadline: false, fallbackPolicy: { command: () => null },
    });
    c.onState([2.5, 0.05], 0);
    const r = await c.tick(0);
    assert.deepEqual(r.control, c.safeCommand);
    assert.match(r.reason, /the fallback policy's output is not finite: safe command/);
  });
});

/** WebGPU must be present where CI asks for it (TEMPERED_MPC_REQUIRE_WEBGPU=1); elsewhere a missing adapter skips. */
describe('the closed loop on WebGPU (f32)', function () {
  this.timeout(120_000);
  let available = true;
  before(async function () {
    const missing = await webgpuMissing();
    available = missing === undefined;
    if (!available) console.log(`      skipping GPU closed-loop tests: ${missing}`);
  });
  beforeEach(function () {
    if (!available) this.skip();
  });

  const cases = [['pendulum', {}, 20, false], ['acrobot', { dtS: 0.04 }, 40, false], ['cart-double-pendulum', {}, 30, false], ['double-integrator', {}, 30, false], ['acrobot', { dtS: 0.04 }, 10, true]] as const;
  for (const [name, overrides, T, caught] of cases) {
    it(`${name}${caught ? ' with the LQR catch' : ''}: costs and gradients equal the CPU's (f64, itself equal to central differences) to f32 precision`, async () => {
      const { WebGpuBackend } = await import('../src/kernels/webgpu.js');
      const { GpuClosedLoop } = await import('../src/policy/gpu.js');
      const m = model(name, overrides);
      const loop = new ClosedLoop(m, policyShape(m, [8, 8], undefined, caught ? goalCatch(m, [0.7, 0.7, 5, 5], 'test') : undefined), T, m.goal);
      const rng = new Rng(3);
      const count = 3;
      const batch = 2;
      // with the catch: starts around the goal, inside and outside the gate's ellipsoid, so it blends, takes over and lets go
      // (10 steps: through the LQR's gains f32 rounding grows along the loop, to 1e-4 of the gradient by 20 steps and 2e-3 by 40)
      const around = (k: number) => (caught ? m.goal[k % m.stateDim] + [0.6, 0.4, 2, 2][k % m.stateDim] * rng.normal() : 0.3 * rng.normal());
      const job = {
        thetas: drawFromPrior(rng, priorStd(loop.sizes, 0.5), count),
        starts: Float64Array.from({ length: count * batch * m.stateDim }, (_, k) => around(k)),
        perPolicyStarts: true, count, batch,
      };
      const cpu = runJob(loop, job);
      const gpu = await GpuClosedLoop.create(await WebGpuBackend.create(m), loop);
      try {
        const out = await gpu.evaluate(job);
        const norm = (v: Float64Array) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
        cpu.energy.forEach((e, i) => assert.ok(Math.abs(out.energy[i] - e) < 1e-4 * Math.abs(e), `policy ${i}: cost ${out.energy[i]} vs ${e}`));
        const rel = norm(cpu.grad.map((g, k) => g - out.grad[k])) / norm(cpu.grad);
        assert.ok(rel < 1e-4, `gradient relative error ${rel.toExponential(2)}`);
      } finally {
        gpu.dispose();
      }
    });
  }

  it('a job larger than one GPU buffer runs in shares, with the same results as in one dispatch', async () => {
    const { WebGpuBackend } = await import('../src/kernels/webgpu.js');
    const { GpuClosedLoop } = await import('../src/policy/gpu.js');
    // the pendulum's shader of the test above (compiled once per process)
    const m = model('pendulum', {});
    const T = 20;
    const loop = new ClosedLoop(m, policyShape(m, [8, 8]), T, m.goal);
    const rng = new Rng(5);
    const [count, batch] = [5, 2];
    const job = {
      thetas: drawFromPrior(rng, priorStd(loop.sizes, 0.5), count),
      starts: Float64Array.from({ length: count * batch * m.stateDim }, () => 0.3 * rng.normal()),
      perPolicyStarts: true, count, batch,
    };
    const backend = await WebGpuBackend.create(m);
    const whole = await GpuClosedLoop.create(backend, loop);
    // the tape (T steps of x, u and the layers' values per rollout) is the largest buffer: room for two policies' rollouts
    const tapeWords = T * (m.stateDim + m.controlDim + loop.sizes.reduce((a, b) => a + b, 0));
    const split = await GpuClosedLoop.create(backend, loop, 2 * batch * tapeWords);
    try {
      // the split job's gradients into a longer array holding stale values, as a kept workspace's
      const gradInto = new Float64Array((count + 1) * loop.parameters).fill(7);
      const [a, b] = [await whole.evaluate(job), await split.evaluate({ ...job, gradInto })];
      assert.deepEqual(Array.from(b.energy), Array.from(a.energy));
      assert.deepEqual(Array.from(b.grad), Array.from(a.grad));
      assert.equal(b.grad.buffer, gradInto.buffer);
      assert.ok(a.grad.some((g) => g !== 0));
    } finally {
      whole.dispose();
      split.dispose();
    }
  });

  it('train-policy --set train.backend=webgpu: TSMC:D on the LQ problem finds the LQR gain as the CPU does', async () => {
    const out = tmp();
    try {
      const settings = resolvePolicySettings(LQ_TASK, { priorScale: 3, rho: 0.5, seed: 1, particles: 32, backend: 'webgpu' });
      const r = await trainPolicy(LQ_TASK, settings, { out, resume: false, version });
      assert.ok(r.finished);
      const m = taskModel(LQ_TASK);
      const { K } = lqr((x, u) => m.def.step(x, u, [], m.params as never), [0, 0], [0], [1, 0.1], [0.01]);
      const { mean } = particleMoments(out, 3, 0, 3);
      for (let j = 0; j < 2; j++) assert.ok(Math.abs(mean[j] + K[0][j]) < 0.05 * Math.abs(K[0][j]), `gain ${j}: particles ${mean[j].toFixed(4)}, LQR ${(-K[0][j]).toFixed(4)}`);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
