import { writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { InputError } from '../input-error.js';
import { checkJob, removeFolder, scratchFolder } from '../sweep/jobs.js';
import { SweepMetrics, serveSweepMetrics } from '../sweep/metrics.js';
import { probeRedis, redisConnection, redisLabel } from '../queue/redis.js';
import { bestGroup, CellRecord, Group, groups, queueOverhead, ResultStore, resultsCsv, sweepChart, writeJson } from '../sweep/results.js';
import { Cell, readSweepSpec, SweepSpec, sweepCells } from '../sweep/spec.js';
import { runSweep, SweepProgress } from '../sweep/sweep.js';
import { shutdown } from '../shutdown.js';
import { Command, JSON_OPTION, MAX_THREADS, optionalInteger, outputFolder, parseCommandArgs, printJson, requireString, stringOpt, table } from './command.js';
import { parameterFileYaml } from './params.js';
import { progressBar } from './progress.js';
import { runOptions } from './run.js';

/** The largest heap a job's process may be given [MB]. */
const MAX_JOB_MEMORY_MB = 65536;

export const MEMORY_OPTION = { type: 'string', description: 'heap limit of each job\'s process in MB (default 4096): a job past it fails, its runner goes on', valueName: 'MB' } as const;

export const sweepCommand: Command = {
  name: 'sweep',
  summary: 'Parameter sweep: a base job (bench mpc, bench to, train-prior) over grids, lists, random draws and seeds, on this machine or on workers through a BullMQ queue; results table, plots and the best setting as a ROS 2 parameter file. Re-running a spec resumes it.',
  usage: 'sweep --spec FILE.yaml [--queue redis://HOST:PORT] [--concurrency N] [--out DIR] [--serve [--host H] [--port P]] [--json]',
  options: {
    spec: { type: 'string', description: 'the sweep (docs/sweeps.md): job, args, params, set, sweep, seeds, best', valueName: 'FILE' },
    queue: { type: 'string', description: 'put the cells on the BullMQ queue at this Redis (rediss:// for TLS, redis://:PASSWORD@HOST:PORT) for `tempered-mpc worker`s; default: run them here', valueName: 'URL' },
    concurrency: { type: 'string', description: `without --queue: cells run at once here (default ${MAX_THREADS}, one per core)`, valueName: 'N' },
    'max-memory-mb': MEMORY_OPTION,
    out: { type: 'string', description: 'output folder; give the same one again to resume (default runs/sweep-SPEC-TIME)', valueName: 'DIR' },
    serve: { type: 'boolean', description: 'Prometheus metrics while it runs: /metrics (cells by state, queue depth, workers, jobs per second), /healthz' },
    host: { type: 'string', description: 'with --serve: address to listen on (default 127.0.0.1)', valueName: 'H' },
    port: { type: 'string', description: 'with --serve: port (default 9464; 0 = any free one)', valueName: 'P' },
    json: JSON_OPTION,
  },
  interruptible: true,
  interruptFinishing: 'writing the results so far (the cells under way are run again next time)',
  async run(values) {
    const spec = readSweepSpec(requireString(values, 'spec'));
    const cells = sweepCells(spec);
    const queue = stringOpt(values, 'queue');
    if (queue !== undefined) redisConnection(queue);
    if (queue !== undefined && values.concurrency !== undefined) throw new InputError('--concurrency is for a sweep run here; with --queue each worker has its own (worker --concurrency N)');
    const concurrency = optionalInteger(values, 'concurrency', MAX_THREADS, 1, 256);
    const maxMemoryMb = optionalInteger(values, 'max-memory-mb', 4096, 64, MAX_JOB_MEMORY_MB);
    for (const flag of ['host', 'port']) if (!values.serve && values[flag] !== undefined) throw new InputError(`--${flag} needs --serve`);
    const port = optionalInteger(values, 'port', 9464, 0, 65535);
    // every cell is checked by its job's own rules before anything is queued or written
    await checkCells(spec, cells);
    if (queue !== undefined) {
      const probe = await probeRedis(queue);
      if ('unreachable' in probe) throw new Error(`cannot reach Redis at ${redisLabel(queue)} (${probe.unreachable}): is redis-server running there?`);
    }
    const out = outputFolder(values, `sweep-${basename(spec.path).replace(/\.ya?ml$/i, '')}`);
    const store = new ResultStore(out);
    const log = (line: string) => console.error(`sweep: ${line}`);
    if (store.damagedLines) log(`${store.damagedLines} damaged line(s) in results.jsonl skipped (their cells run again)`);
    const metrics = values.serve ? new SweepMetrics() : undefined;
    const server = metrics ? await serveSweepMetrics(metrics, stringOpt(values, 'host') ?? '127.0.0.1', port) : undefined;
    if (server) log(`metrics at ${server.address}/metrics`);
    const already = cells.filter((c) => store.has(c.id)).length;
    console.error(`sweep ${spec.path}: ${cells.length} cells of ${spec.kind.command}${already ? `, ${already} already done in ${out}` : ''}; ${queue ? `on the queue at ${redisLabel(queue)}` : `${concurrency} at a time here`}`);
    const bar = progressBar('sweep', !values.json);
    let lastLine = 0;
    const onProgress = (p: SweepProgress) => {
      metrics?.observe(p);
      const note = `${p.done}/${p.cells} done, ${p.running} running, ${p.failed} failed${p.paused ? ', PAUSED (Redis away)' : ''}${p.etaS !== null ? `, ETA ${formatDuration(p.etaS)}` : ''}`;
      bar.update((p.done + p.failed) / p.cells, note);
      // without a terminal, a line now and then
      if (!values.json && !process.stderr.isTTY && Date.now() - lastLine > 10_000) {
        lastLine = Date.now();
        log(note);
      }
    };
    let outcome;
    try {
      outcome = await runSweep({ cells, store, out, queue, concurrency, maxMemoryMb, signal: shutdown.signal, onProgress, log });
    } finally {
      bar.done();
      await server?.close();
    }
    const records = store.records(cells);
    const report = writeReport(spec, cells, records, out);
    const failed = records.filter((r) => r?.ok === false) as CellRecord[];
    if (outcome.interrupted) log(`interrupted (${shutdown.received}): ${report.done}/${cells.length} cells done; run the same command again to finish${queue ? ' (the queued cells stay with the workers)' : ''}`);
    const summary = {
      out, spec: spec.path, job: spec.kind.command, cells: cells.length, done: report.done, failed: failed.length, resubmitted: outcome.resubmitted,
      interrupted: outcome.interrupted, best: report.best ? { values: report.best.values, means: report.best.means } : null, bestParams: report.bestParams,
    };
    if (values.json) printJson(summary);
    else printSummary(spec, report.groups, report.best, report.bestParams, out);
    if (failed.length) throw new Error(`${failed.length} of ${cells.length} cells failed (cell ${failed[0].index}: ${failed[0].error}); results.csv says which`);
  },
};

/** Each cell's command line checked as its job would check it; the first bad cell is refused in one line naming it. */
async function checkCells(spec: SweepSpec, cells: readonly Cell[]): Promise<void> {
  const scratch = scratchFolder();
  try {
    // cells differing only in their seed are checked once, with the first seed
    const seen = new Set<string>();
    for (const c of cells) {
      const key = JSON.stringify(c.values);
      if (seen.has(key)) continue;
      seen.add(key);
      try {
        await checkJob(c, scratch);
      } catch (e) {
        const setting = Object.entries(c.values).map(([k, v]) => `${k}=${v}`).join(' ');
        throw new InputError(`sweep spec '${spec.path}': cell ${c.index} (${setting}${c.seed === null ? '' : ` seed ${c.seed}`}): ${(e as Error).message.split('\n')[0]}`);
      }
    }
  } finally {
    removeFolder(scratch);
  }
}

/** results.jsonl is written as cells land; this writes the rest: results.csv, results.json, sweep.svg and best.yaml. */
function writeReport(spec: SweepSpec, cells: readonly Cell[], records: readonly (CellRecord | undefined)[], out: string) {
  const all = groups(spec, cells, records);
  const best = bestGroup(spec, all);
  writeFileSync(join(out, 'results.csv'), resultsCsv(spec, cells, records));
  writeFileSync(join(out, 'sweep.svg'), sweepChart(spec, all));
  let bestParams: string | null = null;
  if (best && spec.kind.runParams) {
    bestParams = join(out, 'best.yaml');
    writeFileSync(bestParams, `${bestParameterFile(spec, cells.find((c) => JSON.stringify(c.values) === JSON.stringify(best.values))!, best)}\n`);
  }
  writeJson(join(out, 'results.json'), {
    spec: { path: spec.path, job: spec.kind.command, args: spec.args, params: spec.params?.path ?? null, set: spec.set, axes: spec.axes, seeds: spec.seeds, best: spec.best ?? null },
    metrics: spec.kind.metrics,
    cells: cells.map((c, i) => ({ index: c.index, id: c.id, values: c.values, seed: c.seed, status: records[i] === undefined ? 'not run' : records[i]!.ok ? 'done' : 'failed', ...(records[i] ?? {}) })),
    groups: all, best: best ?? null, bestParams, queueOverhead: queueOverhead(records),
  });
  return { groups: all, best, bestParams, done: records.filter((r) => r?.ok).length };
}

/**
 * The best setting as a complete ROS 2 parameter file: the spec's parameter
 * file and fixed keys with the best values, every other parameter at its
 * value, so the launch files and `run --params` take it as it is.
 */
function bestParameterFile(spec: SweepSpec, cell: Cell, best: Group): string {
  const scratch = scratchFolder();
  try {
    const { values } = parseCommandArgs(spec.kind.cli, cell.argv.slice(spec.kind.command.split(' ').length));
    if (cell.paramsText !== undefined) {
      values.params = join(scratch, 'params.yaml');
      writeFileSync(values.params as string, cell.paramsText);
    }
    // a run's parameters only: training's own keys and the cell's seed stay out of a node's file
    values.set = ((values.set as string[] | undefined) ?? []).filter((s) => !s.startsWith('train.'));
    delete values.seed;
    const { params } = runOptions(values);
    const setting = Object.entries(best.values).map(([k, v]) => `${k}=${v}`).join(', ');
    const figures = Object.entries(best.means).filter(([, v]) => v !== null).map(([k, v]) => `${k} ${+(v as number).toPrecision(4)}`).join(', ');
    return parameterFileYaml(params, [
      `The best setting of sweep ${spec.path} (${spec.best!.order} ${spec.best!.key}${spec.best!.require.length ? ` with ${spec.best!.require.map((r) => `${r.metric}${r.min !== undefined ? ` >= ${r.min}` : ''}${r.max !== undefined ? ` <= ${r.max}` : ''}`).join(', ')}` : ''}): ${setting}`,
      `over ${best.ok} seed(s): ${figures}`,
    ]);
  } finally {
    removeFolder(scratch);
  }
}

function printSummary(spec: SweepSpec, all: readonly Group[], best: Group | undefined, bestParams: string | null, out: string): void {
  const metrics = Object.entries(spec.kind.metrics).filter(([, d]) => !d.timing).map(([k]) => k).slice(0, 6);
  console.log(table(all.map((g) => [...spec.axes.map((a) => String(g.values[a.key])), `${g.ok}/${g.cells}`, ...metrics.map((m) => g.means[m] ?? '-')]),
    [...spec.axes.map((a) => a.key), 'cells done', ...metrics.map((m) => `${m} (mean)`)]));
  if (spec.best) {
    console.log(best
      ? `\nbest (${spec.best.order} ${spec.best.key}): ${Object.entries(best.values).map(([k, v]) => `${k}=${v}`).join(', ')}${bestParams ? `; parameter file: ${bestParams}` : ''}`
      : `\nno setting met the best rule's requirements (${spec.best.require.map((r) => r.metric).join(', ') || 'complete cells'})`);
  }
  console.log(`wrote ${join(out, 'results.csv')}, ${join(out, 'results.json')}, ${join(out, 'sweep.svg')}`);
}

function formatDuration(s: number): string {
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(0)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
