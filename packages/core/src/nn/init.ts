import { HostTensor } from '../tensor/host-tensor.js';
import { Random } from '../util/random.js';
import type { LlamaConfig } from './config.js';
import { Linear } from './linear.js';
import {
  BLOCK_LINEARS,
  type BlockLinear,
  blockLinearShapes,
  type DecoderBlock,
  LlamaModel,
} from './llama.js';
import { Parameter } from './parameter.js';

export interface InitOptions {
  seed?: number;
  /** Standard deviation of weights (default 0.02, as Llama/GPT initialisers). */
  std?: number;
}

/** A freshly initialised model of `config` (normal weights, unit norms): the from-scratch baseline and bench fixture. */
export function initModel(config: LlamaConfig, opts: InitOptions = {}): LlamaModel {
  const rng = new Random(opts.seed ?? 0);
  const std = opts.std ?? 0.02;
  const normal = (shape: [number, number]) => {
    const a = new Float32Array(shape[0] * shape[1]);
    for (let i = 0; i < a.length; i++) a[i] = rng.normal() * std;
    return new HostTensor('f32', shape, a);
  };
  const ones = (n: number) => new Parameter(new HostTensor('f32', [n], new Float32Array(n).fill(1)));
  const zeros = (n: number) => new HostTensor('f32', [n], new Float32Array(n));
  const { hiddenSize: Dm, vocabSize: V } = config;
  const shapes = blockLinearShapes(config);
  const blocks: DecoderBlock[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const linears = {} as Record<BlockLinear, Linear>;
    for (const s of BLOCK_LINEARS) {
      const [out, inp, bias] = shapes[s];
      linears[s] = new Linear(normal([out, inp]), bias ? zeros(out) : undefined);
    }
    blocks.push({ inputNorm: ones(Dm), postNorm: ones(Dm), linears });
  }
  const embed = new Parameter(normal([V, Dm]));
  const head = config.tieWordEmbeddings ? undefined : new Linear(normal([V, Dm]));
  return new LlamaModel(config, embed, blocks, ones(Dm), head);
}

/** A Llama config from the few numbers people quote (dim, layers, heads, …), with Llama 2 defaults for the rest. */
export function llamaConfig(p: {
  dim: number;
  layers: number;
  heads: number;
  kvHeads?: number;
  hidden: number;
  vocab: number;
  context?: number;
  tied?: boolean;
}): LlamaConfig {
  return {
    architecture: 'llama',
    vocabSize: p.vocab,
    hiddenSize: p.dim,
    intermediateSize: p.hidden,
    numLayers: p.layers,
    numHeads: p.heads,
    numKvHeads: p.kvHeads ?? p.heads,
    headDim: p.dim / p.heads,
    maxPositions: p.context ?? 1024,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    tieWordEmbeddings: p.tied ?? true,
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    bosTokenId: 1,
    eosTokenId: 2,
  };
}
