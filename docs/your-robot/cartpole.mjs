// A cart-pole as a model module: `tempered-mpc run --system ./cartpole.mjs`.
// Everything the controller needs about the plant is in this one definition:
// dynamics, costs, what the states mean, and how to plan with it.
import { add, angleError, clamp, cos, defineModel, div, mul, neg, num, rk4, sin, sq, sub } from 'tempered-mpc';

// The goal region's half-widths along x, theta, dx, dtheta (the test and the plotted bands read the same numbers).
const GOAL_HALF_WIDTHS = [0.5, 0.2, 1, 1];

export default defineModel({
  name: 'cartpole',
  summary: 'cart-pole swing-up, force on the cart, RK4 (theta = 0 hangs down)',
  stateNames: ['x', 'theta', 'dx', 'dtheta'],
  physicalUnits: ['m', 'rad', 'm/s', 'rad/s'],
  // a sensor reports sensor_msgs/JointState: the cart's rail joint, then the hinge
  sensor: { kind: 'joints', joints: ['x', 'theta'] },
  sketch: ([x, theta], p) => [[x, 0], [x + p.l * Math.sin(theta), -p.l * Math.cos(theta)]],
  controlNames: ['u'],
  controlUnits: ['× umax'],
  params: {
    mc: num(1, 'cart mass [kg]', { min: 1e-6 }),
    mp: num(0.3, 'pole mass, at its tip [kg]', { min: 1e-6 }),
    l: num(0.5, 'pole length [m]', { min: 1e-6 }),
    g: num(9.81, 'gravity [m/s^2]', { min: 0 }),
    umax: num(15, 'force at |u| = 1 [N]', { min: 0 }),
    wPos: num(0.5, 'weight on the cart position error', { min: 0 }),
    wAngle: num(2, 'weight on the pole angle error (1 - cos)', { min: 0 }),
    wRate: num(0.01, 'weight on the squared rates', { min: 0 }),
    wControl: num(0.01, 'weight on u^2', { min: 0 }),
    terminalScale: num(10, 'terminal weight relative to the stage state weights', { min: 0 }),
    dtS: num(0.02, 'time step [s]', { min: 1e-6 }),
    horizon: num(60, 'planning horizon [steps]', { min: 1, max: 10000, integer: true }),
  },
  x0: [0, 0, 0, 0],
  goal: [0, Math.PI, 0, 0],
  controlLimits: { lower: [-1], upper: [1] },
  // meaning, declared: theta wraps (and enters learned priors as sin/cos); massScale scales both masses
  angles: ['theta'],
  massParams: ['mc', 'mp'],
  // how to plan with it: the controller's defaults for this plant (each can still be set by the user)
  tuning: {
    model: { horizon: 50 },
    planners: {
      mppi: { samples: 512, iterations: 4, temperature: 1, sigmaMax: 0.5, noiseCorrelation: 0.9, sigmaWarmStart: 'carry' },
    },
  },
  goalRegion: {
    doc: 'pole within 0.2 rad of upright, cart within 0.5 m of the goal, rates below 1, held 2 s',
    holdS: 2,
    halfWidths: GOAL_HALF_WIDTHS,
    contains: ([x, theta, dx, dtheta], [rx, rTheta]) =>
      Math.abs(x - rx) < GOAL_HALF_WIDTHS[0] && Math.abs(angleError(theta, rTheta)) < GOAL_HALF_WIDTHS[1] && Math.abs(dx) < GOAL_HALF_WIDTHS[2] && Math.abs(dtheta) < GOAL_HALF_WIDTHS[3],
  },
  step(x, [u], _w, p) {
    const force = mul(p.umax, clamp(u, -1, 1));
    return rk4((s) => derivative(s, force, p), x, p.dtS);
  },
  stageCost(x, [u], _uPrev, ref, p) {
    return add(stateCost(x, ref, p), mul(p.wControl, sq(u)));
  },
  terminalCost(x, ref, p) {
    return mul(p.terminalScale, stateCost(x, ref, p));
  },
});

/** Cart-pole with a point mass at the tip (Tedrake, Underactuated Robotics, ch. 3), theta = 0 hanging down. */
function derivative([, theta, dx, dtheta], force, p) {
  const s = sin(theta);
  const c = cos(theta);
  const denominator = add(p.mc, mul(p.mp, sq(s)));
  const ddx = div(add(force, mul(mul(p.mp, s), add(mul(p.l, sq(dtheta)), mul(p.g, c)))), denominator);
  const ddtheta = div(
    sub(sub(neg(mul(force, c)), mul(mul(p.mp * p.l, sq(dtheta)), mul(c, s))), mul((p.mc + p.mp) * p.g, s)),
    mul(p.l, denominator),
  );
  return [dx, dtheta, ddx, ddtheta];
}

/** Position and rates squared, the angle as 1 - cos of its error (periodic: a swing either way is the same). */
function stateCost([x, theta, dx, dtheta], [rx, rTheta], p) {
  const angle = sub(1, cos(sub(theta, rTheta)));
  return add(add(mul(p.wPos, sq(sub(x, rx))), mul(p.wAngle, angle)), mul(p.wRate, add(sq(dx), sq(dtheta))));
}
