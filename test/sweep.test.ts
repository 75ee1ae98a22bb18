import assert from 'node:assert/strict';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { JOB_KINDS } from '../src/sweep/jobs.js';
import { parseSweepSpec, sweepCells } from '../src/sweep/spec.js';
import { RedisServer, redisMissing, testCertificates } from './support/redis.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const PENDULUM_PARAMS = fileURLToPath(new URL('../../launch/config/pendulum.yaml', import.meta.url));

interface Ran { code: number | null; stdout: string; stderr: string }

/** The CLI as a user runs it; `lines` sees stderr as it comes. */
function cli(args: string[], lines?: (line: string) => void, env: Record<string, string> = {}): { proc: ChildProcess; done: Promise<Ran> } {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  proc.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (lines) for (const l of d.toString().split('\n')) if (l.trim()) lines(l);
  });
  const done = new Promise<Ran>((resolve) => proc.on('close', (code) => resolve({ code, stdout, stderr })));
  return { proc, done };
}

/**
 * The sweep of the tests: 2 parameters x 3 values x 4 seeds of lockstep
 * pendulum runs (deterministic: the same cell gives the same figures
 * wherever it runs), short enough for CI.
 */
function specText(samples = [16, 32, 64], temperatures = [0.1, 0.3, 1], seeds = 4): string {
  return [
    'job: bench mpc',
    'args: { system: pendulum, planner: mppi, duration: 2.5, lockstep: true }',
    `params: ${PENDULUM_PARAMS}`,
    'set: { mppi.iterations: 1 }',
    'sweep:',
    `  mppi.samples: [${samples.join(', ')}]`,
    `  mppi.temperature: [${temperatures.join(', ')}]`,
    `seeds: ${seeds}`,
    'best: { minimize: mppi.samples, require: { finalError: { max: 1 } } }',
  ].join('\n');
}

/** Empties Redis: the cells of an earlier test, done there, would otherwise be collected without running. */
async function flush(url: string): Promise<void> {
  const c = new Redis(url);
  await c.flushall();
  c.disconnect();
}

interface Line { id: string; ok: boolean; metrics: Record<string, number | null>; worker: string }
const readLines = (out: string): Line[] => readFileSync(join(out, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Line);

/** The metrics that depend only on the job's inputs (the timing ones are the machine's). */
const DETERMINISTIC = Object.entries(JOB_KINDS['bench mpc'].metrics).filter(([, d]) => !d.timing).map(([k]) => k);
const figures = (l: Line) => Object.fromEntries(DETERMINISTIC.map((k) => [k, l.metrics[k]]));

describe('sweep: refused at submission', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sweep-refuse-'));
  const refused = async (name: string, text: string, pattern: RegExp) => {
    const path = join(dir, `${name}.yaml`);
    writeFileSync(path, text);
    const r = await cli(['sweep', '--spec', path, '--out', join(dir, `out-${name}`)]).done;
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], pattern);
    return lines[0];
  };

  it('a malformed spec, an unknown key and an out-of-range value: one line each, naming what was given', async () => {
    await refused('malformed', 'job: bench mpc\nsweep: [1, 2\n', /sweep spec '.*malformed\.yaml': malformed YAML/);
    await refused('field', `${specText()}\nsweeps: 3\n`, /unknown field 'sweeps' \(did you mean 'sweep'\?\)/);
    await refused('key', specText().replace('mppi.temperature', 'mppi.temprature'), /cell 0 \(mppi\.samples=16 mppi\.temprature=0\.1 seed 0\): unknown mppi parameter 'temprature'.*did you mean 'temperature'/);
    await refused('range', specText([16, 32, 1e9]), /cell 24 \(mppi\.samples=1000000000 mppi\.temperature=0\.1 seed 0\): mppi\.samples must be <= \d+/);
    await refused('job', specText().replace('bench mpc', 'bench nothing'), /unknown job 'bench nothing' \(a sweep runs: bench mpc, bench to, train-prior\)/);
    await refused('seed', specText().replace('lockstep: true', 'lockstep: true, seed: 3'), /args\.seed: the sweep sets --seed itself/);
    await refused('best', specText().replace('minimize: mppi.samples', 'minimize: finalErr'), /best: 'finalErr' is neither a swept key nor a metric of bench mpc \(did you mean 'finalError'\?\)/);
    await refused('grid', specText().replace('[16, 32, 64]', '{ logGrid: { from: 0, to: 64, count: 3 } }'), /sweep\.mppi\.samples\.logGrid needs from and to above 0/);
  });

  it('cells are the grid times the seeds, with ids that hash what each runs (the same setting in another spec has the same id)', () => {
    const cells = sweepCells(parseSweepSpec(specText(), 'a.yaml'));
    assert.equal(cells.length, 3 * 3 * 4);
    assert.equal(new Set(cells.map((c) => c.id)).size, cells.length);
    const subset = sweepCells(parseSweepSpec(specText([32], [0.3, 1], 2), 'b.yaml'));
    for (const c of subset) assert.ok(cells.some((d) => d.id === c.id && d.seed === c.seed), `cell ${JSON.stringify(c.values)} seed ${c.seed} has its id in the larger sweep`);
    const grid = parseSweepSpec(specText().replace('[16, 32, 64]', '{ logGrid: { from: 16, to: 256, count: 5, integer: true } }'), 'c.yaml');
    assert.deepEqual(grid.axes[0].values, [16, 32, 64, 128, 256]);
    const drawn = parseSweepSpec(specText().replace('[0.1, 0.3, 1]', '{ logUniform: { from: 0.01, to: 1, count: 4, seed: 7 } }'), 'd.yaml');
    assert.deepEqual(drawn.axes[1].values, parseSweepSpec(specText().replace('[0.1, 0.3, 1]', '{ logUniform: { from: 0.01, to: 1, count: 4, seed: 7 } }'), 'e.yaml').axes[1].values, 'random draws are seeded');
    assert.ok(drawn.axes[1].values.every((v) => (v as number) >= 0.01 && (v as number) <= 1));
  });
});

describe('sweep and worker on BullMQ with a real Redis', function () {
  this.timeout(600_000);
  const dir = mkdtempSync(join(tmpdir(), 'sweep-'));
  const spec = join(dir, 'spec.yaml');
  const small = join(dir, 'small.yaml');
  let redis: RedisServer;
  /** id -> the in-process sweep's deterministic figures */
  const reference = new Map<string, Record<string, number | null>>();
  const workers: ChildProcess[] = [];

  const startWorker = (url: string, name: string, extra: string[] = [], lines?: (l: string) => void, env: Record<string, string> = {}) => {
    const w = cli(['worker', '--queue', url, '--out', join(dir, name), '--lock-s', '2', ...extra], lines, env);
    workers.push(w.proc);
    return w;
  };
  const stopWorkers = async () => {
    await Promise.all(workers.splice(0).map((p) => (p.exitCode !== null || p.signalCode !== null ? undefined : new Promise<void>((resolve) => {
      p.once('close', () => resolve());
      p.kill('SIGTERM');
    }))));
  };
  const sameAsReference = (out: string, cells: number) => {
    const lines = readLines(out);
    assert.equal(lines.length, cells, 'each cell kept exactly once');
    assert.equal(new Set(lines.map((l) => l.id)).size, cells);
    for (const l of lines) {
      assert.ok(l.ok);
      assert.deepEqual(figures(l), reference.get(l.id), `cell ${l.id}: the same figures as in-process`);
    }
    return lines;
  };

  before(async function () {
    const missing = redisMissing();
    if (missing) {
      console.log(`      skipping the queue tests: ${missing}`);
      this.skip();
    }
    writeFileSync(spec, specText());
    writeFileSync(small, specText([32, 64], [0.3], 3));
    redis = await RedisServer.start();
  });
  afterEach(stopWorkers);
  after(async () => {
    await stopWorkers();
    await redis?.stop();
  });

  it('in-process: every cell, a results table, a plot and the best setting as a parameter file run --params takes; a re-run resumes', async () => {
    const out = join(dir, 'local');
    const r = await cli(['sweep', '--spec', spec, '--out', out, '--concurrency', '2', '--json']).done;
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as { done: number; cells: number; bestParams: string; best: { values: Record<string, number> } };
    assert.equal(summary.cells, 36);
    assert.equal(summary.done, 36);
    for (const l of readLines(out)) reference.set(l.id, figures(l));
    assert.equal(reference.size, 36);
    const csv = readFileSync(join(out, 'results.csv'), 'utf8').trim().split('\n');
    assert.equal(csv.length, 37);
    assert.match(csv[0], /^index,id,mppi\.samples,mppi\.temperature,seed,successes,/);
    assert.match(readFileSync(join(out, 'sweep.svg'), 'utf8'), /<svg[\s\S]*finalError against mppi\.samples/);
    // the best file is complete and loads as it is
    const best = readFileSync(summary.bestParams, 'utf8');
    assert.match(best, new RegExp(`samples: ${summary.best.values['mppi.samples']}\\b`));
    assert.match(best, /iterations: 1\b/);
    const check = await cli(['bench', 'mpc', '--system', 'pendulum', '--params', summary.bestParams, '--seeds', '1', '--duration', '2.5', '--lockstep', '--out', join(dir, 'check'), '--json']).done;
    assert.equal(check.code, 0, check.stderr);
    const again = await cli(['sweep', '--spec', spec, '--out', out, '--json']).done;
    assert.equal(again.code, 0, again.stderr);
    assert.equal(readLines(out).length, 36, 'nothing ran again');
    assert.match(again.stderr, /36 already done/);
  });

  it('two workers give exactly the in-process results; --serve has the sweep\'s Prometheus metrics', async function () {
    assert.equal(reference.size, 36, 'needs the in-process sweep');
    startWorker(redis.url, 'w1');
    startWorker(redis.url, 'w2');
    const out = join(dir, 'queued');
    // scraped while the sweep runs, until both workers are counted and a cell is done (the figures refresh every few seconds)
    const wanted = ['tempered_mpc_sweep_cells{state="done"}', 'tempered_mpc_sweep_queue_depth', 'tempered_mpc_sweep_workers 2', 'tempered_mpc_sweep_jobs_per_second'];
    let text = '';
    let scraping = false;
    const complete = () => wanted.every((w) => text.includes(w)) && !/tempered_mpc_sweep_cells\{state="done"\} 0\n/.test(text);
    const sweep = cli(['sweep', '--spec', spec, '--queue', redis.url, '--out', out, '--serve', '--port', '0', '--json'], (l) => {
      const at = /metrics at (http:\/\/127\.0\.0\.1:\d+)\/metrics/.exec(l);
      if (!at || scraping) return;
      scraping = true;
      void (async () => {
        while (!complete() && sweep.proc.exitCode === null) {
          text = await fetch(`${at[1]}/metrics`).then((res) => res.text(), () => text);
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      })();
    });
    const r = await sweep.done;
    assert.equal(r.code, 0, r.stderr);
    const lines = sameAsReference(out, 36);
    assert.equal(new Set(lines.map((l) => l.worker)).size, 2, 'both workers took cells');
    assert.ok(scraping, r.stderr);
    assert.ok(complete(), `${wanted.join(', ')} and a done cell in\n${text}`);
    if (spawnSync('promtool', ['--version']).status === 0) {
      const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      assert.equal(lint.status, 0, `${lint.stdout}${lint.stderr}`);
    } else if (process.env.TEMPERED_MPC_REQUIRE_PROMTOOL === '1') assert.fail('promtool is required here (bash .ci/install-promtool.sh)');
  });

  it('a worker killed with SIGKILL mid-job: its cell goes to the other worker, nothing lost or counted twice', async () => {
    await flush(redis.url);
    let killedPid: number | undefined;
    let victim: ChildProcess | undefined = undefined;
    const started: string[] = [];
    victim = startWorker(redis.url, 'victim', [], (l) => {
      const m = /cell \d+ \((c[0-9a-f]+)\): bench mpc started/.exec(l);
      if (m && killedPid === undefined && victim) {
        started.push(m[1]);
        killedPid = victim.pid;
        victim.kill('SIGKILL');
      }
    }).proc;
    const out = join(dir, 'killed');
    const sweep = cli(['sweep', '--spec', small, '--queue', redis.url, '--out', out, '--json']);
    // the survivor joins once the victim holds a job
    while (killedPid === undefined) await new Promise((r) => setTimeout(r, 50));
    startWorker(redis.url, 'survivor');
    const r = await sweep.done;
    assert.equal(r.code, 0, r.stderr);
    const lines = sameAsReference(out, 6);
    const taken = lines.find((l) => l.id === started[0])!;
    assert.ok(!taken.worker.endsWith(`:${killedPid}`), 'the killed worker\'s cell was finished by the other');
  });

  it('Redis restarted mid-sweep (without persistence: every job lost): the sweep pauses, resubmits and completes', async () => {
    await flush(redis.url);
    startWorker(redis.url, 'r1');
    const out = join(dir, 'restarted');
    const log: string[] = [];
    const sweep = cli(['sweep', '--spec', small, '--queue', redis.url, '--out', out, '--json'], (l) => log.push(l));
    const deadline = Date.now() + 120_000;
    const doneSoFar = () => {
      try {
        return readLines(out).length;
      } catch {
        return 0;
      }
    };
    while (doneSoFar() < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await redis.stop();
    await new Promise((r) => setTimeout(r, 1500));
    await redis.up();
    const r = await sweep.done;
    assert.equal(r.code, 0, r.stderr);
    sameAsReference(out, 6);
    assert.ok(log.some((l) => /unreachable .*paused/.test(l)), log.join('\n'));
    assert.ok(log.some((l) => /is back/.test(l)), log.join('\n'));
    assert.ok((JSON.parse(r.stdout) as { resubmitted: number }).resubmitted > 0);
  });

  it('TLS (rediss://): with the server\'s CA trusted it runs; without it, one line says the certificate is not trusted', async function () {
    const files = testCertificates();
    if (typeof files === 'string') {
      if (process.env.TEMPERED_MPC_REQUIRE_REDIS === '1') assert.fail(files);
      console.log(`      skipping: ${files}`);
      this.skip();
    }
    const secure = await RedisServer.start([], files);
    try {
      const one = join(dir, 'one-tls.yaml');
      writeFileSync(one, specText([32], [0.3], 1));
      const untrusted = await cli(['sweep', '--spec', one, '--queue', secure.url, '--out', join(dir, 'untrusted')]).done;
      assert.equal(untrusted.code, 2, untrusted.stderr);
      assert.match(untrusted.stderr.trim(), /^tempered-mpc sweep: error: --queue rediss:\/\/127\.0\.0\.1:\d+: the server's TLS certificate is not trusted \(SELF_SIGNED_CERT_IN_CHAIN\): give its CA with NODE_EXTRA_CA_CERTS=ca\.pem$/);
      const trust = { NODE_EXTRA_CA_CERTS: files.ca };
      startWorker(secure.url, 'tls-worker', [], undefined, trust);
      const r = await cli(['sweep', '--spec', one, '--queue', secure.url, '--out', join(dir, 'tls-out'), '--json'], undefined, trust).done;
      assert.equal(r.code, 0, r.stderr);
      sameAsReference(join(dir, 'tls-out'), 1);
    } finally {
      await stopWorkers();
      await secure.stop();
    }
  });

  it('a password: the right one works, a wrong one is refused in one line before anything is queued', async () => {
    const secured = await RedisServer.start(['--requirepass', 's3cret']);
    try {
      const one = join(dir, 'one.yaml');
      writeFileSync(one, specText([32], [0.3], 1));
      const wrong = await cli(['sweep', '--spec', one, '--queue', `redis://:nope@127.0.0.1:${secured.port}`, '--out', join(dir, 'wrong')]).done;
      assert.equal(wrong.code, 2, wrong.stderr);
      assert.equal(wrong.stderr.trim().split('\n').length, 1);
      assert.match(wrong.stderr, /Redis refused the credentials/);
      assert.doesNotMatch(wrong.stderr, /nope/, 'the password is not echoed');
      const url = `redis://:s3cret@127.0.0.1:${secured.port}`;
      const client = new Redis(url);
      assert.equal((await client.keys('*')).length, 0, 'nothing was queued');
      client.disconnect();
      startWorker(url, 'secured');
      const r = await cli(['sweep', '--spec', one, '--queue', url, '--out', join(dir, 'secured-out'), '--json']).done;
      assert.equal(r.code, 0, r.stderr);
      sameAsReference(join(dir, 'secured-out'), 1);
    } finally {
      await stopWorkers();
      await secured.stop();
    }
  });
});
