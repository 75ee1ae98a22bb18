import { add, clamp, cos, mul, neg, rk4, Scalar, sin, solveSpd, sq, sub, weightedSquaredError } from '../expr/expr.js';
import { num } from '../params.js';
import { lqrTerminalTerm } from './lqr.js';
import { angleError, defineModel, ParamValues } from './model.js';

/** The goal region's half-widths along q1, q2, dq1, dq2: the region's test and its plotted bands read the same numbers. */
const GOAL_HALF_WIDTHS = [0.2, 0.2, 1, 1] as const;

type AcrobotParam = 'm1' | 'm2' | 'l1' | 'lc1' | 'lc2' | 'I1' | 'I2' | 'b1' | 'b2' | 'g' | 'umax' | 'wAngle' | 'wRate' | 'wControl' | 'wEnergy' | 'terminalScale' | 'terminalLqr';

/**
 * Spong acrobot (parameters as in Drake's acrobot), RK4. State
 * [q1, q2, dq1, dq2]: q1 = 0 hangs down, q2 is the elbow angle relative to
 * link 1. Torque on the elbow only, torque = umax * clip(u, -1, 1), umax = 20 N m
 * (about twice the static torque needed to hold link 2 horizontal).
 *
 * Cost (quadratic in the raw angles, no wrapping):
 *   stage    wAngle ((q1 - r1)^2 + (q2 - r2)^2) + wRate (dq1^2 + dq2^2) + wControl u^2
 *            + wEnergy ((E - E_top) / E_top)^2
 *   terminal terminalScale * the same state terms + terminalLqr e' P e,
 *            e = x - ref, P the LQR cost-to-go of the stage weights at the upright.
 * The energy term (off by default, as in the trajectory-optimisation task)
 * rewards pumping energy, which is what a short MPC horizon can see of a
 * swing-up; E_top is the energy at rest upright. The LQR term (also off by
 * default) lets a short horizon balance: see lqrCostToGo.
 */
/** Both links straight up, at rest: the goal, and where the LQR term is linearised. */
const UPRIGHT = [Math.PI, 0, 0, 0] as const;

export const acrobot = defineModel<AcrobotParam>({
  name: 'acrobot',
  summary: 'Spong acrobot swing-up, elbow torque only, RK4 (q1=0 hangs down)',
  stateNames: ['q1', 'q2', 'dq1', 'dq2'],
  physicalUnits: ['rad', 'rad', 'rad/s', 'rad/s'],
  sensor: { kind: 'joints', joints: ['q1', 'q2'] },
  // q1 = 0 hangs down; the second link drawn twice its centre-of-mass distance long
  sketch: ([q1, q2], p) => {
    const elbow: [number, number] = [p.l1 * Math.sin(q1), -p.l1 * Math.cos(q1)];
    return [[0, 0], elbow, [elbow[0] + 2 * p.lc2 * Math.sin(q1 + q2), elbow[1] - 2 * p.lc2 * Math.cos(q1 + q2)]];
  },
  controlNames: ['u'],
  controlUnits: ['× umax'],
  params: {
    m1: num(1, 'link 1 mass [kg]', { min: 1e-6 }),
    m2: num(1, 'link 2 mass [kg]', { min: 1e-6 }),
    l1: num(1, 'link 1 length [m]', { min: 1e-6 }),
    lc1: num(0.5, 'link 1 centre of mass from shoulder [m]', { min: 0 }),
    lc2: num(1, 'link 2 centre of mass from elbow [m]', { min: 0 }),
    I1: num(0.083, 'link 1 inertia about its centre of mass [kg m^2]', { min: 0 }),
    I2: num(0.33, 'link 2 inertia about its centre of mass [kg m^2]', { min: 0 }),
    b1: num(0.1, 'shoulder viscous damping [N m s]', { min: 0 }),
    b2: num(0.1, 'elbow viscous damping [N m s]', { min: 0 }),
    g: num(9.81, 'gravity [m/s^2]', { min: 0 }),
    umax: num(20, 'elbow torque at |u| = 1 [N m]', { min: 0 }),
    wAngle: num(1, 'stage weight on squared angle error', { min: 0 }),
    wRate: num(0.01, 'stage weight on squared joint rates', { min: 0 }),
    wControl: num(0.01, 'stage weight on u^2', { min: 0 }),
    wEnergy: num(0, 'stage weight on the squared relative error of the total energy from its upright value (0 = off)', { min: 0 }),
    terminalScale: num(100, 'terminal weight relative to the stage state weights', { min: 0 }),
    terminalLqr: num(0, 'weight of the LQR cost-to-go at the upright in the terminal cost (0 = off)', { min: 0 }),
    dtS: num(0.025, 'time step [s]', { min: 1e-6 }),
    horizon: num(200, 'planning horizon [steps]', { min: 1, max: 10000, integer: true }),
  },
  x0: [0, 0, 0, 0],
  angles: ['q1', 'q2'],
  massParams: ['m1', 'm2'],
  tuning: {
    // 0.6 s ahead with the LQR cost-to-go as terminal cost, and an energy term
    // for the swing-up. Longer plans at the upright are hopelessly ill-conditioned
    // (at 2 s, 1e-4 on the first control moves the cost by ~300), and shorter
    // plans without the LQR term cannot see why to act now (non-minimum phase).
    // The terminal cost is the LQR cost-to-go alone (terminalScale 0): a plan at
    // the upright is then the LQR's, where 100 x the stage terms on top made its
    // gains twice as stiff; rates weigh 0.1, the weight at which the LQR holds
    // the upright best under a disturbing torque (docs/results.md, issue 25).
    model: { horizon: 24, wEnergy: 10, terminalLqr: 1, wRate: 0.1, terminalScale: 0 },
    planners: {
      mppi: { samples: 512, iterations: 4, temperature: 10, sigmaMax: 0.5, noiseCorrelation: 0.9, sigmaWarmStart: 'carry' },
      tsmc: { lambda: 0.1, stepSize: 0.02, particles: 32, maxTreeDepth: 3 },
      // SMC over time on the learned value: near-greedy weights (eta 0.001), no resampling (resampling on
      // the value's 2-step advantages collapsed the particles onto its local errors: 0/20), and 60% of the
      // particles drawn around the previous plan at a tenth of the policy's std, so the catch and the
      // balance are refined from tick to tick (0/20 -> 19/20 at K = 16, 20/20 at K = 64, docs/results.md, issue 27)
      // distilStdMin 0.1: what train-prior distils from these greedy, mostly-local particles has no spread of its own, and a
      // policy fitted to it stopped exploring (the EM loop at K = 256: 29 of 30 episodes in the goal against 7 of its first 10, then fewer)
      spo: { eta: 0.001, policyStdScale: 4, resampleEvery: 10000, warmStartShare: 0.6, warmStartStdScale: 0.1, distilStdMin: 0.1 },
      // the acrobot's 40 Hz leaves 18 ms a plan: 4 atoms (Q at 16 x 4 atoms a step is most of a plan's time);
      // alpha 0: the prior's Q twists the proposal the wrong way here (6/10 at 0.1 against 10/10)
      trtsmc: { eta: 0.001, policyStdScale: 4, atoms: 4, alpha: 0, resampleEvery: 10000, warmStartShare: 0.6, warmStartStdScale: 0.1, distilStdMin: 0.1 },
    },
    // Table S-I of the TSMC paper (step sizes in normalised units here). The moves: NUTS adapted to
    // acceptance 0.4 with trees up to depth 6 and one move per level, not 0.65, 5 and 2: longer,
    // bolder trajectories reach other swing-ups, for a third fewer gradient evaluations (12 seeds:
    // best cost median 1810 against 1936, docs/results.md, issue 25)
    solve: { lambda: 0.1, stepSize: 0.02, targetAcceptance: 0.4, maxTreeDepth: 6, movesPerLevel: 1 },
  },
  goal: UPRIGHT,
  controlLimits: { lower: [-1], upper: [1] },
  goalRegion: {
    doc: 'both links within 0.2 rad of the goal angles and joint rates below 1 rad/s, held 2 s',
    holdS: 2,
    halfWidths: GOAL_HALF_WIDTHS,
    contains: ([q1, q2, dq1, dq2], [r1, r2]) =>
      Math.abs(angleError(q1, r1)) < GOAL_HALF_WIDTHS[0] && Math.abs(angleError(q2, r2)) < GOAL_HALF_WIDTHS[1] && Math.abs(dq1) < GOAL_HALF_WIDTHS[2] && Math.abs(dq2) < GOAL_HALF_WIDTHS[3],
  },
  step(x, u, _w, p) {
    return acrobotStep(x, u, p);
  },
  stageCost(x, [u], _uPrev, ref, p) {
    return add(stateCost(x, ref, p), mul(p.wControl, sq(u)));
  },
  terminalCost(x, ref, p) {
    const scaled = mul(p.terminalScale, stateCost(x, ref, p));
    if (p.terminalLqr === 0) return scaled;
    return add(scaled, lqrTerminalTerm('acrobot', p.terminalLqr, (xs, us) => acrobotStep(xs, us, p), UPRIGHT, [0], [p.wAngle, p.wAngle, p.wRate, p.wRate], [p.wControl], x, ref));
  },
});

function acrobotStep(x: Scalar[], [u]: Scalar[], p: ParamValues<AcrobotParam>): Scalar[] {
  const torque = mul(p.umax, clamp(u, -1, 1));
  return rk4((s) => acrobotDerivative(s, torque, p), x, p.dtS);
}

function stateCost(x: Scalar[], ref: Scalar[], p: ParamValues<AcrobotParam>): Scalar {
  const tracking = weightedSquaredError(x, ref, [p.wAngle, p.wAngle, p.wRate, p.wRate]);
  if (p.wEnergy === 0) return tracking;
  const top = acrobotEnergy(UPRIGHT, p);
  return add(tracking, mul(p.wEnergy, sq(sub(mul(1 / top, acrobotEnergy(x, p)), 1))));
}

/** Continuous-time manipulator equations M(q) ddq + C(q, dq) dq = tau_g(q) + B u - b dq. */
/** Parameter arithmetic is written with the helpers (numbers fold exactly as plain arithmetic would), so `identify` can make parameters symbols. */
function acrobotDerivative([q1, q2, dq1, dq2]: Scalar[], torque: Scalar, p: Readonly<Record<AcrobotParam, Scalar>>): Scalar[] {
  const i1 = add(p.I1, mul(mul(p.m1, p.lc1), p.lc1)); // about the shoulder
  const i2 = add(p.I2, mul(mul(p.m2, p.lc2), p.lc2)); // about the elbow
  const c2 = cos(q2);
  const s1 = sin(q1);
  const s2 = sin(q2);
  const s12 = sin(add(q1, q2));
  const k = mul(mul(p.m2, p.l1), p.lc2);
  const m01 = add(i2, mul(k, c2));
  const mass = [
    [add(add(add(i1, i2), mul(mul(p.m2, p.l1), p.l1)), mul(mul(2, k), c2)), m01],
    [m01, i2],
  ];
  // Coriolis/centrifugal bias C(q, dq) dq
  const bias0 = mul(neg(mul(k, s2)), add(mul(2, mul(dq1, dq2)), sq(dq2)));
  const bias1 = mul(mul(k, s2), sq(dq1));
  const gravity0 = neg(add(mul(mul(add(mul(p.m1, p.lc1), mul(p.m2, p.l1)), p.g), s1), mul(mul(mul(p.m2, p.g), p.lc2), s12)));
  const gravity1 = neg(mul(mul(mul(p.m2, p.g), p.lc2), s12));
  const rhs = [
    sub(sub(gravity0, bias0), mul(p.b1, dq1)),
    sub(add(sub(gravity1, bias1), torque), mul(p.b2, dq2)),
  ];
  const [ddq1, ddq2] = solveSpd(mass, rhs);
  return [dq1, dq2, ddq1, ddq2];
}

/** Total mechanical energy: numbers in, a number out (tests, telemetry); expressions in, an expression out (cost). */
export function acrobotEnergy(x: readonly number[], p: Readonly<Record<string, number>>): number;
export function acrobotEnergy(x: readonly Scalar[], p: Readonly<Record<string, number>>): Scalar;
export function acrobotEnergy([q1, q2, dq1, dq2]: readonly Scalar[], p: Readonly<Record<string, number>>): Scalar {
  const i1 = p.I1 + p.m1 * p.lc1 * p.lc1;
  const i2 = p.I2 + p.m2 * p.lc2 * p.lc2;
  const k = p.m2 * p.l1 * p.lc2;
  const c2 = cos(q2);
  const kinetic = add(
    add(mul(mul(0.5, add(i1 + i2 + p.m2 * p.l1 * p.l1, mul(2 * k, c2))), sq(dq1)), mul(mul(add(i2, mul(k, c2)), dq1), dq2)),
    mul(0.5 * i2, sq(dq2)),
  );
  const potential = neg(add(mul(p.m1 * p.g * p.lc1, cos(q1)), mul(p.m2 * p.g, add(mul(p.l1, cos(q1)), mul(p.lc2, cos(add(q1, q2)))))));
  return add(kinetic, potential);
}
