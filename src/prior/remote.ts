import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { PriorMeta } from '../learned/checkpoint.js';
import { NETWORK_NAMES, PriorNetworks } from '../learned/networks.js';
import type { Mlp } from '../learned/mlp.js';
import { newRedis, redisConnection } from '../queue/redis.js';
import type { RunParams } from '../run/setup.js';
import type { Transition } from './acting.js';
import type { TrainParams } from './train-params.js';

/**
 * The learner and its actors (train-prior --queue) talk through Redis
 * under one run's keys: the run's settings; the networks as versioned
 * snapshots; the transitions, one list in arrival order; per episode, an
 * acknowledgement for each transition learned from. An actor plans with at
 * most `maxLag` of its own transitions not yet learned from (0: it waits
 * for the networks its last step led to, as a single process would).
 */

/** What every actor of a run reads once. */
export interface ActingConfig {
  run: RunParams;
  train: TrainParams;
  maxLag: number;
}

const keysOf = (run: string) => ({
  config: `tempered-mpc:train:${run}:config`,
  version: `tempered-mpc:train:${run}:version`,
  snapshot: `tempered-mpc:train:${run}:snapshot`,
  transitions: `tempered-mpc:train:${run}:transitions`,
  ack: (episode: number) => `tempered-mpc:train:${run}:ack:${episode}`,
  stopped: `tempered-mpc:train:${run}:stopped`,
});

/** An actor whose learner says nothing this long gives up (the learner died without telling it). */
const LEARNER_SILENT_S = 600;

/** Keys left behind by a learner that died are dropped by Redis after a day. */
const KEY_TTL_S = 86_400;

/** The networks and their metadata as bytes: a length-prefixed JSON header (version, meta, layer shapes), then every layer's float32 weights and biases. */
export function encodeSnapshot(version: number, meta: PriorMeta, networks: PriorNetworks): Buffer {
  const shapes = NETWORK_NAMES.map((k) => networks[k].layers.map((l) => [l.inputs, l.outputs]));
  const header = Buffer.from(JSON.stringify({ version, meta, shapes }));
  const parts = NETWORK_NAMES.flatMap((k) => networks[k].layers.flatMap((l) => [l.weight, l.bias]));
  const floats = Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(header.length);
  return Buffer.concat([length, header, floats]);
}

export function decodeSnapshot(bytes: Buffer): { version: number; meta: PriorMeta; networks: PriorNetworks } {
  const n = bytes.readUInt32LE(0);
  const { version, meta, shapes } = JSON.parse(bytes.subarray(4, 4 + n).toString()) as { version: number; meta: PriorMeta; shapes: number[][][] };
  // copied to an aligned buffer: float32 views need 4-byte alignment
  const body = new Uint8Array(bytes.subarray(4 + n));
  const floats = new Float32Array(body.buffer, body.byteOffset, body.byteLength / 4);
  let o = 0;
  const take = (count: number) => floats.slice(o, (o += count));
  const networks = Object.fromEntries(NETWORK_NAMES.map((k, i) => [k, {
    layers: shapes[i].map(([inputs, outputs]) => ({ inputs, outputs, weight: take(inputs * outputs), bias: take(outputs) })),
  } satisfies Mlp])) as unknown as PriorNetworks;
  if (o !== floats.length) throw new Error(`a network snapshot of ${floats.length} floats, its header accounts for ${o}`);
  return { version, meta, networks };
}

/** The learner's side: publishes the settings and snapshots, takes transitions, acknowledges them. */
export class LearnerChannel {
  private readonly episodes = new Set<number>();
  private constructor(private readonly redis: Redis, readonly run: string, private readonly keys: ReturnType<typeof keysOf>) {}

  static async open(url: string, config: ActingConfig): Promise<LearnerChannel> {
    const redis = await newRedis(redisConnection(url));
    redis.on('error', () => undefined);
    const run = randomBytes(6).toString('hex');
    const channel = new LearnerChannel(redis, run, keysOf(run));
    await redis.set(channel.keys.config, JSON.stringify(config), 'EX', KEY_TTL_S);
    return channel;
  }

  async publish(version: number, meta: PriorMeta, networks: PriorNetworks): Promise<void> {
    await this.redis.multi()
      .set(this.keys.snapshot, encodeSnapshot(version, meta, networks), 'EX', KEY_TTL_S)
      .set(this.keys.version, String(version), 'EX', KEY_TTL_S)
      .exec();
  }

  /** The next transition of any actor, or undefined after `timeoutS` without one. */
  async next(timeoutS: number): Promise<Transition | undefined> {
    const got = await this.redis.blpop(this.keys.transitions, timeoutS);
    return got ? (JSON.parse(got[1]) as Transition) : undefined;
  }

  async acknowledge(episode: number): Promise<void> {
    this.episodes.add(episode);
    await this.redis.multi().rpush(this.keys.ack(episode), '1').expire(this.keys.ack(episode), KEY_TTL_S).exec();
  }

  /** Tells actors still running to stop, and removes the run's keys. */
  async close(): Promise<void> {
    await this.redis.set(this.keys.stopped, '1', 'EX', 60);
    await this.redis.del(this.keys.config, this.keys.version, this.keys.snapshot, this.keys.transitions, ...[...this.episodes].map((e) => this.keys.ack(e)));
    this.redis.disconnect();
  }
}

/** An actor's side: reads the settings and the newest snapshot, sends transitions, waits for their acknowledgements. */
export class ActorChannel {
  private sent = 0;
  private acknowledged = 0;
  private constructor(private readonly redis: Redis, private readonly keys: ReturnType<typeof keysOf>, private readonly episode: number) {}

  static async open(url: string, run: string, episode: number): Promise<{ channel: ActorChannel; config: ActingConfig }> {
    const redis = await newRedis(redisConnection(url));
    redis.on('error', () => undefined);
    const keys = keysOf(run);
    const text = await redis.get(keys.config);
    if (text === null) {
      redis.disconnect();
      throw new Error(`no training run '${run}' in Redis (its learner has ended)`);
    }
    return { channel: new ActorChannel(redis, keys, episode), config: JSON.parse(text) as ActingConfig };
  }

  /** The newest snapshot if it is newer than `have`. */
  async snapshotAfter(have: number): Promise<ReturnType<typeof decodeSnapshot> | undefined> {
    const v = Number(await this.redis.get(this.keys.version));
    if (!(v > have)) return undefined;
    const bytes = await this.redis.getBuffer(this.keys.snapshot);
    return bytes ? decodeSnapshot(bytes) : undefined;
  }

  async send(t: Transition): Promise<void> {
    await this.redis.rpush(this.keys.transitions, JSON.stringify(t));
    this.sent++;
  }

  /** Waits until at most `maxLag` of this actor's transitions are not yet learned from; throws if the learner stopped or went silent. */
  async awaitLearner(maxLag: number): Promise<void> {
    let silentS = 0;
    while (this.sent - this.acknowledged > maxLag) {
      const got = await this.redis.blpop(this.keys.ack(this.episode), 1);
      if (got) {
        this.acknowledged++;
        silentS = 0;
      } else if (await this.redis.exists(this.keys.stopped)) throw new Error('the learner stopped');
      else if (++silentS >= LEARNER_SILENT_S) throw new Error(`the learner acknowledged nothing for ${LEARNER_SILENT_S} s`);
    }
  }

  close(): void {
    this.redis.disconnect();
  }
}
