import { initModel, llamaConfig } from '../nn/init.js';
import type { LlamaModel } from '../nn/llama.js';
import { Parameter } from '../nn/parameter.js';
import { namedParameters } from '../optim/optimizer.js';
import { HostTensor, type Shape, sizeOf } from '../tensor/host-tensor.js';
import { Random } from '../util/random.js';

/* Fixtures shared by the autograd and optimiser tests (not exported from the package). */

/** Seeded uniform values in [lo, hi); with `awayFromZero`, magnitudes below it are pushed out (kinks). */
export function uniform(shape: Shape, seed: number, lo = -1, hi = 1, awayFromZero = 0): Float32Array {
  const r = new Random(seed);
  const a = new Float32Array(sizeOf(shape));
  for (let i = 0; i < a.length; i++) {
    let v = lo + (hi - lo) * r.next();
    if (awayFromZero && Math.abs(v) < awayFromZero)
      v = v < 0 ? -awayFromZero - r.next() : awayFromZero + r.next();
    a[i] = v;
  }
  return a;
}

export function randomParam(shape: Shape, seed: number, lo = -1, hi = 1, awayFromZero = 0): Parameter {
  return new Parameter(new HostTensor('f32', shape, uniform(shape, seed, lo, hi, awayFromZero)));
}

export interface TinyModelOptions {
  tied?: boolean;
  biases?: boolean;
  seed?: number;
  layers?: number;
  dim?: number;
  heads?: number;
  kvHeads?: number;
  hidden?: number;
  vocab?: number;
  /** Weight std (default 0.3: large enough for non-trivial softmaxes in a tiny model). */
  std?: number;
}

/**
 * A tiny Llama (GQA by default) with every parameter random, norms around 1 and biases small and
 * non-zero, so that every gradient is exercised.
 */
export function tinyModel(o: TinyModelOptions = {}): LlamaModel {
  const config = llamaConfig({
    dim: o.dim ?? 16,
    layers: o.layers ?? 2,
    heads: o.heads ?? 4,
    kvHeads: o.kvHeads ?? 2,
    hidden: o.hidden ?? 24,
    vocab: o.vocab ?? 11,
    context: 32,
    tied: o.tied ?? false,
  });
  const biases = o.biases ?? true;
  config.qkvBias = biases;
  config.oBias = biases;
  config.mlpBias = biases;
  const seed = o.seed ?? 7;
  const model = initModel(config, { seed, std: o.std ?? 0.3 });
  let s = seed * 1000;
  for (const [name, p] of namedParameters(model)) {
    if (name.endsWith('norm.weight'))
      p.value = new HostTensor('f32', p.shape, uniform(p.shape, s++, 0.7, 1.3));
    else if (name.endsWith('.bias'))
      p.value = new HostTensor('f32', p.shape, uniform(p.shape, s++, -0.2, 0.2));
  }
  return model;
}

/** Seeded token ids in [0, vocab). */
export function randomTokens(n: number, vocab: number, seed: number): Int32Array {
  const r = new Random(seed);
  return Int32Array.from({ length: n }, () => r.int(vocab));
}
