import assert from 'node:assert/strict';
import { MessageReader, MessageWriter } from '@foxglove/rosmsg2-serialization';
import { buildStepGraphs } from '../src/kernels/graphs.js';
import { compileStepFunction } from '../src/kernels/js-source.js';
import { definitionsOf, TYPES } from '../src/interfaces/definitions.js';
import { Ekf, linearize } from '../src/estimation/ekf.js';
import { modelDefinition } from '../src/models/index.js';
import { toPhysical } from '../src/models/model.js';
import { ControllerSession } from '../src/run/session.js';
import { resolveRunParams } from '../src/run/setup.js';
import { resolveSimParams, Simulator } from '../sim/simulator.js';
import { model } from './helpers.js';

/** Central differences of a vector function, column by column: an independent check of the exact Jacobians. */
function numericJacobian(f: (x: number[]) => number[], x: number[], h = 1e-6): number[][] {
  const cols = x.map((_, j) => {
    const plus = f(x.map((v, i) => v + (i === j ? h : 0)));
    const minus = f(x.map((v, i) => v - (i === j ? h : 0)));
    return plus.map((v, i) => (v - minus[i]) / (2 * h));
  });
  return x.map((_, i) => cols.map((c) => c[i]));
}

describe('EKF: Jacobians from the model definition', () => {
  for (const [name, x, u] of [
    ['acrobot', [2.9, 0.3, 0.5, -1.2], [0.4]],
    ['pendulum', [2.5, 0.05], [0.3]],
    ['cart-double-pendulum', [0.1, 2.8, 3.3, 0.2, -0.4, 0.7], [-0.2]],
  ] as const) {
    it(`${name}: F = df/dx and H = dh/dx are exact (match central differences to 1e-6)`, () => {
      const m = model(name);
      const lin = linearize(m);
      const step = compileStepFunction(buildStepGraphs(m, false));
      const { next, F } = lin.step([...x], [...u]);
      assert.deepEqual(next.map((v) => +v.toFixed(12)), step([...x], [...u], []).map((v) => +v.toFixed(12)));
      const Fn = numericJacobian((xx) => step(xx, [...u], []), [...x]);
      F.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - Fn[i][j]) < 1e-6 * (1 + Math.abs(v)), `F[${i}][${j}] ${v} vs ${Fn[i][j]}`)));
      const { H } = lin.measure([...x]);
      const Hn = numericJacobian((xx) => toPhysical(m, xx), [...x]);
      H.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - Hn[i][j]) < 1e-6 * (1 + Math.abs(v)), `H[${i}][${j}] ${v} vs ${Hn[i][j]}`)));
    });
  }
});

describe('EKF: filtering the simulator\'s noisy measurements', () => {
  function run(system: string, x0: number[], gate = 0, corrupt?: (k: number, y: number[]) => number[]) {
    const m = model(system);
    const sim = new Simulator(modelDefinition(system), m.dtS, resolveSimParams({ processNoise: 0.02, measurementNoise: 0.01, x0 }), 3);
    const ekf = new Ekf(m, linearize(m), { processNoise: 0.02, processNoiseOn: 'all', measurementNoise: 0.01, gate });
    let measured = 0;
    let estimated = 0;
    const refusals: string[] = [];
    for (let k = 0; k < 400; k++) {
      const y = corrupt ? corrupt(k, sim.measure()) : sim.measure();
      const r = ekf.measure(y, k * m.dtS);
      const truth = sim.state;
      if (!r.ok) refusals.push(r.reason);
      else if (k > 20) {
        measured += y.reduce((s, v, i) => s + (v - truth[i]) ** 2, 0);
        estimated += toPhysical(m, r.state).reduce((s, v, i) => s + (v - truth[i]) ** 2, 0);
      }
      const u = [0.3 * Math.sin(0.05 * k)];
      ekf.setCommand(u);
      sim.advance(u, m.dtS);
    }
    return { measured: Math.sqrt(measured), estimated: Math.sqrt(estimated), refusals };
  }

  it('the acrobot estimate is closer to the truth than the measurements (seeded)', () => {
    const r = run('acrobot', [3.1, 0.05, 0, 0]);
    assert.ok(r.estimated < 0.7 * r.measured, `estimate error ${r.estimated.toFixed(4)} vs measurement error ${r.measured.toFixed(4)}`);
  });

  it('refuses an outlier beyond the gate with the reason, and the estimate does not jump', () => {
    const r = run('acrobot', [3.1, 0.05, 0, 0], 30, (k, y) => (k === 200 ? y.map((v, i) => (i === 0 ? v + 1 : v)) : y));
    assert.equal(r.refusals.length, 1);
    assert.match(r.refusals[0], /state estimator: measurement refused as an outlier \(squared Mahalanobis distance \d+\.\d > gate 30\)/);
    assert.ok(r.estimated < 0.7 * r.measured);
  });

  it('refuses a measurement stamped before the estimate', () => {
    const m = model('acrobot');
    const ekf = new Ekf(m, linearize(m), { processNoise: 0.02, processNoiseOn: 'all', measurementNoise: 0.01, gate: 0 });
    assert.ok(ekf.measure([3, 0, 0, 0], 1).ok);
    const r = ekf.measure([3, 0, 0, 0], 0.5);
    assert.equal(r.ok, false);
    assert.match((r as { reason: string }).reason, /stamped 0\.500 s before the estimate \(out of order\)/);
  });
});

describe('the simulator\'s process noise: every state, or the joint velocities only', () => {
  /** std of each physical state after one 0.1 s period from rest, uncontrolled, over 400 seeds */
  function spread(on: 'all' | 'rates'): number[] {
    const def = modelDefinition('double-integrator');
    const ends = Array.from({ length: 400 }, (_, seed) => {
      const sim = new Simulator(def, 0.1, resolveSimParams({ processNoise: 1, processNoiseOn: on, x0: [0, 0] }), seed);
      sim.advance([0]);
      return sim.state;
    });
    return [0, 1].map((i) => Math.sqrt(ends.reduce((a, y) => a + y[i] ** 2, 0) / ends.length));
  }

  it('rates: the positions move only through the velocities (integrated noise), the velocities as much as with all', () => {
    const [pAll, vAll] = spread('all');
    const [pRates, vRates] = spread('rates');
    // std after T = 0.1 s: position sqrt(T) directly, sqrt(T^3 / 3) = 0.018 when integrated; velocity sqrt(T)
    assert.ok(Math.abs(pAll / Math.sqrt(0.1) - 1) < 0.15, `position std with all: ${pAll}`);
    assert.ok(pRates < 0.2 * pAll, `position std with rates: ${pRates}, against ${pAll} with all`);
    assert.ok(Math.abs(vRates / vAll - 1) < 0.15, `velocity std: ${vRates} with rates, ${vAll} with all`);
  });

  it('rates on a system not measured as joints is refused, naming the parameter', () => {
    assert.throws(
      () => new Simulator(modelDefinition('pusher-slider'), 0.1, resolveSimParams({ processNoise: 0.01, processNoiseOn: 'rates' }), 1),
      /sim.processNoiseOn = rates needs a system measured as joints.*pusher-slider/,
    );
    assert.throws(() => resolveRunParams('pusher-slider', { 'sim.processNoiseOn': 'rates' }), /sim.processNoiseOn = rates/);
  });
});

describe('EKF in the controller session (estimator: ekf)', () => {
  it('plans from the estimate, counts the estimator\'s refusals and publishes the estimate as tempered_mpc_msgs/StateEstimate', async () => {
    const params = resolveRunParams('acrobot', { planner: 'mppi', threads: 1, 'mppi.samples': 16, 'mppi.iterations': 1, estimator: 'ekf' });
    const session = await ControllerSession.create(params, { lockstep: true });
    try {
      const period = session.periodS;
      assert.equal(session.onStateMessage(session.codec.encode([3, 0.1, 0, 0], 0), 0), undefined);
      const first = await session.tick(0);
      // the next measurement where the model says the plant went under that command
      const next = compileStepFunction(buildStepGraphs(session.model, false))([3, 0.1, 0, 0], first.control, []);
      assert.equal(session.onStateMessage(session.codec.encode(next.map((v) => v + 0.001), period), period), undefined);
      const far = session.codec.encode([0, 0, 0, 0], 2 * period);
      assert.match(session.onStateMessage(far, 2 * period)!, /outlier/);
      const status = session.statusMessage(await session.tick(2 * period));
      assert.equal(status.rejected_states, 1);
      const msg = session.estimateMessage()!;
      assert.deepEqual(msg.names, ['q1', 'q2', 'dq1', 'dq2']);
      assert.equal(msg.covariance.length, 16);
      const wire = new MessageReader(definitionsOf(TYPES.estimate)).readMessage<{ values: Float64Array }>(new MessageWriter(definitionsOf(TYPES.estimate)).writeMessage(msg));
      assert.ok(Math.abs(wire.values[0] - 3) < 0.01, 'the estimate stays near the accepted measurements');
    } finally {
      session.dispose();
    }
  });
});
