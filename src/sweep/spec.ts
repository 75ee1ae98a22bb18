import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { InputError } from '../input-error.js';
import { readUserFile } from '../run/params-file.js';
import { describe, keyedRecord, nearestName } from '../params.js';
import { Rng } from '../random.js';
import { JobKind, jobKind, SWEEP_JOBS } from './jobs.js';

/** A value one cell gives a swept key (as `--set key=value` writes it). */
export type CellValue = number | string | boolean;

/** One axis of the sweep: a key and the values it takes. */
export interface Axis {
  key: string;
  values: CellValue[];
}

/** What the best cell is: the group (a setting, over its seeds) that minimises or maximises a metric or a swept key, among the groups that meet every requirement. */
export interface BestRule {
  order: 'minimize' | 'maximize';
  key: string;
  require: { metric: string; min?: number; max?: number }[];
}

export interface SweepSpec {
  /** the spec file, as given */
  path: string;
  kind: JobKind;
  /** the job's own options (`--system acrobot --duration 10 --lockstep`), fixed for every cell */
  args: string[];
  /** the parameter file's text (it travels with each job, so a worker elsewhere needs no copy), and its path as given */
  params?: { path: string; text: string };
  /** fixed `--set` keys */
  set: Record<string, CellValue>;
  axes: Axis[];
  /** the seeds each setting runs with (empty: the job's own default, one cell per setting) */
  seeds: number[];
  best?: BestRule;
}

/** One job of the sweep: a setting of every swept key and a seed. */
export interface Cell {
  /** stable across runs of the same spec: a hash of everything the job runs with, so a re-run resumes */
  id: string;
  index: number;
  values: Record<string, CellValue>;
  seed: number | null;
  /** the job kind (its command) */
  kind: string;
  /** the job's command line, without its output folder and --json (the runner adds them) */
  argv: string[];
  paramsText?: string;
}

/** More cells than this is a typo in a grid, not a sweep (each cell is a process). */
export const MAX_CELLS = 100_000;
const MAX_AXIS_VALUES = 10_000;
const SPEC_KEYS = ['job', 'args', 'params', 'set', 'sweep', 'seeds', 'best'];

/** Reads and checks a sweep spec (YAML); every problem is one line naming the file and the field. */
export function readSweepSpec(path: string): SweepSpec {
  return parseSweepSpec(readUserFile(`sweep spec '${path}'`, path), path);
}

export function parseSweepSpec(text: string, path: string): SweepSpec {
  const fail = (what: string) => new InputError(`sweep spec '${path}': ${what}`);
  const doc = parseDocument(text, { logLevel: 'error' });
  if (doc.errors.length) throw fail(`malformed YAML (${doc.errors[0].message.split('\n')[0]})`);
  const raw = doc.toJS({ maxAliasCount: 100 }) as unknown;
  if (!isMap(raw)) throw fail('expected a map with job, sweep and optionally args, params, set, seeds, best');
  for (const k of Object.keys(raw)) {
    if (!SPEC_KEYS.includes(k)) {
      const hit = nearestName(k, SPEC_KEYS);
      throw fail(`unknown field '${k}'${hit ? ` (did you mean '${hit}'?)` : ''} (fields: ${SPEC_KEYS.join(', ')})`);
    }
  }
  if (typeof raw.job !== 'string' || !SWEEP_JOBS.includes(raw.job)) throw fail(`unknown job ${typeof raw.job === 'string' ? `'${raw.job}'` : describe(raw.job)} (a sweep runs: ${SWEEP_JOBS.join(', ')})`);
  const kind = jobKind(raw.job);
  const args = optionArgs(raw.args, kind, fail);
  let params: SweepSpec['params'];
  if (raw.params !== undefined) {
    if (typeof raw.params !== 'string' || raw.params === '') throw fail(`'params' must be the path of a ROS 2 parameter file, got ${describe(raw.params)}`);
    const file = resolve(dirname(path), raw.params);
    try {
      params = { path: raw.params, text: readFileSync(file, 'utf8') };
    } catch (e) {
      throw fail(`params '${raw.params}': cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }
  const set = keyedRecord<CellValue>();
  if (raw.set !== undefined) {
    if (!isMap(raw.set)) throw fail(`'set' must map parameter keys to values, got ${describe(raw.set)}`);
    for (const [k, v] of Object.entries(raw.set)) set[k] = scalar(v, `set.${k}`, fail);
  }
  if (!isMap(raw.sweep) || Object.keys(raw.sweep).length === 0) throw fail(`'sweep' must map at least one parameter key to its values, got ${describe(raw.sweep)}`);
  const axes = Object.entries(raw.sweep).map(([key, v]) => ({ key, values: axisValues(key, v, fail) }));
  for (const a of axes) if (Object.hasOwn(set, a.key)) throw fail(`'${a.key}' is both set and swept`);
  const seeds = seedList(raw.seeds, kind, fail);
  const cells = axes.reduce((n, a) => n * a.values.length, 1) * Math.max(1, seeds.length);
  if (cells > MAX_CELLS) throw fail(`${cells} cells; a sweep takes at most ${MAX_CELLS}`);
  const best = raw.best === undefined ? undefined : bestRule(raw.best, axes, kind, fail);
  return { path, kind, args, params, set, axes, seeds, best };
}

/** The cells of a spec, in order: the last axis varies fastest, seeds fastest of all. */
export function sweepCells(spec: SweepSpec): Cell[] {
  const settings: Record<string, CellValue>[] = [{}];
  for (const axis of spec.axes) {
    const next: Record<string, CellValue>[] = [];
    for (const s of settings) for (const v of axis.values) next.push({ ...s, [axis.key]: v });
    settings.splice(0, settings.length, ...next);
  }
  const seeds: (number | null)[] = spec.seeds.length ? spec.seeds : [null];
  const cells: Cell[] = [];
  for (const values of settings) {
    for (const seed of seeds) {
      const sets = { ...spec.set, ...values };
      const argv = [
        ...spec.kind.command.split(' '), ...spec.args,
        ...Object.entries(sets).map(([k, v]) => `--set=${k}=${String(v)}`),
        ...(seed === null ? [] : spec.kind.seedArgs(seed)),
      ];
      // the id hashes what the job runs with, so a re-run (even of an edited spec) finds the cells it already has
      const id = `c${createHash('sha256').update(JSON.stringify({ argv, params: spec.params?.text ?? null })).digest('hex').slice(0, 20)}`;
      cells.push({ id, index: cells.length, values, seed, kind: spec.kind.command, argv, paramsText: spec.params?.text });
    }
  }
  return cells;
}

/** The setting of a cell, without its seed: cells of one setting are one group. */
export const settingKey = (values: Record<string, CellValue>): string => JSON.stringify(values);

function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function scalar(v: unknown, where: string, fail: (m: string) => Error): CellValue {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw fail(`${where} must be a finite number, got ${describe(v)}`);
    return v;
  }
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'number' || typeof x === 'string')) return v.join(',');
  throw fail(`${where} must be a number, text, true/false or a list, got ${describe(v)}`);
}

/** The job's own options, as a map of flag names (without --) to values; `true` is a switch. */
function optionArgs(raw: unknown, kind: JobKind, fail: (m: string) => Error): string[] {
  if (raw === undefined) return [];
  if (!isMap(raw)) throw fail(`'args' must map the job's options to values (e.g. system: acrobot), got ${describe(raw)}`);
  const out: string[] = [];
  for (const [name, v] of Object.entries(raw)) {
    if (kind.reserved.includes(name)) throw fail(`args.${name}: the sweep sets --${name} itself (${name === 'seed' || name === 'seeds' ? "use the spec's 'seeds'" : 'each cell has its own'})`);
    if (name === 'set' || name === 'params') throw fail(`args.${name}: give it as the spec's own '${name}' field`);
    if (v === true) out.push(`--${name}`);
    else if (v === false || v === null) continue;
    else out.push(`--${name}=${String(scalar(v, `args.${name}`, fail))}`);
  }
  return out;
}

function axisValues(key: string, raw: unknown, fail: (m: string) => Error): CellValue[] {
  const where = `sweep.${key}`;
  if (Array.isArray(raw)) {
    if (raw.length === 0) throw fail(`${where} is an empty list`);
    if (raw.length > MAX_AXIS_VALUES) throw fail(`${where} has ${raw.length} values; an axis takes at most ${MAX_AXIS_VALUES}`);
    const values = raw.map((v, i) => scalar(v, `${where}[${i}]`, fail));
    if (new Set(values.map(String)).size !== values.length) throw fail(`${where} lists a value twice`);
    return values;
  }
  const forms = ['grid', 'logGrid', 'uniform', 'logUniform'] as const;
  if (!isMap(raw) || Object.keys(raw).length !== 1 || !forms.includes(Object.keys(raw)[0] as never)) {
    throw fail(`${where} must be a list of values or one of ${forms.map((f) => `{${f}: {from, to, count}}`).join(', ')}, got ${describe(raw)}`);
  }
  const form = Object.keys(raw)[0] as (typeof forms)[number];
  const body = raw[form];
  if (!isMap(body)) throw fail(`${where}.${form} must be a map {from, to, count}, got ${describe(body)}`);
  for (const k of Object.keys(body)) if (!['from', 'to', 'count', 'seed', 'integer'].includes(k)) throw fail(`${where}.${form}: unknown field '${k}' (from, to, count, seed, integer)`);
  const { from, to, count } = body;
  if (typeof from !== 'number' || !Number.isFinite(from)) throw fail(`${where}.${form}.from must be a finite number, got ${describe(from)}`);
  if (typeof to !== 'number' || !Number.isFinite(to)) throw fail(`${where}.${form}.to must be a finite number, got ${describe(to)}`);
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > MAX_AXIS_VALUES) throw fail(`${where}.${form}.count must be an integer in [1, ${MAX_AXIS_VALUES}], got ${describe(count)}`);
  const log = form === 'logGrid' || form === 'logUniform';
  if (log && !(from > 0 && to > 0)) throw fail(`${where}.${form} needs from and to above 0 (a log scale), got ${from} and ${to}`);
  if (body.seed !== undefined && (typeof body.seed !== 'number' || !Number.isInteger(body.seed) || body.seed < 0)) throw fail(`${where}.${form}.seed must be an integer >= 0, got ${describe(body.seed)}`);
  if (body.integer !== undefined && typeof body.integer !== 'boolean') throw fail(`${where}.${form}.integer must be true or false, got ${describe(body.integer)}`);
  const [a, b] = log ? [Math.log(from), Math.log(to)] : [from, to];
  // random draws are seeded, so the same spec gives the same cells (and ids)
  const rng = new Rng(typeof body.seed === 'number' ? body.seed : 0);
  const unit = (i: number) => (form === 'grid' || form === 'logGrid' ? (count === 1 ? 0 : i / (count - 1)) : rng.uniform());
  const values = Array.from({ length: count }, (_, i) => {
    const t = a + (b - a) * unit(i);
    const v = log ? Math.exp(t) : t;
    return body.integer === true ? Math.round(v) : +v.toPrecision(12);
  });
  const distinct = [...new Set(values)];
  if (distinct.length !== values.length && body.integer === true) throw fail(`${where}.${form}: ${count} integers between ${from} and ${to} repeat a value; give fewer`);
  return distinct;
}

function seedList(raw: unknown, kind: JobKind, fail: (m: string) => Error): number[] {
  if (raw === undefined) return [];
  const list = typeof raw === 'number' && Number.isInteger(raw) && raw >= 1 ? Array.from({ length: raw }, (_, i) => i) : raw;
  if (!Array.isArray(list) || list.length === 0 || list.some((s) => typeof s !== 'number' || !Number.isInteger(s) || s < 0 || s > 2 ** 31 - 1)) {
    throw fail(`'seeds' must be a count (4: seeds 0-3) or a list of integers in [0, 2^31), got ${describe(raw)}`);
  }
  if (new Set(list).size !== list.length) throw fail("'seeds' lists a seed twice");
  if (!kind.seeded) throw fail(`'seeds': ${kind.command} runs its own seeds (give its option in args, e.g. seeds: 20)`);
  return list as number[];
}

function bestRule(raw: unknown, axes: Axis[], kind: JobKind, fail: (m: string) => Error): BestRule {
  if (!isMap(raw)) throw fail(`'best' must be a map {minimize|maximize: KEY, require: {METRIC: {min, max}}}, got ${describe(raw)}`);
  for (const k of Object.keys(raw)) if (!['minimize', 'maximize', 'require'].includes(k)) throw fail(`best: unknown field '${k}' (minimize, maximize, require)`);
  const orders = (['minimize', 'maximize'] as const).filter((o) => raw[o] !== undefined);
  if (orders.length !== 1) throw fail('best needs exactly one of minimize or maximize');
  const key = raw[orders[0]];
  if (typeof key !== 'string' || key === '') throw fail(`best.${orders[0]} must name a metric or a swept key, got ${describe(key)}`);
  const require: BestRule['require'] = [];
  if (raw.require !== undefined) {
    if (!isMap(raw.require)) throw fail(`best.require must map metrics to {min, max}, got ${describe(raw.require)}`);
    for (const [metric, bound] of Object.entries(raw.require)) {
      if (!isMap(bound) || Object.keys(bound).some((k) => k !== 'min' && k !== 'max') || Object.values(bound).some((v) => typeof v !== 'number' || !Number.isFinite(v))) {
        throw fail(`best.require.${metric} must be {min: NUMBER} and/or {max: NUMBER}, got ${describe(bound)}`);
      }
      require.push({ metric, min: bound.min as number | undefined, max: bound.max as number | undefined });
    }
  }
  const known = [...axes.map((a) => a.key), ...Object.keys(kind.metrics)];
  for (const name of [key, ...require.map((r) => r.metric)]) {
    if (known.includes(name)) continue;
    const hit = nearestName(name, known);
    throw fail(`best: '${name}' is neither a swept key nor a metric of ${kind.command}${hit ? ` (did you mean '${hit}'?)` : ''} (metrics: ${Object.keys(kind.metrics).join(', ')})`);
  }
  for (const r of require) if (!Object.hasOwn(kind.metrics, r.metric)) throw fail(`best.require: '${r.metric}' is a swept key, not a metric of ${kind.command}`);
  return { order: orders[0], key, require };
}
