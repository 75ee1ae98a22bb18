import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineChart, Panel, PALETTE } from '../plot/svg.js';
import { Cell, CellValue, settingKey, SweepSpec } from './spec.js';
import { JobResult, Metrics } from './jobs.js';

/** One cell's outcome, as results.jsonl keeps it. */
export interface CellRecord {
  id: string;
  index: number;
  values: Record<string, CellValue>;
  seed: number | null;
  ok: boolean;
  metrics: Metrics;
  /** why it failed */
  error?: string;
  wallS: number;
  worker: string;
  out: string;
  /** through a queue: when the job was queued, taken by its worker and finished (BullMQ's clock, ms since 1970) */
  queueTimes?: QueueTimes;
}

export interface QueueTimes {
  addedMs: number;
  takenMs: number;
  finishedMs: number;
}

/**
 * The sweep's results, one line per finished cell in OUT/results.jsonl,
 * appended as each lands: a cell's result is kept exactly once (the first
 * to land; a job run twice after a worker was lost is not counted again),
 * and a re-run of the spec skips the cells already there. A failed cell is
 * kept as failed for this run and tried again by the next.
 */
export class ResultStore {
  private readonly path: string;
  private readonly done = new Map<string, CellRecord>();
  private readonly failed = new Map<string, CellRecord>();
  /** results.jsonl lines that were not whole records (a run killed mid-write), skipped */
  readonly damagedLines: number = 0;

  constructor(out: string) {
    this.path = join(out, 'results.jsonl');
    if (!existsSync(this.path)) return;
    let damaged = 0;
    for (const line of readFileSync(this.path, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        const r = JSON.parse(line) as CellRecord;
        if (typeof r.id === 'string' && r.ok === true) this.done.set(r.id, r);
      } catch {
        damaged++;
      }
    }
    this.damagedLines = damaged;
  }

  has(id: string): boolean {
    return this.done.has(id);
  }

  get doneCount(): number {
    return this.done.size;
  }

  get failedCount(): number {
    return this.failed.size;
  }

  /** Keeps a cell's result; false if it already has one (nothing is counted twice). */
  add(cell: Cell, outcome: { result: JobResult; queueTimes?: QueueTimes } | { error: string; wallS?: number; worker?: string }): boolean {
    if (this.done.has(cell.id)) return false;
    const base = { id: cell.id, index: cell.index, values: cell.values, seed: cell.seed };
    if ('result' in outcome) {
      const r = outcome.result;
      const record: CellRecord = { ...base, ok: true, metrics: r.metrics, wallS: r.wallS, worker: r.worker, out: r.out, ...(outcome.queueTimes ? { queueTimes: outcome.queueTimes } : {}) };
      this.failed.delete(cell.id);
      this.done.set(cell.id, record);
      appendFileSync(this.path, `${JSON.stringify(record)}\n`);
    } else {
      this.failed.set(cell.id, { ...base, ok: false, metrics: {}, error: outcome.error, wallS: outcome.wallS ?? 0, worker: outcome.worker ?? '', out: '' });
    }
    return true;
  }

  /** Every cell of the spec with its outcome (undefined: not run). */
  records(cells: readonly Cell[]): (CellRecord | undefined)[] {
    return cells.map((c) => this.done.get(c.id) ?? this.failed.get(c.id));
  }
}

/** A setting of the swept keys with its cells (its seeds) summarised: each metric's mean over the successful cells. */
export interface Group {
  values: Record<string, CellValue>;
  cells: number;
  ok: number;
  failed: number;
  means: Record<string, number | null>;
}

export function groups(spec: SweepSpec, cells: readonly Cell[], records: readonly (CellRecord | undefined)[]): Group[] {
  const byKey = new Map<string, { values: Record<string, CellValue>; rs: (CellRecord | undefined)[] }>();
  cells.forEach((c, i) => {
    const k = settingKey(c.values);
    if (!byKey.has(k)) byKey.set(k, { values: c.values, rs: [] });
    byKey.get(k)!.rs.push(records[i]);
  });
  return [...byKey.values()].map(({ values, rs }) => {
    const ok = rs.filter((r): r is CellRecord => r?.ok === true);
    const means: Record<string, number | null> = {};
    for (const m of Object.keys(spec.kind.metrics)) {
      const v = ok.map((r) => r.metrics[m]).filter((x): x is number => typeof x === 'number');
      means[m] = v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
    }
    return { values, cells: rs.length, ok: ok.length, failed: rs.filter((r) => r?.ok === false).length, means };
  });
}

/** The best group by the spec's rule, among the complete groups that meet its requirements; undefined when none does. */
export function bestGroup(spec: SweepSpec, all: readonly Group[]): Group | undefined {
  const rule = spec.best;
  if (!rule) return undefined;
  const score = (g: Group): number | null => {
    const v = Object.hasOwn(g.values, rule.key) ? g.values[rule.key] : g.means[rule.key];
    return typeof v === 'number' ? v : null;
  };
  const meets = (g: Group) => g.ok === g.cells && rule.require.every((r) => {
    const v = g.means[r.metric];
    return v !== null && (r.min === undefined || v >= r.min) && (r.max === undefined || v <= r.max);
  });
  let best: Group | undefined;
  for (const g of all) {
    const s = score(g);
    if (!meets(g) || s === null) continue;
    const b = best === undefined ? null : score(best);
    if (b === null || (rule.order === 'minimize' ? s < b : s > b)) best = g;
  }
  return best;
}

const csvField = (v: unknown): string => {
  const t = v === null || v === undefined ? '' : String(v);
  return /[",\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
};

/** results.csv: one row per cell (swept keys, seed, each metric, whether it ran, why not). */
export function resultsCsv(spec: SweepSpec, cells: readonly Cell[], records: readonly (CellRecord | undefined)[]): string {
  const metrics = Object.keys(spec.kind.metrics);
  const header = ['index', 'id', ...spec.axes.map((a) => a.key), 'seed', ...metrics, 'status', 'wallS', 'worker', 'error'];
  const rows = cells.map((c, i) => {
    const r = records[i];
    const status = r === undefined ? 'not run' : r.ok ? 'done' : 'failed';
    return [c.index, c.id, ...spec.axes.map((a) => c.values[a.key]), c.seed, ...metrics.map((m) => r?.metrics[m] ?? null), status, r?.wallS ?? null, r?.worker ?? '', r?.error ?? ''];
  });
  return `${[header, ...rows].map((row) => row.map(csvField).join(',')).join('\n')}\n`;
}

/**
 * One panel per swept key: the outcome metric (the best rule's, else the
 * first the job reports) against the key's values, a line for each setting
 * of the other keys (up to 8; beyond that their mean).
 */
export function sweepChart(spec: SweepSpec, all: readonly Group[]): string {
  const metric = spec.best && Object.hasOwn(spec.kind.metrics, spec.best.key) ? spec.best.key
    : spec.best?.require[0]?.metric ?? Object.keys(spec.kind.metrics)[0];
  const panels: Panel[] = spec.axes.map((axis) => {
    const others = spec.axes.filter((a) => a !== axis);
    const numeric = axis.values.every((v) => typeof v === 'number');
    const xOf = (v: CellValue) => (numeric ? (v as number) : axis.values.indexOf(v));
    const lines = new Map<string, Map<number, number[]>>();
    for (const g of all) {
      const label = others.map((o) => `${o.key}=${g.values[o.key]}`).join(' ');
      const y = g.means[metric];
      if (y === null) continue;
      if (!lines.has(label)) lines.set(label, new Map());
      const at = lines.get(label)!;
      const x = xOf(g.values[axis.key]);
      at.set(x, [...(at.get(x) ?? []), y]);
    }
    const merged = lines.size > PALETTE.length ? new Map([['mean over the other keys', mergeLines(lines)]]) : lines;
    return {
      title: `${metric} against ${axis.key}${numeric ? '' : ` (${axis.values.join(', ')})`}`, xLabel: axis.key, yLabel: metric,
      series: [...merged.entries()].map(([name, at], i) => {
        const xs = [...at.keys()].sort((a, b) => a - b);
        return { name: name || metric, x: xs, y: xs.map((x) => mean(at.get(x)!)), color: PALETTE[i % PALETTE.length] };
      }),
    };
  });
  return lineChart(`sweep ${spec.path}: ${spec.kind.command}, ${metric} (mean over seeds)`, panels, Math.min(2, panels.length));
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

function mergeLines(lines: Map<string, Map<number, number[]>>): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const at of lines.values()) for (const [x, ys] of at) out.set(x, [...(out.get(x) ?? []), ...ys]);
  return out;
}

export function writeJson(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 1)}\n`);
}

/**
 * What the queue cost per job, from BullMQ's own timestamps of this run's
 * jobs: handling = the time a worker held a job beyond the job's process
 * (taking it, locking, storing its result); pickup = the time from a
 * worker's previous job ending (or the job being queued) to it taking this one.
 */
export function queueOverhead(records: readonly (CellRecord | undefined)[]) {
  const rs = records.filter((r): r is CellRecord & { queueTimes: QueueTimes } => r?.queueTimes !== undefined);
  if (rs.length === 0) return null;
  const handling = rs.map((r) => r.queueTimes.finishedMs - r.queueTimes.takenMs - 1000 * r.wallS);
  const pickup: number[] = [];
  const byWorker = new Map<string, typeof rs>();
  for (const r of rs) byWorker.set(r.worker, [...(byWorker.get(r.worker) ?? []), r]);
  for (const jobs of byWorker.values()) {
    jobs.sort((a, b) => a.queueTimes.takenMs - b.queueTimes.takenMs);
    jobs.forEach((r, i) => pickup.push(r.queueTimes.takenMs - Math.max(r.queueTimes.addedMs, i > 0 ? jobs[i - 1].queueTimes.finishedMs : -Infinity)));
  }
  const q = (v: number[], p: number) => [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(p * v.length))];
  return { jobs: rs.length, workers: byWorker.size, handlingMs: { p50: q(handling, 0.5), p90: q(handling, 0.9) }, pickupMs: { p50: q(pickup, 0.5), p90: q(pickup, 0.9) } };
}
