import {
  type AttentionOptions,
  type BinaryOp,
  type MatmulOptions,
  type ReduceOp,
  type Tensor,
  UNARY_OPS,
  type UnaryOp,
} from '../backend/backend.js';
import type { Ops } from '../backend/ops.js';
import { type Shape, sizeOf } from '../tensor/host-tensor.js';
import type { GradientSpec, GradNode, Saved } from './registry.js';

/*
 * Vector-Jacobian products of every op of the backend contract, written with other ops of the contract
 * (so gradients run on every backend). A few rarely used, non-smooth ops (relu, abs, max, min, reduce max)
 * build their 0/1 masks on the host; the rest stays on the device. Integer inputs (ids, targets) and the
 * RoPE tables get no gradient.
 */

const NONE: Saved = { inputs: [], output: false };

function same(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Sums a broadcast gradient back to an input's shape (numpy broadcasting rules). */
export async function sumToShape(ops: Ops, g: Tensor, shape: Shape): Promise<Tensor> {
  if (same(g.shape, shape)) return g;
  const lead = g.shape.length - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.shape.length; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const r = axes.length ? await ops.reduce('sum', g, axes, true) : g;
  return ops.reshape(r, shape);
}

/** Zeros of `shape` (f32). */
export function zeros(ops: Ops, shape: Shape): Tensor {
  return ops.upload(new Float32Array(sizeOf(shape)), shape);
}

/** Broadcasts t to `shape` (t's shape must broadcast to it). */
async function broadcastTo(ops: Ops, t: Tensor, shape: Shape): Promise<Tensor> {
  if (same(t.shape, shape)) return t;
  return ops.add(zeros(ops, shape), t);
}

/**
 * One-hot rows [N, depth] for integer indices in [0, depth), built on the device from two small uploads:
 * relu(1 − |index − iota|) is exactly 1 where they match and 0 elsewhere.
 */
export async function oneHot(ops: Ops, indices: Int32Array, depth: number): Promise<Tensor> {
  const iota = new Float32Array(depth);
  for (let i = 0; i < depth; i++) iota[i] = i;
  const diff = await ops.sub(
    ops.upload(Float32Array.from(indices), [indices.length, 1]),
    ops.upload(iota, [1, depth]),
  );
  return ops.unary('relu', await ops.scale(await ops.unary('abs', diff), -1, 1));
}

/** A 0/1 (or tie-shared) mask computed on the host from a tensor's values. */
async function hostMask(ops: Ops, t: Tensor, pred: (v: number) => number): Promise<Tensor> {
  const v = await ops.readF32(t);
  const m = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) m[i] = pred(v[i]!);
  return ops.upload(m, t.shape);
}

function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

function spec<A>(
  saves: Saved | ((attrs: A, needsGrad: readonly boolean[]) => Saved),
  vjp: (ops: Ops, dy: Tensor, node: GradNode<A>) => Promise<(Tensor | undefined)[]>,
): GradientSpec<A> {
  return { saves: typeof saves === 'function' ? saves : () => saves, vjp };
}

// ---------------------------------------------------------------------------------------------------
// matmul

const matmul = spec<MatmulOptions>(
  (_, ng) => ({ inputs: [...(ng[1] ? [0] : []), ...(ng[0] ? [1] : [])], output: false }),
  async (ops, dy, n) => {
    const [a, b] = n.inputs as [Tensor, Tensor];
    const [sa, sb] = n.inputShapes as [Shape, Shape];
    const tA = n.attrs.transposeA === true;
    const tB = n.attrs.transposeB === true;
    const [ga, gb] = n.needsGrad;
    if (sb.length === 2 && sa.length > 2 && !tA) {
      // x [..., K]·op(W): fold the batch axes into rows so dW is one 2-D product (the linear layer case).
      const K = sa[sa.length - 1]!;
      const N = dy.shape[dy.shape.length - 1]!;
      const dy2 = await ops.reshape(dy, [-1, N]);
      const da = ga
        ? await ops.reshape(await ops.matmul(dy2, b, tB ? {} : { transposeB: true }), sa)
        : undefined;
      let db: Tensor | undefined;
      if (gb) {
        const a2 = await ops.reshape(a, [-1, K]);
        db = tB
          ? await ops.matmul(dy2, a2, { transposeA: true })
          : await ops.matmul(a2, dy2, { transposeA: true });
      }
      return [da, db];
    }
    let da: Tensor | undefined;
    let db: Tensor | undefined;
    if (ga) {
      if (!tA) da = await ops.matmul(dy, b, tB ? {} : { transposeB: true });
      else da = await ops.matmul(b, dy, tB ? { transposeA: true, transposeB: true } : { transposeB: true });
      da = await sumToShape(ops, da, sa);
    }
    if (gb) {
      if (!tB) db = await ops.matmul(a, dy, tA ? {} : { transposeA: true });
      else db = await ops.matmul(dy, a, tA ? { transposeA: true, transposeB: true } : { transposeA: true });
      db = await sumToShape(ops, db, sb);
    }
    return [da, db];
  },
);

// ---------------------------------------------------------------------------------------------------
// elementwise

function binarySpec(op: BinaryOp): GradientSpec<null> {
  return spec<null>(
    (_, ng) => {
      if (op === 'add' || op === 'sub') return NONE;
      if (op === 'mul') return { inputs: [...(ng[1] ? [0] : []), ...(ng[0] ? [1] : [])], output: false };
      return { inputs: [0, 1], output: false };
    },
    async (ops, dy, n) => {
      const [a, b] = n.inputs as [Tensor, Tensor];
      const [sa, sb] = n.inputShapes as [Shape, Shape];
      const [ga, gb] = n.needsGrad;
      let da: Tensor | undefined;
      let db: Tensor | undefined;
      switch (op) {
        case 'add':
          if (ga) da = dy;
          if (gb) db = dy;
          break;
        case 'sub':
          if (ga) da = dy;
          if (gb) db = await ops.scale(dy, -1);
          break;
        case 'mul':
          if (ga) da = await ops.mul(dy, b);
          if (gb) db = await ops.mul(dy, a);
          break;
        case 'div':
          if (ga) da = await ops.div(dy, b);
          if (gb) db = await ops.scale(await ops.div(await ops.mul(dy, a), await ops.mul(b, b)), -1);
          break;
        case 'max':
        case 'min': {
          // d/da = 1 where a wins, ½ on ties, 0 elsewhere; d/db the complement.
          const sign = op === 'max' ? 1 : -1;
          const m = await hostMask(ops, await ops.sub(a, b), (v) => (v * sign > 0 ? 1 : v === 0 ? 0.5 : 0));
          if (ga) da = await ops.mul(dy, m);
          if (gb) db = await ops.mul(dy, await ops.scale(m, -1, 1));
          break;
        }
      }
      return [da && (await sumToShape(ops, da, sa)), db && (await sumToShape(ops, db, sb))];
    },
  );
}

const IN: Saved = { inputs: [0], output: false };
const OUT: Saved = { inputs: [], output: true };

function unarySpec(op: UnaryOp): GradientSpec<null> {
  const saves: Record<UnaryOp, Saved> = {
    neg: NONE,
    exp: OUT,
    log: IN,
    sqrt: OUT,
    rsqrt: OUT,
    recip: OUT,
    abs: IN,
    square: IN,
    silu: { inputs: [0], output: true },
    sigmoid: OUT,
    tanh: OUT,
    relu: OUT,
  };
  return spec<null>(saves[op], async (ops, dy, n) => {
    const x = n.inputs[0]!;
    const y = n.output;
    switch (op) {
      case 'neg':
        return [await ops.scale(dy, -1)];
      case 'exp':
        return [await ops.mul(dy, y)];
      case 'log':
        return [await ops.div(dy, x)];
      case 'sqrt':
        return [await ops.div(await ops.scale(dy, 0.5), y)];
      case 'rsqrt': // d x^{-1/2} = −½ y³
        return [await ops.mul(dy, await ops.scale(await ops.mul(await ops.mul(y, y), y), -0.5))];
      case 'recip':
        return [await ops.scale(await ops.mul(dy, await ops.mul(y, y)), -1)];
      case 'abs':
        return [await ops.mul(dy, await hostMask(ops, x, (v) => (v > 0 ? 1 : v < 0 ? -1 : 0)))];
      case 'square':
        return [await ops.mul(dy, await ops.scale(x, 2))];
      case 'silu': {
        // d(x·σ(x)) = σ + y·(1 − σ)
        const s = await ops.unary('sigmoid', x);
        return [await ops.mul(dy, await ops.add(s, await ops.mul(y, await ops.scale(s, -1, 1))))];
      }
      case 'sigmoid':
        return [await ops.mul(dy, await ops.mul(y, await ops.scale(y, -1, 1)))];
      case 'tanh':
        return [await ops.mul(dy, await ops.scale(await ops.mul(y, y), -1, 1))];
      case 'relu':
        return [await ops.mul(dy, await hostMask(ops, y, (v) => (v > 0 ? 1 : 0)))];
    }
  });
}

const scale = spec<{ mul: number; add: number }>(NONE, async (ops, dy, n) => [
  await ops.scale(dy, n.attrs.mul),
]);

// ---------------------------------------------------------------------------------------------------
// reductions and normalisations

interface ReduceAttrs {
  axes: readonly number[];
  keepDims: boolean;
}

function keptShape(shape: Shape, axes: readonly number[]): number[] {
  const r = new Set(axes.map((a) => normAxis(a, shape.length)));
  return shape.map((d, i) => (r.has(i) ? 1 : d));
}

function reduceSpec(op: ReduceOp): GradientSpec<ReduceAttrs> {
  return spec<ReduceAttrs>(op === 'max' ? { inputs: [0], output: true } : NONE, async (ops, dy, n) => {
    const xs = n.inputShapes[0]!;
    const ks = keptShape(xs, n.attrs.axes);
    const dk = await ops.reshape(dy, ks);
    if (op === 'sum') return [await broadcastTo(ops, dk, xs)];
    if (op === 'mean') {
      const count = sizeOf(xs) / Math.max(1, sizeOf(ks));
      return [await broadcastTo(ops, await ops.scale(dk, 1 / count), xs)];
    }
    // max: the gradient goes to the maxima, shared equally between ties.
    const d = await ops.sub(n.inputs[0]!, await ops.reshape(n.output, ks));
    const m = await hostMask(ops, d, (v) => (v === 0 ? 1 : 0));
    const cnt = await ops.reduce('sum', m, n.attrs.axes, true);
    return [await ops.mul(await ops.div(m, cnt), dk)];
  });
}

const softmax = spec<null>(OUT, async (ops, dy, n) => {
  const y = n.output;
  const dot = await ops.reduce('sum', await ops.mul(dy, y), [-1], true);
  return [await ops.mul(y, await ops.sub(dy, dot))];
});

const logSoftmax = spec<null>(OUT, async (ops, dy, n) => {
  const p = await ops.unary('exp', n.output);
  return [await ops.sub(dy, await ops.mul(p, await ops.reduce('sum', dy, [-1], true)))];
});

const rmsNorm = spec<{ eps: number }>(
  (_, ng) => ({ inputs: ng[0] ? [0, 1] : [0], output: false }),
  async (ops, dy, n) => {
    const [x, w] = n.inputs as [Tensor, Tensor];
    const r = await ops.unary(
      'rsqrt',
      await ops.scale(await ops.reduce('mean', await ops.unary('square', x), [-1], true), 1, n.attrs.eps),
    );
    const xhat = await ops.mul(x, r);
    const dw = n.needsGrad[1] ? await sumToShape(ops, await ops.mul(dy, xhat), n.inputShapes[1]!) : undefined;
    let dx: Tensor | undefined;
    if (n.needsGrad[0]) {
      // dx = r·(g − x̂·mean(g·x̂)), g = dy·w
      const g = await ops.mul(dy, w);
      const m = await ops.reduce('mean', await ops.mul(g, xhat), [-1], true);
      dx = await ops.mul(r, await ops.sub(g, await ops.mul(xhat, m)));
    }
    return [dx, dw];
  },
);

// RoPE is a rotation per (position, frequency): its transpose is the rotation by −θ.
const rope = spec<null>({ inputs: [1, 2], output: false }, async (ops, dy, n) => {
  const [, cos, sin] = n.inputs as [Tensor, Tensor, Tensor];
  return [await ops.rope(dy, cos, await ops.scale(sin, -1)), undefined, undefined];
});

// ---------------------------------------------------------------------------------------------------
// indexing and losses

/** Rows of the one-hot product per chunk: bounds the [N, U] one-hot of the gather gradient. */
const GATHER_CHUNK_ELEMENTS = 1 << 22;

/**
 * The rows of d table that ids touch: `rows` the distinct ids (ascending), `G` [U, R] the sum of dy's rows
 * per id — G = onehot[N, U]ᵀ·dy (duplicates summed by a product, in chunks that bound the one-hot).
 */
async function gatherRows(ops: Ops, dy: Tensor, n: GradNode<null>) {
  const ids = (await ops.read(n.inputs[1]!)) as Int32Array;
  const R = sizeOf(n.inputShapes[0]!.slice(1));
  const N = ids.length;
  const rows = Int32Array.from(new Set(ids)).sort();
  const U = rows.length;
  const slotOf = new Int32Array(n.inputShapes[0]![0]!).fill(U);
  rows.forEach((id, i) => {
    slotOf[id] = i;
  });
  const compact = new Int32Array(N);
  for (let i = 0; i < N; i++) compact[i] = slotOf[ids[i]!]!;
  const dy2 = await ops.reshape(dy, [N, R]);
  const chunk = Math.max(1, Math.floor(GATHER_CHUNK_ELEMENTS / Math.max(1, U)));
  let G: Tensor | undefined;
  for (let s = 0; s < N; s += chunk) {
    const e = Math.min(N, s + chunk);
    const oh = await oneHot(ops, compact.subarray(s, e), U);
    const part = await ops.matmul(oh, e - s === N ? dy2 : await ops.slice(dy2, [s, 0], [e - s, R]), {
      transposeA: true,
    });
    G = G ? await ops.add(G, part) : part;
  }
  return { rows, slotOf, G: G! };
}

/**
 * d table = scatter-add of dy rows at ids, composed from existing ops: the touched rows G (gatherRows),
 * then gather(concat(G, 0), slot) places each row of G at its id (ids that never occur read the zero row).
 * `rowsVjp` hands over G itself, for the tape to add into a gradient the table already has.
 */
const gather: GradientSpec<null> = {
  ...spec<null>({ inputs: [1], output: false }, async (ops, dy, n) => {
    if (!n.needsGrad[0]) return [undefined, undefined];
    const ts = n.inputShapes[0]!;
    const { rows, slotOf, G } = await gatherRows(ops, dy, n);
    let table: Tensor;
    if (rows.length === ts[0]) table = G;
    else
      table = await ops.gather(
        await ops.concat([G, zeros(ops, [1, sizeOf(ts.slice(1))])], 0),
        ops.upload(slotOf, [ts[0]!]),
      );
    return [await ops.reshape(table, ts), undefined];
  }),
  rowsVjp: async (ops, dy, n) => {
    const { rows, G } = await gatherRows(ops, dy, n);
    return { rows, values: await ops.readF32(G) };
  },
};

/** d logits = (softmax(logits) − onehot(targets))·dy per row. */
const crossEntropy = spec<null>({ inputs: [0, 1], output: false }, async (ops, dy, n) => {
  if (!n.needsGrad[0]) return [undefined, undefined];
  const [logits, targets] = n.inputs as [Tensor, Tensor];
  const [N, V] = n.inputShapes[0] as [number, number];
  const t = (await ops.read(targets)) as Int32Array;
  const d = await ops.sub(await ops.softmax(logits), await oneHot(ops, t, V));
  return [await ops.mul(d, await ops.reshape(dy, [N, 1])), undefined];
});

// ---------------------------------------------------------------------------------------------------
// data movement

const reshape = spec<null>(NONE, async (ops, dy, n) => [await ops.reshape(dy, n.inputShapes[0]!)]);

const transpose = spec<{ perm: readonly number[] }>(NONE, async (ops, dy, n) => {
  const r = n.inputShapes[0]!.length;
  const inv = new Array<number>(r);
  n.attrs.perm.forEach((p, i) => {
    inv[normAxis(p, r)] = i;
  });
  return [await ops.transpose(dy, inv)];
});

const slice = spec<{ begin: readonly number[]; size: readonly number[] }>(NONE, async (ops, dy, n) => {
  const xs = n.inputShapes[0]!;
  let g = dy;
  for (let i = 0; i < xs.length; i++) {
    const dim = xs[i]!;
    const b0 = n.attrs.begin[i]!;
    const b = b0 < 0 ? b0 + dim : b0;
    const s = dy.shape[i]!;
    const after = dim - b - s;
    if (b === 0 && after === 0) continue;
    const parts: Tensor[] = [];
    const pad = (k: number) =>
      zeros(
        ops,
        g.shape.map((d, j) => (j === i ? k : d)),
      );
    if (b > 0) parts.push(pad(b));
    parts.push(g);
    if (after > 0) parts.push(pad(after));
    g = await ops.concat(parts, i);
  }
  return [g];
});

const concat = spec<{ axis: number }>(NONE, async (ops, dy, n) => {
  const r = dy.shape.length;
  const ax = normAxis(n.attrs.axis, r);
  const out: (Tensor | undefined)[] = [];
  let off = 0;
  for (let i = 0; i < n.inputShapes.length; i++) {
    const s = n.inputShapes[i]!;
    if (n.needsGrad[i]) {
      const begin = s.map((_, j) => (j === ax ? off : 0));
      out.push(await ops.slice(dy, begin, s));
    } else out.push(undefined);
    off += s[ax]!;
  }
  return out;
});

// ---------------------------------------------------------------------------------------------------
// attention

/**
 * Gradient of (fused or composite) attention. The tape saves q, k and v only; the probabilities are
 * recomputed here (as FlashAttention's backward does), so a layer's [H, T, S] matrix exists only while
 * its backward runs. GQA: the gradients of a kv head sum over its query group (the G·T rows below).
 */
const attention = spec<AttentionOptions>({ inputs: [0, 1, 2], output: false }, async (ops, dy, n) => {
  const [q, k, v] = n.inputs as [Tensor, Tensor, Tensor];
  const [B, T, H, D] = n.inputShapes[0] as [number, number, number, number];
  const [, S, Hkv] = n.inputShapes[1] as [number, number, number, number];
  const G = H / Hkv;
  const o = n.attrs;
  // rows (g, t) of each kv head: q [B,Hkv,G·T,D]; k, v [B,Hkv,S,D]
  const qh = await ops.reshape(
    await ops.transpose(await ops.reshape(q, [B, T, Hkv, G, D]), [0, 2, 3, 1, 4]),
    [B, Hkv, G * T, D],
  );
  const kh = await ops.transpose(k, [0, 2, 1, 3]);
  const vh = await ops.transpose(v, [0, 2, 1, 3]);
  let s = await ops.reshape(await ops.scale(await ops.matmul(qh, kh, { transposeB: true }), o.scale), [
    B,
    Hkv,
    G,
    T,
    S,
  ]);
  if (o.causal) s = await ops.add(s, ops.causalMask(T, S, o.offset ?? S - T));
  const p = await ops.reshape(await ops.softmax(s), [B, Hkv, G * T, S]);
  const dctx = await ops.reshape(
    await ops.transpose(await ops.reshape(dy, [B, T, Hkv, G, D]), [0, 2, 3, 1, 4]),
    [B, Hkv, G * T, D],
  );
  const [gq, gk, gv] = n.needsGrad;
  const dv = gv
    ? await ops.transpose(await ops.matmul(p, dctx, { transposeA: true }), [0, 2, 1, 3])
    : undefined;
  if (!gq && !gk) return [undefined, undefined, dv];
  const dp = await ops.matmul(dctx, vh, { transposeB: true });
  const dot = await ops.reduce('sum', await ops.mul(dp, p), [-1], true);
  const ds = await ops.scale(await ops.mul(p, await ops.sub(dp, dot)), o.scale);
  let dq: Tensor | undefined;
  if (gq) {
    const dqh = await ops.reshape(await ops.matmul(ds, kh), [B, Hkv, G, T, D]);
    dq = await ops.reshape(await ops.transpose(dqh, [0, 3, 1, 2, 4]), [B, T, H, D]);
  }
  const dk = gk
    ? await ops.transpose(await ops.matmul(ds, qh, { transposeA: true }), [0, 2, 1, 3])
    : undefined;
  return [dq, dk, dv];
});

// ---------------------------------------------------------------------------------------------------

const table = new Map<string, GradientSpec>([
  ['matmul', matmul],
  ['scale', scale],
  ['softmax', softmax],
  ['logSoftmax', logSoftmax],
  ['rmsNorm', rmsNorm],
  ['rope', rope],
  ['gather', gather],
  ['crossEntropy', crossEntropy],
  ['reshape', reshape],
  ['transpose', transpose],
  ['slice', slice],
  ['concat', concat],
  ['attention', attention],
]);
for (const op of ['add', 'sub', 'mul', 'div', 'max', 'min'] as const)
  table.set(`binary.${op}`, binarySpec(op));
for (const op of UNARY_OPS) table.set(`unary.${op}`, unarySpec(op));
for (const op of ['sum', 'mean', 'max'] as const) table.set(`reduce.${op}`, reduceSpec(op));

/** The gradients of the op contract, keyed by op (`matmul`, `binary.add`, `unary.exp`, `reduce.sum`, …). */
export const BUILTIN_GRADIENTS: ReadonlyMap<string, GradientSpec> = table;
