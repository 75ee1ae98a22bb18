/**
 * Parameter schemas: each parameter is declared once, with its type, default,
 * range and meaning. CLI `--set`, YAML parameter files, ROS parameter
 * descriptors and the docs are all derived from these declarations.
 */

export interface NumberParam {
  kind: 'number';
  default: number;
  doc: string;
  min?: number;
  max?: number;
  /** min/max excluded from the valid range */
  exclusive?: boolean;
  integer?: boolean;
}

export interface EnumParam<C extends string = string> {
  kind: 'enum';
  default: C;
  choices: readonly C[];
  doc: string;
}

export type ParamDef = NumberParam | EnumParam;
export type Schema = Readonly<Record<string, ParamDef>>;

export type ParamsOf<S extends Schema> = {
  -readonly [K in keyof S]: S[K] extends EnumParam<infer C> ? C : number;
};

export const num = (d: number, doc: string, range: Omit<NumberParam, 'kind' | 'default' | 'doc'> = {}): NumberParam =>
  ({ kind: 'number', default: d, doc, ...range });

export const choice = <C extends string>(d: C, choices: readonly C[], doc: string): EnumParam<C> =>
  ({ kind: 'enum', default: d, choices, doc });

export function rangeText(p: ParamDef): string {
  if (p.kind === 'enum') return p.choices.join('|');
  const lo = p.min === undefined ? '' : `${p.exclusive ? '(' : '['}${p.min}`;
  const hi = p.max === undefined ? '' : `${p.max}${p.exclusive ? ')' : ']'}`;
  return `${lo}..${hi}${p.integer ? ' integer' : ''}`;
}

/** Validates one value against its declaration; the error names the parameter and the rule. */
export function checkValue(label: string, def: ParamDef, value: unknown): number | string {
  if (def.kind === 'enum') {
    if (typeof value !== 'string' || !def.choices.includes(value)) {
      throw new Error(`${label} must be one of ${def.choices.join(', ')}, got ${JSON.stringify(value)}`);
    }
    return value;
  }
  const v = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${label} must be a finite number, got ${JSON.stringify(value)}`);
  if (def.integer && !Number.isInteger(v)) throw new Error(`${label} must be an integer, got ${v}`);
  const ex = def.exclusive;
  if (def.min !== undefined && (ex ? v <= def.min : v < def.min)) throw new Error(`${label} must be ${ex ? '>' : '>='} ${def.min}, got ${v}`);
  if (def.max !== undefined && (ex ? v >= def.max : v > def.max)) throw new Error(`${label} must be ${ex ? '<' : '<='} ${def.max}, got ${v}`);
  return v;
}

/** Defaults, then per-context defaults, then overrides; unknown keys are errors. */
export function resolveParams<S extends Schema>(
  label: string,
  schema: S,
  overrides: Readonly<Record<string, unknown>> = {},
  contextDefaults: Readonly<Record<string, unknown>> = {},
): ParamsOf<S> {
  const out: Record<string, number | string> = {};
  for (const [k, def] of Object.entries(schema)) out[k] = def.default;
  for (const source of [contextDefaults, overrides]) {
    for (const [k, v] of Object.entries(source)) {
      const def = schema[k];
      if (!def) throw new Error(`unknown ${label} parameter '${k}' (known: ${Object.keys(schema).join(', ')})`);
      out[k] = checkValue(`${label}.${k}`, def, v);
    }
  }
  return out as ParamsOf<S>;
}
