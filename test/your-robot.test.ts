import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControllerNode } from '../ros/src/controller-node.js';
import { loadSystemsNamed } from '../ros/src/overrides.js';
import { SimulatorNode } from '../ros/src/simulator-node.js';
import { TYPES } from '../src/interfaces/definitions.js';
import { loadSystem, MODELS } from '../src/models/index.js';
import { probeAtX0 } from '../src/models/module.js';
import { InputError } from '../src/input-error.js';
import { createStandIn, StandInLifecycle } from './support/rclnodejs-standin.js';
import { collect, until } from './support/ros-bus.js';

/*
 * A model of the user's own, in a folder outside this repository that has
 * the package installed (node_modules/tempered-mpc, linked to this checkout
 * as `npm link` would; test/package.test.ts installs the real `npm pack`
 * tarball): every command and both ROS nodes take it by path, with no edit
 * to the project.
 */

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const CARTPOLE = readFileSync(join(REPO, 'docs', 'your-robot', 'cartpole.mjs'), 'utf8');

function userFolder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-mpc-user-'));
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(REPO, join(dir, 'node_modules', 'tempered-mpc'), 'dir');
  writeFileSync(join(dir, 'package.json'), '{ "name": "my-robot", "private": true, "type": "module" }\n');
  writeFileSync(join(dir, 'cartpole.mjs'), CARTPOLE);
  return dir;
}

/** The CLI as the user's folder runs it (npx tempered-mpc): the installed package's bin, the folder as working directory. */
function cli(cwd: string, args: string[]) {
  const r = spawnSync(process.execPath, [join(cwd, 'node_modules', 'tempered-mpc', 'dist', 'src', 'cli', 'main.js'), ...args], { cwd, encoding: 'utf8', timeout: 240000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const FAST_MPPI = ['--set', 'planner=mppi', '--set', 'mppi.samples=128', '--set', 'mppi.iterations=2', '--set', 'threads=1'];

describe('your robot: a model module from a folder outside the project', function () {
  this.timeout(300000);
  let dir: string;
  before(() => {
    dir = userFolder();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('systems describes it; rollout and solve use it', () => {
    const described = JSON.parse(cli(dir, ['systems', './cartpole.mjs', '--json']).stdout).systems[0];
    assert.equal(described.name, 'cartpole');
    assert.deepEqual(described.angles, ['theta']);
    assert.deepEqual(described.massParams, ['mc', 'mp']);
    const rolled = cli(dir, ['rollout', '--system', './cartpole.mjs', '--set', 'horizon=20', '--json']);
    assert.equal(rolled.code, 0, rolled.stderr);
    const r = JSON.parse(rolled.stdout);
    assert.equal(r.system, 'cartpole');
    assert.equal(r.states.length, 21, 'x0 and 20 steps');
    assert.ok(Number.isFinite(r.cost));
    const solved = cli(dir, ['solve', '--system', './cartpole.mjs', '--planner', 'gradient', '--set', 'horizon=20', '--json']);
    assert.equal(solved.code, 0, solved.stderr);
    assert.ok(JSON.parse(solved.stdout).bestCost < r.cost, 'gradient descent lowers the cost of the zero plan');
  });

  it('run swings it up with the module\'s own MPPI tuning, and bench mpc reports it', () => {
    const ran = cli(dir, ['run', '--system', './cartpole.mjs', '--set', 'planner=mppi', '--lockstep', '--duration', '6', '--out', join(dir, 'run'), '--json']);
    assert.equal(ran.code, 0, ran.stderr);
    const summary = JSON.parse(ran.stdout);
    assert.equal(summary.success, true, `swing-up: ${ran.stdout}`);
    const bench = cli(dir, ['bench', 'mpc', '--system', './cartpole.mjs', ...FAST_MPPI, '--seeds', '2', '--duration', '2', '--lockstep', '--out', join(dir, 'bench'), '--json']);
    assert.equal(bench.code, 0, bench.stderr);
    assert.equal(JSON.parse(bench.stdout).seeds, 2);
  });

  it('train-prior trains a prior for it', () => {
    const out = join(dir, 'prior');
    const trained = cli(dir, ['train-prior', '--system', './cartpole.mjs', '--episodes', '2', '--set', 'train.episodeS=0.4', '--set', 'train.width=8', '--set', 'train.depth=1',
      '--set', 'train.batch=8', '--set', 'mppi.samples=16', '--set', 'mppi.iterations=1', '--set', 'model.horizon=5', '--set', 'threads=1', '--backend', 'cpu', '--out', out, '--json']);
    assert.equal(trained.code, 0, trained.stderr);
    assert.equal(JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')).system, 'cartpole');
  });

  it('the ROS nodes (stand-in for rclnodejs) take it as their system parameter', async () => {
    const file = join(dir, 'cartpole.mjs');
    const s = createStandIn({
      overrides: {
        tempered_mpc_controller: { system: file, planner: 'mppi', 'mppi.samples': 64n, 'mppi.iterations': 2n, threads: 1n, use_sim_time: true },
        tempered_mpc_simulator: { system: file, stepping: 'lockstep', stateRateHz: 50.0, seed: 1n },
      },
    });
    // the executable's way: the files the parameters name are loaded before the nodes are made
    await loadSystemsNamed(s.parameterRules());
    const commands = collect<{ data: number[] }>(s, '/command', TYPES.command);
    const sim = new SimulatorNode(s.rcl, { parameterRules: s.parameterRules() });
    const loop = sim.start();
    const c = new ControllerNode(s.rcl, { parameterRules: s.parameterRules() });
    try {
      const node = c.node as unknown as StandInLifecycle;
      assert.equal(await node.requestTransition('configure'), true);
      assert.equal(await node.requestTransition('activate'), true);
      await until('20 commands', () => commands.length >= 20, 60000);
      assert.ok(commands.slice(0, 20).some((m) => Math.abs(m.data[0]) > 0.1), `the controller pushes the cart: ${commands.slice(0, 20).map((m) => m.data[0]).join(', ')}`);
    } finally {
      sim.stop();
      await loop;
      await c.transition('shutdown');
      c.node.destroy();
      sim.node.destroy();
    }
  });
});

describe('your robot: a model module that cannot work is refused in one line naming the file and the field', () => {
  let dir: string;
  before(() => {
    dir = userFolder();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** The cart-pole with one edit, as a new module file. */
  function variant(name: string, edit: (source: string) => string): string {
    const file = join(dir, `${name}.mjs`);
    const source = edit(CARTPOLE);
    assert.notEqual(source, CARTPOLE, `${name}: the edit applies`);
    writeFileSync(file, source);
    return file;
  }

  const cases: [string, (s: string) => string, RegExp][] = [
    ['throws on import', (s) => `throw new Error('calibration file not found');\n${s}`, /importing it failed: calibration file not found/],
    ['a syntax error', (s) => s.replace('export default defineModel({', 'export default defineModel({{'), /importing it failed/],
    ['no default export', (s) => s.replace('export default defineModel(', 'export const cartpole = defineModel('), /no default export/],
    ['a missing field', (s) => s.replace(/\n  stateNames: \[[^\]]*\],/, ''), /field 'stateNames' is missing/],
    ['a missing step', (s) => s.replace('  step(x, [u], _w, p) {', '  stepp(x, [u], _w, p) {'), /field 'step' is missing/],
    ['a parameter that is not num()', (s) => s.replace("mc: num(1, 'cart mass [kg]', { min: 1e-6 }),", 'mc: 1,'), /field 'params.mc' must be a number parameter/],
    ['no dtS', (s) => s.replace(/\n    dtS: num\([^\n]*/, ''), /field 'params.dtS' is missing/],
    ['wrong dimensions: x0', (s) => s.replace('x0: [0, 0, 0, 0],', 'x0: [0, 0, 0],'), /x0 and goal need 4 entries/],
    ['wrong dimensions: step', (s) => s.replace('return [dx, dtheta, ddx, ddtheta];', 'return [dx, dtheta, ddx];'), /field 'step' threw at x0: rk4: the derivative gave 3 values for 4 states/],
    ['NaN dynamics at x0', (s) => s.replace('const denominator = add(p.mc, mul(p.mp, sq(s)));', 'const denominator = mul(0, add(p.mc, mul(p.mp, sq(s))));'), /field 'step' gives a non-finite \w+ at x0 \(NaN\)/],
    ['a step that throws', (s) => s.replace('const s = sin(theta);', 'const s = sin(theta.missing.value);'), /field 'step' threw at x0/],
    ['an undeclared angle', (s) => s.replace("angles: ['theta'],", "angles: ['phi'],"), /angles names 'phi', which is not one of x, theta, dx, dtheta/],
    ['an unknown mass parameter', (s) => s.replace("massParams: ['mc', 'mp'],", "massParams: ['mcart'],"), /massParams names 'mcart'/],
    ['a default outside its own range', (s) => s.replace("horizon: num(60,", 'horizon: num(1e9,'), /field params\.horizon must be <= 10000, its default is 1000000000/],
    ['a built-in name', (s) => s.replace("name: 'cartpole',", "name: 'acrobot',"), /name 'acrobot' is a built-in system's/],
  ];
  for (const [what, edit, reason] of cases) {
    it(what, async () => {
      const file = variant(what.replace(/\W+/g, '-'), edit);
      await assert.rejects(loadSystem(file), (e: Error) => {
        assert.ok(e instanceof InputError, `an input error, not ${e.constructor.name}: ${e.message}`);
        assert.match(e.message, new RegExp(`^model module ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `));
        assert.match(e.message, reason);
        assert.equal(e.message.includes('\n'), false, 'one line');
        return true;
      });
    });
  }

  it('on the command line: exit 2 with the reason; a missing file; a module\'s tuning of an unknown planner or key', () => {
    const r = cli(dir, ['run', '--system', './nope.mjs']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^tempered-mpc run: error: model module \.\/nope\.mjs: no such file\n$/);
    variant('tuned-ilqr', (s) => s.replace('    planners: {\n', '    planners: {\n      ilqr: { iterations: 3 },\n'));
    const planner = cli(dir, ['run', '--system', './tuned-ilqr.mjs', '--duration', '1']);
    assert.equal(planner.code, 2);
    assert.match(planner.stderr, /model \.\/tuned-ilqr\.mjs: tuning\.planners names planner 'ilqr' \(known: tsmc, mppi/);
    variant('tuned-key', (s) => s.replace('mppi: { samples: 512,', 'mppi: { sampels: 512,'));
    const key = cli(dir, ['run', '--system', './tuned-key.mjs', '--duration', '1']);
    assert.equal(key.code, 2);
    assert.match(key.stderr, /unknown model \.\/tuned-key\.mjs tuning\.planners\.mppi: parameter 'sampels' \(did you mean 'samples'\?\)/);
  });

  it('every built-in model passes the same probe', () => {
    for (const def of MODELS.values()) probeAtX0(def, (why) => new InputError(`${def.name}: ${why}`));
  });
});
