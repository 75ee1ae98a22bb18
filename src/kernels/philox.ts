/**
 * Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
 * 3", SC'11): a counter-based generator, so every GPU invocation draws its
 * own numbers from (counter, key) with no state to carry or share. The same
 * function in TypeScript (the reference the tests check the shader against)
 * and in WGSL.
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** The high 32 bits of a 32 x 32 bit product, from 16-bit halves (as the shader must: WGSL has no 64-bit integers); the low ones are Math.imul's. */
function mulHi(a: number, b: number): number {
  const aLo = a & 0xffff;
  const aHi = a >>> 16;
  const bLo = b & 0xffff;
  const bHi = b >>> 16;
  const p0 = aLo * bLo;
  const p1 = aLo * bHi;
  const p2 = aHi * bLo;
  const mid = (p0 >>> 16) + (p1 & 0xffff) + (p2 & 0xffff);
  return (aHi * bHi + (p1 >>> 16) + (p2 >>> 16) + (mid >>> 16)) >>> 0;
}

/** The generator's ten rounds into `out` (four words), allocating nothing: the CPU planners draw with it in their sampling loops. */
function philoxInto(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number, out: Uint32Array): void {
  c0 >>>= 0; c1 >>>= 0; c2 >>>= 0; c3 >>>= 0; k0 >>>= 0; k1 >>>= 0;
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulHi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulHi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    const n0 = (hi1 ^ c1 ^ k0) >>> 0;
    const n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

const scratch = new Uint32Array(4);

/** Four random 32-bit words for a 4-word counter and a 2-word key. */
export function philox4x32(counter: readonly number[], key: readonly number[]): [number, number, number, number] {
  philoxInto(counter[0], counter[1], counter[2], counter[3], key[0], key[1], scratch);
  return [scratch[0], scratch[1], scratch[2], scratch[3]];
}

/** A word as a uniform in (0, 1) with 23 bits, exact in f32, so the shader computes the same number. */
function openUniform(word: number): number {
  return ((word >>> 9) + 0.5) / 8388608;
}

/** Four standard normals from one Philox block (Box-Muller on both pairs) into `out`, allocating nothing. */
export function philoxNormalsInto(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number, out: Float64Array): void {
  philoxInto(c0, c1, c2, c3, k0, k1, scratch);
  for (let pair = 0; pair < 4; pair += 2) {
    const r = Math.sqrt(-2 * Math.log(openUniform(scratch[pair])));
    const th = 2 * Math.PI * openUniform(scratch[pair + 1]);
    out[pair] = r * Math.cos(th);
    out[pair + 1] = r * Math.sin(th);
  }
}

/** Four standard normals from one Philox block (Box-Muller on both pairs). */
export function philoxNormals(counter: readonly number[], key: readonly number[]): [number, number, number, number] {
  const out = new Float64Array(4);
  philoxNormalsInto(counter[0], counter[1], counter[2], counter[3], key[0], key[1], out);
  return [out[0], out[1], out[2], out[3]];
}

/** The same generator in WGSL: `philox(counter, key)` and `philox_normals(counter, key)`. */
export const PHILOX_WGSL = `
fn philox_mulhilo(a: u32, b: u32) -> vec2<u32> {
  let aLo = a & 0xffffu; let aHi = a >> 16u; let bLo = b & 0xffffu; let bHi = b >> 16u;
  let p0 = aLo * bLo; let p1 = aLo * bHi; let p2 = aHi * bLo;
  let mid = (p0 >> 16u) + (p1 & 0xffffu) + (p2 & 0xffffu);
  return vec2<u32>(aHi * bHi + (p1 >> 16u) + (p2 >> 16u) + (mid >> 16u), a * b);
}
fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c = counter; var k = key;
  for (var round = 0u; round < 10u; round = round + 1u) {
    if (round > 0u) { k = k + vec2<u32>(${W0}u, ${W1}u); }
    let a = philox_mulhilo(${M0}u, c.x); let b = philox_mulhilo(${M1}u, c.z);
    c = vec4<u32>(b.x ^ c.y ^ k.x, b.y, a.x ^ c.w ^ k.y, a.y);
  }
  return c;
}
fn philox_uniform(word: u32) -> f32 { return (f32(word >> 9u) + 0.5) / 8388608.0; }
fn philox_normals(counter: vec4<u32>, key: vec2<u32>) -> vec4<f32> {
  let w = philox(counter, key);
  let r0 = sqrt(-2.0 * log(philox_uniform(w.x))); let t0 = 6.283185307179586 * philox_uniform(w.y);
  let r1 = sqrt(-2.0 * log(philox_uniform(w.z))); let t1 = 6.283185307179586 * philox_uniform(w.w);
  return vec4<f32>(r0 * cos(t0), r0 * sin(t0), r1 * cos(t1), r1 * sin(t1));
}
`;
