import { add, clamp, cos, mul, rk4, Scalar, sin, solveSpd, sq, sub, weightedSquaredError } from '../expr/expr.js';
import { num } from '../params.js';
import { angleError, defineModel, ParamValues } from './model.js';
import { lqrTerminalTerm } from './lqr.js';

/** The goal region's half-widths along x, th1, th2, dx, dth1, dth2: the region's test and its plotted bands read the same numbers. */
const GOAL_HALF_WIDTHS = [0.5, 0.2, 0.2, 1, 1, 1] as const;

type CartParam = 'mc' | 'm1' | 'm2' | 'l1' | 'l2' | 'bc' | 'bj' | 'g' | 'umax' | 'wPos' | 'wAngle' | 'wRate' | 'wControl' | 'wEnergy' | 'terminalScale' | 'terminalLqr' | 'substeps';

/** Both links straight up, the cart at the origin, at rest: the goal, and where the LQR term is linearised. */
const UPRIGHT = [0, Math.PI, Math.PI, 0, 0, 0];

/**
 * Double pendulum on a cart: point masses m1, m2 at the ends of massless
 * rods l1, l2 on a cart of mass mc, RK4. State [x, th1, th2, dx, dth1, dth2]
 * with absolute link angles, 0 hanging down; goal both links upright.
 * Force on the cart = umax * clip(u, -1, 1).
 *
 * Cost (quadratic in the raw states, no wrapping):
 *   stage    wPos (x - x_ref)^2 + wAngle |th - th_ref|^2 + wRate |rates|^2 + wControl u^2
 *            + wEnergy ((E_links - E_top) / E_top)^2
 *   terminal terminalScale * the same state terms + terminalLqr e' P e.
 * E_links is the links' energy relative to the cart (the cart's rate left
 * out), E_top its value at rest upright; P the LQR cost-to-go at the upright.
 * Both terms are off by default (the offline task) and on in the MPC tuning.
 */
export const cartDoublePendulum = defineModel<CartParam>({
  name: 'cart-double-pendulum',
  summary: 'double pendulum on a cart swing-up, cart force, RK4 (angles absolute, 0 hangs down)',
  stateNames: ['x', 'th1', 'th2', 'dx', 'dth1', 'dth2'],
  physicalUnits: ['m', 'rad', 'rad', 'm/s', 'rad/s', 'rad/s'],
  sensor: { kind: 'joints', joints: ['x', 'th1', 'th2'] },
  controlNames: ['u'],
  controlUnits: ['× umax'],
  params: {
    mc: num(1, 'cart mass [kg]', { min: 1e-6 }),
    m1: num(0.5, 'first bob mass [kg]', { min: 1e-6 }),
    m2: num(0.5, 'second bob mass [kg]', { min: 1e-6 }),
    l1: num(0.5, 'first rod length [m]', { min: 1e-6 }),
    l2: num(0.5, 'second rod length [m]', { min: 1e-6 }),
    bc: num(0.1, 'cart viscous friction [N s/m]', { min: 0 }),
    bj: num(0.01, 'viscous damping on each link\'s absolute rate [N m s]', { min: 0 }),
    g: num(9.81, 'gravity [m/s^2]', { min: 0 }),
    umax: num(30, 'cart force at |u| = 1 [N]', { min: 0 }),
    wPos: num(1, 'stage weight on squared cart position error', { min: 0 }),
    wAngle: num(1, 'stage weight on squared link angle errors', { min: 0 }),
    wRate: num(0.05, 'stage weight on squared velocities', { min: 0 }),
    wControl: num(0.1, 'stage weight on u^2', { min: 0 }),
    wEnergy: num(0, 'stage weight on the squared relative error of the links\' energy (relative to the cart: its motion left out) from its upright value (0 = off)', { min: 0 }),
    terminalScale: num(100, 'terminal weight relative to the stage state weights', { min: 0 }),
    terminalLqr: num(0, 'weight of the LQR cost-to-go at the upright in the terminal cost (0 = off)', { min: 0 }),
    dtS: num(0.06, 'time step [s]', { min: 1e-6 }),
    substeps: num(1, 'RK4 steps per time step (1: the TSMC paper\'s RK4 at dtS; more integrates nearer the simulator, which takes 10, at that many times the work)', { min: 1, max: 20, integer: true }),
    horizon: num(100, 'planning horizon [steps]', { min: 1, max: 10000, integer: true }),
  },
  x0: [0, 0, 0, 0, 0, 0],
  angles: ['th1', 'th2'],
  massParams: ['mc', 'm1', 'm2'],
  tuning: {
    // The acrobot's recipe at 50 Hz: at the paper's 0.06 s the upright diverges
    // by about 1.6x a step and plans caught it in 1 of 4 runs. 0.6 s plans closed by the LQR
    // cost-to-go at the upright, and an energy term on the links' energy
    // relative to the cart (with the cart's own kinetic energy in it, plans
    // pumped by running the cart: 4 of 8 swing-ups in 20 s, 8 to 11 s each,
    // against 8 of 8 in 3 to 5.5 s; docs/results.md). Followed with the
    // plan's feedback gains (launch/config/cart-double-pendulum.yaml).
    model: { dtS: 0.02, horizon: 30, wEnergy: 10, terminalLqr: 1, terminalScale: 0 },
    planners: {
      mppi: { samples: 512, iterations: 4, temperature: 10, sigmaMax: 0.5, noiseCorrelation: 0.9, sigmaWarmStart: 'carry' },
      tsmc: { lambda: 0.1, stepSize: 0.05, particles: 64 },
    },
  },
  goal: UPRIGHT,
  controlLimits: { lower: [-1], upper: [1] },
  goalRegion: {
    doc: 'both links within 0.2 rad of upright, cart within 0.5 m of the goal, all rates below 1 (m|rad)/s, held 2 s',
    holdS: 2,
    halfWidths: GOAL_HALF_WIDTHS,
    contains: ([x, th1, th2, dx, dth1, dth2], [rx, r1, r2]) =>
      Math.abs(angleError(th1, r1)) < GOAL_HALF_WIDTHS[1] && Math.abs(angleError(th2, r2)) < GOAL_HALF_WIDTHS[2] && Math.abs(x - rx) < GOAL_HALF_WIDTHS[0]
      && Math.abs(dx) < GOAL_HALF_WIDTHS[3] && Math.abs(dth1) < GOAL_HALF_WIDTHS[4] && Math.abs(dth2) < GOAL_HALF_WIDTHS[5],
  },
  step(x, u, _w, p) {
    return cartStep(x, u, p);
  },
  stageCost(x, [u], _uPrev, ref, p) {
    return add(stateCost(x, ref, p), mul(p.wControl, sq(u)));
  },
  terminalCost(x, ref, p) {
    const scaled = mul(p.terminalScale, stateCost(x, ref, p));
    if (p.terminalLqr === 0) return scaled;
    return add(scaled, lqrTerminalTerm('cart-double-pendulum', p.terminalLqr, (xs, us) => cartStep(xs, us, p), UPRIGHT, [0], [p.wPos, p.wAngle, p.wAngle, p.wRate, p.wRate, p.wRate], [p.wControl], x, ref));
  },
});

function cartStep(x: Scalar[], [u]: Scalar[], p: ParamValues<CartParam>): Scalar[] {
  const force = mul(p.umax, clamp(u, -1, 1));
  let next = x;
  for (let k = 0; k < p.substeps; k++) next = rk4((s) => cartDerivative(s, force, p), next, p.dtS / p.substeps);
  return next;
}

function stateCost(x: Scalar[], ref: Scalar[], p: ParamValues<CartParam>): Scalar {
  const tracking = weightedSquaredError(x, ref, [p.wPos, p.wAngle, p.wAngle, p.wRate, p.wRate, p.wRate]);
  if (p.wEnergy === 0) return tracking;
  // the links' energy relative to the cart (its rate left out): moving the cart fast is not swinging up
  const [, th1, th2, , dth1, dth2] = x;
  const top = cartDoublePendulumEnergy(UPRIGHT, p);
  return add(tracking, mul(p.wEnergy, sq(sub(mul(1 / top, cartDoublePendulumEnergy([0, th1, th2, 0, dth1, dth2], p)), 1))));
}

/** Lagrangian equations of motion M(q) ddq = rhs(q, dq, F). */
function cartDerivative([, th1, th2, dx, dth1, dth2]: Scalar[], force: Scalar, p: ParamValues<CartParam>): Scalar[] {
  const m12 = p.m1 + p.m2;
  const c1 = cos(th1);
  const c2 = cos(th2);
  const s1 = sin(th1);
  const s2 = sin(th2);
  const d = sub(th1, th2);
  const c12 = cos(d);
  const s12 = sin(d);
  const a01 = mul(m12 * p.l1, c1);
  const a02 = mul(p.m2 * p.l2, c2);
  const a12 = mul(p.m2 * p.l1 * p.l2, c12);
  const mass = [
    [p.mc + m12, a01, a02],
    [a01, m12 * p.l1 * p.l1, a12],
    [a02, a12, p.m2 * p.l2 * p.l2],
  ];
  const rhs = [
    sub(add(force, add(mul(mul(m12 * p.l1, s1), sq(dth1)), mul(mul(p.m2 * p.l2, s2), sq(dth2)))), mul(p.bc, dx)),
    sub(sub(mul(-m12 * p.g * p.l1, s1), mul(mul(p.m2 * p.l1 * p.l2, s12), sq(dth2))), mul(p.bj, dth1)),
    sub(add(mul(-p.m2 * p.g * p.l2, s2), mul(mul(p.m2 * p.l1 * p.l2, s12), sq(dth1))), mul(p.bj, dth2)),
  ];
  const [ddx, ddth1, ddth2] = solveSpd(mass, rhs);
  return [dx, dth1, dth2, ddx, ddth1, ddth2];
}

/** Total mechanical energy: numbers in, a number out (tests, telemetry); expressions in, an expression out (cost). */
export function cartDoublePendulumEnergy(x: readonly number[], p: Readonly<Record<string, number>>): number;
export function cartDoublePendulumEnergy(x: readonly Scalar[], p: Readonly<Record<string, number>>): Scalar;
export function cartDoublePendulumEnergy([, th1, th2, dx, dth1, dth2]: readonly Scalar[], p: Readonly<Record<string, number>>): Scalar {
  const v1x = add(dx, mul(mul(p.l1, cos(th1)), dth1));
  const v1y = mul(mul(p.l1, sin(th1)), dth1);
  const v2x = add(v1x, mul(mul(p.l2, cos(th2)), dth2));
  const v2y = add(v1y, mul(mul(p.l2, sin(th2)), dth2));
  const kinetic = mul(0.5, add(add(mul(p.mc, sq(dx)), mul(p.m1, add(sq(v1x), sq(v1y)))), mul(p.m2, add(sq(v2x), sq(v2y)))));
  const potential = sub(mul(-p.m1 * p.g * p.l1, cos(th1)), mul(p.m2 * p.g, add(mul(p.l1, cos(th1)), mul(p.l2, cos(th2)))));
  return add(kinetic, potential);
}
