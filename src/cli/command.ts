import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';
import { InputError } from '../input-error.js';
import { GivenText, nearestName, keyedRecord, parseNumber } from '../params.js';

// text typed for a number reads the same in a flag as in --set
export { parseNumber };

export interface OptionSpec {
  type: 'string' | 'boolean';
  description: string;
  multiple?: boolean;
  short?: string;
  valueName?: string;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  options: Record<string, OptionSpec>;
  /** How many positional arguments the command takes (default none). */
  maxPositionals?: number;
  /** ends its work early and writes what it has on SIGINT/SIGTERM (shutdown.signal); other commands are ended at once */
  interruptible?: boolean;
  /** how long an interruptible command may take to finish after the first signal (default INTERRUPT_GRACE_S) */
  interruptGraceS?: number;
  /** what an interruptible command finishes after the first signal, for its notice (default: the log and summary) */
  interruptFinishing?: string;
  run(values: Record<string, unknown>, positionals: string[]): Promise<void>;
  /** checks everything the user gave by the rules `run` applies, doing no work (a sweep checks each cell before queueing it) */
  check?(values: Record<string, unknown>): Promise<void> | void;
}

export const JSON_OPTION: OptionSpec = { type: 'boolean', description: 'print machine-readable JSON' };

export function helpText(cmd: Command): string {
  const lines = [`usage: tempered-mpc ${cmd.usage}`, '', cmd.summary, '', 'options:'];
  const all = { ...cmd.options, help: { type: 'boolean', description: 'show this help' } as OptionSpec };
  for (const [name, o] of Object.entries(all)) {
    const flag = `--${name}${o.type === 'string' ? ` ${o.valueName ?? 'VALUE'}` : ''}`;
    lines.push(`  ${flag.padEnd(28)} ${o.description}${o.multiple ? ' (repeatable)' : ''}`);
  }
  return lines.join('\n');
}

export function parseCommandArgs(cmd: Command, argv: string[]) {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, o] of Object.entries(cmd.options)) {
    options[name] = { type: o.type, ...(o.multiple ? { multiple: true } : {}), ...(o.short ? { short: o.short } : {}) };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: joinNegativeValues(argv, options), options, allowPositionals: true, strict: true });
  } catch (e) {
    const err = e as Error & { code?: string };
    const flag = /'([^']*)'/.exec(err.message)?.[1];
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag !== undefined) {
      const hit = nearestName(flag.replace(/^-+/, ''), Object.keys(options));
      throw new InputError(`unknown option '${flag}'${hit ? ` (did you mean '--${hit}'?)` : ''} (see tempered-mpc ${cmd.name} --help)`);
    }
    if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag !== undefined) {
      const name = flag.replace(/^-+/, '').split(/[ =]/)[0];
      throw new InputError(options[name]?.type === 'boolean' ? `--${name} takes no value (see tempered-mpc ${cmd.name} --help)` : `--${name} needs a value (see tempered-mpc ${cmd.name} --help)`);
    }
    throw new InputError(`${err.message.split('\n')[0]} (see tempered-mpc ${cmd.name} --help)`);
  }
  if (parsed.positionals.length > (cmd.maxPositionals ?? 0)) {
    throw new InputError(`unexpected argument '${parsed.positionals[cmd.maxPositionals ?? 0]}' (see tempered-mpc ${cmd.name} --help)`);
  }
  return parsed;
}

/**
 * `--x0 -1,0` and `--duration -5`: a value that starts with '-' followed by a
 * number is the option's value, not another option (the argument parser
 * would call it ambiguous); such pairs become `--x0=-1,0`.
 */
function joinNegativeValues(argv: string[], options: Record<string, { type: 'string' | 'boolean' }>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].startsWith('--') && !argv[i].includes('=') ? argv[i].slice(2) : undefined;
    const next = argv[i + 1];
    if (name !== undefined && options[name]?.type === 'string' && next !== undefined && /^-(\d|\.\d|inf)/i.test(next)) {
      out.push(`${argv[i]}=${next}`);
      i++;
    } else out.push(argv[i]);
  }
  return out;
}

export function stringOpt(values: Record<string, unknown>, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function requireString(values: Record<string, unknown>, name: string): string {
  const v = stringOpt(values, name);
  if (v === undefined || v === '') throw new InputError(`--${name} is required`);
  return v;
}

export function parseInteger(label: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER, why = ''): number {
  const v = parseNumber(label, text);
  if (!Number.isInteger(v) || v < min) throw new InputError(`${label} must be an integer >= ${min}, got '${text}'`);
  if (v > max) throw new InputError(`${label} must be at most ${max}${why ? ` (${why})` : ''}, got '${text}'`);
  return v;
}

/** An optional integer flag: its default when absent, else an integer in [min, max] (or a usage error saying why the cap). */
export function optionalInteger(values: Record<string, unknown>, name: string, fallback: number, min: number, max?: number, why?: string): number {
  const text = stringOpt(values, name);
  return text === undefined ? fallback : parseInteger(`--${name}`, text, min, max, why);
}

/** Most threads a --threads flag may start: one per core (more only share the cores). */
export const MAX_THREADS = availableParallelism();

export function parseVector(label: string, text: string, length: number): number[] {
  const parts = text.split(',');
  if (parts.length !== length) throw new InputError(`${label} needs ${length} comma-separated numbers, got ${parts.length}`);
  return parts.map((p, i) => parseNumber(`${label}[${i}]`, p));
}

/** --set key=value pairs; values stay text (GivenText) until the parameter's declaration reads them. */
export function parseOverrides(pairs: string[] | undefined): Record<string, GivenText> {
  const out: Record<string, GivenText> = keyedRecord();
  for (const pair of pairs ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new InputError(`--set expects key=value, got '${pair}'`);
    out[pair.slice(0, eq).trim()] = new GivenText(pair.slice(eq + 1).trim());
  }
  return out;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

export function table(rows: (string | number)[][], header: string[]): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? formatNumber(c) : c)))];
  const widths = header.map((_, j) => Math.max(...cells.map((r) => String(r[j]).length)));
  return cells.map((r) => r.map((c, j) => String(c).padEnd(widths[j])).join('  ').trimEnd()).join('\n');
}

export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : v.toFixed(4).replace(/\.?0+$/, '');
}

/** A folder name for a run's output: runs/NAME-2026-12-02T13-25-36 (NAME empty: the time alone). */
export function timestamp(): string {
  return new Date().toISOString().slice(0, 19).replace(/:/g, '-');
}

/**
 * The output folder (--out, else runs/NAME-TIMESTAMP), made and checked
 * before any work starts: an empty name, a name too long for the file
 * system, a file in the way, a place that cannot hold a folder (/proc, a
 * read-only disk) are refused in one line naming what was given.
 */
export function outputFolder(values: Record<string, unknown>, name: string): string {
  const given = stringOpt(values, 'out');
  const out = given ?? freshRunFolder(name ? `${name}-${timestamp()}` : timestamp());
  const label = `--out '${out.length > 60 ? `${out.slice(0, 57)}...` : out}'`;
  if (out.trim() === '') throw new InputError('--out must name a folder, got an empty text');
  const long = out.split(sep).find((part) => Buffer.byteLength(part) > 255);
  if (long !== undefined) throw new InputError(`${label}: the name '${long.slice(0, 20)}...' has ${Buffer.byteLength(long)} bytes; a file system takes at most 255`);
  try {
    makeFolders(out);
    if (!statSync(out).isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'ENOTDIR' });
    accessSync(out, constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why: Record<string, string> = {
      EEXIST: 'a file of that name is in the way', ENOTDIR: 'a file is in the way (not a folder)', EACCES: 'permission denied', EPERM: 'permission denied',
      EROFS: 'the file system is read-only', ENOENT: 'it cannot be made there', ENAMETOOLONG: 'the name is too long', ENOSPC: 'no space left',
    };
    throw new InputError(`${label}: cannot write there (${code ? `${why[code] ?? code}` : (e as Error).message})`);
  }
  return out;
}

/**
 * runs/BASE, or runs/BASE-2, -3, ... when it exists: two commands started in
 * the same second (two benches side by side) must not write into one folder.
 * Claimed by a mkdir that fails on an existing folder; a runs/ that cannot be
 * made is left to the caller's check to name.
 */
function freshRunFolder(base: string): string {
  try {
    makeFolders('runs');
  } catch {
    return join('runs', base);
  }
  for (let k = 1; ; k++) {
    const candidate = join('runs', k === 1 ? base : `${base}-${k}`);
    try {
      mkdirSync(candidate);
      return candidate;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || k >= 1000) return candidate;
    }
  }
}

/**
 * mkdir -p, one level at a time: Node's own recursive mkdir spins forever
 * where a parent exists but refuses children (/proc/foo answers ENOENT).
 */
function makeFolders(path: string): void {
  const missing: string[] = [];
  let at = resolve(path);
  while (!existsSync(at)) {
    missing.push(at);
    const parent = dirname(at);
    if (parent === at) break;
    at = parent;
  }
  for (const folder of missing.reverse()) mkdirSync(folder);
}

/**
 * The training modules, which need TensorFlow.js: an optional dependency,
 * left out of the installed ROS package (ros/runtime-modules.mjs), which
 * only controls. Without it, one line says where training runs.
 */
export async function loadTraining<T>(load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_MODULE_NOT_FOUND' && /@tensorflow\//.test(err.message)) {
      throw new Error('training needs TensorFlow.js (@tensorflow/tfjs), which this install leaves out (the ROS package carries only what control needs): train from a checkout after `npm ci`');
    }
    throw e;
  }
}
