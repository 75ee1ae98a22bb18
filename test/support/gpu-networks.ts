import { GpuProgram, storageDeclarations, StorageSpec, WebGpuBackend } from '../../src/kernels/webgpu.js';
import { WORKGROUP_SIZE } from '../../src/kernels/wgsl-source.js';
import type { PriorMeta } from '../../src/learned/checkpoint.js';
import type { Mlp } from '../../src/learned/mlp.js';
import type { PriorNetworks } from '../../src/learned/networks.js';
import { forwardStatements, packMlp, packPrior, priorFunctionWgsl, sizesOf } from '../../src/learned/wgsl.js';

/*
 * The tests' harness for the generated WGSL networks: a network, or the
 * prior as a planner reads it, evaluated for a batch of rows on its own, so
 * the GPU's numbers can be held against the CPU's f64 forward pass.
 */

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
