import { parseArgs } from 'node:util';

/** A usage or input error: printed as one line, exit code 2. */
export class UsageError extends Error {}

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
  run(values: Record<string, unknown>, positionals: string[]): Promise<void>;
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
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split('\n')[0]} (see tempered-mpc ${cmd.name} --help)`);
  }
  if (parsed.positionals.length > (cmd.maxPositionals ?? 0)) {
    throw new UsageError(`unexpected argument '${parsed.positionals[cmd.maxPositionals ?? 0]}' (see tempered-mpc ${cmd.name} --help)`);
  }
  return parsed;
}

export function stringOpt(values: Record<string, unknown>, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function requireString(values: Record<string, unknown>, name: string): string {
  const v = stringOpt(values, name);
  if (v === undefined || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

export function parseNumber(label: string, text: string): number {
  const t = text.trim();
  const v = t === '' ? NaN : Number(t);
  if (!Number.isFinite(v)) throw new UsageError(`${label} must be a finite number, got '${text}'`);
  return v;
}

export function parseInteger(label: string, text: string, min: number): number {
  const v = parseNumber(label, text);
  if (!Number.isInteger(v) || v < min) throw new UsageError(`${label} must be an integer >= ${min}, got '${text}'`);
  return v;
}

/** An optional integer flag: its default when absent, else an integer >= min (or a usage error). */
export function optionalInteger(values: Record<string, unknown>, name: string, fallback: number, min: number): number {
  const text = stringOpt(values, name);
  return text === undefined ? fallback : parseInteger(`--${name}`, text, min);
}

export function parseVector(label: string, text: string, length: number): number[] {
  const parts = text.split(',');
  if (parts.length !== length) throw new UsageError(`${label} needs ${length} comma-separated numbers, got ${parts.length}`);
  return parts.map((p, i) => parseNumber(`${label}[${i}]`, p));
}

/** --set key=value pairs; values stay text until the parameter's schema checks them. */
export function parseOverrides(pairs: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--set expects key=value, got '${pair}'`);
    out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
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
