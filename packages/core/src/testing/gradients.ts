import type * as Vitest from 'vitest';
import { GradOps } from '../autograd/grad-ops.js';
import { BUILTIN_GRADIENTS } from '../autograd/gradients.js';
import { crossEntropyLoss, klDivergence, languageModelLoss, mseLoss } from '../autograd/losses.js';
import { randomParam, randomTokens, tinyModel, uniform } from '../autograd/testing.js';
import { valueAndGrad } from '../autograd/value-and-grad.js';
import type { Backend, BinaryOp, Tensor, UnaryOp } from '../backend/backend.js';
import { JsBackend } from '../backend/js/js-backend.js';
import type { Ops } from '../backend/ops.js';
import { Linear } from '../nn/linear.js';
import type { Parameter } from '../nn/parameter.js';
import { namedParameters } from '../optim/optimizer.js';
import { HostTensor } from '../tensor/host-tensor.js';

/*
 * Cross-backend gradient agreement: the same tape (GradOps, the gradient registry) run on the reference
 * js backend and on another backend must give the same gradients within float32 tolerance, for every op
 * with a built-in gradient and every layer kind. The js backend's gradients are themselves checked
 * against float64 finite differences (core's gradients.test.ts and layers.test.ts, built from the same
 * fixtures), so agreement with it makes another backend's training correct.
 *
 * ```ts
 * import { describeGradientAgreement } from '@lineage/core/testing';
 * describeGradientAgreement('mybackend cpu', () => createMyBackend({ device: 'cpu' }));
 * ```
 */

// vitest throws when imported outside its runner (see conformance.ts): load it only under vitest.
const vitest: typeof Vitest | undefined = process.env.VITEST ? await import('vitest') : undefined;

export { randomParam, randomTokens, type TinyModelOptions, tinyModel, uniform } from '../autograd/testing.js';

/** A differentiable computation: a scalar loss of named parameters (inputs and weights alike). */
export interface GradientCase {
  name: string;
  /** What to differentiate, by name (frozen parameters are not). */
  params: ReadonlyMap<string, Parameter>;
  /** The loss over `Ops` (runs under GradOps on each backend). */
  loss: (ops: Ops) => Promise<Tensor>;
  /** Core's float64 checks only: coordinates checked per parameter (default all) and their seed. */
  coords?: number;
  seed?: number;
}

/** sum(y ⊙ R) for a fixed random probe R: every output element matters, each with its own weight. */
export async function probeLoss(ops: Ops, y: Tensor, seed: number): Promise<Tensor> {
  const r = ops.upload(uniform(y.shape, seed), y.shape);
  return ops.reduce(
    'sum',
    await ops.mul(y, r),
    y.shape.map((_, i) => i),
  );
}

function opCase(
  name: string,
  inputs: Record<string, Parameter>,
  f: (ops: Ops, x: Record<string, Tensor>) => Promise<Tensor>,
  seed: number,
): GradientCase {
  return {
    name,
    params: new Map(Object.entries(inputs)),
    loss: async (ops) => {
      const x: Record<string, Tensor> = {};
      for (const [k, p] of Object.entries(inputs)) x[k] = p.tensor(ops.backend);
      return probeLoss(ops, await f(ops, x), seed);
    },
  };
}

/** The unary ops, in the order of their built-in gradients. */
const UNARY = [...BUILTIN_GRADIENTS.keys()]
  .filter((k) => k.startsWith('unary.'))
  .map((k) => k.slice('unary.'.length) as UnaryOp);
const POSITIVE = new Set<UnaryOp>(['log', 'sqrt', 'rsqrt', 'recip']);

/**
 * One or more cases per op of the contract (the inputs of core's float64 gradient checks): every
 * matmul transpose and broadcast form, binary ops with broadcasting, every unary op (kinks kept away
 * from their inputs), reductions, softmaxes, rmsNorm, rope, gather with duplicate ids, crossEntropy,
 * data movement, fused attention (GQA, MHA, MQA, causal, offset, head size 8) and composite attention.
 */
export function opGradientCases(): GradientCase[] {
  const out: GradientCase[] = [];
  let seed = 1000;
  const add = (
    name: string,
    inputs: Record<string, Parameter>,
    f: (ops: Ops, x: Record<string, Tensor>) => Promise<Tensor>,
  ) => out.push(opCase(name, inputs, f, seed++));
  const p = randomParam;

  for (const [tA, tB] of [
    [false, false],
    [false, true],
    [true, false],
    [true, true],
  ] as const) {
    const o = { transposeA: tA, transposeB: tB };
    add(
      `matmul tA=${tA} tB=${tB}`,
      { a: p(tA ? [4, 3] : [3, 4], 1), b: p(tB ? [5, 4] : [4, 5], 2) },
      (ops, x) => ops.matmul(x.a!, x.b!, o),
    );
    add(
      `batched matmul tA=${tA} tB=${tB}`,
      { a: p(tA ? [2, 3, 4, 3] : [2, 3, 3, 4], 3), b: p(tB ? [3, 5, 4] : [3, 4, 5], 4) },
      (ops, x) => ops.matmul(x.a!, x.b!, o),
    );
  }
  add('matmul x·Wᵀ (folded, the linear layer)', { x: p([2, 3, 4], 5), w: p([6, 4], 6) }, (ops, x) =>
    ops.matmul(x.x!, x.w!, { transposeB: true }),
  );
  add('matmul x·W, W 2-D', { x: p([2, 3, 4], 7), w: p([4, 6], 8) }, (ops, x) => ops.matmul(x.x!, x.w!));
  add('matmul broadcast both', { a: p([2, 1, 3, 4], 9), b: p([1, 2, 4, 5], 10) }, (ops, x) =>
    ops.matmul(x.a!, x.b!),
  );
  add('matmul rank-2 · batched', { a: p([3, 4], 11), b: p([2, 4, 5], 12) }, (ops, x) =>
    ops.matmul(x.a!, x.b!),
  );

  const binary: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'max', 'min'];
  for (const op of binary) {
    for (const [sa, sb] of [
      [
        [2, 3, 4],
        [2, 3, 4],
      ],
      [
        [2, 3, 4],
        [3, 1],
      ],
      [
        [1, 4],
        [2, 3, 1],
      ],
    ] as [number[], number[]][]) {
      add(`${op} [${sa}]·[${sb}]`, { a: p(sa, 20), b: p(sb, 21, op === 'div' ? 0.5 : -1, 1.5) }, (o, x) =>
        o.binary(op, x.a!, x.b!),
      );
    }
  }
  add('mul(x, x)', { x: p([3, 4], 22) }, (o, x) => o.mul(x.x!, x.x!));

  for (const op of UNARY) {
    const x = POSITIVE.has(op) ? p([3, 5], 30, 0.3, 2) : p([3, 5], 31, -2, 2, 0.05);
    add(op, { x }, (o, t) => o.unary(op, t.x!));
  }
  add('scale', { x: p([4, 3], 40) }, (o, t) => o.scale(t.x!, 2.5, 0.3));

  for (const op of ['sum', 'mean', 'max'] as const) {
    for (const [axes, keep] of [
      [[1], false],
      [[0, 2], true],
      [[-1], true],
      [[0, 1, 2], false],
    ] as [number[], boolean][]) {
      add(`reduce ${op} [${axes}] keep=${keep}`, { x: p([2, 3, 4], 50) }, (o, t) =>
        o.reduce(op, t.x!, axes, keep),
      );
    }
  }
  add('softmax', { x: p([3, 6], 60, -3, 3) }, (o, t) => o.softmax(t.x!));
  add('logSoftmax', { x: p([2, 2, 6], 61, -3, 3) }, (o, t) => o.logSoftmax(t.x!));
  add('rmsNorm', { x: p([2, 3, 8], 70), w: p([8], 71, 0.5, 1.5) }, (o, t) => o.rmsNorm(t.x!, t.w!, 1e-5));

  const T = 3;
  const half = 3;
  const angle = (i: number) => 0.7 * i + 0.1;
  const cos = Float32Array.from({ length: T * half }, (_, i) => Math.cos(angle(i)));
  const sin = Float32Array.from({ length: T * half }, (_, i) => Math.sin(angle(i)));
  add('rope', { x: p([2, T, 2, 2 * half], 80) }, (o, t) =>
    o.rope(t.x!, o.upload(cos.slice(), [T, half]), o.upload(sin.slice(), [T, half])),
  );

  add('gather (duplicates, unused rows)', { table: p([7, 3], 90) }, (o, t) =>
    o.gather(t.table!, o.upload(Int32Array.from([3, 1, 3, 6, 0, 3]), [2, 3])),
  );
  add('gather (every row)', { table: p([4, 2, 2], 91) }, (o, t) =>
    o.gather(t.table!, o.upload(Int32Array.from([3, 2, 1, 0, 0]), [5])),
  );
  add('crossEntropy', { logits: p([5, 7], 100, -3, 3) }, (o, t) =>
    o.crossEntropy(t.logits!, o.upload(Int32Array.from([0, 6, 3, 3, 1]), [5])),
  );

  add('reshape', { x: p([2, 3, 4], 110) }, (o, t) => o.reshape(t.x!, [6, -1]));
  add('transpose', { x: p([2, 3, 4], 111) }, (o, t) => o.transpose(t.x!, [2, 0, -2]));
  add('slice', { x: p([3, 4, 5], 112) }, (o, t) => o.slice(t.x!, [1, -3, 0], [2, -1, 3]));
  add('concat', { a: p([2, 1, 3], 113), b: p([2, 3, 3], 114), c: p([2, 2, 3], 115) }, (o, t) =>
    o.concat([t.a!, t.b!, t.c!], 1),
  );

  // name, T, S, H, Hkv, D, causal, offset
  const attention: [string, number, number, number, number, number, boolean, number | undefined][] = [
    ['GQA causal', 3, 3, 4, 2, 4, true, undefined],
    ['MHA causal', 4, 4, 2, 2, 4, true, undefined],
    ['MQA non-causal', 3, 5, 3, 1, 4, false, undefined],
    ['GQA causal with offset', 2, 4, 4, 2, 4, true, 2],
    // head size 8, T = S, offset 0: the whole-sequence case that some backends run on a dedicated kernel
    ['GQA causal, head size 8', 5, 5, 4, 2, 8, true, undefined],
  ];
  for (const [name, Tq, S, H, Hkv, D, causal, offset] of attention) {
    const o = { scale: 0.6, causal, ...(offset !== undefined ? { offset } : {}) };
    add(
      `attention ${name}`,
      { q: p([2, Tq, H, D], 120), k: p([2, S, Hkv, D], 121), v: p([2, S, Hkv, D], 122) },
      (ops, t) => ops.attention(t.q!, t.k!, t.v!, o),
    );
  }
  add(
    'attention composite (matmul, softmax and causal mask recorded op by op)',
    { q: p([1, 3, 4, 4], 130), k: p([1, 3, 2, 4], 131), v: p([1, 3, 2, 4], 132) },
    (ops, t) => ops.attentionComposite(t.q!, t.k!, t.v!, { scale: 0.5, causal: true }),
  );
  return out;
}

/**
 * One case per layer kind and whole models (the fixtures of core's layer gradient checks): embedding,
 * RMSNorm, Linear with and without bias, SwiGLU MLP, a decoder block (attention with RoPE and GQA,
 * biases, norms, residuals), the tied head, cross-entropy, KL (temperature, both sides) and MSE losses,
 * whole GQA Llamas (tied and untied, with biases; a plain tied Llama with head size 8), and distillation
 * of a student from a frozen teacher.
 */
export function layerGradientCases(): GradientCase[] {
  const out: GradientCase[] = [];
  {
    const model = tinyModel();
    const ids = randomTokens(8, model.config.vocabSize, 3);
    out.push({
      name: 'embedding (gather from the table)',
      params: new Map([['embed', model.embed]]),
      loss: async (ops) => probeLoss(ops, await model.embedTokens(ops, ids, 2), 1),
    });
  }
  {
    const model = tinyModel();
    const x = randomParam([2, 3, 16], 4);
    out.push({
      name: 'RMSNorm (input and weight)',
      params: new Map([
        ['x', x],
        ['norm', model.norm],
      ]),
      loss: async (ops) => probeLoss(ops, await model.finalNorm(ops, x.tensor(ops.backend)), 2),
    });
  }
  for (const bias of [true, false]) {
    const lin = new Linear(
      new HostTensor('f32', [5, 6], uniform([5, 6], 10)),
      bias ? new HostTensor('f32', [5], uniform([5], 11)) : undefined,
    );
    const x = randomParam([2, 3, 6], 12);
    const params = new Map<string, Parameter>([['x', x]]);
    for (const [k, q] of lin.parameters()) params.set(k, q);
    out.push({
      name: `Linear ${bias ? 'with' : 'without'} bias`,
      params,
      loss: async (ops) => probeLoss(ops, await lin.forward(ops, x.tensor(ops.backend)), 3),
    });
  }
  {
    const model = tinyModel();
    const L = model.blocks[0]!.linears;
    const x = randomParam([2, 3, 16], 13);
    const params = new Map<string, Parameter>([['x', x]]);
    for (const s of ['mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'] as const)
      for (const [k, q] of L[s].parameters()) params.set(`${s}.${k}`, q);
    out.push({
      name: 'SwiGLU MLP (gate, up, down)',
      params,
      coords: 24,
      loss: async (ops) => {
        const h = x.tensor(ops.backend);
        const g = await ops.unary('silu', await L['mlp.gate_proj'].forward(ops, h));
        const u = await L['mlp.up_proj'].forward(ops, h);
        return probeLoss(ops, await L['mlp.down_proj'].forward(ops, await ops.mul(g, u)), 4);
      },
    });
  }
  for (const dim of [16, 32]) {
    // dim 16: head size 4; dim 32: head size 8 (the whole-sequence attention kernel of some backends)
    const model = tinyModel({ dim, hidden: 24 });
    const x = randomParam([2, 5, dim], 14);
    const blk = model.blocks[0]!;
    const params = new Map<string, Parameter>([
      ['x', x],
      ['input_layernorm', blk.inputNorm],
      ['post_attention_layernorm', blk.postNorm],
    ]);
    for (const [s, l] of Object.entries(blk.linears))
      for (const [k, q] of l.parameters()) params.set(`${s}.${k}`, q);
    out.push({
      name: `decoder block, head size ${dim / 4}: attention with RoPE and GQA 4/2, q/k/v/o biases, SwiGLU, norms, residuals`,
      params,
      coords: 24,
      loss: async (ops) =>
        probeLoss(ops, await model.block(ops, 0, x.tensor(ops.backend), model.rope(ops, 5)), 5),
    });
  }
  {
    const model = tinyModel({ tied: true });
    const h = randomParam([4, 16], 15);
    out.push({
      name: 'tied head (logits through the embedding)',
      params: new Map([
        ['h', h],
        ['embed', model.embed],
      ]),
      loss: async (ops) => probeLoss(ops, await model.logits(ops, h.tensor(ops.backend)), 6),
    });
  }
  {
    const logits = randomParam([6, 9], 16, -3, 3);
    const targets = Int32Array.from([1, 8, 0, 4, 4, 2]);
    const weights = Float32Array.from([1, 1, 0, 1, 0.5, 1]);
    out.push({
      name: 'cross-entropy loss (weighted mean, padding masked)',
      params: new Map([['logits', logits]]),
      loss: async (ops) => crossEntropyLoss(ops, logits.tensor(ops.backend), targets, { weights }),
    });
  }
  {
    const teacher = randomParam([2, 3, 7], 17, -3, 3);
    const student = randomParam([2, 3, 7], 18, -3, 3);
    const params = new Map([
      ['teacher', teacher],
      ['student', student],
    ]);
    out.push({
      name: 'KL(teacher ‖ student), T = 2, both sides differentiated',
      params,
      loss: async (ops) =>
        klDivergence(ops, teacher.tensor(ops.backend), student.tensor(ops.backend), { temperature: 2 }),
    });
    out.push({
      name: 'KL(teacher ‖ student), T = 1',
      params,
      loss: async (ops) => klDivergence(ops, teacher.tensor(ops.backend), student.tensor(ops.backend)),
    });
    out.push({
      name: 'MSE (hidden-state loss)',
      params,
      loss: async (ops) => mseLoss(ops, teacher.tensor(ops.backend), student.tensor(ops.backend)),
    });
  }
  for (const tied of [false, true]) {
    const model = tinyModel({ tied });
    const tokens = randomTokens(2 * 7, model.config.vocabSize, tied ? 21 : 22);
    out.push({
      name: `Llama, GQA 4/2, biases, ${tied ? 'tied' : 'untied'} head: LM loss`,
      params: namedParameters(model),
      coords: 6,
      seed: 5,
      loss: (ops) => languageModelLoss(ops, model, tokens, 2),
    });
  }
  {
    // a plain Llama (no biases), initModel/llamaConfig shapes: 2 layers, dim 32, heads 4/2 (head size 8), tied
    const model = tinyModel({ tied: true, biases: false, dim: 32, hidden: 48, vocab: 37, std: 0.2 });
    const tokens = randomTokens(2 * 9, model.config.vocabSize, 23);
    out.push({
      name: 'Llama, dim 32, GQA 4/2, head size 8, no biases, tied head: LM loss',
      params: namedParameters(model),
      coords: 6,
      seed: 5,
      loss: (ops) => languageModelLoss(ops, model, tokens, 2),
    });
  }
  {
    const teacher = tinyModel({ seed: 3 });
    const student = tinyModel({ seed: 4, biases: false });
    for (const q of namedParameters(teacher).values()) q.trainable = false;
    const ids = randomTokens(2 * 5, 11, 30);
    out.push({
      name: 'KL distillation of a student Llama from a frozen teacher, T = 1.5',
      params: new Map([
        ...namedParameters(student),
        ...[...namedParameters(teacher)].map(([k, q]) => [`teacher.${k}`, q] as [string, Parameter]),
      ]),
      coords: 4,
      loss: async (ops) => {
        const t = await teacher.forward(ops, ids, 2);
        const s = await student.forward(ops, ids, 2);
        return klDivergence(ops, t, s, { temperature: 1.5 });
      },
    });
  }
  return out;
}

/** How far one parameter's gradient on a backend is from the reference backend's. */
export interface GradientDifference {
  name: string;
  /** max |g − g_ref| over the tensor. */
  maxAbsDiff: number;
  /** max |g_ref| over the tensor. */
  scale: number;
  /** Elements compared. */
  size: number;
}

export interface GradientComparison {
  /** Loss on the reference backend and on the other one. */
  loss: [number, number];
  params: GradientDifference[];
  /** Parameters with a gradient on one backend only (none when they agree on what the loss depends on). */
  missing: string[];
}

/**
 * Gradients of `c` by the same tape (valueAndGrad) on `reference` and on `backend`, compared per
 * parameter. Device copies of the parameters are released afterwards.
 */
export async function compareGradients(
  c: GradientCase,
  reference: Backend,
  backend: Backend,
): Promise<GradientComparison> {
  const named = [...c.params].filter(([, p]) => p.trainable);
  const list = named.map(([, p]) => p);
  try {
    const a = await valueAndGrad(reference, (ops) => c.loss(ops), list);
    const b = await valueAndGrad(backend, (ops) => c.loss(ops), list);
    const params: GradientDifference[] = [];
    const missing: string[] = [];
    for (const [name, p] of named) {
      const ga = a.grads.get(p);
      const gb = b.grads.get(p);
      if (!ga && !gb) continue;
      if (!ga || !gb || ga.length !== gb.length) {
        missing.push(name);
        continue;
      }
      let maxAbsDiff = 0;
      let scale = 0;
      for (let i = 0; i < ga.length; i++) {
        const d = Math.abs(ga[i]! - gb[i]!);
        // NaN anywhere must fail the comparison
        maxAbsDiff = Number.isNaN(d) ? Number.NaN : Math.max(maxAbsDiff, d);
        scale = Math.max(scale, Math.abs(ga[i]!));
        if (Number.isNaN(maxAbsDiff)) break;
      }
      params.push({ name, maxAbsDiff, scale, size: ga.length });
    }
    return { loss: [a.loss, b.loss], params, missing };
  } finally {
    for (const p of list) p.release();
  }
}

/** The gradient registry keys (`matmul`, `binary.add`, …) that `c`'s forward records on `backend`. */
export async function recordedOps(c: GradientCase, backend: Backend): Promise<Set<string>> {
  const ops = new GradOps(backend);
  const seen = new Set<string>();
  const tape = ops.tape;
  const record = tape.record.bind(tape);
  tape.record = (op, inputs, output, attrs) => {
    const before = tape.size;
    record(op, inputs, output, attrs);
    if (tape.size > before) seen.add(op);
  };
  const params = [...c.params.values()].filter((p) => p.trainable);
  try {
    for (const p of params) ops.watch(p);
    const loss = await ops.tidy(() => c.loss(ops));
    tape.dispose();
    ops.dispose(loss);
  } finally {
    tape.dispose();
    for (const p of params) p.release();
  }
  return seen;
}

/** The op keys with a built-in gradient. */
export function builtinGradientOps(): string[] {
  return [...BUILTIN_GRADIENTS.keys()];
}

/**
 * Float32 tolerance of cross-backend agreement: max |g − g_ref| ≤ rel·max |g_ref| + abs per parameter.
 *
 * Both backends run the same f32 graph; they differ only in rounding (summation order, fused
 * multiply-adds, blocked GEMMs, their own exp/log/tanh). That is a few units of the last place (~1e-7
 * relative) per op, compounded over the ≤ ~100 ops between a parameter and the loss and the sums of up
 * to a few hundred terms in matmul and reductions, with cancellation: 1e-7 … 1e-5 of the gradient's
 * scale in practice. rel = 1e-4 keeps an order of magnitude of margin above that, measured against the
 * tensor's largest gradient (near-zero entries carry only absolute rounding error), while a wrong term
 * in a VJP or a kernel bug shows up as an error of order 1 of that scale. abs = 1e-6 covers tensors
 * whose gradient is itself of rounding size.
 */
export const GRADIENT_AGREEMENT_TOLERANCE = { rel: 1e-4, abs: 1e-6 } as const;

export interface GradientAgreementOptions {
  /** The reference backend (default: a new JsBackend). */
  reference?: () => Backend;
  /** Tolerance (default GRADIENT_AGREEMENT_TOLERANCE). */
  tolerance?: { rel: number; abs: number };
  /**
   * Cases (default: opGradientCases() then layerGradientCases(), and a test that they exercise every op
   * with a built-in gradient).
   */
  cases?: () => GradientCase[];
  /** Per-test timeout in milliseconds (default: vitest's configured timeout). */
  timeout?: number;
}

/** Asserts a comparison within tolerance; returns the worst ratio |Δ| / (rel·scale + abs). */
export function expectGradientsAgree(
  c: string,
  r: GradientComparison,
  tolerance: { rel: number; abs: number } = GRADIENT_AGREEMENT_TOLERANCE,
): { worst: GradientDifference | undefined; ratio: number } {
  const v = vitest;
  if (!v) throw new Error('expectGradientsAgree runs under vitest');
  v.expect(r.missing, `${c}: gradients present on one backend only`).toEqual([]);
  v.expect(r.params.length, `${c}: no gradient to compare`).toBeGreaterThan(0);
  const [la, lb] = r.loss;
  v.expect(Math.abs(la - lb), `${c}: loss ${lb} vs reference ${la}`).toBeLessThanOrEqual(
    tolerance.rel * Math.abs(la) + tolerance.abs,
  );
  let worst: GradientDifference | undefined;
  let ratio = 0;
  for (const d of r.params) {
    v.expect(d.scale, `${c}: the reference gradient of ${d.name} is all zeros`).toBeGreaterThan(0);
    const bound = tolerance.rel * d.scale + tolerance.abs;
    v.expect(
      d.maxAbsDiff,
      `${c}: d/d${d.name}: max |Δ| ${d.maxAbsDiff} > ${bound} (max |g| ${d.scale})`,
    ).toBeLessThanOrEqual(bound);
    const q = d.maxAbsDiff / bound;
    if (q >= ratio) {
      ratio = q;
      worst = d;
    }
  }
  return { worst, ratio };
}

/**
 * The cross-backend gradient suite: every case's gradients by the same tape on the reference js backend
 * and on `makeBackend()`'s backend agree within float32 tolerance, and the cases exercise every op with a
 * built-in gradient. Prints the worst discrepancies at the end.
 */
export function describeGradientAgreement(
  name: string,
  makeBackend: () => Backend | Promise<Backend>,
  options: GradientAgreementOptions = {},
): void {
  const v = vitest;
  if (!v) throw new Error('describeGradientAgreement runs under vitest');
  const tolerance = options.tolerance ?? GRADIENT_AGREEMENT_TOLERANCE;
  const cases = options.cases ?? (() => [...opGradientCases(), ...layerGradientCases()]);
  v.describe(`gradient agreement with the js backend: ${name}`, () => {
    let backend: Backend | undefined;
    const reference = options.reference?.() ?? new JsBackend();
    const measured: { c: string; d: GradientDifference; ratio: number }[] = [];
    v.beforeAll(async () => {
      backend = await makeBackend();
    });
    v.afterAll(async () => {
      await backend?.close?.();
      measured.sort((a, b) => b.ratio - a.ratio);
      const fmt = (m: (typeof measured)[number]) =>
        `${m.c} d/d${m.d.name}: max|Δ| ${m.d.maxAbsDiff.toExponential(1)}, max|g| ${m.d.scale.toExponential(1)} (${(m.d.maxAbsDiff / m.d.scale).toExponential(1)} relative)`;
      console.log(
        `gradient agreement (${name}): ${measured.length} cases; worst relative to the tolerance: ${measured
          .slice(0, 4)
          .map(fmt)
          .join('; ')}`,
      );
    });
    const all = cases();
    for (const c of all) {
      v.it(
        c.name,
        async () => {
          const r = await compareGradients(c, reference, backend!);
          const { worst, ratio } = expectGradientsAgree(c.name, r, tolerance);
          if (worst) measured.push({ c: c.name, d: worst, ratio });
        },
        options.timeout,
      );
    }
    if (!options.cases) {
      v.it('the cases exercise every op with a built-in gradient', async () => {
        const seen = new Set<string>();
        for (const c of all) for (const op of await recordedOps(c, reference)) seen.add(op);
        v.expect(builtinGradientOps().filter((op) => !seen.has(op))).toEqual([]);
      });
    }
  });
}
