/** Splits a flat row-major array into rows of `width` numbers (for JSON output). */
export const rows = (flat: ArrayLike<number>, width: number): number[][] =>
  Array.from({ length: width ? flat.length / width : 0 }, (_, i) => Array.from({ length: width }, (_, j) => flat[i * width + j]));
