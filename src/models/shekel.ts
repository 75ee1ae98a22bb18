import { add, div, neg, sq, sub, sum } from '../expr/expr.js';
import { num } from '../params.js';
import { defineModel } from './model.js';

const CENTRES: readonly (readonly [number, number])[] = [[2, 2], [-2, 2], [0, -2.5]];
const WIDTHS = [0.5, 0.5, 1.2];

/**
 * The TSMC paper's Example 1 (eq. 8): the negative Shekel function over
 * theta in R^2 with three centres; c1 and c2 are the global minima. No
 * dynamics: the "control" is theta itself (horizon 1, no state), and the
 * energy is the single stage cost.
 */
export const shekel = defineModel({
  name: 'shekel',
  summary: 'negative Shekel energy over theta in R^2 (TSMC paper Example 1; no dynamics)',
  stateNames: [],
  physicalUnits: [],
  controlNames: ['theta1', 'theta2'],
  controlUnits: ['', ''],
  params: {
    dtS: num(1, 'unused (no dynamics)', { min: 1e-6 }),
    horizon: num(1, 'fixed at 1: theta is one control', { min: 1, max: 1, integer: true }),
  },
  x0: [],
  tuning: {
    solve: { lambda: 0.1, stepSize: 0.3, prior: 'gaussian', priorSigma: 1 },
  },
  goal: [],
  controlLimits: { lower: [-Infinity, -Infinity], upper: [Infinity, Infinity] },
  step: () => [],
  stageCost(_x, [t1, t2]) {
    return neg(sum(CENTRES.map(([c1, c2], i) => div(1, add(add(sq(sub(t1, c1)), sq(sub(t2, c2))), WIDTHS[i])))));
  },
  terminalCost: () => 0,
});
