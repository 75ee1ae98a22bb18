/**
 * Seeded pseudo-random numbers (xoshiro128**), so every stochastic run and
 * test is reproducible from its seed.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | undefined;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new Error(`seed must be a finite number, got ${seed}`);
    // splitmix32 expands the seed into the four state words
    let s = (Math.trunc(seed) ^ 0x9e3779b9) >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
  }

  /** Uniform on [0, 1) with 32 random bits. */
  uniform(): number {
    const r = Math.imul(Math.imul(this.b, 5) << 7 | Math.imul(this.b, 5) >>> 25, 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = (this.d << 11) | (this.d >>> 21);
    return r / 4294967296;
  }

  /** Uniform on (0, 1): safe under log. */
  open(): number {
    return (Math.floor(this.uniform() * 4294967295) + 0.5) / 4294967296;
  }

  /** Standard normal (Box–Muller, both values used). */
  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(this.open()));
    const th = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(th);
    return r * Math.cos(th);
  }

  /** Standard Gumbel. */
  gumbel(): number {
    return -Math.log(-Math.log(this.open()));
  }

  /** An independent generator derived from this one (for workers, per-particle streams). */
  split(): Rng {
    return new Rng(Math.floor(this.uniform() * 4294967296) ^ Math.floor(this.uniform() * 4294967296));
  }

  fillNormal(out: Float64Array, scale = 1): Float64Array {
    for (let i = 0; i < out.length; i++) out[i] = scale * this.normal();
    return out;
  }
}
