import { readFileSync, statSync } from 'node:fs';
import { McapStreamReader } from '@mcap/core';
import { parse as parseMsgDefinition } from '@foxglove/rosmsg';
import { MessageReader } from '@foxglove/rosmsg2-serialization';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { InputError } from '../input-error.js';
import type { Model } from '../models/model.js';
import { physicalNames } from '../models/model.js';

/** The largest log read into memory (identify, train.track). */
const MAX_LOG_BYTES = 2 * 1024 ** 3;

/** What identification needs of a log: the measured physical states in time, and the commands applied between them. */
export interface ControlLog {
  stateTopic: string;
  commandTopic: string;
  /** state times [s] and the physical states, in the model's order */
  timesS: number[];
  states: number[][];
  /** commands in time order, each held until the next */
  commands: { timeS: number; u: number[] }[];
}

type Decode = (data: Uint8Array) => Record<string, unknown>;

/** A decoder per MCAP channel, from the file's own schemas: protobuf (a `run` log), JSON, or CDR (`ros2 bag record`). */
function decoderFor(schema: { name: string; encoding: string; data: Uint8Array } | undefined, messageEncoding: string): Decode | undefined {
  if (messageEncoding === 'json') return (d) => JSON.parse(new TextDecoder().decode(d)) as Record<string, unknown>;
  if (!schema) return undefined;
  if (messageEncoding === 'protobuf' && schema.encoding === 'protobuf') {
    const root = (protobuf.Root as unknown as { fromDescriptor(d: unknown): protobuf.Root }).fromDescriptor(descriptor.FileDescriptorSet.decode(schema.data));
    const type = root.lookupType(schema.name);
    return (d) => type.toObject(type.decode(d), { defaults: true, arrays: true, longs: Number }) as Record<string, unknown>;
  }
  if (messageEncoding === 'cdr' && schema.encoding === 'ros2msg') {
    const reader = new MessageReader(parseMsgDefinition(new TextDecoder().decode(schema.data), { ros2: true }));
    return (d) => reader.readMessage(d) as Record<string, unknown>;
  }
  return undefined;
}

const stampS = (m: Record<string, unknown>): number | undefined => {
  const stamp = (m.header as { stamp?: { sec?: number; nanosec?: number; nsec?: number } } | undefined)?.stamp;
  if (!stamp) return undefined;
  const t = Number(stamp.sec ?? 0) + Number(stamp.nanosec ?? stamp.nsec ?? 0) * 1e-9;
  return t > 0 ? t : undefined;
};

/**
 * Reads the state and command topics of an MCAP log (a `run` log, or a
 * `ros2 bag record` of the nodes' topics in MCAP): by default the topic
 * ending in `/state` (sensor_msgs/JointState, joints matched to the model's
 * by name) and the one ending in `/command` (std_msgs/Float64MultiArray).
 */
export function readControlLog(path: string, model: Model, topics: { state?: string; command?: string } = {}): ControlLog {
  const refuse = (why: string) => new InputError(`log ${path}: ${why}`);
  let stat: ReturnType<typeof statSync>;
  try {
    stat = statSync(path);
  } catch {
    throw refuse('no such file');
  }
  if (!stat.isFile()) throw refuse('not a file (an MCAP log is one file: a rosbag2 folder holds it as *.mcap)');
  const size = stat.size;
  if (size > MAX_LOG_BYTES) throw refuse(`${(size / 1024 ** 3).toFixed(1)} GiB is more than a log read into memory may be (${MAX_LOG_BYTES / 1024 ** 3} GiB): cut it with \`mcap filter\` or \`ros2 bag convert\``);
  const reader = new McapStreamReader();
  reader.append(readFileSync(path));
  const schemas = new Map<number, { name: string; encoding: string; data: Uint8Array }>();
  const channels = new Map<number, { topic: string; schemaName: string; decode?: Decode }>();
  // a message's time: its publish time where the writer sets them (a `run` log: the run's clock, so its first messages are at 0), else its log time
  const messages = new Map<string, { timeS: number; logTimeS: number; message: Record<string, unknown> }[]>();
  let publishTimesSet = false;
  try {
    for (let rec = reader.nextRecord(); rec; rec = reader.nextRecord()) {
      if (rec.type === 'Schema') schemas.set(rec.id, { name: rec.name, encoding: rec.encoding, data: rec.data });
      else if (rec.type === 'Channel') {
        const schema = schemas.get(rec.schemaId);
        channels.set(rec.id, { topic: rec.topic, schemaName: schema?.name ?? '', decode: decoderFor(schema, rec.messageEncoding) });
      } else if (rec.type === 'Message') {
        const channel = channels.get(rec.channelId);
        if (!channel?.decode) continue;
        const list = messages.get(channel.topic) ?? [];
        list.push({ timeS: Number(rec.publishTime) * 1e-9, logTimeS: Number(rec.logTime) * 1e-9, message: channel.decode(rec.data) });
        publishTimesSet ||= rec.publishTime !== 0n;
        messages.set(channel.topic, list);
      }
    }
  } catch (e) {
    throw refuse(`not a readable MCAP file: ${String((e as Error).message).split('\n')[0]}`);
  }
  if (!reader.done()) throw refuse('ends early (no MCAP footer): a log cut off while it was written; recover it with `mcap recover`');
  if (!publishTimesSet) for (const list of messages.values()) for (const entry of list) entry.timeS = entry.logTimeS;
  const topicList = () => [...new Set([...channels.values()].map((c) => c.topic))].join(', ') || 'none';
  const pick = (given: string | undefined, suffix: string, role: string) => {
    if (given !== undefined) {
      if (!messages.has(given)) throw refuse(`no messages on ${role} topic '${given}' (topics: ${topicList()})`);
      return given;
    }
    const found = [...messages.keys()].filter((t) => t === suffix || t.endsWith(`/${suffix}`));
    if (found.length !== 1) throw refuse(`${found.length ? `several ${role} topics (${found.join(', ')})` : `no ${role} topic ending in /${suffix}`}: name it with --${role}-topic (topics: ${topicList()})`);
    return found[0];
  };
  const stateTopic = pick(topics.state, 'state', 'state');
  const commandTopic = pick(topics.command, 'command', 'command');
  const names = physicalNames(model);
  const sensor = model.def.sensor;
  if (sensor?.kind !== 'joints') throw refuse(`identify reads joint states; ${model.name} reports ${sensor ? 'a pose' : 'no state'}`);
  const joints = sensor.joints;
  const states: number[][] = [];
  const timesS: number[] = [];
  for (const { timeS, message } of messages.get(stateTopic)!) {
    const named = (message.name as string[] | undefined) ?? [];
    const position = Array.from((message.position as ArrayLike<number> | undefined) ?? []);
    const velocity = Array.from((message.velocity as ArrayLike<number> | undefined) ?? []);
    const order = named.length ? joints.map((j) => named.indexOf(j)) : joints.map((_, i) => i);
    if (order.some((i) => i < 0 || i >= position.length || i >= velocity.length)) {
      throw refuse(`a state on ${stateTopic} does not carry the joints ${joints.join(', ')} with positions and velocities (it names ${named.join(', ') || 'none'})`);
    }
    const y = [...order.map((i) => position[i]), ...order.map((i) => velocity[i])];
    if (y.length !== names.length || !y.every(Number.isFinite)) continue;
    timesS.push(stampS(message) ?? timeS);
    states.push(y);
  }
  const commands = messages.get(commandTopic)!.map(({ timeS, message }) => ({ timeS, u: Array.from((message.data as ArrayLike<number> | undefined) ?? []) }))
    .filter((c) => c.u.length === model.controlDim && c.u.every(Number.isFinite));
  if (commands.length === 0) throw refuse(`no command on ${commandTopic} carries ${model.controlDim} finite numbers`);
  return { stateTopic, commandTopic, timesS, states, commands };
}
