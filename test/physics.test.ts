import assert from 'node:assert/strict';
import { acrobotEnergy } from '../src/models/acrobot.js';
import { cartDoublePendulumEnergy } from '../src/models/cart-double-pendulum.js';
import { fromPhysical, Model, toPhysical } from '../src/models/model.js';
import { MODELS } from '../src/models/index.js';
import { cpu, model } from './helpers.js';

/** States x_0..x_T of one rollout. */
function trajectory(m: Model, controls: Float64Array, x0: number[], extra: { uPrev?: number[] } = {}): number[][] {
  const { states } = cpu(m).trajectoriesSync({ controls, x0, ...extra });
  const n = m.stateDim;
  return Array.from({ length: m.horizon + 1 }, (_, t) => Array.from(states.slice(t * n, (t + 1) * n)));
}

describe('physics sanity', () => {
  it('acrobot without damping or torque keeps its energy to RK4 accuracy', () => {
    const m = model('acrobot', { b1: 0, b2: 0, horizon: 400 });
    const xs = trajectory(m, new Float64Array(m.horizon), [1.0, -0.5, 0.3, 0.2]);
    const e0 = acrobotEnergy(xs[0], m.params);
    const drift = Math.max(...xs.map((x) => Math.abs(acrobotEnergy(x, m.params) - e0)));
    assert.ok(drift < 1e-4 * Math.abs(e0), `energy drift ${drift} of ${e0}`);
    assert.ok(Math.abs(xs[m.horizon][0] - xs[0][0]) > 0.1, 'the acrobot actually moved');
  });

  it('acrobot with damping loses energy', () => {
    const m = model('acrobot', { horizon: 400 });
    const xs = trajectory(m, new Float64Array(m.horizon), [1.0, -0.5, 0.3, 0.2]);
    assert.ok(acrobotEnergy(xs[m.horizon], m.params) < acrobotEnergy(xs[0], m.params) - 0.1);
  });

  it('cart double pendulum without friction keeps its energy to RK4 accuracy', () => {
    const m = model('cart-double-pendulum', { bc: 0, bj: 0, horizon: 300, dtS: 0.01 });
    const xs = trajectory(m, new Float64Array(m.horizon), [0, 0.8, -0.4, 0.1, 0, 0.5]);
    const e0 = cartDoublePendulumEnergy(xs[0], m.params);
    const drift = Math.max(...xs.map((x) => Math.abs(cartDoublePendulumEnergy(x, m.params) - e0)));
    assert.ok(drift < 1e-5 * Math.max(1, Math.abs(e0)), `energy drift ${drift} of ${e0}`);
  });

  it('cart double pendulum with substeps: k RK4 steps of dtS / k per time step, nearer the fine integration', () => {
    const controls = Float64Array.from({ length: 40 }, (_, t) => Math.sin(0.3 * t));
    const x0 = [0, 2.5, 3.5, 0.5, 4, -3];
    const at = (dtS: number, substeps: number, horizon: number, u: Float64Array) => trajectory(model('cart-double-pendulum', { dtS, substeps, horizon }), u, x0);
    // the same control held over two half steps
    const held = Float64Array.from({ length: 80 }, (_, t) => controls[t >> 1]);
    const two = at(0.06, 2, 40, controls);
    const halves = at(0.03, 1, 80, held);
    for (let t = 0; t <= 40; t++) two[t].forEach((v, j) => assert.ok(Math.abs(v - halves[2 * t][j]) < 1e-9 * (1 + Math.abs(v)), `step ${t}, state ${j}`));
    // and nearer the simulator's 10 than the paper's one RK4 step (over a few steps: the swing's chaos amplifies any gap later)
    const fine = at(0.06, 10, 40, controls)[5];
    const gap = (xs: number[]) => Math.hypot(...xs.map((v, j) => v - fine[j]));
    const one = at(0.06, 1, 40, controls)[5];
    assert.ok(gap(two[5]) < 0.1 * gap(one), `substeps 2: ${gap(two[5])}, 1: ${gap(one)}`);
  });

  it('cart force accelerates the cart in its direction', () => {
    const m = model('cart-double-pendulum', { horizon: 10 });
    const xs = trajectory(m, new Float64Array(m.horizon).fill(0.5), [0, 0, 0, 0, 0, 0]);
    assert.ok(xs[10][0] > 0.05 && xs[10][3] > 0, `cart at ${xs[10][0]} moving at ${xs[10][3]}`);
    assert.ok(xs[10][1] < 0, 'links lag behind the accelerating cart');
  });

  it('cart double pendulum\'s energy term weighs the links\' energy relative to the cart, not the cart\'s own motion', () => {
    const m = model('cart-double-pendulum', { wEnergy: 10 });
    const goal = [...m.goal];
    // the stage cost's tracking terms at the default weights (wPos, wAngle, wRate), u = 0
    const tracking = (x: number[]) => x.reduce((s, v, i) => s + [1, 1, 1, 0.05, 0.05, 0.05][i] * (v - goal[i]) ** 2, 0);
    const stage = (x: number[]) => m.def.stageCost(x, [0], [0], goal, m.params) as number;
    assert.ok(Math.abs(stage([0, Math.PI, Math.PI, 1.5, 0, 0]) - tracking([0, Math.PI, Math.PI, 1.5, 0, 0])) < 1e-12, 'the cart running under the upright links adds no energy error');
    // hanging at rest: the links' energy is minus the upright's, a relative error of -2
    assert.ok(Math.abs(stage([0, 0, 0, 0, 0, 0]) - tracking([0, 0, 0, 0, 0, 0]) - 10 * 4) < 1e-9, `hanging: energy term ${stage([0, 0, 0, 0, 0, 0]) - tracking([0, 0, 0, 0, 0, 0])}`);
  });

  it('undamped variational pendulum keeps its energy bounded over long horizons (no drift)', () => {
    const m = model('pendulum', { b: 0, horizon: 3000 });
    const xs = trajectory(m, new Float64Array(m.horizon), [2.0, 0]);
    const { m: mass, l, g, dtS } = m.params;
    // Discrete energy: kinetic from the chordal step velocity, potential at the step midpoint.
    const energy = ([th, phi]: number[]) => (mass * l * l * (1 - Math.cos(phi))) / (dtS * dtS) - mass * g * l * Math.cos(th + phi / 2);
    const e = xs.map(energy);
    const e0 = Math.abs(e[0]);
    const spread = (a: number[]) => Math.max(...a) - Math.min(...a);
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    const early = e.slice(0, 300);
    const late = e.slice(-300);
    assert.ok(spread(e) < 0.3 * e0, `energy oscillation ${spread(e)} of ${e0} (O(dt^2) at a 2 rad swing)`);
    assert.ok(Math.abs(spread(late) - spread(early)) < 0.05 * e0, 'the oscillation does not grow');
    assert.ok(Math.abs(mean(late) - mean(early)) < 0.002 * e0, `secular drift ${mean(late) - mean(early)}`);
  });

  it('pendulum torque is clipped at umax', () => {
    const m = model('pendulum', { horizon: 5 });
    const a = trajectory(m, new Float64Array(5).fill(1), [0, 0]);
    const b = trajectory(m, new Float64Array(5).fill(7), [0, 0]);
    assert.deepEqual(a, b);
  });

  it('double integrator matches its closed form', () => {
    const m = model('double-integrator');
    const T = m.horizon;
    const dt = m.dtS;
    const u = Float64Array.from({ length: T }, (_, t) => Math.cos(0.3 * t) - 0.5);
    const xs = trajectory(m, u, [1, 0]);
    // v_t = v0 + dt sum_{s<t} u_s;  p_t = p0 + dt sum_{s<t} v_s
    let p = 1;
    let v = 0;
    let cost = 0;
    for (let t = 0; t < T; t++) {
      assert.ok(Math.abs(xs[t][0] - p) < 1e-12 && Math.abs(xs[t][1] - v) < 1e-12, `state at ${t}`);
      cost += p * p + 0.1 * v * v + 0.01 * u[t] * u[t];
      [p, v] = [p + dt * v, v + dt * u[t]];
    }
    cost += 10 * (p * p + v * v);
    assert.ok(Math.abs(xs[T][0] - p) < 1e-12);
    assert.ok(Math.abs(cpu(m).costSync({ controls: u })[0] - cost) < 1e-10);
  });

  describe('pusher-slider', () => {
    const m = model('pusher-slider', { horizon: 20 });
    const push = (e: number, s: number, vx: number, vy: number) =>
      Float64Array.from({ length: m.horizon * 4 }, (_, i) => [e, s, vx, vy][i % 4]);

    it('a centred push on the left edge moves the slider straight along +x at the pusher speed', () => {
      const xs = trajectory(m, push(1, 0, 0.1, 0), [0, 0, 0], { uPrev: [1, 0, 0, 0] });
      const [bx, by, alpha] = xs[m.horizon];
      // the soft edge mixture leaks e^-10 of the neighbouring edge's twist
      assert.ok(Math.abs(bx - 0.1 * m.dtS * m.horizon) < 1e-5, `bx = ${bx}`);
      assert.ok(Math.abs(by) < 1e-5 && Math.abs(alpha) < 1e-4, `by = ${by}, alpha = ${alpha}`);
    });

    it('an off-centre push turns the slider (pushing below the centre turns it counter-clockwise)', () => {
      const xs = trajectory(m, push(1, -0.5, 0.1, 0), [0, 0, 0]);
      assert.ok(xs[m.horizon][2] > 0.01, `alpha = ${xs[m.horizon][2]}`);
      const ys = trajectory(m, push(1, 0.5, 0.1, 0), [0, 0, 0]);
      assert.ok(ys[m.horizon][2] < -0.01);
    });

    it('pushing the bottom edge moves the slider along +y, and the pusher never pulls', () => {
      const xs = trajectory(m, push(2, 0, 0, 0.1), [0, 0, 0]);
      assert.ok(xs[m.horizon][1] > 0.09);
      const pulled = trajectory(m, push(2, 0, 0, -0.1), [0, 0, 0]);
      assert.ok(Math.abs(pulled[m.horizon][1]) < 1e-5, 'pulling away from the edge moves (next to) nothing');
    });

    it('the push acts in the slider frame: a rotated slider moves along its own x axis', () => {
      const xs = trajectory(m, push(1, 0, 0.1, 0), [0, 0, Math.PI / 2]);
      const [bx, by] = xs[m.horizon];
      assert.ok(Math.abs(bx) < 1e-5 && by > 0.09, `moved to (${bx}, ${by})`);
    });

    it('is deterministic without noise and stochastic with Gumbel noise', () => {
      const U = push(2.5, 0.2, 0.05, 0.05);
      const a = cpu(m).costSync({ controls: U });
      const b = cpu(m).costSync({ controls: U });
      assert.deepEqual(a, b);
      const noise = Float64Array.from({ length: m.horizon * 4 }, (_, i) => Math.sin(i) * 2);
      const c = cpu(m).costSync({ controls: U, noise });
      assert.notEqual(c[0], a[0]);
    });
  });

  it('shekel energy has its global minima at c1 and c2 and a local one at c3', () => {
    const m = model('shekel');
    const e = (t1: number, t2: number) => cpu(m).costSync({ controls: Float64Array.of(t1, t2) })[0];
    assert.ok(Math.abs(e(2, 2) - e(-2, 2)) < 1e-12);
    assert.ok(e(2, 2) < e(0, -2.5) && e(0, -2.5) < e(0, 0));
    assert.ok(e(2, 2) < e(2.1, 2) && e(0, -2.5) < e(0, -2.3));
  });
});

describe('physical state conversions', () => {
  // The simulator adds noise in physical units every substep, through these pairs; a lossy pair would corrupt the plant.
  for (const name of MODELS.keys()) {
    it(`${name}: fromPhysical inverts toPhysical`, () => {
      const m = model(name);
      const x = m.def.x0.map((v, i) => v + 0.3 * Math.sin(1.7 * i + 0.4));
      const back = fromPhysical(m, toPhysical(m, x));
      back.forEach((v, i) => assert.ok(Math.abs(v - x[i]) < 1e-12 * Math.max(1, Math.abs(x[i])), `${name} state ${i}: ${v} vs ${x[i]}`));
    });
  }
});
