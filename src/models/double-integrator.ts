import { add, mul, sq, sub } from '../expr/expr.js';
import { num } from '../params.js';
import { defineModel } from './model.js';

/** The goal region's half-widths along p, v: the region's test and its plotted bands read the same numbers. */
const GOAL_HALF_WIDTHS = [0.05, 0.05] as const;

/**
 * Linear-quadratic double integrator: exact answers exist for everything, so
 * samplers and gradients are checked against closed forms on it.
 */
export const doubleIntegrator = defineModel({
  name: 'double-integrator',
  summary: 'linear-quadratic double integrator (closed-form reference problem)',
  stateNames: ['p', 'v'],
  physicalUnits: ['m', 'm/s'],
  sensor: { kind: 'joints', joints: ['p'] },
  controlNames: ['u'],
  controlUnits: ['m/s²'],
  params: {
    dtS: num(0.1, 'time step [s]', { min: 1e-6 }),
    horizon: num(20, 'planning horizon [steps]', { min: 1, max: 10000, integer: true }),
  },
  x0: [1, 0],
  tuning: {
    planners: {
      mppi: { samples: 128, iterations: 3 },
      tsmc: { particles: 64 },
    },
  },
  goal: [0, 0],
  controlLimits: { lower: [-Infinity], upper: [Infinity] },
  goalRegion: {
    doc: '|p - p_goal| < 0.05 and |v - v_goal| < 0.05, held 1 s',
    holdS: 1,
    halfWidths: GOAL_HALF_WIDTHS,
    contains: ([p, v], [rp, rv]) => Math.abs(p - rp) < GOAL_HALF_WIDTHS[0] && Math.abs(v - rv) < GOAL_HALF_WIDTHS[1],
  },
  step([p, v], [u], _w, { dtS }) {
    return [add(p, mul(dtS, v)), add(v, mul(dtS, u))];
  },
  stageCost([p, v], [u], _uPrev, [rp, rv]) {
    return add(add(sq(sub(p, rp)), mul(0.1, sq(sub(v, rv)))), mul(0.01, sq(u)));
  },
  terminalCost([p, v], [rp, rv]) {
    return mul(10, add(sq(sub(p, rp)), sq(sub(v, rv))));
  },
});
