import { add, cos, div, mul, neg, Scalar, sin, sub } from '../expr/expr.js';

/**
 * Rigid-body dynamics of a kinematic tree in the expression graph: the
 * Articulated-Body Algorithm (Featherstone, Rigid Body Dynamics Algorithms,
 * ch. 7) for forward dynamics and the same first pass for forward
 * kinematics. Written over Scalars, so numbers fold to numbers and
 * expressions build the graph the CPU and WebGPU kernels, the exact
 * gradients and the EKF's Jacobians are generated from.
 *
 * Why ABA and not CRBA + a Cholesky solve: it is O(n) rather than O(n^3)
 * in the joints, needs one scalar division per joint and no square root,
 * and the zero structure of the spatial quantities folds away in the graph
 * (a 7-joint arm stays a few thousand nodes per evaluation).
 */

export type Vec3 = [Scalar, Scalar, Scalar];
export type Mat3 = [Vec3, Vec3, Vec3];
/** spatial vectors [angular; linear] and 6x6 matrices */
type Vec6 = Scalar[];
type Mat6 = Scalar[][];

export interface Body {
  name: string;
  /** index of the parent body, -1 for a body on the fixed base */
  parent: number;
  /** 'fixed' bodies move with their parent (no coordinate) */
  joint: 'revolute' | 'prismatic' | 'fixed';
  /** the joint frame in the parent body's frame at q = 0 */
  originRotation: readonly (readonly number[])[];
  originPosition: readonly number[];
  /** unit axis in the joint (child) frame */
  axis: readonly number[];
  /** index of the body's coordinate in q (-1 for fixed) */
  coordinate: number;
  /** spatial inertia about the body frame's origin, in the body frame (numbers, or expressions of parameters) */
  inertia: Mat6;
}

export interface Pose {
  /** the body's frame orientation in world coordinates */
  rotation: Mat3;
  position: Vec3;
}

const vec = (v: readonly Scalar[]): Vec3 => [v[0], v[1], v[2]];

export function matVec(m: readonly (readonly Scalar[])[], v: readonly Scalar[]): Scalar[] {
  return m.map((row) => row.reduce<Scalar>((s, mij, j) => add(s, mul(mij, v[j])), 0));
}

function matMul(a: readonly (readonly Scalar[])[], b: readonly (readonly Scalar[])[]): Scalar[][] {
  return a.map((row) => b[0].map((_, j) => row.reduce<Scalar>((s, aik, k) => add(s, mul(aik, b[k][j])), 0)));
}

const transpose = (m: readonly (readonly Scalar[])[]): Scalar[][] => m[0].map((_, j) => m.map((row) => row[j]));

export function cross(a: readonly Scalar[], b: readonly Scalar[]): Vec3 {
  return [sub(mul(a[1], b[2]), mul(a[2], b[1])), sub(mul(a[2], b[0]), mul(a[0], b[2])), sub(mul(a[0], b[1]), mul(a[1], b[0]))];
}

/** The rotation about a unit axis by angle q (Rodrigues). */
function axisRotation(axis: readonly number[], q: Scalar): Mat3 {
  const c = cos(q);
  const s = sin(q);
  const t = sub(1, c);
  const [x, y, z] = axis;
  return [
    [add(c, mul(t, x * x)), sub(mul(t, x * y), mul(s, z)), add(mul(t, x * z), mul(s, y))],
    [add(mul(t, x * y), mul(s, z)), add(c, mul(t, y * y)), sub(mul(t, y * z), mul(s, x))],
    [sub(mul(t, x * z), mul(s, y)), add(mul(t, y * z), mul(s, x)), add(c, mul(t, z * z))],
  ];
}

/** URDF's roll-pitch-yaw: R = Rz(yaw) Ry(pitch) Rx(roll). */
export function rpyRotation([r, p, y]: readonly number[]): number[][] {
  const [cr, sr, cp, sp, cy, sy] = [Math.cos(r), Math.sin(r), Math.cos(p), Math.sin(p), Math.cos(y), Math.sin(y)];
  const R = [
    [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
    [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
    [-sp, cp * sr, cp * cr],
  ];
  // quarter turns are exact: cos(pi/2) = 6e-17 would otherwise keep every zero of the spatial algebra in the graph
  return R.map((row) => row.map(snapUnit));
}

function snapUnit(v: number): number {
  if (Math.abs(v) < 1e-12) return 0;
  if (Math.abs(Math.abs(v) - 1) < 1e-12) return Math.sign(v);
  return v;
}

/** The child frame in the parent's: orientation R (child axes in parent coordinates) and origin p. */
function jointPlacement(b: Body, q: Scalar): { R: Scalar[][]; p: Vec3 } {
  if (b.joint === 'revolute') return { R: matMul(b.originRotation, axisRotation(b.axis, q)), p: vec(b.originPosition) };
  const p = b.joint === 'prismatic' ? vec(b.originPosition.map((o, i) => add(o, mul(q, matVec(b.originRotation, b.axis)[i])))) : vec(b.originPosition);
  return { R: b.originRotation.map((r) => [...r]), p };
}

/** Plücker transform parent -> child as a 6x6 matrix: [[E, 0], [-E r×, E]], E = R^T. */
function plucker(R: readonly (readonly Scalar[])[], p: Vec3): Mat6 {
  const E = transpose(R);
  const rx: Scalar[][] = [[0, neg(p[2]), p[1]], [p[2], 0, neg(p[0])], [neg(p[1]), p[0], 0]];
  const lower = matMul(E, rx).map((row) => row.map(neg));
  return [
    ...E.map((row) => [...row, 0, 0, 0]),
    ...lower.map((row, i) => [...row, ...E[i]]),
  ];
}

/** v ×m u (motion cross product) */
function crossMotion(v: Vec6, u: Vec6): Vec6 {
  const w = v.slice(0, 3);
  const vl = v.slice(3);
  return [...cross(w, u.slice(0, 3)), ...cross(w, u.slice(3)).map((x, i) => add(x, cross(vl, u.slice(0, 3))[i]))];
}

/** v ×f f (force cross product) */
function crossForce(v: Vec6, f: Vec6): Vec6 {
  const w = v.slice(0, 3);
  const vl = v.slice(3);
  return [...cross(w, f.slice(0, 3)).map((x, i) => add(x, cross(vl, f.slice(3))[i])), ...cross(w, f.slice(3))];
}

const addVec = (a: readonly Scalar[], b: readonly Scalar[]) => a.map((x, i) => add(x, b[i]));
const dot = (a: readonly Scalar[], b: readonly Scalar[]) => a.reduce<Scalar>((s, x, i) => add(s, mul(x, b[i])), 0);

/** The motion subspace of a one-coordinate joint, in the child frame. */
function motionSubspace(b: Body): Vec6 {
  return b.joint === 'revolute' ? [...b.axis, 0, 0, 0] : [0, 0, 0, ...b.axis];
}

/**
 * Spatial inertia about a body frame's origin, from a mass, the centre of
 * mass c and the rotational inertia about c (both in the body frame):
 * [[Ic + m c× c×^T, m c×], [m c×^T, m 1]].
 */
export function spatialInertia(mass: Scalar, com: readonly number[], inertiaAtCom: readonly (readonly Scalar[])[]): Mat6 {
  const cx = [[0, -com[2], com[1]], [com[2], 0, -com[0]], [-com[1], com[0], 0]];
  const cxcxT = cx.map((row) => cx.map((_, j) => row.reduce((s, v, k) => s + v * cx[j][k], 0)));
  return [
    ...[0, 1, 2].map((i) => [...[0, 1, 2].map((j) => add(inertiaAtCom[i][j], mul(mass, cxcxT[i][j]))), ...[0, 1, 2].map((j) => mul(mass, cx[i][j]))]),
    ...[0, 1, 2].map((i) => [...[0, 1, 2].map((j) => mul(mass, cx[j][i])), ...[0, 1, 2].map((j) => (i === j ? mass : 0))]),
  ];
}

/**
 * Joint accelerations ddq = ABA(q, dq, tau) for a tree of bodies (parents
 * before children), under gravity (a world vector, e.g. [0, 0, -9.81]).
 */
export function forwardDynamics(bodies: readonly Body[], q: readonly Scalar[], dq: readonly Scalar[], tau: readonly Scalar[], gravity: readonly number[]): Scalar[] {
  const n = bodies.length;
  const X: Mat6[] = [];
  const S: Vec6[] = [];
  const v: Vec6[] = [];
  const c: Vec6[] = [];
  const IA: Mat6[] = [];
  const pA: Vec6[] = [];
  for (let i = 0; i < n; i++) {
    const b = bodies[i];
    const qi = b.coordinate >= 0 ? q[b.coordinate] : 0;
    const { R, p } = jointPlacement(b, qi);
    X[i] = plucker(R, p);
    const vParent: Vec6 = b.parent >= 0 ? matVec(X[i], v[b.parent]) : [0, 0, 0, 0, 0, 0];
    if (b.coordinate >= 0) {
      S[i] = motionSubspace(b);
      const vJ = S[i].map((s) => mul(s, dq[b.coordinate]));
      v[i] = addVec(vParent, vJ);
      c[i] = crossMotion(v[i], vJ);
    } else {
      S[i] = [];
      v[i] = vParent;
      c[i] = [0, 0, 0, 0, 0, 0];
    }
    IA[i] = b.inertia.map((row) => [...row]);
    pA[i] = crossForce(v[i], matVec(b.inertia, v[i]));
  }
  const U: Vec6[] = [];
  const D: Scalar[] = [];
  const u: Scalar[] = [];
  for (let i = n - 1; i >= 0; i--) {
    const b = bodies[i];
    let Ia: Mat6;
    let pa: Vec6;
    if (b.coordinate >= 0) {
      U[i] = matVec(IA[i], S[i]);
      D[i] = dot(S[i], U[i]);
      u[i] = sub(tau[b.coordinate], dot(S[i], pA[i]));
      if (b.parent < 0) continue;
      Ia = IA[i].map((row, r) => row.map((x, k) => sub(x, div(mul(U[i][r], U[i][k]), D[i]))));
      pa = addVec(addVec(pA[i], matVec(Ia, c[i])), U[i].map((x) => div(mul(x, u[i]), D[i])));
    } else {
      if (b.parent < 0) continue;
      Ia = IA[i];
      pa = addVec(pA[i], matVec(Ia, c[i]));
    }
    const Xt = transpose(X[i]);
    IA[b.parent] = IA[b.parent].map((row, r) => addVec(row, matMul(matMul(Xt, Ia), X[i])[r]));
    pA[b.parent] = addVec(pA[b.parent], matVec(Xt, pa));
  }
  const ddq: Scalar[] = new Array(q.length).fill(0);
  // the fixed base accelerates upwards against gravity: a_0 = -g
  const a0: Vec6 = [0, 0, 0, ...gravity.map((g) => -g)];
  const a: Vec6[] = [];
  for (let i = 0; i < n; i++) {
    const b = bodies[i];
    const aPrime = addVec(matVec(X[i], b.parent >= 0 ? a[b.parent] : a0), c[i]);
    if (b.coordinate >= 0) {
      const qdd = div(sub(u[i], dot(U[i], aPrime)), D[i]);
      ddq[b.coordinate] = qdd;
      a[i] = addVec(aPrime, S[i].map((s) => mul(s, qdd)));
    } else {
      a[i] = aPrime;
    }
  }
  return ddq;
}

/** The world pose of every body frame at q. */
export function forwardKinematics(bodies: readonly Body[], q: readonly Scalar[]): Pose[] {
  const poses: Pose[] = [];
  for (const b of bodies) {
    const { R, p } = jointPlacement(b, b.coordinate >= 0 ? q[b.coordinate] : 0);
    if (b.parent < 0) {
      poses.push({ rotation: R.map(vec) as Mat3, position: p });
    } else {
      const parent = poses[b.parent];
      poses.push({
        rotation: matMul(parent.rotation, R).map(vec) as Mat3,
        position: vec(addVec(parent.position, matVec(parent.rotation, p))),
      });
    }
  }
  return poses;
}
