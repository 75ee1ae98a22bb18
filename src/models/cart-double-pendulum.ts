import { add, clamp, cos, mul, rk4, Scalar, sin, solveSpd, sq, sub, weightedSquaredError } from '../expr/expr.js';
import { num } from '../params.js';
import { angleError, defineModel, ParamValues } from './model.js';

/** The goal region's half-widths along x, th1, th2, dx, dth1, dth2: the region's test and its plotted bands read the same numbers. */
const GOAL_HALF_WIDTHS = [0.5, 0.2, 0.2, 1, 1, 1] as const;

type CartParam = 'mc' | 'm1' | 'm2' | 'l1' | 'l2' | 'bc' | 'bj' | 'g' | 'umax' | 'wPos' | 'wAngle' | 'wRate' | 'wControl' | 'terminalScale';

/**
 * Double pendulum on a cart: point masses m1, m2 at the ends of massless
 * rods l1, l2 on a cart of mass mc, RK4. State [x, th1, th2, dx, dth1, dth2]
 * with absolute link angles, 0 hanging down; goal both links upright.
 * Force on the cart = umax * clip(u, -1, 1).
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
    terminalScale: num(100, 'terminal weight relative to the stage state weights', { min: 0 }),
    dtS: num(0.06, 'time step [s]', { min: 1e-6 }),
    horizon: num(100, 'planning horizon [steps]', { min: 1, max: 10000, integer: true }),
  },
  x0: [0, 0, 0, 0, 0, 0],
  angles: ['th1', 'th2'],
  massParams: ['mc', 'm1', 'm2'],
  tuning: {
    planners: {
      mppi: { samples: 512, iterations: 4 },
      tsmc: { lambda: 0.1, stepSize: 0.05, particles: 64 },
    },
  },
  goal: [0, Math.PI, Math.PI, 0, 0, 0],
  controlLimits: { lower: [-1], upper: [1] },
  goalRegion: {
    doc: 'both links within 0.2 rad of upright, cart within 0.5 m of the goal, all rates below 1 (m|rad)/s, held 2 s',
    holdS: 2,
    halfWidths: GOAL_HALF_WIDTHS,
    contains: ([x, th1, th2, dx, dth1, dth2], [rx, r1, r2]) =>
      Math.abs(angleError(th1, r1)) < GOAL_HALF_WIDTHS[1] && Math.abs(angleError(th2, r2)) < GOAL_HALF_WIDTHS[2] && Math.abs(x - rx) < GOAL_HALF_WIDTHS[0]
      && Math.abs(dx) < GOAL_HALF_WIDTHS[3] && Math.abs(dth1) < GOAL_HALF_WIDTHS[4] && Math.abs(dth2) < GOAL_HALF_WIDTHS[5],
  },
  step(x, [u], _w, p) {
    const force = mul(p.umax, clamp(u, -1, 1));
    return rk4((s) => cartDerivative(s, force, p), x, p.dtS);
  },
  stageCost(x, [u], _uPrev, ref, p) {
    return add(stateCost(x, ref, p), mul(p.wControl, sq(u)));
  },
  terminalCost(x, ref, p) {
    return mul(p.terminalScale, stateCost(x, ref, p));
  },
});

function stateCost(x: Scalar[], ref: Scalar[], p: ParamValues<CartParam>): Scalar {
  return weightedSquaredError(x, ref, [p.wPos, p.wAngle, p.wAngle, p.wRate, p.wRate, p.wRate]);
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

/** Total mechanical energy (for tests and telemetry). */
export function cartDoublePendulumEnergy([, th1, th2, dx, dth1, dth2]: number[], p: Record<string, number>): number {
  const v1x = dx + p.l1 * Math.cos(th1) * dth1;
  const v1y = p.l1 * Math.sin(th1) * dth1;
  const v2x = v1x + p.l2 * Math.cos(th2) * dth2;
  const v2y = v1y + p.l2 * Math.sin(th2) * dth2;
  const kinetic = 0.5 * (p.mc * dx * dx + p.m1 * (v1x * v1x + v1y * v1y) + p.m2 * (v2x * v2x + v2y * v2y));
  const potential = -p.m1 * p.g * p.l1 * Math.cos(th1) - p.m2 * p.g * (p.l1 * Math.cos(th1) + p.l2 * Math.cos(th2));
  return kinetic + potential;
}
