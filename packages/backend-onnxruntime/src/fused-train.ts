import {
  FUSED_BLOCK_WEIGHTS,
  type FusedBlockInputs,
  type FusedTraining,
  type KdHeadInputs,
  type KdHeadResult,
  LineageError,
  type Shape,
  type Tensor,
} from '@lineage/core';
import {
  type BlockDims,
  blockBackwardGraph,
  blockForwardGraph,
  SAVED,
  WEIGHT_INPUTS,
} from './fused-block.js';
import { OPSET } from './kernels.js';
import type { OrtModule, OrtSession, OrtSessionOptions, OrtTensor } from './load-runtime.js';
import { FLOAT, GraphBuilder, INT32 } from './onnx.js';

/**
 * The knowledge-distillation head as one graph: both models' logits (h·Wᵀ), the log-softmaxes, the KL
 * per row and its mean, the CE metric, the gradient of the KL w.r.t. the student's logits
 * G = (T/N)·(softmax(zs/T) − softmax(zt/T)) and from it dh = G·W and dW = Gᵀ·h. The [N × V] tensors live
 * only inside onnxruntime. `gscale` is T/N (N is a symbolic dimension of the graph). Input names must not
 * look like the builder's generated names (a letter + base 36: `t1`, `ce`).
 */
export function kdHeadGraph(temperature: number): Uint8Array {
  const g = new GraphBuilder();
  const h = g.input('h', FLOAT, ['N', 'D']);
  const w = g.input('w', FLOAT, ['V', 'D']);
  const th = g.input('teacher_h', FLOAT, ['N', 'Dt']);
  const tw = g.input('teacher_w', FLOAT, ['V', 'Dt']);
  const targets = g.input('labels', INT32, ['N']);
  const gscale = g.input('gscale', FLOAT, []);
  // Gemm with transA/transB reads the transposed operands in place (measured on par with Transpose +
  // MatMul, which onnxruntime folds into a FusedMatMul: 0.97×, BENCHMARKS.md).
  const zs = g.op('Gemm', [h, w], { transB: 1 });
  const zt = g.op('Gemm', [th, tw], { transB: 1 });
  const one = g.int64([1]);
  const zero = g.int64([0]);
  const lsRaw = g.op('LogSoftmax', [zs], { axis: 1 });
  const scaled = (z: string) => (temperature === 1 ? z : g.op('Mul', [z, g.float(1 / temperature)]));
  const ls = temperature === 1 ? lsRaw : g.op('LogSoftmax', [scaled(zs)], { axis: 1 });
  const lt = g.op('LogSoftmax', [scaled(zt)], { axis: 1 });
  const pt = g.op('Exp', [lt]);
  const rows = g.op('ReduceSum', [g.op('Mul', [pt, g.op('Sub', [lt, ls])]), one], { keepdims: 0 });
  const kl = g.op('ReduceMean', [rows, zero], { keepdims: 0 });
  g.node('Identity', [temperature === 1 ? kl : g.op('Mul', [kl, g.float(temperature ** 2)])], {}, [
    'kl_loss',
  ]);
  const picked = g.op('GatherElements', [lsRaw, g.op('Unsqueeze', [targets, one])], { axis: 1 });
  g.node('Neg', [g.op('ReduceMean', [picked, g.int64([0, 1])], { keepdims: 0 })], {}, ['ce_metric']);
  const grad = g.op('Mul', [g.op('Sub', [g.op('Exp', [ls]), pt]), gscale]);
  g.node('MatMul', [grad, w], {}, ['grad_h']);
  g.node('Gemm', [grad, h], { transA: 1 }, ['grad_w']);
  for (const o of ['kl_loss', 'ce_metric', 'grad_h', 'grad_w']) g.output(o, FLOAT);
  return g.build(OPSET);
}

/** How the backend hands its tensors to onnxruntime and takes results back (base.ts). */
export interface TensorBridge {
  feed(t: Tensor): Promise<OrtTensor>;
  wrap(v: OrtTensor, shape: Shape): Tensor;
}

/** The cpu backend's FusedTraining: cached sessions (the KD head per temperature, blocks per shape). */
export class OrtFusedTraining implements FusedTraining {
  private readonly sessions = new Map<number | string, Promise<OrtSession>>();
  /** The forward graphs' output names of the saved activations, by block dims. */
  private readonly savedNames = new Map<string, string[]>();
  private closed = false;

  constructor(
    private readonly ort: OrtModule,
    private readonly options: OrtSessionOptions,
    private readonly bridge: TensorBridge,
  ) {}

  async kdHead(i: KdHeadInputs): Promise<KdHeadResult | { unsupported: string }> {
    if (this.closed) throw new LineageError('the onnxruntime backend was closed');
    const [N, D] = i.hidden.shape as [number, number];
    const [V, Dw] = i.weight.shape as [number, number];
    const [Nt, Dt] = i.teacherHidden.shape as [number, number];
    const [Vt, Dtw] = i.teacherWeight.shape as [number, number];
    if (i.hidden.shape.length !== 2 || i.weight.shape.length !== 2 || D !== Dw)
      return { unsupported: `student hidden [${i.hidden.shape}] and head [${i.weight.shape}] do not match` };
    if (i.teacherHidden.shape.length !== 2 || Nt !== N || Vt !== V || Dt !== Dtw)
      return {
        unsupported: `teacher hidden [${i.teacherHidden.shape}] and head [${i.teacherWeight.shape}] do not match the student's`,
      };
    if (i.targets.length !== N) return { unsupported: `${i.targets.length} targets for ${N} rows` };
    for (const t of i.targets)
      if (!(t >= 0 && t < V)) return { unsupported: `target ${t} outside the vocabulary` };
    const T = i.temperature;
    let p = this.sessions.get(T);
    if (!p) {
      p = this.ort.InferenceSession.create(kdHeadGraph(T), this.options);
      this.sessions.set(T, p);
    }
    let s: OrtSession;
    try {
      s = await p;
    } catch (e) {
      return { unsupported: `onnxruntime cannot load the fused KD head: ${(e as Error).message}` };
    }
    const out = (await s.run({
      h: await this.bridge.feed(i.hidden),
      w: await this.bridge.feed(i.weight),
      teacher_h: await this.bridge.feed(i.teacherHidden),
      teacher_w: await this.bridge.feed(i.teacherWeight),
      labels: new this.ort.Tensor('int32', i.targets, [N]),
      gscale: new this.ort.Tensor('float32', Float32Array.of(T / N), []),
    })) as Record<string, OrtTensor>;
    return {
      kl: this.bridge.wrap(out.kl_loss!, []),
      ce: this.bridge.wrap(out.ce_metric!, []),
      dHidden: this.bridge.wrap(out.grad_h!, [N, D]),
      dWeight: this.bridge.wrap(out.grad_w!, [V, D]),
    };
  }

  /** The block's dims, or why the fused block cannot serve these inputs. */
  private blockDims(i: FusedBlockInputs): BlockDims | { unsupported: string } {
    const { x, weights, heads: H, kvHeads: Hkv, headDim: hd } = i;
    if (x.shape.length !== 3) return { unsupported: `block input [${x.shape}] is not [B, T, dim]` };
    const [, T, dim] = x.shape as [number, number, number];
    if (weights.length !== FUSED_BLOCK_WEIGHTS.length)
      return { unsupported: `${weights.length} block weights, expected ${FUSED_BLOCK_WEIGHTS.length}` };
    const F = weights[6]!.shape[0]!;
    const want = [
      [dim],
      [dim],
      [H * hd, dim],
      [Hkv * hd, dim],
      [Hkv * hd, dim],
      [dim, H * hd],
      [F, dim],
      [F, dim],
      [dim, F],
    ];
    for (let k = 0; k < want.length; k++) {
      const s = weights[k]!.shape;
      if (s.length !== want[k]!.length || s.some((v, j) => v !== want[k]![j]))
        return { unsupported: `${FUSED_BLOCK_WEIGHTS[k]} is [${s}], expected [${want[k]}]` };
    }
    if (!(H % Hkv === 0 && hd % 2 === 0))
      return { unsupported: `${H} heads over ${Hkv} kv heads of size ${hd}` };
    if (i.cos.shape[0] !== T || i.cos.shape[1] !== hd / 2)
      return { unsupported: `RoPE tables [${i.cos.shape}] for ${T} positions of head size ${hd}` };
    return { dim, heads: H, kvHeads: Hkv, headDim: hd, eps: i.eps };
  }

  private blockSession(key: string, build: () => Uint8Array): Promise<OrtSession> {
    let p = this.sessions.get(key);
    if (!p) {
      p = this.ort.InferenceSession.create(build(), this.options);
      this.sessions.set(key, p);
      p.catch(() => this.sessions.delete(key));
    }
    return p;
  }

  private async blockFeeds(i: FusedBlockInputs): Promise<Record<string, OrtTensor>> {
    const feeds: Record<string, OrtTensor> = {
      x_in: await this.bridge.feed(i.x),
      rope_cos: await this.bridge.feed(i.cos),
      rope_sin: await this.bridge.feed(i.sin),
    };
    for (let k = 0; k < WEIGHT_INPUTS.length; k++)
      feeds[WEIGHT_INPUTS[k]!] = await this.bridge.feed(i.weights[k]!);
    return feeds;
  }

  async blockForward(
    i: FusedBlockInputs & { save: boolean },
  ): Promise<{ y: Tensor; saved: Tensor[] } | { unsupported: string }> {
    if (this.closed) throw new LineageError('the onnxruntime backend was closed');
    const d = this.blockDims(i);
    if ('unsupported' in d) return d;
    let s: OrtSession;
    try {
      s = await this.blockSession(`forward:${i.save}:${JSON.stringify(d)}`, () => {
        const f = blockForwardGraph(d, i.save);
        if (i.save) this.savedNames.set(JSON.stringify(d), f.saved);
        return f.model;
      });
    } catch (e) {
      return { unsupported: `onnxruntime cannot load the fused block: ${(e as Error).message}` };
    }
    const out = (await s.run(await this.blockFeeds(i))) as Record<string, OrtTensor>;
    return {
      y: this.bridge.wrap(out.y!, i.x.shape),
      saved: i.save
        ? this.savedNames.get(JSON.stringify(d))!.map((n) => this.bridge.wrap(out[n]!, out[n]!.dims))
        : [],
    };
  }

  async blockBackward(
    i: FusedBlockInputs & { dy: Tensor; saved: readonly Tensor[] },
  ): Promise<{ dx: Tensor; dWeights: Tensor[] }> {
    if (this.closed) throw new LineageError('the onnxruntime backend was closed');
    const d = this.blockDims(i);
    if ('unsupported' in d) throw new LineageError(`fused block backward: ${d.unsupported}`);
    const s = await this.blockSession(`backward:${JSON.stringify(d)}`, () => blockBackwardGraph(d));
    const feeds = await this.blockFeeds(i);
    feeds.dy = await this.bridge.feed(i.dy);
    for (let k = 0; k < SAVED.length; k++) feeds[SAVED[k]!] = await this.bridge.feed(i.saved[k]!);
    const out = (await s.run(feeds)) as Record<string, OrtTensor>;
    return {
      dx: this.bridge.wrap(out.dx!, i.x.shape),
      dWeights: WEIGHT_INPUTS.map((n, k) => this.bridge.wrap(out[`d_${n}`]!, i.weights[k]!.shape)),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const p of all) {
      try {
        await (await p).release();
      } catch {
        // a session that failed to build has nothing to release
      }
    }
  }
}
