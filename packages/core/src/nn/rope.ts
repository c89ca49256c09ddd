import type { LlamaConfig } from './config.js';

/** Inverse frequencies of RoPE (length headDim/2), with llama3 or linear scaling as transformers computes them. */
export function ropeInvFreq(config: LlamaConfig): Float64Array {
  const hd = config.headDim;
  const inv = new Float64Array(hd / 2);
  for (let j = 0; j < hd / 2; j++) inv[j] = 1 / config.ropeTheta ** ((2 * j) / hd);
  const s = config.ropeScaling;
  if (!s) return inv;
  if (s.type === 'linear') return inv.map((f) => f / s.factor);
  // llama3: long wavelengths are divided by `factor`, short ones kept, a smooth blend in between.
  const low = s.lowFreqFactor ?? 1;
  const high = s.highFreqFactor ?? 4;
  const orig = s.originalMaxPositions ?? 8192;
  const lowWavelen = orig / low;
  const highWavelen = orig / high;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (orig / wavelen - low) / (high - low);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

/** cos and sin tables [T, headDim/2] for absolute positions offset … offset+T−1 (angles in float64). */
export function ropeTables(
  invFreq: Float64Array,
  T: number,
  offset: number,
): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const cos = new Float32Array(T * half);
  const sin = new Float32Array(T * half);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < half; j++) {
      const a = (offset + t) * invFreq[j]!;
      cos[t * half + j] = Math.cos(a);
      sin[t * half + j] = Math.sin(a);
    }
  }
  return { cos, sin };
}
