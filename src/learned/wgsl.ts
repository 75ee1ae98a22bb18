import { wgsl } from '../expr/emit.js';
import { catchWgsl, type PolicyCatch } from '../policy/catch.js';
import type { PriorMeta } from './checkpoint.js';
import type { Mlp } from './mlp.js';
import { featureDim, LOG_STD_RANGE, PriorNetworks, StateFeatures } from './networks.js';

/*
 * The learned networks in WGSL (f32), generated from a checkpoint's shapes
 * and feature declaration: the same functions as the CPU's stateFeatures,
 * compileMlp and gaussianHead, written once here for every shader that
 * evaluates a network (the GPU closed loop of policy optimisation, the
 * prior's inference).
 */

const f32 = (v: number) => wgsl.literal(v);

/**
 * Statements setting `out(k)` to the k-th state feature of the state `x(j)`
 * relative to `reference(j)` (WGSL expressions): (sin, cos) of an angle's
 * difference, the difference / scale of every raw state, in the CPU's order.
 */
export function featureStatements(f: StateFeatures, x: (j: number) => string, reference: (j: number) => string, out: (k: number) => string): string[] {
  const lines: string[] = [];
  let k = 0;
  for (let j = 0; j < f.angle.length; j++) {
    if (f.angle[j]) {
      lines.push(`${out(k)} = sin(${x(j)} - ${reference(j)}); ${out(k + 1)} = cos(${x(j)} - ${reference(j)});`);
      k += 2;
    }
    if (f.raw[j]) lines.push(`${out(k++)} = (${x(j)} - ${reference(j)}) / ${f32(f.scale[j])};`);
  }
  return lines;
}

/** Where a layer reads and writes: WGSL expressions of a u32 index expression (`w` a word offset of the weights). */
export interface LayerAccess {
  weight: (index: string) => string;
  input: (i: string) => string;
  output: (k: string) => string;
}

/**
 * One dense layer, y = x W + b with W row-major [inputs][outputs] from word
 * `offset` and b after it (a checkpoint's layout, packMlp's), ELU on hidden
 * layers.
 */
export function denseLayerStatements(inputs: number, outputs: number, offset: number, hidden: boolean, at: LayerAccess): string[] {
  return [
    `for (var k: u32 = 0u; k < ${outputs}u; k = k + 1u) {`,
    `var a: f32 = ${at.weight(`${offset + inputs * outputs}u + k`)};`,
    `for (var i: u32 = 0u; i < ${inputs}u; i = i + 1u) { a = a + ${at.input('i')} * ${at.weight(`${offset}u + i * ${outputs}u + k`)}; }`,
    hidden ? 'if (a < 0.0) { a = exp(a) - 1.0; }' : '',
    `${at.output('k')} = a;`,
    '}',
  ].filter(Boolean);
}

/** A network's weights and biases, layer by layer, as one f32 array (the layout denseLayerStatements reads). */
export function packMlp(net: Mlp): Float32Array {
  const out = new Float32Array(net.layers.reduce((s, l) => s + (l.inputs + 1) * l.outputs, 0));
  let o = 0;
  for (const l of net.layers) {
    out.set(l.weight, o);
    out.set(l.bias, o + l.inputs * l.outputs);
    o += (l.inputs + 1) * l.outputs;
  }
  return out;
}

/** Layer sizes [inputs, hidden..., outputs] of a network. */
export const sizesOf = (net: Mlp): number[] => [net.layers[0].inputs, ...net.layers.map((l) => l.outputs)];

/**
 * A whole network's forward pass on local arrays: reads `input` (a WGSL
 * array of its inputs), leaves the outputs in `h${last}`; weights from word
 * `offset` of the buffer `W`.
 */
export function forwardStatements(sizes: readonly number[], offset: number, input: string, prefix: string, buffer = 'W'): string[] {
  const lines: string[] = [];
  let o = offset;
  let from = input;
  for (let l = 0; l + 1 < sizes.length; l++) {
    const to = `${prefix}${l + 1}`;
    lines.push(`var ${to}: array<f32, ${sizes[l + 1]}>;`);
    lines.push(...denseLayerStatements(sizes[l], sizes[l + 1], o, l + 2 < sizes.length, {
      weight: (index) => `${buffer}[${index}]`, input: (i) => `${from}[${i}]`, output: (k) => `${to}[${k}]`,
    }));
    o += (sizes[l] + 1) * sizes[l + 1];
    from = to;
  }
  return lines;
}

/** A prior's policy and value networks packed for `priorFunctionWgsl`: the policy's weights, then Q's. */
export function packPrior(networks: PriorNetworks): Float32Array {
  const policy = packMlp(networks.policy);
  const q = packMlp(networks.q);
  const weights = new Float32Array(policy.length + q.length);
  weights.set(policy);
  weights.set(q, policy.length);
  return weights;
}

/**
 * WGSL of `fn prior_eval(x: array<f32, n>, r: array<f32, n>) -> Prior`: the
 * prior as a planner reads it at one state x (model units) relative to the
 * reference r: features, the sampling policy's Gaussian (mean tanh-squashed
 * on bounded controls, log-std squashed into LOG_STD_RANGE, normalised
 * control units) and the value V(x) = symexp(Q(x, mean)) raised to the
 * prior's floor; `finite` false when an output is not a finite number (WGSL
 * may assume none is NaN or infinite, so it is judged on the bits). Also
 * `fn prior_q(x, r, z) -> PriorQ`, Q at any action (value and finite). Weights
 * from the storage buffer `buffer`, laid out by packPrior.
 */
export function priorFunctionWgsl(meta: PriorMeta, networks: PriorNetworks, buffer: string): string {
  const n = meta.stateDim;
  const m = meta.controlDim;
  const d = featureDim(meta.features);
  const policySizes = sizesOf(networks.policy);
  const qSizes = sizesOf(networks.q);
  const qOffset = policySizes.slice(0, -1).reduce((s, v, l) => s + (v + 1) * policySizes[l + 1], 0);
  const [lo, hi] = LOG_STD_RANGE;
  const raw = `p${policySizes.length - 1}`;
  const q = `q${qSizes.length - 1}`;
  return [
    `struct Prior { mean: array<f32, ${m}>, deviation: array<f32, ${m}>, value: f32, finite: bool }`,
    'struct PriorQ { value: f32, finite: bool }',
    'fn prior_bits_finite(v: f32) -> bool { return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u; }',
    `fn prior_eval(x: array<f32, ${n}>, r: array<f32, ${n}>) -> Prior {`,
    'var out: Prior;',
    'out.finite = true;',
    `var p0: array<f32, ${d}>;`,
    ...featureStatements(meta.features, (j) => `x[${j}]`, (j) => `r[${j}]`, (k) => `p0[${k}]`),
    ...forwardStatements(policySizes, 0, 'p0', 'p', buffer),
    ...Array.from({ length: m }, (_, j) => [
      `out.finite = out.finite && prior_bits_finite(${raw}[${j}]) && prior_bits_finite(${raw}[${m + j}]);`,
      `out.mean[${j}] = ${meta.bounded[j] ? `tanh(clamp(${raw}[${j}], -15.0, 15.0))` : `${raw}[${j}]`};`,
      `out.deviation[${j}] = exp(${f32(lo)} + ${f32(0.5 * (hi - lo))} * (tanh(clamp(${raw}[${m + j}], -15.0, 15.0)) + 1.0));`,
    ].join(' ')),
    ...(meta.catch ? catchBlend(meta, meta.catch) : []),
    'let v = prior_q_of_features(p0, out.mean);',
    'out.value = v.value; out.finite = out.finite && v.finite;',
    'return out;',
    '}',
    '',
    /** Q(x, z) at any action z (normalised), floored as the value: what TRT-SMC's twisted proposal weighs its atoms by (LearnedPrior.q). */
    `fn prior_q(x: array<f32, ${n}>, r: array<f32, ${n}>, z: array<f32, ${m}>) -> PriorQ {`,
    `var p0: array<f32, ${d}>;`,
    ...featureStatements(meta.features, (j) => `x[${j}]`, (j) => `r[${j}]`, (k) => `p0[${k}]`),
    'return prior_q_of_features(p0, z);',
    '}',
    '',
    `fn prior_q_of_features(p0: array<f32, ${d}>, z: array<f32, ${m}>) -> PriorQ {`,
    'var out: PriorQ;',
    `var q0: array<f32, ${d + m}>;`,
    `for (var i: u32 = 0u; i < ${d}u; i = i + 1u) { q0[i] = p0[i]; }`,
    `for (var j: u32 = 0u; j < ${m}u; j = j + 1u) { q0[${d}u + j] = z[j]; }`,
    ...forwardStatements(qSizes, qOffset, 'q0', 'q', buffer),
    `out.finite = prior_bits_finite(${q}[0]) && abs(${q}[0]) < 88.0;`,
    `out.value = sign(${q}[0]) * (exp(min(abs(${q}[0]), 88.0)) - 1.0);`,
    meta.valueFloor !== undefined ? `out.value = max(out.value, ${f32(meta.valueFloor)});` : '',
    'return out;',
    '}',
  ].filter(Boolean).join('\n');
}

/** The catch blended into the policy's mean (normalised units): (1 - g) mean + g (u_lqr - center) / scale. */
function catchBlend(meta: PriorMeta, c: PolicyCatch): string[] {
  const at = { angle: meta.features.angle, bounded: meta.bounded, controlCenter: meta.controlCenter, controlScale: meta.controlScale, x: (i: number) => `x[${i}]`, r: (i: number) => `r[${i}]` };
  return ['{', ...catchWgsl(c, at), ...meta.bounded.map((_, j) => `out.mean[${j}] = (1.0 - cg) * out.mean[${j}] + cg * (clq${j} - ${f32(meta.controlCenter[j])}) / ${f32(meta.controlScale[j])};`), '}'];
}
