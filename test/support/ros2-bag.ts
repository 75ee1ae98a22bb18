import { writeFileSync } from 'node:fs';
import { McapWriter } from '@mcap/core';
import { stringify } from '@foxglove/rosmsg';
import { MessageWriter } from '@foxglove/rosmsg2-serialization';
import { definitionsOf, TYPES } from '../../src/interfaces/definitions.js';

/** A `ros2 bag record` of the state and command topics, as rosbag2's MCAP writer stores it: CDR messages, ros2msg schemas (the joints' names on every state). */
export async function writeRos2Bag(path: string, joints: readonly string[], states: { timeS: number; position: number[]; velocity: number[] }[], commands: { timeS: number; u: number[] }[]): Promise<void> {
  const chunks: Uint8Array[] = [];
  let position = 0n;
  const writer = new McapWriter({ writable: { write: async (b: Uint8Array) => { chunks.push(b.slice()); position += BigInt(b.byteLength); }, position: () => position } });
  await writer.start({ profile: 'ros2', library: 'rosbag2 (stand-in: the test writes the format)' });
  const channel = async (topic: string, type: string) => {
    const definitions = definitionsOf(type);
    const schemaId = await writer.registerSchema({ name: type, encoding: 'ros2msg', data: new TextEncoder().encode(stringify(definitions)) });
    const id = await writer.registerChannel({ topic, schemaId, messageEncoding: 'cdr', metadata: new Map() });
    return { id, writer: new MessageWriter(definitions) };
  };
  const stateChannel = await channel('/robot/state', TYPES.jointState);
  const commandChannel = await channel('/robot/command', TYPES.command);
  const ns = (t: number) => BigInt(Math.round(t * 1e9));
  for (const s of states) {
    const sec = Math.floor(s.timeS);
    const data = stateChannel.writer.writeMessage({ header: { stamp: { sec, nanosec: Math.round((s.timeS - sec) * 1e9) }, frame_id: '' }, name: [...joints], position: s.position, velocity: s.velocity, effort: [] });
    await writer.addMessage({ channelId: stateChannel.id, sequence: 0, logTime: ns(s.timeS), publishTime: ns(s.timeS), data });
  }
  for (const c of commands) {
    const data = commandChannel.writer.writeMessage({ layout: { dim: [], data_offset: 0 }, data: c.u });
    await writer.addMessage({ channelId: commandChannel.id, sequence: 0, logTime: ns(c.timeS), publishTime: ns(c.timeS), data });
  }
  await writer.end();
  writeFileSync(path, Buffer.concat(chunks));
}
