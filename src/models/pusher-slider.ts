import { add, clamp, cos, div, min, mul, Scalar, sin, softmax, sq, sub, sum, weightedSquaredError } from '../expr/expr.js';
import { num } from '../params.js';
import { angleError, defineModel, ParamValues } from './model.js';

/** The goal region's half-widths along bx, by, alpha (the position's disc of radius 0.02 m drawn as its box): the region's test and its plotted bands read the same numbers. */
const GOAL_HALF_WIDTHS = [0.02, 0.02, 0.1] as const;

type PusherParam = 'side' | 'umax' | 'smax' | 'edgeTemperature' | 'wPos' | 'wAngle' | 'terminalScale' | 'wSwitch';

/** Inward normals of the four edges in the slider frame: 1 left, 2 bottom, 3 right, 4 top. */
const EDGE_NORMALS: readonly (readonly [number, number])[] = [[1, 0], [0, 1], [-1, 0], [0, -1]];

/**
 * Planar quasi-static pusher–slider with an ellipsoidal limit surface and
 * sticking contact (TSMC paper §V-C). Slider pose [bx, by, alpha] in the
 * world; control [e, s, vx, vy]: e in [1, 4] is the relaxed contacted edge,
 * s in [-smax, smax] the contact location along it (±1 at the corners), and
 * (vx, vy) the pusher velocity in the slider frame, |vx|, |vy| <= umax.
 *
 * Edge relaxation: weights softmax((-(e - k)^2 + g_k) / edgeTemperature) over
 * k = 1..4, where g are per-step noise inputs (Gumbel samples when a seed
 * asks for them, zero otherwise: a deterministic soft mixture). The slider
 * twist is the weighted mixture of the per-edge sticking-contact twists. The
 * pusher only pushes: a velocity component pulling away from the edge is removed.
 *
 * Cost: stage wPos |b - b_goal|^2 + wAngle (alpha - alpha_goal)^2
 * + wSwitch |w(e_t) - w(e_{t-1})|^2 (deterministic edge weights); terminal
 * terminalScale times the pose terms.
 */
export const pusherSlider = defineModel<PusherParam>({
  name: 'pusher-slider',
  summary: 'quasi-static pusher-slider (ellipsoidal limit surface, sticking contact, relaxed edge choice)',
  stateNames: ['bx', 'by', 'alpha'],
  physicalUnits: ['m', 'm', 'rad'],
  sensor: { kind: 'pose2d' },
  sketch: ([x, y]) => [[x, y]],
  controlNames: ['e', 's', 'vx', 'vy'],
  controlUnits: ['', '', 'm/s', 'm/s'],
  noiseDim: 4,
  params: {
    side: num(0.09, 'square slider side length [m]', { min: 1e-4 }),
    umax: num(0.1, 'pusher speed limit per axis [m/s]', { min: 0 }),
    smax: num(0.8, 'contact-location limit along an edge (1 = corner)', { min: 0, max: 1 }),
    edgeTemperature: num(0.1, 'softmax temperature of the relaxed edge choice', { min: 1e-4 }),
    wPos: num(10, 'stage weight on squared position error [1/m^2]', { min: 0 }),
    wAngle: num(1, 'stage weight on squared orientation error [1/rad^2]', { min: 0 }),
    terminalScale: num(100, 'terminal weight relative to the stage pose weights', { min: 0 }),
    wSwitch: num(0.1, 'weight on squared change of edge weights between steps', { min: 0 }),
    dtS: num(0.05, 'time step [s]', { min: 1e-6 }),
    horizon: num(200, 'planning horizon [steps]', { min: 1, max: 10000, integer: true }),
  },
  x0: [0, 0, 0],
  angles: ['alpha'],
  tuning: {
    planners: {
      mppi: { samples: 512, iterations: 4 },
      tsmc: { lambda: 0.2, stepSize: 0.01, particles: 64 },
    },
    // one move per level: d = 800 makes each move costly, and quality barely changes (bench to)
    solve: { lambda: 0.2, stepSize: 0.01, movesPerLevel: 1 },
  },
  goal: [0.3, 0.2, Math.PI / 4],
  controlLimits: (p) => ({ lower: [1, -p.smax, -p.umax, -p.umax], upper: [4, p.smax, p.umax, p.umax] }),
  goalRegion: {
    doc: 'slider centre within 2 cm of the goal and orientation within 0.1 rad, held 1 s',
    holdS: 1,
    halfWidths: GOAL_HALF_WIDTHS,
    contains: ([bx, by, alpha], [gx, gy, ga]) => Math.hypot(bx - gx, by - gy) < GOAL_HALF_WIDTHS[0] && Math.abs(angleError(alpha, ga)) < GOAL_HALF_WIDTHS[2],
  },
  step([bx, by, alpha], [e, s, vx, vy], gumbel, p) {
    const weights = edgeWeights(e, gumbel, p);
    const half = p.side / 2;
    const c = 0.3826 * p.side; // m_max / f_max for uniform pressure on a square
    const sc = mul(half, clamp(s, -p.smax, p.smax));
    const v = [clamp(vx, -p.umax, p.umax), clamp(vy, -p.umax, p.umax)];
    const twist: Scalar[] = [0, 0, 0];
    EDGE_NORMALS.forEach(([nx, ny], k) => {
      const [tx, ty] = [-ny, nx];
      const px = add(-nx * half, mul(tx, sc));
      const py = add(-ny * half, mul(ty, sc));
      const pull = min(add(mul(nx, v[0]), mul(ny, v[1])), 0);
      const vpx = sub(v[0], mul(nx, pull));
      const vpy = sub(v[1], mul(ny, pull));
      // Sticking: pusher velocity = J L J^T f with J = [[1,0,-py],[0,1,px]], L = diag(1,1,1/c^2).
      const a00 = add(1, div(sq(py), c * c));
      const a11 = add(1, div(sq(px), c * c));
      const a01 = div(mul(-1, mul(px, py)), c * c);
      const det = sub(mul(a00, a11), sq(a01));
      const fx = div(sub(mul(a11, vpx), mul(a01, vpy)), det);
      const fy = div(sub(mul(a00, vpy), mul(a01, vpx)), det);
      const omega = div(sub(mul(px, fy), mul(py, fx)), c * c);
      twist[0] = add(twist[0], mul(weights[k], fx));
      twist[1] = add(twist[1], mul(weights[k], fy));
      twist[2] = add(twist[2], mul(weights[k], omega));
    });
    const ca = cos(alpha);
    const sa = sin(alpha);
    return [
      add(bx, mul(p.dtS, sub(mul(ca, twist[0]), mul(sa, twist[1])))),
      add(by, mul(p.dtS, add(mul(sa, twist[0]), mul(ca, twist[1])))),
      add(alpha, mul(p.dtS, twist[2])),
    ];
  },
  stageCost(x, u, uPrev, ref, p) {
    const now = edgeWeights(u[0], [0, 0, 0, 0], p);
    const before = edgeWeights(uPrev[0], [0, 0, 0, 0], p);
    const switching = sum(now.map((w, k) => sq(sub(w, before[k]))));
    return add(poseCost(x, ref, p), mul(p.wSwitch, switching));
  },
  terminalCost(x, ref, p) {
    return mul(p.terminalScale, poseCost(x, ref, p));
  },
});

function poseCost(x: Scalar[], ref: Scalar[], p: ParamValues<PusherParam>): Scalar {
  return weightedSquaredError(x, ref, [p.wPos, p.wPos, p.wAngle]);
}

function edgeWeights(e: Scalar, gumbel: readonly Scalar[], p: ParamValues<PusherParam>): Scalar[] {
  const edge = clamp(e, 1, 4);
  return softmax([1, 2, 3, 4].map((k, i) => div(sub(gumbel[i], sq(sub(edge, k))), p.edgeTemperature)));
}
