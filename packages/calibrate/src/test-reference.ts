// Test-only (not exported): a direct, non-streamed computation of every statistic from fully materialised activations.
import { type ActivationName, type Backend, type LlamaModel, Ops } from '@lineage/core';

export type Taps = Map<string, Float32Array[]>; // `${layer}:${tap}` → per sequence [T, width]

/** Runs each sequence alone through the ordinary forward (embed → every block) and keeps every tap. */
export async function materialise(model: LlamaModel, backend: Backend, seqs: Int32Array[]): Promise<Taps> {
  const ops = new Ops(backend);
  const taps: Taps = new Map();
  for (const ids of seqs) {
    await ops.tidy(async () => {
      const rope = model.rope(ops, ids.length);
      let x = await model.embedTokens(ops, ids, 1);
      for (let l = 0; l < model.blocks.length; l++) {
        x = await model.block(ops, l, x, rope, {
          capture: async (name: ActivationName, t) => {
            const k = `${l}:${name}`;
            if (!taps.has(k)) taps.set(k, []);
            taps.get(k)!.push(await ops.readF32(t));
          },
        });
      }
      const fin = await model.finalNorm(ops, x);
      const k = `${model.blocks.length}:model.norm.output`;
      if (!taps.has(k)) taps.set(k, []);
      taps.get(k)!.push(await ops.readF32(fin));
    });
  }
  return taps;
}

/** H = Σ xᵀx over all tokens, the plain triple loop in float64. */
export function directGram(xs: Float32Array[], width: number): Float64Array {
  const H = new Float64Array(width * width);
  for (const x of xs) {
    const T = x.length / width;
    for (let t = 0; t < T; t++) {
      const o = t * width;
      for (let i = 0; i < width; i++) {
        const xi = x[o + i]!;
        for (let j = 0; j < width; j++) H[i * width + j]! += xi * x[o + j]!;
      }
    }
  }
  return H;
}

export function directMean(xs: Float32Array[], width: number): Float64Array {
  const m = new Float64Array(width);
  let n = 0;
  for (const x of xs) {
    const T = x.length / width;
    n += T;
    for (let t = 0; t < T; t++) for (let c = 0; c < width; c++) m[c]! += x[t * width + c]!;
  }
  return m.map((v) => v / n);
}

/**
 * Minitron's aggregation, literally: per sequence the mean over tokens of a per-token score s_t(k), then the
 * L2 norm over sequences. `score(x, t, k)` is |x| for channels, ‖head‖₂ for heads.
 */
export function directImportance(
  xs: Float32Array[],
  width: number,
  n: number,
  score: (x: Float32Array, row: number, k: number) => number,
): Float64Array {
  const out = new Float64Array(n);
  for (const x of xs) {
    const T = x.length / width;
    for (let k = 0; k < n; k++) {
      let s = 0;
      for (let t = 0; t < T; t++) s += score(x, t * width, k);
      out[k]! += (s / T) ** 2;
    }
  }
  return out.map(Math.sqrt);
}

export function blockNorm(size: number) {
  return (x: Float32Array, row: number, k: number) => {
    let s = 0;
    for (let i = 0; i < size; i++) s += x[row + k * size + i]! ** 2;
    return Math.sqrt(s);
  };
}

export const absChannel = (x: Float32Array, row: number, k: number) => Math.abs(x[row + k]!);

/** 1 − mean over all tokens of cos(x_in, x_out). */
export function directBlockImportance(ins: Float32Array[], outs: Float32Array[], width: number): number {
  let sum = 0;
  let n = 0;
  ins.forEach((x, s) => {
    const y = outs[s]!;
    for (let t = 0; t < x.length / width; t++) {
      let d = 0;
      let a = 0;
      let b = 0;
      for (let c = 0; c < width; c++) {
        const u = x[t * width + c]!;
        const v = y[t * width + c]!;
        d += u * v;
        a += u * u;
        b += v * v;
      }
      sum += d / Math.sqrt(a * b);
      n++;
    }
  });
  return 1 - sum / n;
}

/** max |a − b| / max |b|. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return den === 0 ? num : num / den;
}
