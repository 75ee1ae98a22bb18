import { open, FileHandle } from 'node:fs/promises';
import { McapWriter } from '@mcap/core';
import { msgJsonSchema } from '../interfaces/definitions.js';
import { protobufSchema } from '../interfaces/protobuf.js';

/** How the log encodes its messages: protobuf (compact; the default) or JSON (readable as text). */
export type LogEncoding = 'protobuf' | 'json';

/**
 * An MCAP file of protobuf-encoded messages (or JSON) with the schemas
 * derived from msgs/ (opens in Foxglove). Writes are serialised, as the
 * MCAP writer requires.
 */
export class McapLog {
  private queue: Promise<unknown> = Promise.resolve();
  private constructor(
    private readonly file: FileHandle,
    private readonly writer: McapWriter,
    private readonly channels: Map<string, { id: number; encode: (message: object) => Uint8Array }>,
  ) {}

  static async create(path: string, topics: Readonly<Record<string, string>>, encoding: LogEncoding = 'protobuf'): Promise<McapLog> {
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
    const channels = new Map<string, { id: number; encode: (message: object) => Uint8Array }>();
    const schemaIds = new Map<string, number>();
    const json = new TextEncoder();
    for (const [topic, type] of Object.entries(topics)) {
      const proto = encoding === 'protobuf' ? protobufSchema(type) : undefined;
      let schemaId = schemaIds.get(type);
      if (schemaId === undefined) {
        schemaId = await writer.registerSchema(proto
          ? { name: proto.name, encoding: 'protobuf', data: proto.fileDescriptorSet }
          : { name: type, encoding: 'jsonschema', data: json.encode(JSON.stringify(msgJsonSchema(type))) });
        schemaIds.set(type, schemaId);
      }
      const id = await writer.registerChannel({ topic, schemaId, messageEncoding: encoding, metadata: new Map() });
      channels.set(topic, { id, encode: proto ? proto.encode : (m) => json.encode(JSON.stringify(m)) });
    }
    return new McapLog(file, writer, channels);
  }

  /**
   * Queues a message published at `timeS` (the controller's clock: simulated
   * time in an embedded run), logged at `logTimeS` when given (real time: the
   * wall clock, so a stall shows in the log) or else at `timeS` too.
   */
  write(topic: string, timeS: number, message: object, logTimeS?: number): Promise<unknown> {
    const channel = this.channels.get(topic);
    if (channel === undefined) throw new Error(`no channel for topic '${topic}'`);
    const publishTime = BigInt(Math.round(timeS * 1e9));
    const logTime = logTimeS === undefined ? publishTime : BigInt(Math.round(logTimeS * 1e9));
    const data = channel.encode(message);
    this.queue = this.queue.then(() => this.writer.addMessage({ channelId: channel.id, sequence: 0, logTime, publishTime, data }));
    return this.queue;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.writer.end();
    await this.file.close();
  }
}
