import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpu, model } from './helpers.js';
import { skipWithoutWebGpu } from './support/webgpu.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function cli(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.split('\n').filter((l) => l && !l.startsWith('Warning:')).join('\n') };
}

describe('CLI', () => {
  it('systems --json lists every model with its dimensions and defaults', () => {
    const r = cli(['systems', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const { systems } = JSON.parse(r.stdout);
    const names = systems.map((s: { name: string }) => s.name);
    assert.deepEqual(names.sort(), ['acrobot', 'cart-double-pendulum', 'double-integrator', 'pendulum', 'pusher-slider', 'shekel']);
    const pendulum = systems.find((s: { name: string }) => s.name === 'pendulum');
    assert.equal(pendulum.stateDim, 2);
    assert.equal(pendulum.dt, 0.1);
    assert.equal(pendulum.horizon, 30);
    assert.deepEqual(pendulum.x0, [0.1, 0]);
    assert.deepEqual(pendulum.controlLimits, { lower: [-1], upper: [1] });
    const di = systems.find((s: { name: string }) => s.name === 'double-integrator');
    assert.deepEqual(di.controlLimits, { lower: [null], upper: [null] }, 'unbounded limits are null in JSON');
  });

  it('--json output past a pipe\'s 64 KiB reaches a reader slower than the command whole', () => {
    // a shell pipe whose reader starts after the command has finished computing: the pipe fills and the command's writes wait
    const command = `set -o pipefail; "${process.execPath}" "${CLI}" solve --system pendulum --planner gradient --particles 200 --set steps=1 --json 2>/dev/null | (sleep 2; cat)`;
    const r = spawnSync('bash', ['-c', command], { encoding: 'utf8', maxBuffer: 1 << 24 });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stdout.length > 65536, `the output is ${r.stdout.length} bytes: the test needs more than a pipe holds`);
    assert.equal(JSON.parse(r.stdout).samples.length, 200);
  });

  it('bench policy says when its runs from a single start are one run repeated (no simulator noise), and not when the noise tells them apart', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'tmpc-')), 'policy');
    const trained = cli(['train-policy', '--task', 'acrobot', '--method', 'gradient', '--particles', '2', '--set', 'model.horizon=5', '--set', 'train.iterations=50', '--threads', '1', '--out', dir, '--json']);
    assert.equal(trained.code, 0, trained.stderr);
    const quiet = cli(['bench', 'policy', '--task', 'acrobot', '--prior', dir, '--starts', '3', '--seconds', '0.2', '--json']);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.match(quiet.stderr, /acrobot starts from one state and the simulator has no noise .*: its 3 runs are one run repeated/);
    const noisy = cli(['bench', 'policy', '--task', 'acrobot', '--prior', dir, '--starts', '3', '--seconds', '0.2', '--set', 'sim.processNoise=0.02', '--json']);
    assert.equal(noisy.code, 0, noisy.stderr);
    assert.doesNotMatch(noisy.stderr, /one run repeated/);
    assert.equal(JSON.parse(noisy.stdout).starts, 3);
  });

  it('train-policy says once when TSMC\'s population has collapsed onto one line (lineages 1), and Adam never', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tmpc-'));
    const r = cli(['train-policy', '--task', 'pendulum', '--particles', '4', '--batch', '2', '--seed', '1', '--threads', '1', '--out', join(dir, 'd'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const levels = JSON.parse(readFileSync(join(dir, 'd', 'curve.json'), 'utf8')) as { level: number; lineages: number }[];
    const first = levels.find((l) => l.lineages === 1);
    assert.ok(first, `lineages ${levels.map((l) => l.lineages)}`);
    const notes = r.stderr.split('\n').filter((line) => line.includes('collapsed onto one line'));
    assert.equal(notes.length, 1, r.stderr);
    assert.match(notes[0], new RegExp(`^train-policy: note: from level ${first.level} every particle descends from one initial particle \\(lineages 1 of 4\\)`));
    const adam = cli(['train-policy', '--task', 'pendulum', '--method', 'gradient', '--particles', '4', '--batch', '2', '--set', 'train.iterations=50', '--threads', '1', '--out', join(dir, 'g'), '--json']);
    assert.equal(adam.code, 0, adam.stderr);
    assert.doesNotMatch(adam.stderr, /collapsed/);
    rmSync(dir, { recursive: true, force: true });
  });

  it('train-policy --init from a policy trained with a catch, without one: a note says the catch is dropped; with it, none', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'tmpc-')), 'caught');
    const base = ['train-policy', '--task', 'acrobot', '--method', 'gradient', '--particles', '2', '--set', 'model.horizon=5', '--set', 'train.iterations=50', '--threads', '1', '--json'];
    const trained = cli([...base, '--set', 'train.catch=lqr', '--out', dir]);
    assert.equal(trained.code, 0, trained.stderr);
    const dropped = cli([...base, '--init', dir, '--out', `${dir}-dropped`]);
    assert.equal(dropped.code, 0, dropped.stderr);
    assert.match(dropped.stderr, /train-policy: note: train\.init '.*caught' was trained with a catch \(train\.catch = lqr\) and this run trains without one/);
    const kept = cli([...base, '--init', dir, '--set', 'train.catch=lqr', '--out', `${dir}-kept`]);
    assert.equal(kept.code, 0, kept.stderr);
    assert.doesNotMatch(kept.stderr, /note:/);
  });

  it('train-policy with a teacher and training noise: the curve plots each round\'s own cost and iLQG\'s path; --json says the best is an own cost, and its cost without noise', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'tmpc-')), 'taught');
    const r = cli(['train-policy', '--task', 'acrobot', '--method', 'gradient', '--particles', '2', '--batch', '2', '--set', 'model.horizon=20', '--set', 'train.iterations=100',
      '--set', 'train.processNoise=0.05', '--set', 'train.measurementNoise=0.01',
      '--set', 'train.teacher=ilqg', '--set', 'train.teacherEvery=50', '--set', 'train.teacherIterations=20', '--threads', '1', '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.teacher, 'ilqg');
    assert.ok(Number.isFinite(summary.noiseFreeCost) && summary.noiseFreeCost !== summary.bestEnergy, `own cost ${summary.bestEnergy}, without noise ${summary.noiseFreeCost}`);
    const curve = JSON.parse(readFileSync(join(out, 'curve.json'), 'utf8'));
    assert.equal(curve.filter((l: { lesson?: unknown }) => l.lesson).length, 2);
    assert.ok(summary.bestEnergy <= Math.min(...curve.filter((l: { lesson?: { policyCost: number } }) => l.lesson).map((l: { lesson: { policyCost: number } }) => l.lesson.policyCost)));
    const svg = readFileSync(join(out, 'curve.svg'), 'utf8');
    assert.match(svg, /each round: its policy's own cost, iLQG's path/);
    assert.match(svg, /tracking energy \(from the round's path\)/);
  });

  it('train-policy refuses a teacher it cannot run before it makes --out: exit 2, one line', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'tmpc-')), 'never');
    const r = cli(['train-policy', '--task', 'acrobot', '--set', 'train.teacher=ilqg', '--out', out]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^tempered-mpc train-policy: error: train.teacher = ilqg runs with --method gradient: each round changes the energy/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.equal(existsSync(out), false);
  });

  it('train-policy on the GPU with more starts per policy than one GPU buffer holds: exit 2, the reason naming --batch', async function () {
    if (await skipWithoutWebGpu(this, 'the GPU closed loop\'s buffer refusal')) return;
    const r = cli(['train-policy', '--task', 'acrobot', '--particles', '2', '--batch', '100000', '--set', 'train.backend=webgpu', '--out', join(mkdtempSync(join(tmpdir(), 'tmpc-')), 'policy')]);
    assert.equal(r.code, 2, r.stderr);
    // (the software adapter prints its own warnings first)
    assert.match(r.stderr.trim().split('\n').at(-1)!, /^tempered-mpc train-policy: error: 100000 rollouts \(--batch 100000 per policy\) x \d+ .* more than this adapter's \d+ MB/);
  });

  it('train-policy whose every rollout diverges (absurd training noise) ends with exit 1 and the reason, not a result', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'tmpc-')), 'diverged');
    const r = cli(['train-policy', '--task', 'acrobot', '--method', 'gradient', '--particles', '2', '--batch', '2', '--set', 'model.horizon=20', '--set', 'train.iterations=50', '--set', 'train.processNoise=100', '--threads', '1', '--out', dir, '--json']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^tempered-mpc train-policy: error: no policy gave a finite cost in 1 block: every closed-loop rollout diverged \(look at train.processNoise 100, .*\)/m);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    const sane = cli(['train-policy', '--task', 'acrobot', '--method', 'gradient', '--particles', '2', '--batch', '2', '--set', 'model.horizon=20', '--set', 'train.iterations=50', '--set', 'train.processNoise=0.1', '--threads', '1', '--out', `${dir}-sane`, '--json']);
    assert.equal(sane.code, 0, sane.stderr);
    assert.ok(Number.isFinite(JSON.parse(sane.stdout).bestEnergy));
  });

  it('rollout --json returns states, controls, cost and gradient consistent with the library', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tmpc-'));
    const file = join(dir, 'u.json');
    const controls = Array.from({ length: 30 }, (_, t) => [0.5 * Math.sin(0.2 * t)]);
    writeFileSync(file, JSON.stringify(controls));
    const r = cli(['rollout', '--system', 'pendulum', '--controls', file, '--x0', '0.2,0', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.states.length, 31);
    assert.equal(out.controls.length, 30);
    assert.equal(out.grad.length, 30);
    assert.deepEqual(out.states[0], [0.2, 0]);
    const ref = cpu(model('pendulum')).costGradSync({ controls: Float64Array.from(controls.flat()), x0: [0.2, 0] });
    assert.equal(out.cost, ref.cost[0]);
    assert.deepEqual(out.grad.flat(), Array.from(ref.grad));
  });

  it('rollout reads controls from stdin and applies --set overrides', () => {
    const zeros = JSON.stringify(Array.from({ length: 20 }, () => [0]));
    const a = JSON.parse(cli(['rollout', '--system', 'double-integrator', '--x0', '0,1', '--controls', '-', '--json'], zeros).stdout);
    const b = JSON.parse(cli(['rollout', '--system', 'double-integrator', '--x0', '0,1', '--set', 'dtS=0.2', '--json']).stdout);
    assert.equal(a.states.length, 21);
    assert.ok(Math.abs(a.states[20][0] - 2) < 1e-12, 'coasts 20 steps x 0.1 s at 1 m/s');
    assert.ok(Math.abs(b.states[20][0] - 4) < 1e-12, 'dtS=0.2 doubles the distance');
  });

  const bad: [string, string[], RegExp, string?][] = [
    ['unknown system', ['rollout', '--system', 'segway'], /unknown system 'segway'/],
    ['unknown backend', ['rollout', '--system', 'pendulum', '--backend', 'tpu'], /unknown backend 'tpu'/],
    ['wrong x0 dimension', ['rollout', '--system', 'acrobot', '--x0', '1,2'], /--x0 needs 4 comma-separated numbers, got 2/],
    ['NaN in x0', ['rollout', '--system', 'pendulum', '--x0', '0,NaN'], /--x0\[1\] must be a finite number/],
    ['Inf in x0', ['rollout', '--system', 'pendulum', '--x0', 'Infinity,0'], /--x0\[0\] must be a finite number/],
    ['malformed JSON', ['rollout', '--system', 'pendulum', '--controls', '-'], /malformed JSON/, '[[0.1], [0.2'],
    ['wrong number of rows', ['rollout', '--system', 'pendulum', '--controls', '-'], /has 2 rows, expected 30/, '[[0.1],[0.2]]'],
    ['wrong row width', ['rollout', '--system', 'pusher-slider', '--controls', '-'], /row 0 must hold 4 numbers/, JSON.stringify(Array(200).fill([1, 2]))],
    ['null in controls', ['rollout', '--system', 'pendulum', '--controls', '-'], /row 3 entry 0 is not a finite number/, JSON.stringify([[0], [0], [0], [null], ...Array(26).fill([0])])],
    ['unknown parameter', ['rollout', '--system', 'pendulum', '--set', 'mass=2'], /unknown pendulum parameter 'mass'/],
    ['out-of-range parameter', ['rollout', '--system', 'pendulum', '--set', 'dtS=-0.1'], /pendulum.dtS must be >= /],
    ['non-integer horizon', ['rollout', '--system', 'pendulum', '--set', 'horizon=2.5'], /must be an integer/],
    ['unknown option', ['rollout', '--system', 'pendulum', '--fast'], /unknown option '--fast'/],
    ['unknown command', ['fly'], /unknown command 'fly'/],
    ['seed on a deterministic system', ['rollout', '--system', 'pendulum', '--seed', '3'], /no stochastic inputs/],
    ['bad sample count', ['bench', 'rollout', '--system', 'pendulum', '--samples', '0'], /--samples must be an integer >= 1/],
    ['unknown planner', ['solve', '--system', 'pendulum', '--planner', 'ilqr'], /unknown planner 'ilqr' \(known: tsmc, mppi, mala, nuts, gradient\)/],
    ['negative lambda', ['solve', '--system', 'pendulum', '--planner', 'tsmc', '--set', 'lambda=-0.1'], /tsmc.lambda must be > 0, got -0.1/],
    ['rho of 1', ['solve', '--system', 'pendulum', '--planner', 'tsmc', '--set', 'rho=1'], /tsmc.rho must be < 1/],
    ['rho of 0', ['solve', '--system', 'pendulum', '--planner', 'tsmc', '--set', 'rho=0'], /tsmc.rho must be > 0/],
    ['one particle', ['solve', '--system', 'pendulum', '--planner', 'tsmc', '--particles', '1'], /--particles must be an integer >= 2/],
    ['unknown kernel', ['solve', '--system', 'pendulum', '--planner', 'tsmc', '--set', 'kernel=gibbs'], /tsmc.kernel must be one of nuts, hmc/],
    ['a planner key on the wrong planner', ['solve', '--system', 'pendulum', '--planner', 'mppi', '--set', 'rho=0.5'], /unknown pendulum parameter 'rho'/],
    ['train-value without a prior', ['train-value', '--system', 'acrobot'], /--prior DIR is required/],
    ['train-value with no sweeps', ['train-value', '--system', 'acrobot', '--prior', 'p', '--sweeps', '0'], /value\.sweeps must be >= 1, got 0/],
    ['an unknown value-iteration key', ['train-value', '--system', 'acrobot', '--prior', 'p', '--set', 'value.sweps=3'], /unknown value parameter 'sweps'/],
    ['train-policy without a task', ['train-policy'], /--task NAME is required: one of sparse-pendulum, pendulum-swingup, pendulum, acrobot, acrobot-hold, cart-double-pendulum/],
    ['train-policy with an unknown task', ['train-policy', '--task', 'segway'], /unknown task 'segway'/],
    ['train-policy with an unknown method', ['train-policy', '--task', 'acrobot', '--method', 'ppo'], /train-policy.method must be one of tsmc-d, tsmc-e, gradient/],
    ['train-policy with one particle', ['train-policy', '--task', 'acrobot', '--particles', '1'], /train-policy.particles must be >= 2/],
    ['train-policy with an unknown setting', ['train-policy', '--task', 'acrobot', '--set', 'train.lamda=3'], /unknown train-policy parameter 'lamda' \(did you mean 'lambda'\?\)/],
    ['train-policy with a run setting', ['train-policy', '--task', 'acrobot', '--set', 'mppi.samples=3'], /train-policy takes train.KEY=value \(keys: .*\) and model.KEY=value only/],
    ['train-policy with a catch for a task without a catch region', ['train-policy', '--task', 'pendulum-swingup', '--set', 'train.catch=lqr', '--out', '/nonexistent/out'], /train\.catch = lqr: task pendulum-swingup declares no catch region/],
    ['train-policy with rollout noise on a model whose state is not physical', ['train-policy', '--task', 'pendulum', '--set', 'train.processNoise=0.05', '--out', '/nonexistent/out'], /train\.processNoise = 0\.05: pendulum's model state is not its physical state/],
    ['train-policy with a missing policy to start from', ['train-policy', '--task', 'acrobot', '--init', '/nonexistent/p', '--out', '/nonexistent/out'], /train\.init '\/nonexistent\/p': prior '\/nonexistent\/p': no such directory/],
    ['bench policy without a prior', ['bench', 'policy', '--task', 'acrobot'], /--prior/],
    ['bench policy with a missing prior', ['bench', 'policy', '--task', 'acrobot', '--prior', '/nonexistent/p'], /prior '\/nonexistent\/p': no such directory/],
    ['a malformed planner outage', ['bench', 'mpc', '--system', 'pendulum', '--planner-outage', '6'], /--planner-outage 6: expected AT,PERIODS/],
    ['an LQR term the parameters leave impossible', ['run', '--system', 'cart-double-pendulum', '--set', 'model.umax=0', '--set', 'model.terminalLqr=1', '--duration', '0.2', '--lockstep'], /cart-double-pendulum\.terminalLqr = 1 needs the LQR cost-to-go at the goal: .*Riccati iteration diverged/],
    ['fallback: policy without a policy', ['run', '--system', 'pendulum', '--set', 'controller.fallback=policy', '--duration', '1'], /fallback is policy, but no policy is given: set fallbackPolicy/],
  ];
  for (const [what, args, message, input] of bad) {
    it(`rejects ${what} with one clear line and exit code 2`, () => {
      const r = cli(args, input ?? '');
      assert.equal(r.code, 2, r.stdout);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.split('\n').length, 1, r.stderr);
    });
  }

  it('solve --json reports the sampler\'s particles, best plan and per-level diagnostics', () => {
    const r = cli(['solve', '--system', 'double-integrator', '--planner', 'tsmc', '--particles', '32', '--seed', '4', '--set', 'lambda=1', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    for (const key of ['system', 'planner', 'backend', 'particles', 'wallMs', 'bestCost', 'goalReached', 'costs', 'samples', 'bestControls', 'bestStates', 'diagnostics']) {
      assert.ok(key in out, key);
    }
    assert.equal(out.samples.length, 32);
    assert.equal(out.samples[0].length, 20);
    assert.equal(out.bestStates.length, 21);
    assert.equal(Math.min(...out.costs), out.bestCost);
    assert.equal(out.diagnostics.levels.at(-1).beta, 1);
    for (const l of out.diagnostics.levels) for (const k of ['beta', 'ess', 'acceptance', 'energyMin', 'energyMedian']) assert.equal(typeof l[k], 'number');
    assert.ok(Number.isFinite(out.diagnostics.logZ));
    const again = JSON.parse(cli(['solve', '--system', 'double-integrator', '--planner', 'tsmc', '--particles', '32', '--seed', '4', '--set', 'lambda=1', '--json']).stdout);
    assert.deepEqual(again.costs, out.costs, 'a seed reproduces the run');
  });

  it('train-value names a missing prior in one line (exit 2: a prior is input the user gave)', () => {
    const r = cli(['train-value', '--system', 'pendulum', '--prior', '/nonexistent/prior', '--out', mkdtempSync(join(tmpdir(), 'tmpc-value-'))]);
    assert.equal(r.code, 2, r.stdout);
    assert.equal(r.stderr, "tempered-mpc train-value: error: prior '/nonexistent/prior': no such directory");
  });

  it('every command answers --help', () => {
    for (const c of [['systems'], ['rollout'], ['solve'], ['run'], ['bench', 'rollout'], ['bench', 'to'], ['bench', 'mpc'], ['train-prior'], ['train-value']]) {
      const r = cli([...c, '--help']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^usage: tempered-mpc /);
    }
  });

  it('bench rollout --json reports throughput for cost and gradient kernels', () => {
    const r = cli(['bench', 'rollout', '--system', 'pendulum', '--samples', '256', '--threads', '2', '--seconds', '0.05', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.threads, 2);
    assert.ok(out.forward.stepsPerS > 0 && out.gradient.stepsPerS > 0);
    assert.ok(out.gradient.msPerBatch > 0);
    // the pendulum's cost step is too small to gain from WebAssembly, its gradient step is not
    assert.deepEqual(out.cpuCode, { cost: 'js', gradient: 'wasm' });
    const js = JSON.parse(cli(['bench', 'rollout', '--system', 'acrobot', '--samples', '64', '--threads', '1', '--seconds', '0.05', '--cpu-code', 'js', '--json']).stdout);
    assert.deepEqual(js.cpuCode, { cost: 'js', gradient: 'js' });
    const bad = cli(['bench', 'rollout', '--system', 'acrobot', '--cpu-code', 'asm']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--cpu-code must be wasm or js, got 'asm'/);
  });

  it('bench lqr: the yardstick holds the noise-free acrobot, loses the goal region under heavy process noise, and names a bad --q', () => {
    const quiet = cli(['bench', 'lqr', '--system', 'acrobot', '--seeds', '2', '--duration', '3', '--json']);
    assert.equal(quiet.code, 0, quiet.stderr);
    const q = JSON.parse(quiet.stdout);
    assert.equal(q.held, 2);
    assert.equal(q.meanInGoal, 1);
    const noisy = JSON.parse(cli(['bench', 'lqr', '--system', 'acrobot', '--seeds', '2', '--duration', '3', '--set', 'sim.processNoise=0.1', '--json']).stdout);
    assert.ok(noisy.meanInGoal < 0.5, `in the goal ${noisy.meanInGoal} of the time`);
    const bad = cli(['bench', 'lqr', '--system', 'acrobot', '--q', '1,2']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--q/);
  });

  it('bench lqr --measured: the yardstick sees the measurements, through the controller\'s EKF when one is set (LQG), as the MPC does', () => {
    const base = ['bench', 'lqr', '--system', 'acrobot', '--params', 'launch/config/acrobot.yaml', '--seeds', '4', '--duration', '8', '--q', '1,1,0.1,0.1', '--set', 'sim.processNoise=0.02', '--set', 'sim.processNoiseOn=rates', '--json'];
    const run = (...more: string[]) => {
      const r = cli([...base, ...more]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as { held: number; runs: { inGoal: number }[]; feedback: unknown };
    };
    // noise-free measurements are the true state: the same runs to the last tick
    const truth = run();
    assert.equal(truth.feedback, 'true state');
    assert.deepEqual(run('--measured').runs, truth.runs);
    const raw = run('--measured', '--set', 'sim.measurementNoise=0.01');
    assert.deepEqual(raw.feedback, { measurementNoise: 0.01, estimator: 'none' });
    const lqg = run('--measured', '--set', 'sim.measurementNoise=0.01', '--set', 'estimator=ekf', '--set', 'estimatorProcessNoiseOn=rates');
    assert.deepEqual(lqg.feedback, { measurementNoise: 0.01, estimator: 'ekf' });
    // the raw measurements' noise through gains of ~36 on the angles throws the arm out; the filtered estimate holds it
    assert.ok(raw.held === 0 && lqg.held >= 3, `held: raw measurements ${raw.held}/4, EKF ${lqg.held}/4`);
  });
});
