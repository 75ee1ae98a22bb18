import { wgsl } from '../expr/emit.js';
import { GpuProgram, storageDeclarations, StorageSpec, WebGpuBackend } from '../kernels/webgpu.js';
import { WORKGROUP_SIZE } from '../kernels/wgsl-source.js';
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
const sizesOf = (net: Mlp) => [net.layers[0].inputs, ...net.layers.map((l) => l.outputs)];

/**
 * A whole network's forward pass on local arrays: reads `input` (a WGSL
 * array of its inputs), leaves the outputs in `h${last}`; weights from word
 * `offset` of the buffer `W`.
 */
function forwardStatements(sizes: readonly number[], offset: number, input: string, prefix: string, buffer = 'W'): string[] {
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

const MLP_BUFFERS: readonly StorageSpec[] = [
  { name: 'W', element: 'f32', readOnly: true },
  { name: 'IN', element: 'f32', readOnly: true },
  { name: 'hdr', element: 'u32', readOnly: true },
  { name: 'OUT', element: 'f32', readOnly: false },
];

/** Rows of a batch through one network: one invocation per row. */
function mlpShader(sizes: readonly number[]): string {
  const [inputs, outputs] = [sizes[0], sizes[sizes.length - 1]];
  return [
    ...storageDeclarations(MLP_BUFFERS),
    `@compute @workgroup_size(${WORKGROUP_SIZE})`,
    'fn main(@builtin(global_invocation_id) gid: vec3<u32>) {',
    'let r = gid.x;',
    'if (r >= hdr[0]) { return; }',
    `var h0: array<f32, ${inputs}>;`,
    `for (var i: u32 = 0u; i < ${inputs}u; i = i + 1u) { h0[i] = IN[r * ${inputs}u + i]; }`,
    ...forwardStatements(sizes, 0, 'h0', 'h'),
    `for (var k: u32 = 0u; k < ${outputs}u; k = k + 1u) { OUT[r * ${outputs}u + k] = h${sizes.length - 1}[k]; }`,
    '}',
  ].join('\n');
}

const PRIOR_BUFFERS: readonly StorageSpec[] = [
  { name: 'W', element: 'f32', readOnly: true },
  { name: 'X', element: 'f32', readOnly: true },
  { name: 'hdr', element: 'u32', readOnly: true },
  { name: 'OUT', element: 'f32', readOnly: false },
];

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
 * may assume none is NaN or infinite, so it is judged on the bits). Weights
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
    'fn prior_bits_finite(v: f32) -> bool { return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u; }',
    `fn prior_eval(x: array<f32, ${n}>, r: array<f32, ${n}>) -> Prior {`,
    'var out: Prior;',
    'out.finite = true;',
    `var p0: array<f32, ${d}>;`,
    ...featureStatements(meta.features, (j) => `x[${j}]`, (j) => `r[${j}]`, (k) => `p0[${k}]`),
    ...forwardStatements(policySizes, 0, 'p0', 'p', buffer),
    `var q0: array<f32, ${d + m}>;`,
    `for (var i: u32 = 0u; i < ${d}u; i = i + 1u) { q0[i] = p0[i]; }`,
    ...Array.from({ length: m }, (_, j) => [
      `out.finite = out.finite && prior_bits_finite(${raw}[${j}]) && prior_bits_finite(${raw}[${m + j}]);`,
      `out.mean[${j}] = ${meta.bounded[j] ? `tanh(clamp(${raw}[${j}], -15.0, 15.0))` : `${raw}[${j}]`};`,
      `q0[${d + j}] = out.mean[${j}];`,
      `out.deviation[${j}] = exp(${f32(lo)} + ${f32(0.5 * (hi - lo))} * (tanh(clamp(${raw}[${m + j}], -15.0, 15.0)) + 1.0));`,
    ].join(' ')),
    ...forwardStatements(qSizes, qOffset, 'q0', 'q', buffer),
    `out.finite = out.finite && prior_bits_finite(${q}[0]) && abs(${q}[0]) < 88.0;`,
    `out.value = sign(${q}[0]) * (exp(min(abs(${q}[0]), 88.0)) - 1.0);`,
    meta.valueFloor !== undefined ? `out.value = max(out.value, ${f32(meta.valueFloor)});` : '',
    'return out;',
    '}',
  ].filter(Boolean).join('\n');
}

/** One invocation per state: prior_eval, written out as mean (m), std (m), value. Reference in hdr's words after the count. */
function priorShader(meta: PriorMeta, networks: PriorNetworks): string {
  const n = meta.stateDim;
  const m = meta.controlDim;
  const row = 2 * m + 1;
  return [
    ...storageDeclarations(PRIOR_BUFFERS),
    priorFunctionWgsl(meta, networks, 'W'),
    `@compute @workgroup_size(${WORKGROUP_SIZE})`,
    'fn main(@builtin(global_invocation_id) gid: vec3<u32>) {',
    'let r = gid.x;',
    'if (r >= hdr[0]) { return; }',
    `var x: array<f32, ${n}>;`,
    `var reference: array<f32, ${n}>;`,
    `for (var j: u32 = 0u; j < ${n}u; j = j + 1u) { x[j] = X[r * ${n}u + j]; reference[j] = bitcast<f32>(hdr[1u + j]); }`,
    'let out = prior_eval(x, reference);',
    `for (var j: u32 = 0u; j < ${m}u; j = j + 1u) { OUT[r * ${row}u + j] = out.mean[j]; OUT[r * ${row}u + ${m}u + j] = out.deviation[j]; }`,
    `OUT[r * ${row}u + ${2 * m}u] = out.value;`,
    '}',
  ].join('\n');
}

/** Buffers of one batch size, grown when a larger batch comes. */
interface Batch { rows: number; IN: GPUBuffer; hdr: GPUBuffer; OUT: GPUBuffer; staging: GPUBuffer; group: GPUBindGroup }

/**
 * A program evaluating rows of a batch: weights uploaded once (`W`, at
 * construction), each call one upload of its rows, one submit and one
 * read-back.
 */
class BatchProgram {
  private batch: Batch | undefined;
  private readonly W: GPUBuffer;

  constructor(private readonly program: GpuProgram<'main'>, weights: Float32Array, private readonly inputsPerRow: number, private readonly outputsPerRow: number, private readonly inputName: 'IN' | 'X', private readonly header: (rows: number) => Uint32Array) {
    this.W = program.storage(weights.length, GPUBufferUsage.COPY_DST, 'the networks\' weights');
    program.write(this.W, 0, weights);
  }

  private reserve(rows: number): Batch {
    if (this.batch && this.batch.rows >= rows) return this.batch;
    this.disposeBatch();
    const p = this.program;
    const IN = p.storage(rows * this.inputsPerRow, GPUBufferUsage.COPY_DST, `a batch of ${rows} rows`);
    const hdr = p.storage(this.header(rows).length, GPUBufferUsage.COPY_DST);
    const OUT = p.storage(rows * this.outputsPerRow, GPUBufferUsage.COPY_SRC, `a batch of ${rows} rows`);
    const staging = p.staging(rows * this.outputsPerRow);
    this.batch = { rows, IN, hdr, OUT, staging, group: p.bindGroup({ W: this.W, [this.inputName]: IN, hdr, OUT }) };
    return this.batch;
  }

  async run(input: ArrayLike<number>, rows: number): Promise<Float32Array> {
    const b = this.reserve(rows);
    this.program.write(b.IN, 0, Float32Array.from({ length: rows * this.inputsPerRow }, (_, i) => input[i]));
    this.program.write(b.hdr, 0, this.header(rows));
    this.program.submit(b.group, (dispatch) => dispatch('main', Math.ceil(rows / WORKGROUP_SIZE)), (enc) => enc.copyBufferToBuffer(b.OUT, 0, b.staging, 0, rows * this.outputsPerRow * 4));
    return (await this.program.read(b.staging)).subarray(0, rows * this.outputsPerRow);
  }

  private disposeBatch(): void {
    if (!this.batch) return;
    for (const buf of [this.batch.IN, this.batch.hdr, this.batch.OUT, this.batch.staging]) buf.destroy();
    this.batch = undefined;
  }

  dispose(): void {
    this.disposeBatch();
    this.W.destroy();
  }
}

/** One network's forward pass on the GPU (f32), for `rows` inputs at once. */
export class GpuMlp {
  private constructor(private readonly batch: BatchProgram) {}

  static async create(backend: WebGpuBackend, net: Mlp, label: string): Promise<GpuMlp> {
    const sizes = sizesOf(net);
    const program = await GpuProgram.create(backend, mlpShader(sizes), `${label} network`, MLP_BUFFERS, ['main'] as const);
    return new GpuMlp(new BatchProgram(program, packMlp(net), sizes[0], sizes[sizes.length - 1], 'IN', (rows) => Uint32Array.of(rows)));
  }

  forward(input: ArrayLike<number>, rows: number): Promise<Float32Array> {
    return this.batch.run(input, rows);
  }

  dispose(): void {
    this.batch.dispose();
  }
}

/**
 * A prior's policy and value on the GPU (f32), as LearnedPrior.policyValue
 * computes them in f64 on the CPU: one invocation per state, the weights
 * uploaded once.
 */
export class GpuPriorNetworks {
  private constructor(private readonly meta: PriorMeta, private readonly batch: BatchProgram) {}

  static async create(backend: WebGpuBackend, meta: PriorMeta, networks: PriorNetworks, reference: ArrayLike<number>): Promise<GpuPriorNetworks> {
    const weights = packPrior(networks);
    const code = priorShader(meta, networks);
    const program = await GpuProgram.create(backend, code, `${meta.system} prior`, PRIOR_BUFFERS, ['main'] as const);
    const ref = new Float32Array(Array.from(reference));
    const header = (rows: number) => {
      const h = new Uint32Array(1 + meta.stateDim);
      h[0] = rows;
      h.set(new Uint32Array(ref.buffer), 1);
      return h;
    };
    return new GpuPriorNetworks(meta, new BatchProgram(program, weights, meta.stateDim, 2 * meta.controlDim + 1, 'X', header));
  }

  /** pi_s(.|x) (normalised controls) and V(x) (cost units, floored) at `count` states. */
  async policyValue(x: ArrayLike<number>, count: number): Promise<{ mean: Float32Array; std: Float32Array; value: Float32Array }> {
    const m = this.meta.controlDim;
    const out = await this.batch.run(x, count);
    const mean = new Float32Array(count * m);
    const std = new Float32Array(count * m);
    const value = new Float32Array(count);
    for (let r = 0; r < count; r++) {
      for (let j = 0; j < m; j++) {
        mean[r * m + j] = out[r * (2 * m + 1) + j];
        std[r * m + j] = out[r * (2 * m + 1) + m + j];
      }
      value[r] = out[r * (2 * m + 1) + 2 * m];
    }
    return { mean, std, value };
  }

  dispose(): void {
    this.batch.dispose();
  }
}
