/**
 * Parameter schemas: each parameter is declared once, with its type, default,
 * range and meaning. CLI `--set`, YAML parameter files, ROS parameter
 * descriptors, the live-parameter path and the docs are all derived from
 * these declarations.
 */

import { InputError } from './input-error.js';

interface ParamBase {
  doc: string;
  /** why the value cannot change while running (absent: it can, at the next tick boundary) */
  readOnly?: string;
}

export interface NumberParam extends ParamBase {
  kind: 'number';
  default: number;
  min?: number;
  max?: number;
  /** min/max excluded from the valid range */
  exclusive?: boolean;
  integer?: boolean;
}

export interface EnumParam<C extends string = string> extends ParamBase {
  kind: 'enum';
  default: C;
  choices: readonly C[];
}

/** A list of numbers or of names; an empty default means "the system's own" (resolved by the owner). */
export interface ListParam<E extends 'number' | 'string' = 'number' | 'string'> extends ParamBase {
  kind: 'list';
  of: E;
  default: readonly (E extends 'number' ? number : string)[];
  /** most entries accepted */
  maxLength: number;
}

/** A switch: true or false (never an enumeration of 'on' and 'off', which YAML and ROS read as booleans). */
export interface FlagParam extends ParamBase {
  kind: 'flag';
  default: boolean;
}

/** Free text, e.g. a path. */
export interface TextParam extends ParamBase {
  kind: 'text';
  default: string;
  maxLength: number;
}

export type ParamDef = NumberParam | EnumParam | ListParam | TextParam | FlagParam;
export type Schema = Readonly<Record<string, ParamDef>>;
export type ParamValue = number | string | boolean | readonly number[] | readonly string[];

export type ParamsOf<S extends Schema> = {
  -readonly [K in keyof S]: S[K] extends EnumParam<infer C> ? C : S[K] extends ListParam<infer E> ? (E extends 'number' ? number[] : string[]) : S[K] extends TextParam ? string : S[K] extends FlagParam ? boolean : number;
};

type Extras<P> = Omit<P, 'kind' | 'default' | 'doc' | 'choices' | 'of'>;

export const num = (d: number, doc: string, range: Extras<NumberParam> = {}): NumberParam =>
  ({ kind: 'number', default: d, doc, ...range });

export const choice = <C extends string>(d: C, choices: readonly C[], doc: string, extras: Extras<EnumParam> = {}): EnumParam<C> =>
  ({ kind: 'enum', default: d, choices, doc, ...extras });

export const list = <E extends 'number' | 'string'>(of: E, doc: string, extras: Extras<ListParam> & { maxLength: number }): ListParam<E> =>
  ({ kind: 'list', of, default: [], doc, ...extras } as ListParam<E>);

export const flag = (d: boolean, doc: string, extras: Extras<FlagParam> = {}): FlagParam =>
  ({ kind: 'flag', default: d, doc, ...extras });

export const text = (d: string, doc: string, extras: Extras<TextParam>): TextParam =>
  ({ kind: 'text', default: d, doc, ...extras });

export function rangeText(p: ParamDef): string {
  if (p.kind === 'enum') return p.choices.join('|');
  if (p.kind === 'flag') return 'true|false';
  if (p.kind === 'text') return `text (at most ${p.maxLength} characters)`;
  if (p.kind === 'list') return `list of ${p.of}s (at most ${p.maxLength})`;
  const lo = p.min === undefined ? '' : `${p.exclusive ? '(' : '['}${p.min}`;
  const hi = p.max === undefined ? '' : `${p.max}${p.exclusive ? ')' : ']'}`;
  return `${lo}..${hi}${p.integer ? ' integer' : ''}`;
}

/**
 * A value as the user typed it on a command line (`--set k=v`), or wrote it
 * where the source's own type is lost (YAML's `.nan`): text that the
 * parameter's declaration parses. Every other source (YAML, JSON, ROS) must
 * give the declared type: one rule everywhere, no coercion of "1024".
 */
export class GivenText {
  constructor(readonly text: string) {}
}

/**
 * A record for keys the user chose (`--set`, a file's keys): no prototype, so
 * `__proto__` or `constructor` is a key like any other (and refused as
 * unknown), never the object's prototype or an inherited property.
 */
export const keyedRecord = <T = unknown>(): Record<string, T> => Object.create(null) as Record<string, T>;

/** Validates one value against its declaration; the error names the parameter, the rule and the value as given. */
export function checkValue(label: string, def: ParamDef, given: unknown): ParamValue {
  const value = given instanceof GivenText ? parseGivenText(label, def, given.text) : given;
  if (def.kind === 'enum') {
    if (typeof value !== 'string' || !def.choices.includes(value)) {
      throw new InputError(`${label} must be one of ${def.choices.join(', ')}, got ${describe(given)}`);
    }
    return value;
  }
  if (def.kind === 'list') return checkList(label, def, value);
  if (def.kind === 'flag') {
    if (typeof value !== 'boolean') throw new InputError(`${label} must be true or false, got ${describe(given)}`);
    return value;
  }
  if (def.kind === 'text') {
    if (typeof value !== 'string') throw new InputError(`${label} must be text, got ${describe(given)}`);
    if (value.length > def.maxLength) throw new InputError(`${label} takes at most ${def.maxLength} characters, got ${value.length}`);
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f]/.test(value)) throw new InputError(`${label} must not hold control characters, got ${describe(value)}`);
    return value;
  }
  // ROS hands integers over as bigints
  const v = typeof value === 'bigint' ? Number(value) : value;
  if (typeof v !== 'number') throw new InputError(`${label} must be a number, got ${describe(given)}`);
  if (!Number.isFinite(v)) throw new InputError(`${label} must be a finite number, got ${describe(given)}`);
  if (def.integer && !Number.isInteger(v)) throw new InputError(`${label} must be an integer, got ${v}`);
  const ex = def.exclusive;
  if (def.min !== undefined && (ex ? v <= def.min : v < def.min)) throw new InputError(`${label} must be ${ex ? '>' : '>='} ${def.min}, got ${v}`);
  if (def.max !== undefined && (ex ? v >= def.max : v > def.max)) throw new InputError(`${label} must be ${ex ? '<' : '<='} ${def.max}, got ${v}`);
  return v;
}

/** Typed text read as a finite number; the error names the label and the text as given. */
export function parseNumber(label: string, text: string): number {
  const t = text.trim();
  const v = t === '' ? NaN : Number(t);
  if (!Number.isFinite(v)) throw new InputError(`${label} must be a finite number, got '${text}'`);
  return v;
}

/** Text typed for a parameter, read as its declared kind: a number, a comma-separated list, or the text itself. */
function parseGivenText(label: string, def: ParamDef, text: string): unknown {
  if (def.kind === 'number') return parseNumber(label, text);
  if (def.kind === 'flag') return text.trim() === 'true' ? true : text.trim() === 'false' ? false : text;
  if (def.kind !== 'list') return text;
  const items = text.trim() === '' ? [] : text.split(',').map((s) => s.trim());
  return def.of === 'number' ? items.map((t, i) => parseNumber(`${label}[${i}]`, t)) : items;
}

function checkList(label: string, def: ListParam, value: unknown): readonly number[] | readonly string[] {
  if (!Array.isArray(value) && !ArrayBuffer.isView(value)) throw new InputError(`${label} must be a list of ${def.of}s, got ${describe(value)}`);
  const arr = Array.from(value as ArrayLike<unknown>);
  if (arr.length > def.maxLength) throw new InputError(`${label} takes at most ${def.maxLength} entries, got ${arr.length}`);
  if (def.of === 'string') {
    const bad = arr.findIndex((s) => typeof s !== 'string' || s === '');
    if (bad >= 0) throw new InputError(`${label}[${bad}] must be a non-empty name, got ${describe(arr[bad])}`);
    return arr as string[];
  }
  return arr.map((x, i) => {
    // a list item given as text is a YAML .nan or .inf: refused below, naming what the file says
    const v = x instanceof GivenText ? Number(x.text) : x;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new InputError(`${label}[${i}] must be a finite number, got ${describe(x)}`);
    return v;
  });
}

/** A value as the user gave it, short: text quoted, numbers as written (NaN, Infinity), a string's type named where a number was due. */
export function describe(value: unknown): string {
  if (value instanceof GivenText) return `'${clip(value.text)}'`;
  if (typeof value === 'bigint' || typeof value === 'number' || typeof value === 'boolean') return `${value}${typeof value === 'boolean' ? ' (a boolean)' : ''}`;
  if (typeof value === 'string') return `${clip(JSON.stringify(value))} (text)`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === 'object') return 'a map';
  return String(value);
}

const clip = (text: string) => (text.length > 80 ? `${text.slice(0, 77)}...` : text);

/** Defaults, then per-context defaults, then overrides; unknown keys are errors. */
export function resolveParams<S extends Schema>(
  label: string,
  schema: S,
  overrides: Readonly<Record<string, unknown>> = {},
  contextDefaults: Readonly<Record<string, unknown>> = {},
): ParamsOf<S> {
  const out: Record<string, ParamValue> = {};
  for (const [k, def] of Object.entries(schema)) out[k] = def.default as ParamValue;
  for (const source of [contextDefaults, overrides]) {
    for (const [k, v] of Object.entries(source)) {
      // own keys only: 'constructor' or '__proto__' is no parameter
      const def = Object.hasOwn(schema, k) ? schema[k] : undefined;
      if (!def) {
        const hit = nearestName(k, Object.keys(schema));
        throw new InputError(`unknown ${label} parameter '${clip(k)}'${hit ? ` (did you mean '${hit}'?)` : ''} (known: ${Object.keys(schema).join(', ')})`);
      }
      out[k] = checkValue(`${label}.${k}`, def, v);
    }
  }
  return out as ParamsOf<S>;
}

/**
 * A schema's parameters as flat entries under a prefix (`tsmc.`, `model.`);
 * `groupReadOnly` makes the whole group read-only, with that reason.
 */
export function schemaEntries(schema: Schema, prefix = '', groupReadOnly?: string): ParamEntry[] {
  return Object.entries(schema).map(([k, def]) => ({ key: `${prefix}${k}`, def, ...(groupReadOnly ?? def.readOnly ? { readOnly: groupReadOnly ?? def.readOnly } : {}) }));
}

/** One parameter of a node or a run, by its flat key (`rateHz`, `tsmc.particles`, `model.horizon`). */
export interface ParamEntry {
  key: string;
  def: ParamDef;
  /** why it cannot change while running; absent: live */
  readOnly?: string;
}

export type SetResult =
  | { ok: true; applied: Record<string, ParamValue> }
  | { ok: false; reasons: Record<string, string> };

/**
 * The live-parameter path, free of any transport: the ROS node's parameter
 * callback, the HTTP tuning API and tests all call `request`. A request is
 * validated in full by the schema (unknown, wrong type, out of range,
 * read-only, cross-parameter rules) and accepted all or nothing; accepted
 * changes wait until the owner's next tick boundary calls `takePending`, so a
 * plan never sees half a change.
 */
export class LiveParameters {
  private readonly entries: ReadonlyMap<string, ParamEntry>;
  private readonly current: Record<string, ParamValue>;
  private pending: Record<string, ParamValue> = {};

  constructor(
    entries: readonly ParamEntry[],
    initial: Readonly<Record<string, ParamValue>>,
    /** rules across parameters: a reason (keyed by the parameter it names) when a candidate set is inconsistent */
    private readonly consistency: (values: Readonly<Record<string, ParamValue>>) => Record<string, string> = () => ({}),
  ) {
    this.entries = new Map(entries.map((e) => [e.key, e]));
    this.current = {};
    for (const e of entries) {
      if (!(e.key in initial)) throw new Error(`live parameters: no initial value for '${e.key}'`);
      this.current[e.key] = initial[e.key];
    }
  }

  get list(): readonly ParamEntry[] {
    return [...this.entries.values()];
  }

  entry(key: string): ParamEntry | undefined {
    return this.entries.get(key);
  }

  /** Values in effect, with accepted changes that wait for the next tick included. */
  values(): Record<string, ParamValue> {
    return { ...this.current, ...this.pending };
  }

  /** Validates a set of changes; nothing is stored. One reason per bad key. */
  check(changes: Readonly<Record<string, unknown>>): SetResult {
    const reasons: Record<string, string> = {};
    const applied: Record<string, ParamValue> = {};
    const current = this.values();
    for (const [key, value] of Object.entries(changes)) {
      const e = this.entries.get(key);
      if (!e) {
        reasons[key] = unknownParameter(key, [...this.entries.keys()]);
        continue;
      }
      try {
        const v = checkValue(key, e.def, value);
        if (e.readOnly && !sameValue(v, current[key])) {
          reasons[key] = `${key} is read-only while running: ${e.readOnly}`;
          continue;
        }
        applied[key] = v;
      } catch (err) {
        reasons[key] = (err as Error).message;
      }
    }
    if (Object.keys(reasons).length === 0) Object.assign(reasons, this.consistency({ ...current, ...applied }));
    return Object.keys(reasons).length ? { ok: false, reasons } : { ok: true, applied };
  }

  /** check(), and on success queue the changes for the next tick boundary. */
  request(changes: Readonly<Record<string, unknown>>): SetResult {
    const r = this.check(changes);
    if (r.ok) Object.assign(this.pending, r.applied);
    return r;
  }

  /** At a tick boundary: the accepted changes since the last call (undefined when none), now in effect. */
  takePending(): Record<string, ParamValue> | undefined {
    const keys = Object.keys(this.pending);
    if (keys.length === 0) return undefined;
    const taken = this.pending;
    this.pending = {};
    Object.assign(this.current, taken);
    return taken;
  }
}

/** Whether two values are the same: scalars by ===, lists (arrays or typed arrays, as ROS hands them over) item by item. */
export function sameValue(a: unknown, b: unknown): boolean {
  const list = (v: unknown) => (Array.isArray(v) || ArrayBuffer.isView(v) ? Array.from(v as ArrayLike<unknown>) : undefined);
  const [la, lb] = [list(a), list(b)];
  if (la || lb) return la !== undefined && lb !== undefined && la.length === lb.length && la.every((x, i) => x === lb[i]);
  return a === b;
}

/** Longer names get no suggestion: the edit distance costs their length squared, and no parameter is named that long. */
const SUGGESTION_MAX_LENGTH = 64;
/** The longest parameter name accepted at all (anything longer is refused unread). */
const PARAMETER_NAME_MAX_LENGTH = 200;
/**
 * Most parameters one request may name (a PATCH, a client message, a ROS
 * set_parameters): every table has fewer than half as many, and a request
 * with more is refused whole, unread, so no client can make the command
 * thread look up thousands of unknown names.
 */
export const PARAMETERS_PER_REQUEST_LIMIT = 128;

/** "unknown parameter 'x'", with "(did you mean 'y'?)" for a near miss among the known keys. */
export function unknownParameter(key: string, known: readonly string[]): string {
  if (key.length > PARAMETER_NAME_MAX_LENGTH) return `unknown parameter '${key.slice(0, 40)}...' (${key.length} characters; no parameter name is longer than ${PARAMETER_NAME_MAX_LENGTH})`;
  const hit = nearestName(key, known);
  return `unknown parameter '${key}'${hit ? ` (did you mean '${hit}'?)` : ''}`;
}

/** The known name a short name most likely meant: same but for case, its last part, or at most two edits away. */
export function nearestName(key: string, known: readonly string[]): string | undefined {
  if (key.length > SUGGESTION_MAX_LENGTH) return undefined;
  const lower = key.toLowerCase();
  return known.find((k) => k.toLowerCase() === lower || k.toLowerCase().endsWith(`.${lower}`))
    ?? known.find((k) => Math.abs(k.length - key.length) <= 2 && editDistance(k.toLowerCase(), lower) <= 2);
}
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length];
}
