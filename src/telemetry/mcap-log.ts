import { open, FileHandle } from 'node:fs/promises';
import { McapWriter } from '@mcap/core';
import { msgJsonSchema } from './msg-schema.js';

/** The interfaces logged, by topic. */
export const LOG_TOPICS = {
  '/tempered_mpc/state': 'SystemState',
  '/tempered_mpc/measured_state': 'SystemState',
  '/tempered_mpc/control': 'ControlCommand',
  '/tempered_mpc/plan': 'Plan',
  '/tempered_mpc/status': 'PlannerStatus',
} as const;

export type LogTopic = keyof typeof LOG_TOPICS;

/**
 * An MCAP file of JSON-encoded messages with JSON Schemas derived from msgs/
 * (opens in Foxglove). Writes are serialised, as the MCAP writer requires.
 */
export class McapLog {
  private queue: Promise<unknown> = Promise.resolve();
  private constructor(private readonly file: FileHandle, private readonly writer: McapWriter, private readonly channels: Map<string, number>) {}

  static async create(path: string): Promise<McapLog> {
    const file = await open(path, 'w');
    let position = 0n;
    const writer = new McapWriter({
      writable: {
        write: async (buffer: Uint8Array) => {
          await file.write(buffer);
          position += BigInt(buffer.byteLength);
        },
        position: () => position,
      },
      useChunks: true,
      useStatistics: true,
    });
    await writer.start({ profile: '', library: 'tempered-mpc' });
    const channels = new Map<string, number>();
    const schemaIds = new Map<string, number>();
    for (const [topic, msg] of Object.entries(LOG_TOPICS)) {
      let schemaId = schemaIds.get(msg);
      if (schemaId === undefined) {
        schemaId = await writer.registerSchema({
          name: `tempered_mpc/msg/${msg}`,
          encoding: 'jsonschema',
          data: new TextEncoder().encode(JSON.stringify(msgJsonSchema(msg).schema)),
        });
        schemaIds.set(msg, schemaId);
      }
      channels.set(topic, await writer.registerChannel({ topic, schemaId, messageEncoding: 'json', metadata: new Map() }));
    }
    return new McapLog(file, writer, channels);
  }

  write(topic: LogTopic, timeS: number, message: object): Promise<unknown> {
    const channelId = this.channels.get(topic)!;
    const time = BigInt(Math.round(timeS * 1e9));
    const data = new TextEncoder().encode(JSON.stringify(message));
    this.queue = this.queue.then(() => this.writer.addMessage({ channelId, sequence: 0, logTime: time, publishTime: time, data }));
    return this.queue;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.writer.end();
    await this.file.close();
  }
}
