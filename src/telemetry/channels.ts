import { TYPES } from '../interfaces/definitions.js';
import type { TickResult } from '../controller/controller.js';
import type { ControllerSession } from '../run/session.js';

/** The namespace the launch files run the nodes in: the embedded run's log and live topics use the same names. */
export const NAMESPACE = '/tempered_mpc';

/** A topic's name in the namespace, e.g. `command` -> `/tempered_mpc/command`. */
export const topicOf = (name: string): string => `${NAMESPACE}/${name}`;

/**
 * How a ROS publisher or subscription keeps its messages:
 * `latest` keep-last 1, reliable (a command or true state: the newest, delivered);
 * `stream` keep-last 1, best effort (states: only the newest matters);
 * `history` keep-last 10, reliable (plans, status, estimates: every one is worth having).
 */
export type ChannelQos = 'latest' | 'stream' | 'history';

/**
 * One channel: its topic (relative to the namespace), message type, QoS,
 * who publishes it and when, and how its message is built from a tick.
 * The controller's per-tick channels carry `build`; the others are
 * published where their data arises (the simulator's state, the plant's
 * true state, the dashboard's scene).
 */
export interface Channel {
  name: string;
  /** a message type (`pkg/msg/Name`); `state` depends on the system's sensor (joint states or a pose) */
  type: string | 'sensor';
  qos: ChannelQos;
  /** who publishes it: the controller each tick, the simulator (the plant), an operator (the controller subscribes), or only the live telemetry (not a ROS topic, not logged) */
  from: 'controller' | 'simulator' | 'operator' | 'telemetry';
  /** the controller's message for this tick (undefined: none this tick) */
  build?: (session: ControllerSession, tick: TickResult) => object | undefined;
  /** building it costs work (the plan's predicted states): only for someone who listens */
  onDemand?: boolean;
  /** in the MCAP log of an embedded run */
  logged: boolean;
  doc: string;
}

/** Every channel of the package, once: the MCAP log, `run`, `bench telemetry`, the ROS nodes and the telemetry server read this table. */
export const CHANNELS: readonly Channel[] = [
  { name: 'state', type: 'sensor', qos: 'stream', from: 'simulator', logged: true, doc: 'the measured state (joint states or a pose), as the sensor publishes it' },
  { name: 'goal', type: 'sensor', qos: 'latest', from: 'operator', logged: false, doc: 'the goal the controller tracks, as a state message (the system\'s goal until one arrives)' },
  { name: 'true_state', type: 'sensor', qos: 'latest', from: 'simulator', logged: true, doc: 'the plant\'s true state (simulation only)' },
  {
    name: 'state_estimate', type: TYPES.estimate, qos: 'history', from: 'controller', logged: true, doc: 'the EKF\'s estimate, when the controller filters its states',
    build: (s) => s.estimateMessage(),
  },
  { name: 'command', type: TYPES.command, qos: 'latest', from: 'controller', logged: true, doc: 'the command applied now', build: (s, t) => s.commandMessage(t) },
  { name: 'status', type: TYPES.status, qos: 'history', from: 'controller', logged: true, doc: 'what the controller did this tick and why, with the planner\'s diagnostics', build: (s, t) => s.statusMessage(t) },
  { name: 'plan', type: TYPES.plan, qos: 'history', from: 'controller', logged: true, onDemand: true, doc: 'the plan in effect, its predicted states and feedback gains', build: (s, t) => s.planMessage(t) },
  { name: 'plan_scene', type: 'foxglove.SceneUpdate', qos: 'history', from: 'telemetry', logged: false, onDemand: true, doc: 'the plan drawn in 3D for Foxglove (systems with a sketch)', build: (s, t) => s.sceneMessage(t) },
];

/** A channel by name. */
export const channel = (name: string): Channel => {
  const c = CHANNELS.find((x) => x.name === name);
  if (!c) throw new Error(`no channel '${name}'`);
  return c;
};

/** The logged (and live) topics of a run with their types: `stateType` for the sensor's; the estimate only where there is an estimator. */
export function logTopics(stateType: string, withEstimate = false): Record<string, string> {
  return Object.fromEntries(CHANNELS.filter((c) => c.logged && (c.name !== 'state_estimate' || withEstimate)).map((c) => [topicOf(c.name), c.type === 'sensor' ? stateType : c.type]));
}

/** A tick's messages, each built at most once whoever asks (ROS, the log, the live telemetry); undefined where a channel has none this tick. */
export function tickMessages(session: ControllerSession, tick: TickResult): (c: Channel) => object | undefined {
  const built = new Map<string, object | undefined>();
  return (c) => {
    if (!built.has(c.name)) built.set(c.name, c.build?.(session, tick));
    return built.get(c.name);
  };
}

/** The controller's channels published each tick, in order. */
export const TICK_CHANNELS = CHANNELS.filter((c) => c.from === 'controller');

/** The scene channel's topic (Foxglove only). */
export const SCENE_TOPIC = topicOf(channel('plan_scene').name);
