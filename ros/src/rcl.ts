import type { ChannelQos } from '../../src/telemetry/channels.js';
import type * as Rcl from 'rclnodejs';

/**
 * The rclnodejs module as its own declarations describe it. The nodes take
 * it as an argument: the executables pass the real library, the tests an
 * in-process stand-in (test/support/rclnodejs-standin.ts).
 */
export type Rclnodejs = typeof Rcl;
export type Node = Rcl.Node;
export type LifecycleNode = Rcl.lifecycle.LifecycleNode;
export type Parameter = Rcl.Parameter;
export type ParameterDescriptor = Rcl.ParameterDescriptor;
export type Publisher = Rcl.Publisher<never>;
export type Subscription = Rcl.Subscription;
export type Timer = Rcl.Timer;
export type QoS = Rcl.QoS;

/**
 * rclnodejs declares ParameterType and CallbackReturnCode as ambient const
 * enums: code that reads them at run time breaks under isolated-module
 * compilers, so the values are spelled here and checked against the
 * declarations by their types.
 */
export const PARAMETER = {
  NOT_SET: 0 as Rcl.ParameterType.PARAMETER_NOT_SET,
  BOOL: 1 as Rcl.ParameterType.PARAMETER_BOOL,
  INTEGER: 2 as Rcl.ParameterType.PARAMETER_INTEGER,
  DOUBLE: 3 as Rcl.ParameterType.PARAMETER_DOUBLE,
  STRING: 4 as Rcl.ParameterType.PARAMETER_STRING,
  DOUBLE_ARRAY: 8 as Rcl.ParameterType.PARAMETER_DOUBLE_ARRAY,
  STRING_ARRAY: 9 as Rcl.ParameterType.PARAMETER_STRING_ARRAY,
} as const;

export const CALLBACK = {
  SUCCESS: 97 as Rcl.lifecycle.CallbackReturnCode.SUCCESS,
  FAILURE: 98 as Rcl.lifecycle.CallbackReturnCode.FAILURE,
  ERROR: 99 as Rcl.lifecycle.CallbackReturnCode.ERROR,
} as const;

/** Loads the real rclnodejs (ESM: its default export), with a message that says what to do when it is missing. */
export async function loadRclnodejs(): Promise<Rclnodejs> {
  let mod: { default?: unknown };
  try {
    mod = (await import('rclnodejs')) as { default?: unknown };
  } catch (e) {
    throw new Error(`rclnodejs is not available (${(e as Error).message.split('\n')[0]}). Source a ROS 2 installation (Jazzy) and run \`npm run ros:install\` in the tempered-mpc folder; see the README, "On ROS 2".`);
  }
  return (mod.default ?? mod) as Rclnodejs;
}

/** A QoS of depth 1 keeping the last sample: best effort (sensor data) or reliable. */
export function keepLast1(rcl: Rclnodejs, reliable: boolean): QoS {
  const { HistoryPolicy, ReliabilityPolicy } = rcl.QoS;
  return new rcl.QoS(
    HistoryPolicy.RMW_QOS_POLICY_HISTORY_KEEP_LAST, 1,
    reliable ? ReliabilityPolicy.RMW_QOS_POLICY_RELIABILITY_RELIABLE : ReliabilityPolicy.RMW_QOS_POLICY_RELIABILITY_BEST_EFFORT,
  );
}

/** Reliable, keep last `depth`: plan and status, which loggers and bags should not lose. */
export function reliable(rcl: Rclnodejs, depth: number): QoS {
  return new rcl.QoS(rcl.QoS.HistoryPolicy.RMW_QOS_POLICY_HISTORY_KEEP_LAST, depth, rcl.QoS.ReliabilityPolicy.RMW_QOS_POLICY_RELIABILITY_RELIABLE);
}

/** A channel's QoS (src/telemetry/channels.ts) as rclnodejs takes it. */
export function channelQos(rcl: Rclnodejs, qos: ChannelQos): QoS {
  return qos === 'history' ? reliable(rcl, 10) : keepLast1(rcl, qos === 'latest');
}

/** Subscribers of a publisher: rclnodejs 2.2 has a getter where its declarations have a method. */
export function subscriberCount(publisher: Publisher): number {
  const count = (publisher as unknown as { subscriptionCount: number | (() => number) }).subscriptionCount;
  return typeof count === 'function' ? count.call(publisher) : count;
}

/** A node's clock as seconds (ROS time: simulated when use_sim_time is on). */
export function nowS(node: Node): number {
  return Number(node.now().nanoseconds) * 1e-9;
}
