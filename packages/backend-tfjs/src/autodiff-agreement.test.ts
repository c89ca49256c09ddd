import {
  HostTensor,
  initModel,
  type LlamaModel,
  languageModelLoss,
  llamaConfig,
  namedParameters,
  valueAndGrad,
} from '@lineage/core';
import { expectGradientsAgree, type GradientDifference, randomTokens, uniform } from '@lineage/core/testing';
import type { Tensor as TfTensor } from '@tensorflow/tfjs-core';
import { describe, it } from 'vitest';
import { createTfjsBackend } from './base.js';
import type { Tf } from './load-engine.js';

/*
 * Lineage's tape against TensorFlow.js's own autodiff on a small Llama. The tfjs side is an independent
 * forward written directly in tfjs ops (embedding as a one-hot product, RMSNorm, RoPE in Hugging Face's
 * rotate-half convention with its own frequency table, grouped-query attention by repeating kv heads,
 * a causal mask from a band matrix, SwiGLU, residuals, the tied head and a log-softmax cross-entropy),
 * differentiated by tf.valueAndGrads; the Lineage side is `languageModelLoss` of the same model on the
 * tfjs backend, differentiated by the tape. Every parameter's gradient must agree within float32
 * tolerance, max |Δ| ≤ 1e-4·max |g| + 1e-6 (see GRADIENT_AGREEMENT_TOLERANCE in @lineage/core/testing:
 * the two graphs decompose the model differently and round differently, by ~1e-7 relative per op, and the
 * tfjs side computes its RoPE angles in float32 where core uses float64, ~1e-6 at these positions).
 *
 * Core's rope (packages/core/src/nn/rope.ts, the `rope` op) rotates the pairs (x[j], x[j + D/2]) by
 * θ_j·t with θ_j = base^(−2j/D): Hugging Face's rotate-half layout, to which the llama2.c loader permutes
 * q and k. Attention's kv head for query head h is ⌊h / (H/Hkv)⌋ (transformers' repeat_kv).
 *
 * The wasm engine has no UnsortedSegmentSum kernel, so tf.gather's gradient does not run there: the
 * embedding is a one-hot matrix product and kv heads repeat by broadcasting.
 */

/**
 * tfjs-core's main (CommonJS) bundle, which the backend loads, registers no gradients (the
 * @tensorflow/tfjs union package does): register them from tfjs-core's ES build. The gradient registry and
 * the engine are process globals shared by both builds, and each build's ops accept the other's tensors.
 * Only after the backend loaded the CommonJS build: the build that first touches the global engine
 * creates it, and its tensors' chained methods must be the CommonJS build's.
 */
async function registerTfjsGradients(): Promise<void> {
  await import('@tensorflow/tfjs-core/dist/register_all_gradients.js');
}

/** The model's LM loss over `tokens` ([batch, T+1] flattened), written in tfjs ops only. */
function tfLlamaLoss(
  tf: Tf,
  model: LlamaModel,
  P: Record<string, TfTensor>,
  tokens: Int32Array,
  batch: number,
): TfTensor {
  const c = model.config;
  const { headDim: D, numHeads: H, numKvHeads: Hkv, vocabSize: V } = c;
  const G = H / Hkv;
  const L = tokens.length / batch;
  const T = L - 1;
  const ids: number[] = [];
  const targets: number[] = [];
  for (let b = 0; b < batch; b++)
    for (let t = 0; t < T; t++) {
      ids.push(tokens[b * L + t]!);
      targets.push(tokens[b * L + t + 1]!);
    }
  const w = (name: string) => {
    const t = P[name];
    if (!t) throw new Error(`no parameter ${name}`);
    return t;
  };
  const linear = (x: TfTensor, name: string) => tf.matMul(x, w(`${name}.weight`), false, true);
  const rmsNorm = (x: TfTensor, weight: TfTensor) =>
    tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), c.rmsNormEps))), weight);
  const silu = (x: TfTensor) => tf.mul(x, tf.sigmoid(x));

  // RoPE tables [1, T, 1, D]: angle(t, j) = t·base^(−2j/D) for j < D/2, repeated for the second half
  const invFreq = tf.pow(tf.scalar(c.ropeTheta), tf.mul(tf.range(0, D / 2, 1, 'float32'), -2 / D));
  const angles = tf.mul(tf.reshape(tf.range(0, T, 1, 'float32'), [T, 1]), tf.reshape(invFreq, [1, D / 2]));
  const emb = tf.concat([angles, angles], 1);
  const cos = tf.reshape(tf.cos(emb), [1, T, 1, D]);
  const sin = tf.reshape(tf.sin(emb), [1, T, 1, D]);
  const rotateHalf = (x: TfTensor) => {
    const [x1, x2] = tf.split(x, 2, 3) as [TfTensor, TfTensor];
    return tf.concat([tf.neg(x2), x1], 3);
  };
  const rope = (x: TfTensor) => tf.add(tf.mul(x, cos), tf.mul(rotateHalf(x), sin));
  // additive causal mask [T, T]: 0 on and below the diagonal, −1e9 above
  const lower = tf.linalg.bandPart(tf.ones([T, T]), -1, 0);
  const mask = tf.mul(tf.sub(1, lower), -1e9);
  // kv heads [B, T, Hkv, D] → [B, T, H, D], kv head ⌊h/G⌋ for query head h
  // (rank 4: tfjs's Tile gradient, which broadcastTo's runs on, stops at rank 4)
  const repeatKv = (x: TfTensor) =>
    tf.reshape(tf.broadcastTo(tf.reshape(x, [batch * T, Hkv, 1, D]), [batch * T, Hkv, G, D]), [
      batch,
      T,
      H,
      D,
    ]);

  const embed = w('model.embed_tokens.weight');
  let x = tf.matMul(tf.cast(tf.oneHot(tf.tensor1d(ids, 'int32'), V), 'float32'), embed); // [B·T, Dm]
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    const h = rmsNorm(x, w(`${p}.input_layernorm.weight`));
    const q = rope(tf.reshape(linear(h, `${p}.self_attn.q_proj`), [batch, T, H, D]));
    const k = repeatKv(rope(tf.reshape(linear(h, `${p}.self_attn.k_proj`), [batch, T, Hkv, D])));
    const v = repeatKv(tf.reshape(linear(h, `${p}.self_attn.v_proj`), [batch, T, Hkv, D]));
    const heads = (t: TfTensor) => tf.transpose(t, [0, 2, 1, 3]); // [B, H, T, D]
    const scores = tf.add(tf.mul(tf.matMul(heads(q), heads(k), false, true), 1 / Math.sqrt(D)), mask);
    const ctx = tf.matMul(tf.softmax(scores), heads(v)); // [B, H, T, D]
    const a = tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [batch * T, H * D]);
    x = tf.add(x, linear(a, `${p}.self_attn.o_proj`));
    const h2 = rmsNorm(x, w(`${p}.post_attention_layernorm.weight`));
    const m = tf.mul(silu(linear(h2, `${p}.mlp.gate_proj`)), linear(h2, `${p}.mlp.up_proj`));
    x = tf.add(x, linear(m, `${p}.mlp.down_proj`));
  }
  x = rmsNorm(x, w('model.norm.weight'));
  const logits = P.lm_head ? linear(x, 'lm_head') : tf.matMul(x, embed, false, true); // [B·T, V]
  const onehot = tf.cast(tf.oneHot(tf.tensor1d(targets, 'int32'), V), 'float32');
  return tf.neg(tf.mean(tf.sum(tf.mul(onehot, tf.logSoftmax(logits)), -1)));
}

/** A tied GQA Llama from initModel/llamaConfig with non-trivial norms (so their gradients are exercised). */
function smallLlama(o: { dim: number; context: number; seed: number }): LlamaModel {
  const config = llamaConfig({
    dim: o.dim,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    hidden: 48,
    vocab: 37,
    context: o.context,
    tied: true,
  });
  const model = initModel(config, { seed: o.seed, std: 0.2 });
  let s = o.seed * 100;
  for (const [name, p] of namedParameters(model))
    if (name.endsWith('norm.weight'))
      p.value = new HostTensor('f32', p.shape, uniform(p.shape, s++, 0.7, 1.3));
  return model;
}

const cases = [
  { name: '2 layers, dim 32, GQA 4/2, tied head, batch 2 × 8 tokens', dim: 32, batch: 2, T: 8, context: 32 },
  // T ≥ 256 takes the tfjs backend's blocked causal attention kernel in the forward pass
  { name: '2 layers, dim 16, GQA 4/2, tied head, 1 × 260 tokens', dim: 16, batch: 1, T: 260, context: 512 },
];

describe.each(['wasm', 'cpu'] as const)(
  'tfjs %s: Lineage tape vs tfjs autodiff (tf.valueAndGrads)',
  (engine) => {
    for (const c of cases) {
      it(`${c.name}: d(LM loss)/d(every parameter)`, async () => {
        const model = smallLlama({ dim: c.dim, context: c.context, seed: c.T });
        const tokens = randomTokens(c.batch * (c.T + 1), model.config.vocabSize, 7);
        const named = [...namedParameters(model)];
        const be = await createTfjsBackend({ engine });
        try {
          const tf = be.tf;
          await registerTfjsGradients();
          await tf.setBackend(engine);
          // tfjs's own autodiff of the independent forward
          const ref = tf.tidy(() => {
            const xs = named.map(([, p]) => tf.tensor(p.value.toF32().slice(), [...p.shape], 'float32'));
            const { value, grads } = tf.valueAndGrads((...ts: TfTensor[]) =>
              tfLlamaLoss(tf, model, Object.fromEntries(named.map(([n], i) => [n, ts[i]!])), tokens, c.batch),
            )(xs);
            return { loss: value.dataSync()[0]!, grads: grads.map((g) => g.dataSync() as Float32Array) };
          });
          // Lineage's tape on the tfjs backend
          const { loss, grads } = await valueAndGrad(
            be,
            (ops) => languageModelLoss(ops, model, tokens, c.batch),
            named.map(([, p]) => p),
          );
          const params: GradientDifference[] = named.map(([name, p], i) => {
            const g = grads.get(p);
            const r = ref.grads[i]!;
            if (!g || g.length !== r.length) throw new Error(`no Lineage gradient for ${name}`);
            let maxAbsDiff = 0;
            let scale = 0;
            for (let j = 0; j < r.length; j++) {
              const d = Math.abs(g[j]! - r[j]!);
              maxAbsDiff = Number.isNaN(d) || Number.isNaN(maxAbsDiff) ? Number.NaN : Math.max(maxAbsDiff, d);
              scale = Math.max(scale, Math.abs(r[j]!));
            }
            return { name, maxAbsDiff, scale, size: r.length };
          });
          const { worst } = expectGradientsAgree(`tfjs ${engine} ${c.name}`, {
            loss: [ref.loss, loss],
            params,
            missing: [],
          });
          console.log(
            `tfjs ${engine}, ${c.name}: loss ${loss} (tfjs autodiff ${ref.loss}); ${params.length} parameters; worst d/d${worst?.name}: max|Δ| ${worst?.maxAbsDiff.toExponential(1)}, max|g| ${worst?.scale.toExponential(1)} (${((worst?.maxAbsDiff ?? 0) / (worst?.scale ?? 1)).toExponential(1)} relative)`,
          );
        } finally {
          for (const [, p] of named) p.release();
          await be.close();
        }
      });
    }
  },
);
