import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { parse as parseYaml } from 'yaml';
import { add, clamp, cos, euler, mul, rk4, Scalar, semiImplicitEuler, solveSpd, sq, sub, sum, tanh } from '../expr/expr.js';
import { InputError } from '../input-error.js';
import { num, NumberParam } from '../params.js';
import { defineModel, ModelDefinition, ModelTuning, ParamValues } from './model.js';
import { Body, forwardDynamics, forwardKinematics, rpyRotation, spatialInertia } from './rigid-body.js';

/*
 * A robot from its URDF (`system: robot.urdf`) and a small YAML beside it
 * (`robot.yaml`: which joints have motors, the task, the integrator): the
 * joint tree becomes forward dynamics in the expression graph (rigid-body.ts,
 * the Articulated-Body Algorithm), so kernels, gradients, Jacobians and
 * forward kinematics come from it like from any model. What the URDF format
 * allows but this cannot simulate is refused with the element named.
 */

const JOINT_TYPES = ['revolute', 'continuous', 'prismatic', 'fixed'] as const;
type UrdfJointType = (typeof JOINT_TYPES)[number];

interface UrdfInertial {
  mass: number;
  com: number[];
  /** rotational inertia about the centre of mass, in the link frame */
  inertia: number[][];
}

interface UrdfLink {
  name: string;
  inertial?: UrdfInertial;
}

interface UrdfJoint {
  name: string;
  type: UrdfJointType;
  parent: string;
  child: string;
  originXyz: number[];
  originRpy: number[];
  axis: number[];
  damping: number;
  friction: number;
  effort?: number;
}

export interface UrdfRobot {
  name: string;
  links: Map<string, UrdfLink>;
  joints: UrdfJoint[];
}

type XmlNode = Record<string, unknown>;

/** Parses URDF text into links and joints, refusing what cannot be simulated (the element named). */
export function parseUrdf(text: string, file: string): UrdfRobot {
  const refuse = (why: string) => new InputError(`URDF ${file}: ${why}`);
  const valid = XMLValidator.validate(text);
  if (valid !== true) throw refuse(`not well-formed XML at line ${valid.err.line}, column ${valid.err.col}: ${valid.err.msg}`);
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '',
    parseAttributeValue: false,
    isArray: (_name, jpath) => jpath === 'robot.link' || jpath === 'robot.joint',
  });
  const doc = parser.parse(text) as { robot?: XmlNode };
  const robot = doc.robot;
  if (!robot || typeof robot !== 'object') throw refuse('no <robot> element');
  const numbers = (where: string, attr: unknown, count: number, fallback?: number[]): number[] => {
    if (attr === undefined) {
      if (fallback) return fallback;
      throw refuse(`${where} is missing`);
    }
    const values = String(attr).trim().split(/\s+/).map(Number);
    if (values.length !== count || values.some((v) => !Number.isFinite(v))) throw refuse(`${where} must be ${count} finite numbers, got '${String(attr)}'`);
    return values;
  };
  const scalar = (where: string, attr: unknown, fallback?: number): number => numbers(where, attr, 1, fallback === undefined ? undefined : [fallback])[0];
  const links = new Map<string, UrdfLink>();
  for (const l of (robot.link as XmlNode[] | undefined) ?? []) {
    const name = String(l.name ?? '');
    if (!name) throw refuse('a <link> without a name');
    if (links.has(name)) throw refuse(`<link name="${name}"> appears twice`);
    const inertial = l.inertial as XmlNode | undefined;
    let parsed: UrdfInertial | undefined;
    if (inertial !== undefined) {
      const where = `<link name="${name}"><inertial>`;
      const mass = scalar(`${where}<mass value>`, (inertial.mass as XmlNode | undefined)?.value);
      if (mass < 0) throw refuse(`${where}<mass value> must be >= 0, got ${mass}`);
      const origin = (inertial.origin as XmlNode | undefined) ?? {};
      const com = numbers(`${where}<origin xyz>`, origin.xyz, 3, [0, 0, 0]);
      const rpy = numbers(`${where}<origin rpy>`, origin.rpy, 3, [0, 0, 0]);
      const i = inertial.inertia as XmlNode | undefined;
      if (!i) throw refuse(`${where}<inertia> is missing`);
      const [ixx, ixy, ixz, iyy, iyz, izz] = ['ixx', 'ixy', 'ixz', 'iyy', 'iyz', 'izz'].map((k) => scalar(`${where}<inertia ${k}>`, i[k], k[1] === k[2] ? undefined : 0));
      const local = [[ixx, ixy, ixz], [ixy, iyy, iyz], [ixz, iyz, izz]];
      // the inertia frame may be rotated against the link frame: R I R^T
      const R = rpyRotation(rpy);
      const inertia = R.map((_, a) => R.map((__, b) => [0, 1, 2].reduce((s, k) => s + R[a][k] * [0, 1, 2].reduce((t, m) => t + local[k][m] * R[b][m], 0), 0)));
      parsed = { mass, com, inertia };
    }
    links.set(name, { name, inertial: parsed });
  }
  if (!links.size) throw refuse('no <link> elements');
  const joints: UrdfJoint[] = [];
  for (const j of (robot.joint as XmlNode[] | undefined) ?? []) {
    const name = String(j.name ?? '');
    if (!name) throw refuse('a <joint> without a name');
    const where = `<joint name="${name}">`;
    const type = String(j.type ?? '');
    if (!(JOINT_TYPES as readonly string[]).includes(type)) throw refuse(`${where} has type '${type}': only ${JOINT_TYPES.join(', ')} joints are simulated`);
    const parent = String((j.parent as XmlNode | undefined)?.link ?? '');
    const child = String((j.child as XmlNode | undefined)?.link ?? '');
    for (const [role, link] of [['parent', parent], ['child', child]] as const) {
      if (!link) throw refuse(`${where}<${role} link> is missing`);
      if (!links.has(link)) throw refuse(`${where}<${role} link="${link}"> names no <link>`);
    }
    const origin = (j.origin as XmlNode | undefined) ?? {};
    const axisRaw = numbers(`${where}<axis xyz>`, (j.axis as XmlNode | undefined)?.xyz, 3, [1, 0, 0]);
    const norm = Math.hypot(...axisRaw);
    if (type !== 'fixed' && !(norm > 1e-12)) throw refuse(`${where}<axis xyz> is the zero vector`);
    const dynamics = (j.dynamics as XmlNode | undefined) ?? {};
    const limit = j.limit as XmlNode | undefined;
    const damping = scalar(`${where}<dynamics damping>`, dynamics.damping, 0);
    const friction = scalar(`${where}<dynamics friction>`, dynamics.friction, 0);
    if (damping < 0 || friction < 0) throw refuse(`${where}<dynamics> damping and friction must be >= 0`);
    joints.push({
      name, type: type as UrdfJointType, parent, child,
      originXyz: numbers(`${where}<origin xyz>`, origin.xyz, 3, [0, 0, 0]),
      originRpy: numbers(`${where}<origin rpy>`, origin.rpy, 3, [0, 0, 0]),
      axis: axisRaw.map((a) => a / (norm || 1)),
      damping, friction,
      effort: limit?.effort === undefined ? undefined : scalar(`${where}<limit effort>`, limit.effort),
    });
  }
  return { name: String(robot.name ?? basename(file, '.urdf')), links, joints };
}

/** The tree in depth-first order from its one root, refusing loops and a forest. */
function orderTree(robot: UrdfRobot, refuse: (why: string) => InputError): { root: string; joints: UrdfJoint[] } {
  const parentJoint = new Map<string, UrdfJoint>();
  for (const j of robot.joints) {
    const other = parentJoint.get(j.child);
    if (other) throw refuse(`<link name="${j.child}"> is the child of both <joint name="${other.name}"> and <joint name="${j.name}">: a loop (URDF describes trees)`);
    parentJoint.set(j.child, j);
  }
  const roots = [...robot.links.keys()].filter((l) => !parentJoint.has(l));
  if (roots.length === 0) throw refuse('every link is some joint\'s child: the joints form a loop');
  if (roots.length > 1) throw refuse(`links ${roots.map((r) => `'${r}'`).join(' and ')} are both roots: the robot is not one connected tree`);
  const ordered: UrdfJoint[] = [];
  const visit = (link: string) => {
    for (const j of robot.joints) {
      if (j.parent !== link) continue;
      ordered.push(j);
      visit(j.child);
    }
  };
  visit(roots[0]);
  if (ordered.length !== robot.joints.length) {
    const stray = robot.joints.find((j) => !ordered.includes(j))!;
    throw refuse(`<joint name="${stray.name}"> is on a loop not reached from the root '${roots[0]}'`);
  }
  return { root: roots[0], joints: ordered };
}

/** The YAML beside a URDF: what the URDF does not say (motors, task, integration). */
export interface UrdfTask {
  name?: string;
  actuated: string[];
  effort: Record<string, number>;
  integrator: 'rk4' | 'euler' | 'semi-implicit-euler';
  dtS: number;
  horizon: number;
  gravity: number[];
  x0: Record<string, number>;
  goal: { joints?: Record<string, number>; endEffector?: { link: string; point: number[]; position: number[] } };
  cost: { wPosition: number; wVelocity: number; wControl: number; wEndEffector: number; terminalScale: number };
  goalRegion?: { positionTolerance: number; velocityTolerance: number; holdS: number };
  tuning?: ModelTuning;
}

const TASK_KEYS = ['name', 'actuated', 'effort', 'integrator', 'dtS', 'horizon', 'gravity', 'x0', 'goal', 'cost', 'goalRegion', 'tuning'];
const COST_DEFAULTS = { wPosition: 1, wVelocity: 0.01, wControl: 0.01, wEndEffector: 10, terminalScale: 10 };

function readTask(path: string, refuse: (why: string) => InputError): UrdfTask {
  const where = basename(path);
  const task = (() => {
    try {
      return parseYaml(readFileSync(path, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw refuse(`${where}: not valid YAML: ${String((e as Error).message).split('\n')[0]}`);
    }
  })();
  if (!task || typeof task !== 'object' || Array.isArray(task)) throw refuse(`${where} must be a map of settings`);
  const unknown = Object.keys(task).find((k) => !TASK_KEYS.includes(k));
  if (unknown) throw refuse(`${where}: unknown key '${unknown}' (known: ${TASK_KEYS.join(', ')})`);
  const finite = (key: string, v: unknown, lo = -Infinity): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo) throw refuse(`${where}: ${key} must be a finite number${lo > -Infinity ? ` >= ${lo}` : ''}, got ${JSON.stringify(v)}`);
    return v;
  };
  const map = (key: string, v: unknown): Record<string, number> => {
    if (v === undefined) return {};
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw refuse(`${where}: ${key} must be a map of joint name to number`);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, finite(`${key}.${k}`, x)]));
  };
  if (!Array.isArray(task.actuated) || task.actuated.some((a) => typeof a !== 'string')) throw refuse(`${where}: actuated must be a list of joint names (the joints with a motor)`);
  const integrator = task.integrator ?? 'rk4';
  if (integrator !== 'rk4' && integrator !== 'euler' && integrator !== 'semi-implicit-euler') throw refuse(`${where}: integrator must be rk4, euler or semi-implicit-euler, got ${JSON.stringify(integrator)}`);
  const goal = (task.goal ?? {}) as Record<string, unknown>;
  let endEffector: UrdfTask['goal']['endEffector'];
  if (goal.endEffector !== undefined) {
    const ee = goal.endEffector as Record<string, unknown>;
    const vec3 = (key: string, v: unknown, fallback?: number[]) => {
      if (v === undefined && fallback) return fallback;
      if (!Array.isArray(v) || v.length !== 3) throw refuse(`${where}: goal.endEffector.${key} must be [x, y, z]`);
      return v.map((x, i) => finite(`goal.endEffector.${key}[${i}]`, x));
    };
    if (typeof ee?.link !== 'string') throw refuse(`${where}: goal.endEffector.link must name a link`);
    endEffector = { link: ee.link, point: vec3('point', ee.point, [0, 0, 0]), position: vec3('position', ee.position) };
  }
  const cost = { ...COST_DEFAULTS, ...Object.fromEntries(Object.entries((task.cost ?? {}) as Record<string, unknown>).map(([k, v]) => {
    if (!(k in COST_DEFAULTS)) throw refuse(`${where}: unknown cost key '${k}' (known: ${Object.keys(COST_DEFAULTS).join(', ')})`);
    return [k, finite(`cost.${k}`, v, 0)];
  })) };
  const region = task.goalRegion as Record<string, unknown> | undefined;
  const gravity = task.gravity ?? [0, 0, -9.81];
  if (!Array.isArray(gravity) || gravity.length !== 3) throw refuse(`${where}: gravity must be [x, y, z] in m/s^2`);
  return {
    name: task.name === undefined ? undefined : String(task.name),
    actuated: task.actuated as string[],
    effort: map('effort', task.effort),
    integrator,
    dtS: finite('dtS', task.dtS ?? 0.02, 1e-6),
    horizon: finite('horizon', task.horizon ?? 50, 1),
    gravity: gravity.map((g, i) => finite(`gravity[${i}]`, g)),
    x0: map('x0', task.x0),
    goal: { joints: goal.joints === undefined ? undefined : map('goal.joints', goal.joints), endEffector },
    cost,
    goalRegion: region === undefined ? undefined : {
      positionTolerance: finite('goalRegion.positionTolerance', region.positionTolerance ?? 0.1, 0),
      velocityTolerance: finite('goalRegion.velocityTolerance', region.velocityTolerance ?? 1, 0),
      holdS: finite('goalRegion.holdS', region.holdS ?? 1, 0),
    },
    tuning: task.tuning as ModelTuning | undefined,
  };
}

/** Where the smooth Coulomb friction f tanh(dq / v) is within 1% of f sign(dq) [rad/s or m/s]. */
const FRICTION_SMOOTHING = 0.01;

/**
 * The model of a URDF with its task YAML. Parameters: the task's cost
 * weights, `m_LINK` for every link with mass (its mass; its rotational
 * inertia scales with it, so `sim.massScale` and identification act on
 * whole links), `b_JOINT` for every moving joint's viscous damping, the
 * end-effector goal (`goalX/Y/Z`), dtS and horizon.
 */
export function urdfModel(urdfPath: string): ModelDefinition {
  const refuse = (why: string) => new InputError(`URDF ${urdfPath}: ${why}`);
  if (!existsSync(urdfPath)) throw refuse('no such file');
  const robot = parseUrdf(readFileSync(urdfPath, 'utf8'), urdfPath);
  const taskPath = join(dirname(urdfPath), `${basename(urdfPath, '.urdf')}.yaml`);
  if (!existsSync(taskPath)) throw refuse(`needs its task file beside it, ${taskPath} (actuated joints, dtS, goal: docs/your-robot.md)`);
  const task = readTask(taskPath, refuse);
  const { joints } = orderTree(robot, refuse);
  const moving = joints.filter((j) => j.type !== 'fixed');
  const coordinate = new Map(moving.map((j, k) => [j.name, k]));
  const nq = moving.length;
  if (nq === 0) throw refuse('no joint moves (every joint is fixed): nothing to control');
  for (const j of moving) {
    const link = robot.links.get(j.child)!;
    if (!link.inertial) throw refuse(`<link name="${link.name}"> has no <inertial>, but <joint name="${j.name}"> moves it: its dynamics need a mass and inertia`);
  }
  for (const a of task.actuated) {
    const j = joints.find((x) => x.name === a);
    if (!j) throw refuse(`task: actuated joint '${a}' is not a joint of the URDF (joints: ${joints.map((x) => x.name).join(', ')})`);
    if (j.type === 'fixed') throw refuse(`task: actuated joint '${a}' is fixed`);
    if (!(robot.links.get(j.child)!.inertial!.mass > 0)) throw refuse(`<link name="${j.child}"> has zero mass, but <joint name="${a}"> that moves it is actuated`);
  }
  if (!task.actuated.length) throw refuse('task: actuated names no joint: nothing to control');
  const effort = task.actuated.map((a) => {
    const e = task.effort[a] ?? joints.find((x) => x.name === a)!.effort;
    if (e === undefined || !(e > 0)) throw refuse(`<joint name="${a}"> is actuated but has no <limit effort> > 0 (or give task effort.${a})`);
    return e;
  });
  for (const [section, names] of [['x0', Object.keys(task.x0)], ['goal.joints', Object.keys(task.goal.joints ?? {})], ['effort', Object.keys(task.effort)]] as const) {
    const bad = names.find((n) => !coordinate.has(n));
    if (bad) throw refuse(`task: ${section} names '${bad}', which is no moving joint (moving: ${moving.map((j) => j.name).join(', ')})`);
  }
  const ee = task.goal.endEffector;
  if (ee && !robot.links.has(ee.link)) throw refuse(`task: goal.endEffector.link '${ee.link}' names no <link>`);
  if (!ee && !task.goal.joints) throw refuse('task: goal needs joints (a position per joint) or endEffector (link and position)');

  const massLinks = [...robot.links.values()].filter((l) => (l.inertial?.mass ?? 0) > 0);
  const paramName = (prefix: string, name: string) => `${prefix}_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  const params: Record<string, NumberParam> = {};
  for (const l of massLinks) params[paramName('m', l.name)] = num(l.inertial!.mass, `link ${l.name} mass [kg] (its inertia scales with it)`, { min: 1e-9 });
  for (const j of moving) params[paramName('b', j.name)] = num(j.damping, `joint ${j.name} viscous damping [N m s or N s/m]`, { min: 0 });
  params.wPosition = num(task.cost.wPosition, 'weight on the joint position error', { min: 0 });
  params.wVelocity = num(task.cost.wVelocity, 'weight on the squared joint rates', { min: 0 });
  params.wControl = num(task.cost.wControl, 'weight on u^2 per actuated joint', { min: 0 });
  if (ee) {
    params.wEndEffector = num(task.cost.wEndEffector, `weight on the squared distance of ${ee.link}'s point from the goal [1/m^2]`, { min: 0 });
    ['X', 'Y', 'Z'].forEach((axis, i) => (params[`goal${axis}`] = num(ee.position[i], `end-effector goal ${axis.toLowerCase()} in the base frame [m]`)));
  }
  params.terminalScale = num(task.cost.terminalScale, 'terminal weight relative to the stage state weights', { min: 0 });
  params.dtS = num(task.dtS, 'time step [s]', { min: 1e-6 });
  params.horizon = num(task.horizon, 'planning horizon [steps]', { min: 1, max: 10000, integer: true });

  const bodiesFor = (p: ParamValues<string>): Body[] => {
    const index = new Map<string, number>();
    return joints.map((j, i) => {
      index.set(j.child, i);
      const link = robot.links.get(j.child)!;
      const inertial = link.inertial;
      const scale = inertial && inertial.mass > 0 ? p[paramName('m', link.name)] / inertial.mass : 1;
      return {
        name: j.child,
        parent: index.get(j.parent) ?? -1,
        joint: j.type === 'fixed' ? 'fixed' : j.type === 'prismatic' ? 'prismatic' : 'revolute',
        originRotation: rpyRotation(j.originRpy),
        originPosition: j.originXyz,
        axis: j.axis,
        coordinate: coordinate.get(j.name) ?? -1,
        inertia: inertial ? spatialInertia(inertial.mass * scale, inertial.com, inertial.inertia.map((r) => r.map((v) => v * scale))) : spatialInertia(0, [0, 0, 0], [[0, 0, 0], [0, 0, 0], [0, 0, 0]]),
      } satisfies Body;
    });
  };
  const angular = moving.map((j) => j.type !== 'prismatic');
  const wraps = moving.map((j) => j.type === 'continuous');
  const actuatedIndex = task.actuated.map((a) => coordinate.get(a)!);
  const derivative = (x: Scalar[], u: Scalar[], p: ParamValues<string>): Scalar[] => {
    const q = x.slice(0, nq);
    const dq = x.slice(nq);
    const tau: Scalar[] = moving.map((j, k) => {
      const viscous = mul(p[paramName('b', j.name)], dq[k]);
      const coulomb = j.friction > 0 ? mul(j.friction, tanh(mul(1 / FRICTION_SMOOTHING, dq[k]))) : 0;
      return sub(0, add(viscous, coulomb));
    });
    actuatedIndex.forEach((k, a) => (tau[k] = add(tau[k], mul(effort[a], clamp(u[a], -1, 1)))));
    return [...dq, ...forwardDynamics(bodiesFor(p), q, dq, tau, task.gravity)];
  };
  const endEffector = (x: readonly Scalar[], p: ParamValues<string>): Scalar[] => {
    const bodies = bodiesFor(p);
    const poses = forwardKinematics(bodies, x.slice(0, nq));
    const i = bodies.findIndex((b) => b.name === ee!.link);
    // the root link is the base frame itself
    const pose = i < 0 ? { rotation: [[1, 0, 0], [0, 1, 0], [0, 0, 1]], position: [0, 0, 0] } : poses[i];
    return [0, 1, 2].map((r) => add(pose.position[r], sum(pose.rotation[r].map((v, c) => mul(v, ee!.point[c])))));
  };
  const stateCost = (x: Scalar[], ref: Scalar[], p: ParamValues<string>): Scalar => {
    let c: Scalar = 0;
    for (let k = 0; k < nq; k++) {
      if (!ee) c = add(c, mul(p.wPosition, wraps[k] ? mul(2, sub(1, cos(sub(x[k], ref[k])))) : sq(sub(x[k], ref[k]))));
      c = add(c, mul(p.wVelocity, sq(sub(x[nq + k], ref[nq + k]))));
    }
    if (ee) {
      const at = endEffector(x, p);
      c = add(c, mul(p.wEndEffector, sum(at.map((v, i) => sq(sub(v, p[`goal${'XYZ'[i]}`]))))));
    }
    return c;
  };
  const x0 = [...moving.map((j) => task.x0[j.name] ?? 0), ...moving.map(() => 0)];
  const nominal = Object.fromEntries(Object.entries(params).map(([k, d]) => [k, d.default])) as ParamValues<string>;
  // an end-effector goal's joint-space goal (the reference plots and the final error read): a posture that reaches it, found from x0
  const goalQ = ee
    ? reachingPosture((q) => endEffector([...q, ...q.map(() => 0)], nominal) as number[], x0.slice(0, nq), ee.position, refuse)
    : moving.map((j, k) => task.goal.joints?.[j.name] ?? x0[k]);
  const goal = [...goalQ, ...moving.map(() => 0)];
  const region = task.goalRegion;
  const units = (k: number, rate: boolean) => (angular[k] ? (rate ? 'rad/s' : 'rad') : rate ? 'm/s' : 'm');
  const name = task.name ?? robot.name;
  const stateNames = [...moving.map((j) => j.name), ...moving.map((j) => `${j.name}_rate`)];
  return defineModel({
    name,
    summary: `${name} from ${basename(urdfPath)}: ${nq} joint${nq > 1 ? 's' : ''} (${task.actuated.length} actuated), ABA forward dynamics, ${task.integrator}`,
    stateNames,
    physicalUnits: stateNames.map((_, i) => units(i % nq, i >= nq)),
    sensor: { kind: 'joints', joints: moving.map((j) => j.name) },
    controlNames: task.actuated,
    controlUnits: task.actuated.map(() => '× effort'),
    params: params as ModelDefinition['params'],
    x0,
    goal,
    angles: moving.filter((j) => j.type !== 'prismatic').map((j) => j.name),
    massParams: massLinks.map((l) => paramName('m', l.name)),
    tuning: task.tuning,
    controlLimits: { lower: task.actuated.map(() => -1), upper: task.actuated.map(() => 1) },
    sketch: (physical, p) => {
      // the tree's frames projected on the x-z plane (x right, z up), parents before children
      const poses = forwardKinematics(bodiesFor(p as ParamValues<string>), physical.slice(0, nq));
      return [[0, 0], ...poses.map((pose) => [pose.position[0] as number, pose.position[2] as number] as [number, number])];
    },
    goalRegion: region ? {
      doc: ee
        ? `${ee.link} within ${region.positionTolerance} m of the goal and joint rates below ${region.velocityTolerance}, held ${region.holdS} s`
        : `every joint within ${region.positionTolerance} of its goal and joint rates below ${region.velocityTolerance}, held ${region.holdS} s`,
      holdS: region.holdS,
      halfWidths: stateNames.map((_, i) => (i < nq ? (ee ? Infinity : region.positionTolerance) : region.velocityTolerance)),
      contains: (x, ref, p) => {
        const slow = x.slice(nq).every((v) => Math.abs(v) < region.velocityTolerance);
        if (ee) return slow && Math.hypot(...endEffector(x, p).map((v, i) => (v as number) - p[`goal${'XYZ'[i]}`])) < region.positionTolerance;
        return slow && x.slice(0, nq).every((q, k) => {
          const d = q - ref[k];
          return Math.abs(wraps[k] ? Math.atan2(Math.sin(d), Math.cos(d)) : d) < region.positionTolerance;
        });
      },
    } : undefined,
    step(x, u, _w, p) {
      const f = (s: Scalar[]) => derivative(s, u, p);
      if (task.integrator === 'euler') return euler(f, x, p.dtS);
      if (task.integrator === 'semi-implicit-euler') return semiImplicitEuler(f, x, p.dtS, nq);
      return rk4(f, x, p.dtS);
    },
    stageCost(x, u, _uPrev, ref, p) {
      return add(stateCost(x, ref, p), mul(p.wControl, sum(u.map(sq))));
    },
    terminalCost(x, ref, p) {
      return mul(p.terminalScale, stateCost(x, ref, p));
    },
  });
}

/**
 * A posture whose end effector is at `target`: Levenberg-Marquardt on the
 * forward kinematics (finite-difference Jacobian: it runs once, at load),
 * from `start` and, where that is singular or stuck, from a few fixed
 * perturbations of it. A target out of reach is refused with how far the
 * closest posture found stays from it.
 */
function reachingPosture(fk: (q: number[]) => number[], start: number[], target: readonly number[], refuse: (why: string) => InputError): number[] {
  const error = (at: number[]) => fk(at).map((v, i) => v - target[i]);
  const starts = [start, ...[0.3, -0.3, 0.8, -0.8].map((d) => start.map((v, k) => v + (k % 2 ? -d : d)))];
  let best = { q: start, miss: Infinity };
  for (const from of starts) {
    let q = [...from];
    let e = error(q);
    let mu = 1e-3;
    for (let iteration = 0; iteration < 300 && Math.hypot(...e) > 1e-10 && mu < 1e6; iteration++) {
      const h = 1e-7;
      // J[k][i] = d e_i / d q_k
      const J = q.map((_, k) => error(q.map((v, m) => (m === k ? v + h : v))).map((v, i) => (v - e[i]) / h));
      // (J^T J + mu I) in the 3-D task space: (J J^T + mu I) y = e, dq = -J^T y
      const A = [0, 1, 2].map((a) => [0, 1, 2].map((b) => J.reduce((sum, col) => sum + col[a] * col[b], 0) + (a === b ? mu : 0)));
      const y = solveSpd(A, e) as number[];
      const next = q.map((v, k) => v - J[k].reduce((sum, jk, i) => sum + jk * y[i], 0));
      const nextError = error(next);
      if (Math.hypot(...nextError) < Math.hypot(...e)) {
        q = next;
        e = nextError;
        mu = Math.max(1e-9, mu / 3);
      } else {
        mu *= 10;
      }
    }
    const miss = Math.hypot(...e);
    if (miss < best.miss) best = { q, miss };
    if (miss < 1e-6) break;
  }
  if (best.miss > 1e-3) throw refuse(`task: goal.endEffector.position [${target.join(', ')}] is out of reach (the closest posture found from x0 stays ${best.miss.toFixed(3)} m from it)`);
  return best.q;
}
