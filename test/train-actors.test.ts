import assert from 'node:assert/strict';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { initNetworks } from '../src/learned/networks.js';
import { decodeSnapshot, encodeSnapshot } from '../src/prior/remote.js';
import { bootstrapEstimate, Replay } from '../src/prior/trainer.js';
import { Rng } from '../src/random.js';
import type { PriorMeta } from '../src/learned/checkpoint.js';
import { RedisServer, redisMissing } from './support/redis.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** A small training run: 4 pendulum episodes of 3 s with updates from the second (seconds, not minutes). */
const TINY = ['--system', 'pendulum', '--episodes', '4', '--set', 'train.episodeS=3', '--set', 'train.width=8', '--set', 'train.batch=32', '--set', 'mppi.samples=32'];

const sha = (dir: string) => (JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as { weights: { sha256: string } }).weights.sha256;

describe('train-prior: the replay buffer with episodes acted at once', () => {
  it('n steps ahead means the same episode\'s n-th next step, however episodes interleave', () => {
    const r = new Replay(10, 1, 1);
    // two actors' episodes 3 and 4 alternating, then 4 alone: rows 0..7
    const order = [3, 4, 3, 4, 3, 4, 4, 4];
    order.forEach((e, i) => r.push([i], [0], i, [i], [0], [1], e));
    r.interleave = 2;
    assert.equal(r.after(0, 1), 2);
    assert.equal(r.after(0, 2), 4);
    assert.equal(r.after(0, 3), undefined, 'episode 3 has no fourth step');
    assert.equal(r.after(1, 3), 6);
    assert.equal(r.after(5, 2), 7);
    assert.equal(r.after(6, 2), undefined, 'past the newest row');
    // one episode at a time: the next rows, as before
    r.interleave = 1;
    assert.equal(r.after(0, 1), undefined, 'row 1 is another episode');
    assert.equal(r.after(5, 2), 7);
  });
});

describe('train-prior: the acting planner\'s estimates in the buffer (train.valueMix)', () => {
  it('a TD target bootstraps from the estimate at the state after its last row, in the same episode; none past the episode or where the planner gave none', () => {
    const r = new Replay(10, 1, 1);
    const order = [3, 4, 3, 4, 3, 4, 4, 4];
    order.forEach((e, i) => r.push([i], [0], i, [i], [0], [1], e, i === 7 ? NaN : 100 + i));
    r.interleave = 2;
    assert.deepEqual(bootstrapEstimate(r, 0, 0.25), { share: 0.75, estimate: 102 }, 'row 2 follows row 0 in episode 3');
    assert.deepEqual(bootstrapEstimate(r, 3, 0), { share: 1, estimate: 105 });
    assert.deepEqual(bootstrapEstimate(r, 4, 0.5), { share: 0, estimate: 0 }, 'episode 3 ends at row 4');
    assert.deepEqual(bootstrapEstimate(r, 6, 0.5), { share: 0, estimate: 0 }, 'row 7 has no estimate');
    assert.deepEqual(bootstrapEstimate(r, 0, 1), { share: 0, estimate: 0 }, 'valueMix 1: the network alone');
  });

  it('the buffer\'s file keeps the estimates; a file from before them loads with none', () => {
    const dir = mkdtempSync(join(tmpdir(), 'replay-'));
    const r = new Replay(4, 2, 1);
    for (let i = 0; i < 3; i++) r.push([i, -i], [0.1 * i], i, [i + 1, -i], [0], [1], 0, 10 * i);
    r.save(join(dir, 'replay.bin'));
    const back = Replay.load(join(dir, 'replay.bin'), undefined, 2, undefined);
    assert.deepEqual(Array.from(back.estimate), [0, 10, 20, NaN]);
    assert.deepEqual(Array.from(back.x), Array.from(r.x));
    // the older layout: the same values without the trailing estimates
    const bytes = readFileSync(join(dir, 'replay.bin'));
    writeFileSync(join(dir, 'old.bin'), bytes.subarray(0, bytes.length - 4 * 8));
    const old = Replay.load(join(dir, 'old.bin'), undefined, 2, undefined);
    assert.equal(old.size, 3);
    assert.ok(Array.from(old.estimate).every(Number.isNaN));
    writeFileSync(join(dir, 'bad.bin'), bytes.subarray(0, bytes.length - 8));
    assert.throws(() => Replay.load(join(dir, 'bad.bin'), undefined, 2, undefined), /has 44 values, expected 45 \(truncated\?\)/);
  });
});

describe('train-prior: actors on workers', function () {
  this.timeout(300_000);
  const dir = mkdtempSync(join(tmpdir(), 'actors-'));
  let redis: RedisServer;
  const workers: ChildProcess[] = [];
  const worker = (name: string) => {
    const p = spawn(process.execPath, [CLI, 'worker', '--queue', redis.url, '--out', join(dir, name)], { stdio: 'ignore' });
    workers.push(p);
  };
  const train = (out: string, extra: string[]) => spawnSync(process.execPath, [CLI, 'train-prior', ...TINY, '--out', join(dir, out), '--json', ...extra], { encoding: 'utf8' });

  before(async function () {
    const missing = redisMissing();
    if (missing) {
      console.log(`      skipping the actor tests: ${missing}`);
      this.skip();
    }
    redis = await RedisServer.start();
  });
  after(async () => {
    for (const p of workers) p.kill('SIGTERM');
    await redis?.stop();
  });

  it('a snapshot of the networks survives Redis byte for byte', () => {
    const networks = initNetworks(new Rng(3), { stateDim: 2, controlDim: 1, features: { angle: [true, false], raw: [false, true], scale: [1, 2] }, hidden: [5, 4] });
    const meta = { system: 'pendulum', features: { angle: [true, false], raw: [false, true], scale: [1, 0.25] } } as unknown as PriorMeta;
    const back = decodeSnapshot(encodeSnapshot(7, meta, networks));
    assert.equal(back.version, 7);
    assert.deepEqual(back.meta, meta);
    assert.deepEqual(back.networks, networks);
  });

  it('one actor on a worker reproduces the single-process run bit for bit; two actors train too and report their staleness', async () => {
    const local = train('local', []);
    assert.equal(local.status, 0, local.stderr);
    worker('w1');
    const one = train('one', ['--queue', redis.url]);
    assert.equal(one.status, 0, one.stderr);
    assert.equal(sha(join(dir, 'one')), sha(join(dir, 'local')), 'the same weights, to the bit');
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'one', 'learning-curve.json'), 'utf8')).map((p: { meanCost: number }) => p.meanCost),
      JSON.parse(readFileSync(join(dir, 'local', 'learning-curve.json'), 'utf8')).map((p: { meanCost: number }) => p.meanCost));
    worker('w2');
    const two = train('two', ['--queue', redis.url, '--actors', '2', '--max-lag', '2']);
    assert.equal(two.status, 0, two.stderr);
    const summary = JSON.parse(two.stdout) as { episodes: number; updates: number; actors: { count: number; maxLag: number; staleness: { mean: number; max: number } } };
    assert.equal(summary.episodes, 4);
    assert.ok(summary.updates > 0);
    assert.equal(summary.actors.count, 2);
    assert.ok(summary.actors.staleness.max >= 0 && Number.isFinite(summary.actors.staleness.mean));
    // the runs' keys are gone from Redis but their stop flags (kept a minute for actors still running); the queue's finished jobs stay, as BullMQ keeps them
    const client = new Redis(redis.url);
    client.on('error', () => undefined);
    try {
      const left = await client.keys('tempered-mpc:train:*');
      assert.equal(left.length, 2);
      for (const k of left) assert.match(k, /:stopped$/);
    } finally {
      client.disconnect();
    }
  });

  it('refusals: --actors without --queue, an actor outside a worker, a Redis that is not there', () => {
    const noQueue = spawnSync(process.execPath, [CLI, 'train-prior', ...TINY, '--actors', '2', '--out', join(dir, 'x')], { encoding: 'utf8' });
    assert.equal(noQueue.status, 2);
    assert.match(noQueue.stderr.trim(), /^tempered-mpc train-prior: error: --actors needs --queue/);
    const actor = spawnSync(process.execPath, [CLI, 'train-actor', '--run', 'ab12', '--episode', '0', '--start', '0,0'], { encoding: 'utf8', env: { ...process.env, TEMPERED_MPC_QUEUE: '' } });
    assert.equal(actor.status, 2);
    assert.match(actor.stderr.trim(), /train-actor is run by `tempered-mpc worker`/);
    const gone = spawnSync(process.execPath, [CLI, 'train-prior', ...TINY, '--queue', 'redis://127.0.0.1:1', '--out', join(dir, 'gone')], { encoding: 'utf8' });
    assert.equal(gone.status, 1);
    assert.equal(gone.stderr.trim().split('\n').length, 1);
    assert.match(gone.stderr, /cannot reach Redis at redis:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\)/);
  });
});
