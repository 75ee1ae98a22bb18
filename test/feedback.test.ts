import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Controller } from '../src/controller/controller.js';
import { FeedbackBuilder, physicalGains } from '../src/controller/feedback.js';
import { clipToPsd } from '../src/linalg.js';
import { loadSystem, modelDefinition } from '../src/models/index.js';
import { lqr } from '../src/models/lqr.js';
import { fromPhysical, Model, resolveModel, toPhysical } from '../src/models/model.js';
import type { RecedingPlanner } from '../src/planners/receding.js';
import { GoalTracker } from '../src/run/loop.js';
import { ControllerSession } from '../src/run/session.js';
import { resolveRunParams } from '../src/run/setup.js';
import { InputError } from '../src/input-error.js';
import { outputFolder } from '../src/cli/command.js';
import { model } from './helpers.js';

/** A planner that always returns the same controls (the feedback is checked against them). */
function fixedPlanner(controls: Float64Array): RecedingPlanner {
  return { name: 'mppi', reset: () => {}, updateParams: () => {}, plan: async () => ({ controls: controls.slice(), cost: 0, info: {} }) };
}

describe('feedback along the plan (iLQG backward pass)', () => {
  it('at the acrobot upright, with the LQR cost-to-go as the whole terminal cost, every step\'s gain is the LQR gain', () => {
    const def = modelDefinition('acrobot');
    const acrobot = resolveModel(def, { ...def.tuning!.model, terminalScale: 0, wEnergy: 0 });
    const p = acrobot.params;
    const { K } = lqr((x, u) => def.step(x, u, [], p as never), acrobot.goal, [0], [p.wAngle, p.wAngle, p.wRate, p.wRate], [p.wControl]);
    const plan = new FeedbackBuilder(acrobot).build(acrobot.goal, new Float64Array(acrobot.horizon), [0], acrobot.goal);
    assert.equal(plan.problem, '');
    for (let k = 0; k < acrobot.horizon; k++) {
      // u = u_k + K_k (x - x_k) here; the LQR's u = -K (x - x_eq)
      for (let j = 0; j < 4; j++) {
        const got = plan.gains![k * 4 + j];
        const want = -K[0][j];
        // K itself comes from central differences (1e-6 steps): agreement to 1e-5 relative
        assert.ok(Math.abs(got - want) <= 1e-5 * Math.abs(want) + 1e-6, `step ${k} gain ${j}: ${got} against the LQR's ${want}`);
      }
    }
  });

  it('one refinement step reaches the optimum of a linear-quadratic plan: a second finds nothing to lower', () => {
    const di = model('double-integrator');
    const fb = new FeedbackBuilder(di);
    const zero = new Float64Array(di.horizon);
    const first = fb.build([1, 0], zero, [0], [0, 0], true);
    assert.ok(first.refinement && first.refinement.alpha === 1, 'the full step lowers the cost');
    assert.ok(first.refinement.costAfter < 0.5 * first.refinement.costBefore, `cost ${first.refinement.costBefore} -> ${first.refinement.costAfter}`);
    const second = fb.build([1, 0], first.controls, [0], [0, 0], true);
    assert.ok(Math.abs(second.refinement!.costBefore - first.refinement.costAfter) < 1e-12 * first.refinement.costAfter, 'the refined plan costs what the line search said');
    assert.equal(second.refinement!.alpha, 0, 'no step lowers an optimal plan');
    // and the refined plan's states are its controls' rollout
    let x = [1, 0];
    for (let k = 0; k < di.horizon; k++) x = [x[0] + di.dtS * x[1], x[1] + di.dtS * first.controls[k]];
    assert.ok(Math.abs(x[0] - first.states[2 * di.horizon]) < 1e-12 && Math.abs(x[1] - first.states[2 * di.horizon + 1]) < 1e-12);
  });

  it('a refinement never raises the cost: from a pendulum plan of noise, the kept plan costs no more', () => {
    const pendulum = model('pendulum');
    const fb = new FeedbackBuilder(pendulum);
    let seed = 7;
    const noise = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    for (let trial = 0; trial < 5; trial++) {
      const controls = Float64Array.from({ length: pendulum.horizon }, noise);
      const r = fb.build([0.3 * trial, 0], controls, [0], pendulum.goal, true);
      assert.ok(r.refinement!.costAfter <= r.refinement!.costBefore, `trial ${trial}`);
      assert.ok(r.controls.every((u) => u >= -1 && u <= 1), 'refined controls stay within the limits');
    }
  });

  it('the command side applies u_k + K_k (x - x_k): a measured deviation moves the command by the gain times it', async () => {
    const def = modelDefinition('acrobot');
    const acrobot = resolveModel(def, def.tuning!.model);
    const controls = new Float64Array(acrobot.horizon).fill(0.05);
    const make = (interpolation: 'zoh' | 'feedback') =>
      new Controller(acrobot, fixedPlanner(controls), { periodS: 0.025, budgetMs: 100, staleTimeoutS: 1, enforceDeadline: false, interpolation });
    const upright = [Math.PI, 0, 0, 0];
    const zoh = make('zoh');
    const fb = make('feedback');
    for (const c of [zoh, fb]) {
      c.onState(upright, 0);
      await c.tick(0);
    }
    const measured = [Math.PI + 0.01, -0.005, 0.02, 0];
    zoh.onState(measured, 0.025);
    fb.onState(measured, 0.025);
    const [a, b] = [await zoh.tick(0.025), await fb.tick(0.025)];
    assert.equal(a.control[0], 0.05, 'zero-order hold reads the plan');
    // the plan in effect is the first one, a step into it: its row 1
    const plan = b.plan!;
    const k = Math.round((0.025 - plan.startS) / acrobot.dtS);
    assert.equal(k, 1);
    const e = measured.map((v, i) => v - plan.feedback!.states[k * 4 + i]);
    const want = 0.05 + e.reduce((s, ei, j) => s + plan.feedback!.gains![k * 4 + j] * ei, 0);
    assert.ok(Math.abs(want - 0.05) > 0.01, 'the deviation matters');
    assert.ok(Math.abs(b.control[0] - Math.max(-1, Math.min(1, want))) < 1e-12, `feedback command ${b.control[0]}, expected ${want}`);
    assert.equal(b.reason, '');
  });

  it('a plan whose linearisation is not finite keeps its controls, with the reason in the status', async () => {
    // d/dx sqrt(|x|) is infinite at 0: the gain of a plan through x = 0 cannot be built
    const dir = mkdtempSync(join(tmpdir(), 'feedback-'));
    const file = join(dir, 'kink.mjs');
    writeFileSync(file, `import { defineModel, num, add, mul, sqrt, abs, sq } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)};
export default defineModel({
  name: 'kink', summary: 'a step with an infinite derivative at 0', stateNames: ['x', 'v'], physicalUnits: ['m', 'm/s'],
  sensor: { kind: 'joints', joints: ['x'] }, controlNames: ['u'], controlUnits: ['N'],
  params: { dtS: num(0.1, 'step [s]', { min: 1e-6 }), horizon: num(5, 'horizon', { min: 1, max: 100, integer: true }) },
  x0: [0, 0], goal: [0, 0], controlLimits: { lower: [-1], upper: [1] },
  step: ([x, v], [u], _w, p) => [add(x, mul(p.dtS, v)), add(add(v, mul(p.dtS, u)), mul(0.01, sqrt(abs(x))))],
  stageCost: ([x, v], [u]) => add(add(sq(x), sq(v)), sq(u)),
  terminalCost: ([x, v]) => add(sq(x), sq(v)),
});
`);
    await loadSystem(file);
    const kink = resolveModel(modelDefinition(file), {});
    const c = new Controller(kink, fixedPlanner(new Float64Array(5).fill(0.2)), { periodS: 0.1, budgetMs: 100, staleTimeoutS: 1, enforceDeadline: false, interpolation: 'feedback' });
    c.onState([0, 0], 0);
    const tick = await c.tick(0);
    assert.equal(tick.mode, 'ok');
    assert.deepEqual(tick.control, [0.2], 'the plan\'s control, held');
    assert.match(tick.reason, /feedback gains dropped for this plan \(the linearisation at plan step \d+ is not finite\): zero-order hold/);
    assert.equal(tick.plan!.feedback!.gains, undefined);
  });

  it('the plan message carries the gains over physical states: K_phys (y - y_k) = K (x - x_k) to first order (pendulum: phi is not omega)', async () => {
    // zero-order hold: the gains cost nothing until someone asks for the plan message
    const params = resolveRunParams('pendulum', { plannerThread: 'main', planner: 'mppi', 'mppi.samples': 64, threads: 1 });
    const session = await ControllerSession.create(params, { lockstep: true });
    try {
      const pendulum: Model = session.model;
      session.onStateMessage(session.codec.encode([2.8, 0.5], 0), 0);
      const tick = await session.tick(0);
      assert.equal(tick.plan!.feedback, undefined, 'not built at landing under zero-order hold');
      const msg = session.planMessage(tick);
      const n = 2;
      assert.equal(msg.gains.length, pendulum.horizon * n);
      assert.equal(msg.gains_status, '');
      const feedback = session.controller.feedbackOf(tick.plan!);
      const k = 3;
      const xk = Array.from(feedback.states.subarray(k * n, (k + 1) * n));
      const yk = toPhysical(pendulum, xk);
      const dy = [1e-5, -2e-5];
      const dx = fromPhysical(pendulum, yk.map((v, i) => v + dy[i])).map((v, i) => v - xk[i]);
      const viaModel = feedback.gains![k * n] * dx[0] + feedback.gains![k * n + 1] * dx[1];
      const viaPhysical = msg.gains[k * n] * dy[0] + msg.gains[k * n + 1] * dy[1];
      assert.ok(Math.abs(viaModel - viaPhysical) < 1e-6 * Math.max(1e-9, Math.abs(viaModel)) + 1e-12, `${viaModel} vs ${viaPhysical}`);
      assert.deepEqual(physicalGains(pendulum, { ...feedback, gains: undefined }), undefined);
    } finally {
      session.dispose();
    }
  });

  it('clipToPsd keeps a positive semidefinite matrix and zeroes negative eigenvalues', () => {
    const spd = [[4, 1, 0], [1, 3, 1], [0, 1, 2]];
    clipToPsd(spd).forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - spd[i][j]) < 1e-12)));
    const clipped = clipToPsd([[1, 2], [2, 1]]); // eigenvalues 3 and -1
    clipped.flat().forEach((v) => assert.ok(Math.abs(v - 1.5) < 1e-12));
  });
});

describe('iLQG to convergence (FeedbackBuilder.optimise: trajectory optimisation, train.teacher\'s)', () => {
  it('a linear-quadratic plan: the first iteration reaches the optimum one refinement step finds, and nothing lowers it after', () => {
    const di = model('double-integrator');
    const fb = new FeedbackBuilder(di);
    const zero = new Float64Array(di.horizon);
    const step = fb.build([1, 0], zero, [0], [0, 0], true);
    const costs: number[] = [];
    const found = fb.optimise([1, 0], zero, [0], [0, 0], { iterations: 50, onIteration: (_, c) => costs.push(c) });
    assert.ok(Math.abs(costs[0] - step.refinement!.costAfter) <= 1e-9 * step.refinement!.costAfter, `first iteration ${costs[0]} against ${step.refinement!.costAfter}`);
    // after it only rounding is left to lower
    assert.ok(found.converged && found.iterations <= 3, `${found.iterations} iterations`);
    assert.equal(found.costBefore, step.refinement!.costBefore);
    assert.ok(Math.abs(found.cost - step.refinement!.costAfter) <= 1e-9 * step.refinement!.costAfter, `${found.cost} against ${step.refinement!.costAfter}`);
  });

  it('a path to follow, one state per step: from zero controls it finds a cost no higher than the controls that drew the path', () => {
    const di = model('double-integrator');
    const fb = new FeedbackBuilder(di);
    const drawn = Float64Array.from({ length: di.horizon }, (_, k) => Math.sin(0.4 * k));
    const path = [[0.5, 0]];
    for (let k = 0; k < di.horizon; k++) {
      const [p, v] = path[k];
      path.push([p + di.dtS * v, v + di.dtS * drawn[k]]);
    }
    // along its own path the drawn controls pay only their control cost
    const drawnCost = drawn.reduce((a, u) => a + 0.01 * u * u, 0);
    const found = fb.optimise([0.5, 0], new Float64Array(di.horizon), [0], Float64Array.from(path.flat()), { iterations: 50 });
    assert.ok(found.costBefore > 10 * drawnCost, `the zero controls leave the path (${found.costBefore})`);
    assert.ok(found.cost <= drawnCost + 1e-12, `found ${found.cost}, the drawn controls ${drawnCost}`);
    assert.throws(() => fb.optimise([0.5, 0], new Float64Array(di.horizon), [0], [0, 0, 0], { iterations: 1 }), /reference holds 3 values: one state \(2\) or one for each of 21 steps/);
  });

  it('a pendulum swing-up from rest: every iteration lowers the cost, the controls stay within the limits, and the states are the controls\' rollout', () => {
    const pendulum = model('pendulum');
    const fb = new FeedbackBuilder(pendulum);
    const costs: number[] = [];
    // (not from hanging at rest exactly: there every gradient is zero)
    const found = fb.optimise([0.1, 0], new Float64Array(pendulum.horizon), [0], pendulum.goal, { iterations: 200, onIteration: (_, c) => costs.push(c) });
    assert.equal(costs.length, found.iterations);
    assert.ok(found.iterations > 5, `${found.iterations} iterations`);
    costs.forEach((c, i) => assert.ok(c < (i ? costs[i - 1] : found.costBefore), `iteration ${i + 1}: ${c}`));
    assert.equal(costs.at(-1), found.cost);
    assert.ok(found.converged, 'it converges well within 200 iterations');
    // it swings up: the last state at the upright, at rest (the pendulum's goal is theta = pi)
    const last = found.states.slice(-2);
    assert.ok(Math.abs(last[0] - Math.PI) < 0.1 && Math.abs(last[1]) < 0.1, `x_T = [${Array.from(last)}]`);
    assert.ok(found.controls.every((u) => u >= -1 && u <= 1), 'within the limits');
    assert.ok(found.controls.some((u) => Math.abs(u) === 1), 'a swing-up from rest saturates (the case the clamped feedforward is for)');
    const again = fb.build([0.1, 0], found.controls, [0], pendulum.goal);
    assert.deepEqual(Array.from(again.states), Array.from(found.states));
  });
});

describe('EKF process noise on the joint rates', () => {
  it('is refused at configure for a system not measured as joints, naming the setting', async () => {
    const params = resolveRunParams('pusher-slider', { estimator: 'ekf', estimatorProcessNoiseOn: 'rates', plannerThread: 'main', threads: 1 });
    await assert.rejects(ControllerSession.create(params, { lockstep: true }), (e: Error) => e instanceof InputError && /^estimatorProcessNoiseOn = rates needs a system measured as joints/.test(e.message));
  });
});

describe('held-goal RMS error and run folders', () => {
  it('GoalTracker: the RMS of the error from the start of the held stay to the end, none without success', () => {
    const t = new GoalTracker(0.2);
    // out, then in for 3 ticks (held from 0.1 s at 0.1 s period after 0.2 s), then out once
    const trace: [boolean, number][] = [[false, 5], [true, 1], [true, 2], [true, 2], [false, 4]];
    trace.forEach(([inGoal, e], k) => t.observe(0.1 * k, inGoal, e));
    assert.equal(t.timeToGoalS, 0.1);
    assert.ok(Math.abs(t.heldRmsError! - Math.sqrt((1 + 4 + 4 + 16) / 4)) < 1e-12);
    const never = new GoalTracker(1);
    never.observe(0, false, 3);
    assert.equal(never.heldRmsError, null);
  });

  it('two commands started in the same second get two run folders', () => {
    const cwd = process.cwd();
    process.chdir(mkdtempSync(join(tmpdir(), 'runs-')));
    try {
      const folders = [outputFolder({}, 'bench-mpc-acrobot'), outputFolder({}, 'bench-mpc-acrobot'), outputFolder({}, 'bench-mpc-acrobot')];
      assert.equal(new Set(folders).size, 3, folders.join(', '));
      assert.ok(folders.every((f) => f.startsWith(join('runs', 'bench-mpc-acrobot-'))));
    } finally {
      process.chdir(cwd);
    }
  });
});
