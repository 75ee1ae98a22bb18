import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelDefinition } from '../src/models/index.js';
import { blockTridiagonalFactor, invert } from '../src/linalg.js';
import { resolveModel } from '../src/models/model.js';
import { readControlLog } from '../src/sysid/log.js';
import { readParamsFile } from '../src/run/params-file.js';
import { writeRos2Bag } from './support/ros2-bag.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const PENDULUM_YAML = fileURLToPath(new URL('../../launch/config/pendulum.yaml', import.meta.url));

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 300000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

type Estimate = { key: string; estimate: number | null; interval95: [number, number] | null; reason?: string };
const estimateOf = (stdout: string, key: string): Estimate => (JSON.parse(stdout) as { estimates: Estimate[] }).estimates.find((e) => e.key === key)!;

describe('identify: model parameters from logs', function () {
  this.timeout(600000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tempered-mpc-identify-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('pendulum with 1.3x the mass and twice the damping (the launch file\'s noise): mass within 3%, damping within 10%, intervals covering both', async () => {
    const run = cli(['run', '--system', 'pendulum', '--params', PENDULUM_YAML, '--set', 'sim.massScale=1.3', '--set', 'sim.model.b=0.2', '--set', 'planner=mppi',
      '--set', 'mppi.samples=256', '--lockstep', '--duration', '20', '--seed', '0', '--out', join(dir, 'log'), '--json']);
    assert.equal(run.code, 0, run.stderr);
    const fitted = cli(['identify', '--system', 'pendulum', '--log', join(dir, 'log', 'run.mcap'), '--params', 'm,b', '--out', join(dir, 'fit'), '--json']);
    assert.equal(fitted.code, 0, fitted.stderr);
    const m = estimateOf(fitted.stdout, 'm');
    const b = estimateOf(fitted.stdout, 'b');
    // the noise it read from the log: the launch file's measurement std 0.01 and process std 0.02 per sqrt(s), on both states
    const { noise } = JSON.parse(fitted.stdout) as { noise: { measurementStd: number[]; processStdPerSqrtS: number[] } };
    for (const std of noise.measurementStd) assert.ok(Math.abs(std / 0.01 - 1) < 0.25, `measurement std ${noise.measurementStd}`);
    for (const std of noise.processStdPerSqrtS) assert.ok(Math.abs(std / 0.02 - 1) < 0.4, `process std ${noise.processStdPerSqrtS}`);
    assert.ok(Math.abs(m.estimate! / 1.3 - 1) < 0.03, `m ${m.estimate} against 1.3`);
    assert.ok(Math.abs(b.estimate! / 0.2 - 1) < 0.1, `b ${b.estimate} against 0.2`);
    assert.ok(m.interval95![0] <= 1.3 && 1.3 <= m.interval95![1], `m interval ${m.interval95}`);
    assert.ok(b.interval95![0] <= 0.2 && 0.2 <= b.interval95![1], `b interval ${b.interval95}`);
    // the parameter file it writes is one `run --params` reads, with the estimates in it
    const written = readParamsFile(join(dir, 'fit', 'params.yaml'));
    assert.equal(written['model.m'], m.estimate);
    assert.equal(written['model.b'], b.estimate);
    assert.match(readFileSync(join(dir, 'fit', 'states.svg'), 'utf8'), /<svg/);

    // the same data as a ROS 2 bag (CDR, another topic name): the same estimates
    const model = resolveModel(modelDefinition('pendulum'));
    const log = readControlLog(join(dir, 'log', 'run.mcap'), model);
    // the run's clock from its first state at 0 (not the wall clock's time of writing it), one period apart
    assert.equal(log.timesS[0], 0);
    assert.ok(log.timesS.every((t, i) => i === 0 || Math.abs(t - log.timesS[i - 1] - log.timesS[1]) < 1e-9), `state times ${log.timesS.slice(0, 4)}`);
    await writeRos2Bag(join(dir, 'bag.mcap'), ['theta'], log.timesS.map((timeS, i) => ({ timeS: timeS + 1000, position: [log.states[i][0]], velocity: [log.states[i][1]] })),
      log.commands.map((c) => ({ timeS: c.timeS + 1000, u: c.u })));
    const fromBag = cli(['identify', '--system', 'pendulum', '--log', join(dir, 'bag.mcap'), '--params', 'm,b', '--out', join(dir, 'fit-bag'), '--json']);
    assert.equal(fromBag.code, 0, fromBag.stderr);
    assert.equal(JSON.parse(fromBag.stdout).stateTopic, '/robot/state');
    for (const key of ['m', 'b']) assert.ok(Math.abs(estimateOf(fromBag.stdout, key).estimate! - estimateOf(fitted.stdout, key).estimate!) < 1e-9, key);

    // a log with a gap (states 100-104 lost): two stretches, each with its own states, the same parameters to well within their intervals
    const { identify } = await import('../src/sysid/identify.js');
    const cut = (rows: number[][] | number[]) => [...rows.slice(0, 100), ...rows.slice(105)];
    const gapped = identify(model, { ...log, timesS: cut(log.timesS) as number[], states: cut(log.states) as number[][] }, { keys: ['m', 'b'], substeps: 10 });
    assert.equal(gapped.segments, 2);
    assert.equal(gapped.intervals, log.timesS.length - 1 - 6);
    assert.ok(Math.abs(gapped.estimates[0].estimate! / m.estimate! - 1) < 0.01, `m ${gapped.estimates[0].estimate} against ${m.estimate}`);
    assert.ok(Math.abs(gapped.estimates[1].estimate! / b.estimate! - 1) < 0.05, `b ${gapped.estimates[1].estimate} against ${b.estimate}`);
  });

  it('solves and inverts a block-tridiagonal matrix block by block, as a dense inverse does', () => {
    // a random symmetric positive definite block-tridiagonal matrix: 7 blocks of 3
    let seed = 7;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5;
    const blocks = 7;
    const d = 3;
    const lower = Array.from({ length: blocks - 1 }, () => Array.from({ length: d }, () => Array.from({ length: d }, random)));
    const diagonal = Array.from({ length: blocks }, () => {
      const A = Array.from({ length: d }, () => Array.from({ length: d }, random));
      return A.map((row, i) => row.map((_, j) => A.reduce((s, r) => s + r[i] * r[j], 0) + (i === j ? 3 : 0)));
    });
    const dense = Array.from({ length: blocks * d }, (_, r) => Array.from({ length: blocks * d }, (__, c) => {
      const [br, bc] = [Math.floor(r / d), Math.floor(c / d)];
      if (br === bc) return diagonal[br][r % d][c % d];
      if (br === bc + 1) return lower[bc][r % d][c % d];
      if (bc === br + 1) return lower[br][c % d][r % d];
      return 0;
    }));
    const factor = blockTridiagonalFactor(diagonal, lower)!;
    const inverse = invert(dense);
    const b = Array.from({ length: blocks }, () => Array.from({ length: d }, random));
    const x = factor.solve(b).flat();
    x.forEach((v, i) => assert.ok(Math.abs(v - inverse[i].reduce((s, a, j) => s + a * b[Math.floor(j / d)][j % d], 0)) < 1e-10, `x[${i}]`));
    const S = factor.inverseBlocks();
    for (let k = 0; k < blocks; k++) {
      for (let i = 0; i < d; i++) {
        for (let j = 0; j < d; j++) {
          assert.ok(Math.abs(S.diagonal[k][i][j] - inverse[k * d + i][k * d + j]) < 1e-10, `diagonal block ${k}`);
          if (k + 1 < blocks) assert.ok(Math.abs(S.lower[k][i][j] - inverse[(k + 1) * d + i][k * d + j]) < 1e-10, `lower block ${k}`);
        }
      }
    }
    // not positive definite: no factor
    assert.equal(blockTridiagonalFactor([[[1]], [[-1]]], [[[0]]]), undefined);
  });

  it('a log held at rest: "not identifiable", not a number', () => {
    // the plant's motor off (umax 0), hanging at rest with the launch file's noise: nothing in the log moves because of a command
    const run = cli(['run', '--system', 'pendulum', '--params', PENDULUM_YAML, '--x0', '0,0', '--set', 'sim.model.umax=0', '--set', 'planner=mppi', '--set', 'mppi.samples=64',
      '--lockstep', '--duration', '10', '--out', join(dir, 'rest'), '--json']);
    assert.equal(run.code, 0, run.stderr);
    const fitted = cli(['identify', '--system', 'pendulum', '--log', join(dir, 'rest', 'run.mcap'), '--params', 'm,b', '--set', 'umax=0', '--out', join(dir, 'fit-rest'), '--json']);
    assert.equal(fitted.code, 0, fitted.stderr);
    for (const key of ['m', 'b']) {
      const e = estimateOf(fitted.stdout, key);
      assert.equal(e.estimate, null, `${key}: ${JSON.stringify(e)}`);
      assert.match(e.reason!, /^not identifiable: /);
    }
    const text = cli(['identify', '--system', 'pendulum', '--log', join(dir, 'rest', 'run.mcap'), '--params', 'm,b', '--set', 'umax=0', '--out', join(dir, 'fit-rest')]);
    assert.match(text.stdout, /m\s+1\s+-\s+not identifiable/);
  });

  it('refuses what cannot be identified, in one line', () => {
    const log = join(dir, 'rest', 'run.mcap');
    const cases: [string[], RegExp][] = [
      [['--system', 'pendulum', '--log', log, '--params', 'mass'], /--params: pendulum has no parameter 'mass'/],
      [['--system', 'pendulum', '--log', log, '--params', 'dtS'], /--params: dtS is how the model is stepped/],
      [['--system', 'acrobot', '--log', log, '--params', 'wAngle'], /log \S+: a state on \/tempered_mpc\/state does not carry the joints q1, q2/],
      [['--system', 'pendulum', '--log', join(dir, 'nope.mcap')], /log \S+nope\.mcap: no such file/],
      [['--system', 'pendulum', '--log', PENDULUM_YAML], /not a readable MCAP file/],
      [['--system', 'pendulum', '--log', log, '--state-topic', '/other'], /no messages on state topic '\/other' \(topics: /],
    ];
    for (const [args, reason] of cases) {
      const r = cli(['identify', ...args, '--out', join(dir, 'refused')]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, reason);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });

  it('refuses a parameter outside the dynamics, and a model that computes with it outside the helpers', async () => {
    const { identify } = await import('../src/sysid/identify.js');
    const log = { stateTopic: 's', commandTopic: 'c', timesS: Array.from({ length: 40 }, (_, i) => i * 0.025), states: Array.from({ length: 40 }, () => [0, 0, 0, 0]), commands: [{ timeS: 0, u: [0] }] };
    assert.throws(() => identify(resolveModel(modelDefinition('acrobot')), log, { keys: ['wAngle'], substeps: 2 }), /acrobot\.wAngle does not enter the dynamics/);
    const cart = { ...log, states: Array.from({ length: 40 }, () => [0, 0, 0, 0, 0, 0]) };
    assert.throws(() => identify(resolveModel(modelDefinition('cart-double-pendulum')), cart, { keys: ['mc'], substeps: 2 }), /cart-double-pendulum computes with mc outside the expression helpers/);
  });
});
