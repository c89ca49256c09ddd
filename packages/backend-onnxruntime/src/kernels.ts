import {
  type BinaryOp,
  UNARY_OPS as CORE_UNARY_OPS,
  type ComputeDType,
  type ReduceOp,
  type UnaryOp,
} from '@lineage/core';
import { type Dim, type ElemType, FLOAT, GraphBuilder, INT32, INT64 } from './onnx.js';

/**
 * Kernel graphs: one small ONNX model per (op, dtype, rank, attributes), with symbolic dimensions so one
 * session serves every shape. Inputs are named after the backend's feeds; the output is always `y`.
 */

/** Default-domain opset the kernels target (Split with num_outputs and Reduce* with axes inputs need 18). */
export const OPSET = 18;

const elem = (d: ComputeDType): ElemType => (d === 'f32' ? FLOAT : INT32);

/** Symbolic dims `${p}0…` for an input of rank r. */
function dims(p: string, r: number): Dim[] {
  return Array.from({ length: r }, (_, i) => `${p}${i}`);
}

export function identity(dtype: ComputeDType): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', elem(dtype), ['n']);
  g.node('Identity', [x], {}, ['y']);
  g.output('y', elem(dtype));
  return g.build(OPSET);
}

/** The last two axes of a rank-r tensor swapped. */
function swapLast(r: number): number[] {
  const p = Array.from({ length: r }, (_, i) => i);
  p[r - 2] = r - 1;
  p[r - 1] = r - 2;
  return p;
}

/**
 * Batched matmul. Transposed operands are a Transpose feeding MatMul; on the cpu provider onnxruntime's
 * optimizer folds it into a FusedMatMul (transA/transB read in place by the GEMM's packing).
 */
export function matmul(ra: number, rb: number, tA: boolean, tB: boolean): Uint8Array {
  const g = new GraphBuilder();
  let a = g.input('a', FLOAT, dims('a', ra));
  let b = g.input('b', FLOAT, dims('b', rb));
  if (tA) a = g.op('Transpose', [a], { perm: swapLast(ra) });
  if (tB) b = g.op('Transpose', [b], { perm: swapLast(rb) });
  g.node('MatMul', [a, b], {}, ['y']);
  g.output('y', FLOAT);
  return g.build(OPSET);
}

const BINARY: Record<BinaryOp, string> = {
  add: 'Add',
  sub: 'Sub',
  mul: 'Mul',
  div: 'Div',
  max: 'Max',
  min: 'Min',
};
export const BINARY_OPS: ReadonlySet<string> = new Set(Object.keys(BINARY));

export function binary(op: BinaryOp, dtype: ComputeDType, ra: number, rb: number): Uint8Array {
  const g = new GraphBuilder();
  const a = g.input('a', elem(dtype), dims('a', ra));
  const b = g.input('b', elem(dtype), dims('b', rb));
  if ((op === 'max' || op === 'min') && dtype === 'f32') {
    // Max/Min drop NaN on some providers; numpy propagates it: NaN in either operand gives NaN (a + b).
    const m = g.op(BINARY[op], [a, b]);
    const nan = g.op('Or', [g.op('IsNaN', [a]), g.op('IsNaN', [b])]);
    g.node('Where', [nan, g.op('Add', [a, b]), m], {}, ['y']);
  } else {
    g.node(BINARY[op], [a, b], {}, ['y']);
  }
  g.output('y', elem(dtype));
  return g.build(OPSET);
}

export const UNARY_OPS: ReadonlySet<string> = new Set(CORE_UNARY_OPS);

export function unary(op: UnaryOp, r: number, device: string): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', FLOAT, dims('x', r));
  const out = ['y'];
  switch (op) {
    case 'neg':
      g.node('Neg', [x], {}, out);
      break;
    case 'exp':
      g.node('Exp', [x], {}, out);
      break;
    case 'log':
      g.node('Log', [x], {}, out);
      break;
    case 'sqrt':
      g.node('Sqrt', [x], {}, out);
      break;
    case 'rsqrt':
      g.node('Reciprocal', [g.op('Sqrt', [x])], {}, out);
      break;
    case 'recip':
      g.node('Reciprocal', [x], {}, out);
      break;
    case 'abs':
      g.node('Abs', [x], {}, out);
      break;
    case 'square':
      g.node('Mul', [x, x], {}, out);
      break;
    // The cpu provider's Sigmoid is a clamped rational approximation (2e-5 relative error for x < −5, 0
    // below −18); 1/(1 + e^−x) on its Exp is accurate to a few ulp over the whole f32 range.
    case 'silu':
      g.node('Div', [x, g.op('Add', [g.float(1), g.op('Exp', [g.op('Neg', [x])])])], {}, out);
      break;
    case 'sigmoid':
      g.node('Reciprocal', [g.op('Add', [g.float(1), g.op('Exp', [g.op('Neg', [x])])])], {}, out);
      break;
    case 'tanh':
      if (device === 'webgpu') {
        // WGSL's tanh has ~3e-8 absolute error near 0 (it is (e^2x − 1)/(e^2x + 1)): below |x| = 2⁻⁸ use
        // x − x³/3 (relative error < 1e-10 there).
        const small = g.op('Less', [g.op('Abs', [x]), g.float(1 / 256)]);
        const series = g.op('Mul', [
          x,
          g.op('Sub', [g.float(1), g.op('Mul', [g.op('Mul', [x, x]), g.float(1 / 3)])]),
        ]);
        g.node('Where', [small, series, g.op('Tanh', [x])], {}, out);
      } else {
        g.node('Tanh', [x], {}, out);
      }
      break;
    case 'relu': {
      // Relu(NaN) is NaN in numpy; max(0, x) kernels may return 0: keep NaN explicitly.
      g.node('Where', [g.op('IsNaN', [x]), x, g.op('Relu', [x])], {}, out);
      break;
    }
    default:
      throw new TypeError(`unary: unknown op '${op as string}'`);
  }
  g.output('y', FLOAT);
  return g.build(OPSET);
}

/** x·m + c with scalar inputs m and c. */
export function scale(r: number): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', FLOAT, dims('x', r));
  const m = g.input('m', FLOAT, []);
  const c = g.input('c', FLOAT, []);
  g.node('Add', [g.op('Mul', [x, m]), c], {}, ['y']);
  g.output('y', FLOAT);
  return g.build(OPSET);
}

const REDUCE: Record<ReduceOp, string> = { sum: 'ReduceSum', mean: 'ReduceMean', max: 'ReduceMax' };

/** Reduction over the axes given as an int64 input (i32 means are taken in f32). */
export function reduce(op: ReduceOp, dtype: ComputeDType, r: number, keep: boolean): Uint8Array {
  const g = new GraphBuilder();
  let x = g.input('x', elem(dtype), dims('x', r));
  const axes = g.input('axes', INT64, ['k']);
  if (dtype === 'i32' && op === 'mean') x = g.op('Cast', [x], { to: FLOAT });
  const out = dtype === 'i32' && op !== 'mean' ? INT32 : FLOAT;
  if (op === 'max' && out === FLOAT) {
    // ReduceMax skips NaN on some providers; numpy propagates it: add 0·x summed (NaN iff any NaN).
    const m = g.op('ReduceMax', [x, axes], { keepdims: keep ? 1 : 0, noop_with_empty_axes: 1 });
    const nan = g.op('ReduceMax', [g.op('Cast', [g.op('IsNaN', [x])], { to: FLOAT }), axes], {
      keepdims: keep ? 1 : 0,
      noop_with_empty_axes: 1,
    });
    g.node('Where', [g.op('Cast', [nan], { to: 9 }), g.float(Number.NaN), m], {}, ['y']);
  } else {
    g.node(REDUCE[op], [x, axes], { keepdims: keep ? 1 : 0, noop_with_empty_axes: 1 }, ['y']);
  }
  g.output('y', out);
  return g.build(OPSET);
}

export function rowwise(op: 'softmax' | 'logSoftmax', r: number, device: string): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', FLOAT, dims('x', r));
  const y = g.op(op === 'softmax' ? 'Softmax' : 'LogSoftmax', [x], { axis: -1 });
  g.node('Identity', [device === 'webgpu' ? numpyRows(g, x, y) : y], {}, ['y']);
  g.output('y', FLOAT);
  return g.build(OPSET);
}

/**
 * WebGPU's Softmax returns 0 for a row of −∞ (and finite values for rows with +∞ or NaN); numpy, the cpu
 * provider and the reference give NaN there. Rows whose max is ±∞ or whose sum is NaN become NaN.
 */
function numpyRows(g: GraphBuilder, x: string, y: string): string {
  const last = g.int64([-1]);
  const m = g.op('ReduceMax', [x, last], { keepdims: 1 });
  const sum = g.op('ReduceSum', [x, last], { keepdims: 1 });
  const bad = g.op('Or', [g.op('IsInf', [m]), g.op('IsNaN', [sum])]);
  return g.op('Where', [bad, g.float(Number.NaN), y]);
}

/**
 * RMSNorm x / sqrt(mean(x²) + eps) · w as onnxruntime's SimplifiedLayerNormalization (the fused RMSNorm
 * its transformer optimizations emit; the cpu, webgpu and cuda providers all implement it).
 */
export function rmsNorm(r: number, eps: number): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', FLOAT, dims('x', r));
  const w = g.input('w', FLOAT, [`x${r - 1}`]);
  g.node('SimplifiedLayerNormalization', [x, w], { axis: -1, epsilon: { f: eps }, stash_type: 1 }, ['y']);
  g.output('y', FLOAT);
  return g.build(OPSET);
}

/** Rotate-half RoPE: x [..., T, H, D], cos/sin [T, D/2]. */
export function rope(r: number): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', FLOAT, dims('x', r));
  const cos = g.input('cos', FLOAT, ['T', 'h']);
  const sin = g.input('sin', FLOAT, ['T', 'h']);
  const [x1, x2] = g.node('Split', [x], { axis: -1, num_outputs: 2 }, 2) as [string, string];
  const one = g.int64([1]);
  const c = g.op('Unsqueeze', [cos, one]); // [T, 1, D/2]
  const s = g.op('Unsqueeze', [sin, one]);
  const y1 = g.op('Sub', [g.op('Mul', [x1, c]), g.op('Mul', [x2, s])]);
  const y2 = g.op('Add', [g.op('Mul', [x2, c]), g.op('Mul', [x1, s])]);
  g.node('Concat', [y1, y2], { axis: -1 }, ['y']);
  g.output('y', FLOAT);
  return g.build(OPSET);
}

export function gather(dtype: ComputeDType, rt: number, ri: number): Uint8Array {
  const g = new GraphBuilder();
  const t = g.input('table', elem(dtype), dims('t', rt));
  const i = g.input('ids', INT32, dims('i', ri));
  g.node('Gather', [t, i], { axis: 0 }, ['y']);
  g.output('y', elem(dtype));
  return g.build(OPSET);
}

/** −log softmax(logits)[target] per row. */
export function crossEntropy(): Uint8Array {
  const g = new GraphBuilder();
  const l = g.input('logits', FLOAT, ['N', 'V']);
  const t = g.input('targets', INT32, ['N']);
  const one = g.int64([1]);
  const ls = g.op('LogSoftmax', [l], { axis: 1 });
  const picked = g.op('GatherElements', [ls, g.op('Unsqueeze', [t, one])], { axis: 1 });
  g.node('Neg', [g.op('Squeeze', [picked, one])], {}, ['y']);
  g.output('y', FLOAT);
  return g.build(OPSET);
}

export function transpose(dtype: ComputeDType, perm: readonly number[]): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', elem(dtype), dims('x', perm.length));
  g.node('Transpose', [x], { perm }, ['y']);
  g.output('y', elem(dtype));
  return g.build(OPSET);
}

/** Slice with starts/ends as int64 inputs over every axis. */
export function slice(dtype: ComputeDType, r: number): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', elem(dtype), dims('x', r));
  const starts = g.input('starts', INT64, [r]);
  const ends = g.input('ends', INT64, [r]);
  g.node('Slice', [x, starts, ends], {}, ['y']);
  g.output('y', elem(dtype));
  return g.build(OPSET);
}

export function concat(dtype: ComputeDType, r: number, n: number, axis: number): Uint8Array {
  const g = new GraphBuilder();
  const xs = Array.from({ length: n }, (_, i) => g.input(`x${i}`, elem(dtype), dims(`x${i}_`, r)));
  g.node('Concat', xs, { axis }, ['y']);
  g.output('y', elem(dtype));
  return g.build(OPSET);
}

/**
 * Fused attention with GQA in one graph: q [B,T,H,D] → [B,Hkv,G·T,D] so the G query heads sharing a kv
 * head form one GEMM against that head's keys; scores · scale (+ additive causal mask [T, S]); softmax;
 * · v; back to [B,T,H·D]. Shapes come in as int64 inputs (`qshape` = [B,T,Hkv,G,D], `oshape`).
 */
export function attention(causal: boolean, device: string): Uint8Array {
  const g = new GraphBuilder();
  const q = g.input('q', FLOAT, ['B', 'T', 'H', 'D']);
  const k = g.input('k', FLOAT, ['B', 'S', 'Hkv', 'D']);
  const v = g.input('v', FLOAT, ['B', 'S', 'Hkv', 'D']);
  const scale = g.input('scale', FLOAT, []);
  const qshape = g.input('qshape', INT64, [5]);
  const oshape = g.input('oshape', INT64, [3]);
  const mask = causal ? g.input('mask', FLOAT, ['T', 'S']) : undefined;
  // q: [B,T,Hkv,G,D] → [B,Hkv,G,T,D]; k: [B,S,Hkv,D] → [B,Hkv,1,D,S]; v → [B,Hkv,1,S,D]
  const qh = g.op('Transpose', [g.op('Reshape', [q, qshape])], { perm: [0, 2, 3, 1, 4] });
  const two = g.int64([2]);
  const kh = g.op('Unsqueeze', [g.op('Transpose', [k], { perm: [0, 2, 3, 1] }), two]);
  const vh = g.op('Unsqueeze', [g.op('Transpose', [v], { perm: [0, 2, 1, 3] }), two]);
  let s = g.op('Mul', [g.op('MatMul', [qh, kh]), scale]); // [B,Hkv,G,T,S]
  if (mask) s = g.op('Add', [s, mask]);
  let p = g.op('Softmax', [s], { axis: -1 });
  if (device === 'webgpu' && causal) p = numpyRows(g, s, p);
  const ctx = g.op('MatMul', [p, vh]); // [B,Hkv,G,T,D]
  g.node('Reshape', [g.op('Transpose', [ctx], { perm: [0, 3, 1, 2, 4] }), oshape], {}, ['y']);
  g.output('y', FLOAT);
  return g.build(OPSET);
}

const MS = 'com.microsoft';

/**
 * Rotate-half RoPE as onnxruntime's RotaryEmbedding contrib op (one pass, 2.5–5× faster than the
 * composite above on the cpu provider): x viewed as [outer, T, H·D], position ids [1] = start 0 so row t
 * of cos/sin applies to position t.
 */
export function ropeFused(H: number): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', FLOAT, ['B', 'T', 'HD']);
  const cos = g.input('cos', FLOAT, ['T', 'h']);
  const sin = g.input('sin', FLOAT, ['T', 'h']);
  const pos = g.int64([0]);
  g.node('RotaryEmbedding', [x, pos, cos, sin], { num_heads: H, interleaved: 0 }, ['y'], MS);
  g.output('y', FLOAT);
  return g.build(OPSET);
}

/**
 * Causal self-attention over a whole sequence (offset = 0, T = S) as onnxruntime's GroupQueryAttention
 * contrib op: q [B, T, H·D], k/v [B, T, Hkv·D] (views of the [B,T,H,D] inputs), no past, every row of
 * length T. It neither builds the [T, S] mask nor copies k/v per query group.
 */
export function gqa(H: number, Hkv: number, scale: number): Uint8Array {
  const g = new GraphBuilder();
  const q = g.input('q', FLOAT, ['B', 'T', H === Hkv ? 'HD' : 'QD']);
  const k = g.input('k', FLOAT, ['B', 'T', 'HD']);
  const v = g.input('v', FLOAT, ['B', 'T', 'HD']);
  const seqlens = g.input('seqlens', INT32, ['B']);
  const total = g.input('total', INT32, []);
  g.node(
    'GroupQueryAttention',
    [q, k, v, '', '', seqlens, total],
    { num_heads: H, kv_num_heads: Hkv, scale: { f: scale } },
    ['y', 'present_k', 'present_v'],
    MS,
  );
  g.output('y', FLOAT);
  g.output('present_k', FLOAT);
  g.output('present_v', FLOAT);
  return g.build(OPSET);
}
