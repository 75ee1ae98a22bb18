import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Mlp } from './mlp.js';
import { NETWORK_NAMES, PriorNetworks, StateFeatures } from './networks.js';
import { InputError } from '../input-error.js';
import { catchProblem, type PolicyCatch } from '../policy/catch.js';

export const PRIOR_FORMAT = 'tempered-mpc-prior/1';

/** What a prior was made for and how its inputs are normalised: stored beside the weights, checked at load. */
export interface PriorMeta {
  format: typeof PRIOR_FORMAT;
  /** the project version that wrote it */
  version: string;
  system: string;
  stateNames: string[];
  controlNames: string[];
  stateDim: number;
  controlDim: number;
  /** the planning horizon [model steps] the value bootstraps beyond */
  horizon: number;
  dtS: number;
  /** the goal it was trained toward (the features are relative to the reference) */
  reference: number[];
  features: StateFeatures;
  /** normalised control u = center + scale * z, and which z are clipped to [-1, 1] */
  controlCenter: number[];
  controlScale: number[];
  bounded: boolean[];
  hidden: number[];
  /** how the value networks' outputs map to cost: symexp (see networks.ts) */
  valueTransform: 'symlog';
  gamma: number;
  /** false: the value networks are placeholders (a policy trained alone, by train-policy): planners that bootstrap from the value refuse it, and the horizon is not checked. Absent: true. */
  hasValue?: boolean;
  /** the least cost-to-go (0 where every stage cost is non-negative): the value is never read below it; absent: no floor */
  valueFloor?: number;
  /** a feedback policy's LQR balance near the goal (train-policy --set train.catch=lqr): part of the policy wherever it acts, as its mean */
  catch?: PolicyCatch;
  /** the training run's parameters, as given */
  training: Record<string, unknown>;
  episodes: number;
  updates: number;
  savedAt: string;
  weights: { file: string; bytes: number; sha256: string };
}

interface WeightSpec { name: string; shape: number[]; dtype: 'float32' }

/**
 * Writes the networks in TensorFlow.js's weights format (model.json with a
 * weightsManifest, one little-endian float32 weights.bin: `tf.io.decodeWeights`
 * reads it) and meta.json beside them. Files are written then renamed, so a
 * reader never sees half a checkpoint.
 */
export function saveCheckpoint(dir: string, networks: PriorNetworks, meta: Omit<PriorMeta, 'format' | 'weights' | 'savedAt'>): PriorMeta {
  mkdirSync(dir, { recursive: true });
  const specs: WeightSpec[] = [];
  const parts: Float32Array[] = [];
  for (const name of NETWORK_NAMES) {
    networks[name].layers.forEach((l, i) => {
      specs.push({ name: `${name}/${i}/kernel`, shape: [l.inputs, l.outputs], dtype: 'float32' });
      parts.push(l.weight);
      specs.push({ name: `${name}/${i}/bias`, shape: [l.outputs], dtype: 'float32' });
      parts.push(l.bias);
    });
  }
  const total = parts.reduce((s, p) => s + p.length, 0);
  const data = new Float32Array(total);
  let o = 0;
  for (const p of parts) {
    data.set(p, o);
    o += p.length;
  }
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const full: PriorMeta = {
    ...meta,
    format: PRIOR_FORMAT,
    savedAt: new Date().toISOString(),
    weights: { file: 'weights.bin', bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') },
  };
  const write = (file: string, content: string | Buffer) => writeFileAtomic(join(dir, file), content);
  write('weights.bin', bytes);
  write('model.json', `${JSON.stringify({ format: 'weights-manifest', generatedBy: `tempered-mpc ${meta.version}`, weightsManifest: [{ paths: ['weights.bin'], weights: specs }] }, null, 1)}\n`);
  write('meta.json', `${JSON.stringify(full, null, 1)}\n`);
  return full;
}

/** Writes a file whole or not at all (a temporary file renamed over it): a run killed mid-write leaves the last checkpoint readable. */
export function writeFileAtomic(path: string, content: string | NodeJS.ArrayBufferView): void {
  writeFileSync(`${path}.tmp`, content);
  renameSync(`${path}.tmp`, path);
}

/** A checkpoint that cannot be used, with the one-line reason; a prior that cannot be used as given (missing, corrupt, made for another plant): bad input. */
export class PriorError extends InputError {}

/** Reads a checkpoint, refusing (PriorError) anything missing, malformed, truncated or corrupt. */
export function loadCheckpoint(dir: string): { meta: PriorMeta; networks: PriorNetworks } {
  const label = `prior '${dir}'`;
  if (!existsSync(dir)) throw new PriorError(`${label}: no such directory`);
  if (!statSync(dir).isDirectory()) throw new PriorError(`${label}: a file, not a directory (a prior is the folder train-prior --out wrote)`);
  const readJson = (file: string): unknown => {
    const path = join(dir, file);
    if (!existsSync(path)) throw new PriorError(`${label}: ${file} is missing`);
    try {
      return JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      throw new PriorError(`${label}: ${file} is not valid JSON (${(e as Error).message})`);
    }
  };
  const meta = readJson('meta.json') as PriorMeta;
  if (typeof meta !== 'object' || meta === null || meta.format !== PRIOR_FORMAT) {
    throw new PriorError(`${label}: meta.json is not a tempered-mpc prior (format ${JSON.stringify((meta as { format?: unknown } | null)?.format)}, expected '${PRIOR_FORMAT}')`);
  }
  for (const key of ['system', 'stateDim', 'controlDim', 'horizon', 'dtS', 'features', 'hidden', 'valueTransform', 'weights', 'bounded', 'reference'] as const) {
    if (meta[key] === undefined) throw new PriorError(`${label}: meta.json lacks '${key}'`);
  }
  if (meta.valueTransform !== 'symlog') throw new PriorError(`${label}: meta.json's valueTransform ${JSON.stringify(meta.valueTransform)} is not one this version reads ('symlog')`);
  if (meta.valueFloor !== undefined && (typeof meta.valueFloor !== 'number' || !Number.isFinite(meta.valueFloor))) {
    throw new PriorError(`${label}: meta.json's valueFloor ${JSON.stringify(meta.valueFloor)} is not a finite number`);
  }
  if (meta.catch !== undefined) {
    const problem = catchProblem(meta.catch, meta.stateDim, meta.controlDim);
    if (problem) throw new PriorError(`${label}: meta.json's catch ${problem}`);
  }
  const manifest = readJson('model.json') as { weightsManifest?: { paths: string[]; weights: WeightSpec[] }[] };
  const group = manifest.weightsManifest?.[0];
  if (!group || !Array.isArray(group.weights) || group.paths?.[0] !== meta.weights.file) throw new PriorError(`${label}: model.json has no weights manifest for ${meta.weights.file}`);
  const binPath = join(dir, meta.weights.file);
  if (!existsSync(binPath)) throw new PriorError(`${label}: ${meta.weights.file} is missing`);
  const bin = readFileSync(binPath);
  const expected = group.weights.reduce((s, w) => s + 4 * w.shape.reduce((a, b) => a * b, 1), 0);
  if (bin.length !== expected || bin.length !== meta.weights.bytes) {
    throw new PriorError(`${label}: ${meta.weights.file} has ${bin.length} bytes, the manifest lists ${expected} (truncated or from another checkpoint)`);
  }
  if (createHash('sha256').update(bin).digest('hex') !== meta.weights.sha256) throw new PriorError(`${label}: ${meta.weights.file} does not match its checksum in meta.json (corrupt)`);
  const all = new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length));
  if (!all.every(Number.isFinite)) throw new PriorError(`${label}: the weights hold non-finite values`);
  const byName = new Map<string, Float32Array>();
  let o = 0;
  for (const w of group.weights) {
    const size = w.shape.reduce((a, b) => a * b, 1);
    byName.set(w.name, all.subarray(o, o + size));
    o += size;
  }
  const networks = {} as PriorNetworks;
  for (const name of NETWORK_NAMES) {
    const layers: Mlp['layers'] = [];
    for (let i = 0; byName.has(`${name}/${i}/kernel`); i++) {
      const weight = byName.get(`${name}/${i}/kernel`)!;
      const bias = byName.get(`${name}/${i}/bias`);
      const spec = group.weights.find((w) => w.name === `${name}/${i}/kernel`)!;
      if (!bias || spec.shape.length !== 2 || bias.length !== spec.shape[1]) throw new PriorError(`${label}: layer ${name}/${i} is malformed in model.json`);
      layers.push({ inputs: spec.shape[0], outputs: spec.shape[1], weight: weight.slice(), bias: bias.slice() });
    }
    if (layers.length !== meta.hidden.length + 1) throw new PriorError(`${label}: network '${name}' has ${layers.length} layers, meta.json's hidden sizes [${meta.hidden.join(', ')}] need ${meta.hidden.length + 1}`);
    for (let i = 1; i < layers.length; i++) {
      if (layers[i].inputs !== layers[i - 1].outputs) throw new PriorError(`${label}: network '${name}' layer ${i} takes ${layers[i].inputs} inputs, the layer before gives ${layers[i - 1].outputs}`);
    }
    networks[name] = { layers };
  }
  return { meta, networks };
}
