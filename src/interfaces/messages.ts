import type { PlanDiagnostics } from '../planners/receding.js';
import type { Model, SensorInterface } from '../models/model.js';
import { physicalNames, toPhysical } from '../models/model.js';
import { TYPES } from './definitions.js';
import { InputError } from '../input-error.js';

/**
 * The messages both doors speak, as plain objects with ROS field names, and
 * the conversions between them and the controller's vectors. The embedded
 * run logs exactly these messages; the ROS node publishes and takes them.
 * Decoders never throw: a malformed message gives a reason naming what was
 * wrong, and the controller keeps running.
 */

export interface Time { sec: number; nanosec: number }
export interface Header { stamp: Time; frame_id: string }

export interface JointStateMsg { header: Header; name: string[]; position: number[]; velocity: number[]; effort: number[] }
export interface PoseStampedMsg {
  header: Header;
  pose: { position: { x: number; y: number; z: number }; orientation: { x: number; y: number; z: number; w: number } };
}
export type StateMsg = JointStateMsg | PoseStampedMsg;

/** std_msgs/Float64MultiArray: what a ros2_control forward command controller takes. */
export interface CommandMsg {
  layout: { dim: { label: string; size: number; stride: number }[]; data_offset: number };
  data: number[];
}

export interface PlanMsg {
  header: Header;
  planner: string;
  times: number[];
  state_names: string[];
  states: number[];
  control_names: string[];
  controls: number[];
  cost: number;
  gains: number[];
  gains_status: string;
}

export interface StateEstimateMsg {
  header: Header;
  names: string[];
  values: number[];
  model_state_names: string[];
  covariance: number[];
  mahalanobis2: number;
}

export function stateEstimateMessage(model: Model, stampS: number, state: readonly number[], covariance: readonly (readonly number[])[], mahalanobis2: number, frameId = ''): StateEstimateMsg {
  return {
    header: header(stampS, frameId),
    names: [...physicalNames(model)],
    values: toPhysical(model, state),
    model_state_names: [...model.def.stateNames],
    covariance: covariance.flat(),
    mahalanobis2,
  };
}

export const TICK_MODES = ['ok', 'late', 'fallback', 'stale', 'waiting'] as const;

export interface StatusMsg {
  header: Header;
  planner: string;
  mode: number;
  mode_name: string;
  reason: string;
  solve_ms: number;
  budget_ms: number;
  period_ms: number;
  cost: number;
  ticks: number;
  deadline_misses: number;
  planner_errors: number;
  rejected_states: number;
  rejected_goals: number;
  stale_ticks: number;
  last_rejection: string;
  info_names: string[];
  info_values: number[];
  series: { name: string; values: number[] }[];
}

export function toTime(timeS: number): Time {
  const sec = Math.floor(timeS);
  let nanosec = Math.round((timeS - sec) * 1e9);
  // rounding can reach a whole second
  if (nanosec >= 1e9) return { sec: sec + 1, nanosec: nanosec - 1e9 };
  if (nanosec < 0) nanosec = 0;
  return { sec, nanosec };
}

export function fromTime(t: unknown): number | undefined {
  const time = t as Partial<Time> | null;
  if (!time || typeof time !== 'object') return undefined;
  const sec = Number(time.sec);
  const nanosec = Number(time.nanosec);
  if (!Number.isFinite(sec) || !Number.isFinite(nanosec) || nanosec < 0 || nanosec >= 1e9) return undefined;
  return sec + nanosec * 1e-9;
}

const header = (timeS: number, frameId = ''): Header => ({ stamp: toTime(timeS), frame_id: frameId });

/** A decoded state or goal: physical values and the stamp in seconds. */
export type Decoded = { ok: true; values: number[]; stampS: number } | { ok: false; reason: string };

/**
 * The physical state as a standard message: sensor_msgs/JointState (joints'
 * positions then velocities, names and order as configured) or
 * geometry_msgs/PoseStamped ([x, y, yaw] of a planar body).
 */
export class StateCodec {
  readonly type: string;
  readonly sensor: SensorInterface;
  readonly jointNames: readonly string[];

  constructor(readonly model: Model, jointNames: readonly string[] = []) {
    const sensor = model.def.sensor;
    if (!sensor) throw new Error(`system '${model.name}' has no state to measure, so it cannot run as a controller`);
    this.sensor = sensor;
    this.type = sensor.kind === 'joints' ? TYPES.jointState : TYPES.poseStamped;
    const own = sensor.kind === 'joints' ? sensor.joints : [];
    if (jointNames.length && sensor.kind !== 'joints') throw new Error(`jointNames: system '${model.name}' takes a pose (geometry_msgs/PoseStamped), not joints`);
    if (jointNames.length && jointNames.length !== own.length) {
      throw new InputError(`jointNames: system '${model.name}' has ${own.length} joint(s) (${own.join(', ')}), got ${jointNames.length} name(s): ${jointNames.join(', ')}`);
    }
    if (new Set(jointNames).size !== jointNames.length) throw new Error(`jointNames: names repeat (${jointNames.join(', ')})`);
    this.jointNames = jointNames.length ? [...jointNames] : [...own];
  }

  encode(values: readonly number[], stampS: number, frameId = ''): StateMsg {
    if (this.sensor.kind === 'joints') {
      const n = this.jointNames.length;
      return { header: header(stampS, frameId), name: [...this.jointNames], position: values.slice(0, n), velocity: values.slice(n, 2 * n), effort: [] };
    }
    const [x, y, yaw] = values;
    return {
      header: header(stampS, frameId),
      pose: { position: { x, y, z: 0 }, orientation: { x: 0, y: 0, z: Math.sin(yaw / 2), w: Math.cos(yaw / 2) } },
    };
  }

  /** Physical values from a message; `label` names it in reasons (state, goal). */
  decode(msg: unknown, label = 'state'): Decoded {
    if (!msg || typeof msg !== 'object') return { ok: false, reason: `${label}: not a message (${typeof msg})` };
    const m = msg as Record<string, unknown>;
    const stampS = fromTime((m.header as Header | undefined)?.stamp);
    if (stampS === undefined) return { ok: false, reason: `${label}: header.stamp is missing or malformed` };
    const values = this.sensor.kind === 'joints' ? this.decodeJoints(m, label) : decodePose(m, label);
    return typeof values === 'string' ? { ok: false, reason: values } : { ok: true, values, stampS };
  }

  private decodeJoints(m: Record<string, unknown>, label: string): number[] | string {
    const names = arrayOf(m.name);
    const expected = this.jointNames;
    if (!names || names.length !== expected.length || names.some((n, i) => n !== expected[i])) {
      return `${label}: joint names [${(names ?? []).map(String).join(', ')}] do not match the configured [${expected.join(', ')}] (names and order must match)`;
    }
    const position = arrayOf(m.position);
    const velocity = arrayOf(m.velocity);
    if (!position || position.length !== expected.length) return `${label}: position has ${position?.length ?? 0} values for ${expected.length} joint(s)`;
    if (!velocity || velocity.length !== expected.length) return `${label}: velocity has ${velocity?.length ?? 0} values for ${expected.length} joint(s) (the controller needs joint velocities)`;
    const values = [...position, ...velocity];
    const bad = values.findIndex((v) => typeof v !== 'number' || !Number.isFinite(v));
    if (bad >= 0) {
      const field = bad < expected.length ? 'position' : 'velocity';
      const j = bad % expected.length;
      return `${label}: ${field} of joint '${expected[j]}' is not a finite number (${String(values[bad])})`;
    }
    return values as number[];
  }
}

function decodePose(m: Record<string, unknown>, label: string): number[] | string {
  const pose = m.pose as PoseStampedMsg['pose'] | undefined;
  const p = pose?.position;
  const q = pose?.orientation;
  if (!p || !q) return `${label}: pose.position or pose.orientation is missing`;
  const numbers = [p.x, p.y, p.z, q.x, q.y, q.z, q.w];
  const bad = numbers.findIndex((v) => typeof v !== 'number' || !Number.isFinite(v));
  if (bad >= 0) return `${label}: pose.${['position.x', 'position.y', 'position.z', 'orientation.x', 'orientation.y', 'orientation.z', 'orientation.w'][bad]} is not a finite number (${String(numbers[bad])})`;
  const norm = Math.hypot(q.x, q.y, q.z, q.w);
  if (Math.abs(norm - 1) > 0.01) return `${label}: orientation is not a unit quaternion (norm ${norm.toFixed(4)})`;
  // the yaw of the planar pose; a tilted body is not planar
  const tilt = 2 * Math.hypot(q.w * q.x + q.y * q.z, q.w * q.y - q.x * q.z) / (norm * norm);
  if (tilt > 0.05) return `${label}: orientation is tilted out of the plane (roll/pitch ${tilt.toFixed(3)}), the slider is planar`;
  const yaw = Math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z));
  return [p.x, p.y, yaw];
}

function arrayOf(v: unknown): unknown[] | undefined {
  if (Array.isArray(v)) return v;
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<unknown>);
  return undefined;
}

export function commandMessage(model: Model, control: readonly number[]): CommandMsg {
  const m = model.controlDim;
  return { layout: { dim: [{ label: model.def.controlNames.join(','), size: m, stride: m }], data_offset: 0 }, data: [...control] };
}

/** A command's data, checked for the model's size and finiteness (the simulator's input). */
export function decodeCommand(model: Model, msg: unknown): { ok: true; control: number[] } | { ok: false; reason: string } {
  const data = arrayOf((msg as CommandMsg | null)?.data);
  const m = model.controlDim;
  if (!data) return { ok: false, reason: 'command: data is missing' };
  if (data.length !== m) return { ok: false, reason: `command: ${data.length} values, ${model.name} takes ${m} (${model.def.controlNames.join(', ')})` };
  const bad = data.findIndex((v) => typeof v !== 'number' || !Number.isFinite(v));
  if (bad >= 0) return { ok: false, reason: `command: data[${bad}] is not a finite number (${String(data[bad])})` };
  return { ok: true, control: data as number[] };
}

export function planMessage(
  model: Model, planner: string, stampS: number, frameId: string,
  plan: readonly (readonly number[])[], predicted: readonly (readonly number[])[], cost: number,
  gains: { values: ArrayLike<number>; status: string } = { values: [], status: '' },
): PlanMsg {
  return {
    header: header(stampS, frameId),
    planner,
    times: predicted.map((_, k) => k * model.dtS),
    state_names: [...physicalNames(model)],
    states: predicted.flat(),
    control_names: [...model.def.controlNames],
    controls: plan.flat(),
    cost,
    gains: Array.from(gains.values),
    gains_status: gains.status,
  };
}

export interface StatusInput {
  planner: string;
  stampS: number;
  frameId?: string;
  mode: (typeof TICK_MODES)[number];
  reason: string;
  solveMs: number;
  budgetMs: number;
  periodMs: number;
  cost: number;
  counters: { ticks: number; deadlineMisses: number; plannerErrors: number; rejectedStates: number; rejectedGoals: number; staleTicks: number };
  lastRejection: string;
  info: Readonly<Record<string, number>>;
  diagnostics?: PlanDiagnostics;
}

export function statusMessage(s: StatusInput): StatusMsg {
  const c = s.counters;
  return {
    header: header(s.stampS, s.frameId),
    planner: s.planner,
    mode: TICK_MODES.indexOf(s.mode),
    mode_name: s.mode,
    reason: s.reason,
    solve_ms: s.solveMs,
    budget_ms: s.budgetMs,
    period_ms: s.periodMs,
    cost: s.cost,
    ticks: c.ticks,
    deadline_misses: c.deadlineMisses,
    planner_errors: c.plannerErrors,
    rejected_states: c.rejectedStates,
    rejected_goals: c.rejectedGoals,
    stale_ticks: c.staleTicks,
    last_rejection: s.lastRejection,
    info_names: Object.keys(s.info),
    info_values: Object.values(s.info),
    series: Object.entries(s.diagnostics?.series ?? {}).map(([name, values]) => ({ name, values })),
  };
}
