import { Ops } from '@lineage/core';
import { expectClose, randomF32, refAttention, refMatmul } from '@lineage/core/testing';
import { describe, expect, it } from 'vitest';
import { createTfjsBackend, type TfjsBackend } from './base.js';

// tfjs-specific behaviour beyond the conformance suite: the blocked causal attention (T ≥ 256), the wasm
// matmul workaround (a spy on the kernel), engines side by side, and tfjs-level memory.

const engines = ['wasm', 'cpu'] as const;

describe.each(engines)('tfjs %s: blocked causal attention', (engine) => {
  const cases: { name: string; q: number[]; kv: number[]; offset?: number }[] = [
    { name: 'T = S = 300 (3 blocks), GQA 4/2', q: [1, 300, 4, 8], kv: [1, 300, 2, 8] },
    { name: 'T = 256 after 40 cached keys', q: [2, 256, 2, 4], kv: [2, 296, 2, 4] },
    { name: 'T = 260, explicit offset 3', q: [1, 260, 2, 4], kv: [1, 280, 1, 4], offset: 3 },
  ];
  for (const c of cases) {
    it(`${c.name}: fused == composite == reference`, async () => {
      const be = await createTfjsBackend({ engine });
      const ops = new Ops(be);
      const q = randomF32(c.q, 1);
      const k = randomF32(c.kv, 2);
      const v = randomF32(c.kv, 3);
      const o = { scale: 1 / Math.sqrt(c.q[3]!), causal: true, offset: c.offset };
      const base = be.liveTensors();
      await ops.tidy(async () => {
        const [tq, tk, tv] = [ops.upload(q, c.q), ops.upload(k, c.kv), ops.upload(v, c.kv)];
        const fused = await ops.readF32(await ops.attention(tq, tk, tv, o));
        const comp = await ops.readF32(await ops.attentionComposite(tq, tk, tv, o));
        expectClose(fused, comp, 2e-5, 2e-6);
        expectClose(fused, refAttention(q, k, v, c.q, c.kv, o), 2e-5, 2e-6);
      });
      expect(be.liveTensors()).toBe(base);
      await be.close();
    });
  }
});

describe('tfjs wasm: the transposed / batched matmul trap', () => {
  // tfjs 4.22's wasm BatchMatMul reaches XNNPACK only for an untransposed product with batch 1 on both
  // sides; anything else takes a naive loop 10–20× slower (bench/eval-bench.mjs measures it). A spy on the
  // kernel checks that every product this backend runs has that form, and the values stay right.
  it('x·Wᵀ, batched q·kᵀ and GQA-broadcast products only call BatchMatMul in its fast form', async () => {
    const be = await createTfjsBackend({ engine: 'wasm' });
    const kernel = be.tf.getKernel('BatchMatMul', 'wasm');
    if (!kernel) throw new Error('no wasm BatchMatMul kernel');
    const calls: string[] = [];
    const original = kernel.kernelFunc;
    kernel.kernelFunc = (args) => {
      const { a, b } = args.inputs as unknown as { a: { shape: number[] }; b: { shape: number[] } };
      const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
      const batch = (s: number[]) => s.slice(0, -2).reduce((p, d) => p * d, 1);
      calls.push(`${transposeA || transposeB ? 'transposed' : 'plain'} ${batch(a.shape)}×${batch(b.shape)}`);
      return original(args);
    };
    try {
      const ops = new Ops(be);
      const cases: [number[], number[], boolean, boolean][] = [
        [[2, 37, 64], [96, 64], false, true], // x·Wᵀ
        [[6, 20, 16], [6, 24, 16], false, true], // batched q·kᵀ
        [[2, 2, 3, 5, 8], [2, 2, 1, 7, 8], false, true], // [B,Hkv,G,T,D]·[B,Hkv,1,S,D]ᵀ
        [[3, 9, 5], [3, 9, 4], true, false], // aᵀ·b
      ];
      for (const [as, bs, tA, tB] of cases) {
        const a = randomF32(as, 4);
        const b = randomF32(bs, 5);
        const y = await ops.tidy(async () =>
          ops.readF32(
            await ops.matmul(ops.upload(a, as), ops.upload(b, bs), { transposeA: tA, transposeB: tB }),
          ),
        );
        expectClose(y, refMatmul(a, as, b, bs, tA, tB).out, 1e-5, 1e-5);
      }
      expect(calls.length).toBeGreaterThan(0);
      expect(calls.every((c) => c === 'plain 1×1')).toBe(true);
    } finally {
      kernel.kernelFunc = original;
      await be.close();
    }
  });
});

describe('tfjs engines side by side', () => {
  it('wasm and cpu backends in one process each run on their own engine', async () => {
    const wasm = await createTfjsBackend({ engine: 'wasm' });
    const cpu = await createTfjsBackend({ engine: 'cpu' });
    const a = randomF32([3, 5], 8);
    const b = randomF32([5, 4], 9);
    const ref = refMatmul(a, [3, 5], b, [5, 4]).out;
    for (let i = 0; i < 3; i++) {
      for (const be of [wasm, cpu, wasm]) {
        const ta = be.upload(a.slice(), [3, 5]);
        const tb = be.upload(b.slice(), [5, 4]);
        const y = await be.matmul(ta, tb);
        expectClose(await be.read(y), ref, 1e-5, 1e-5);
        expect(be.tf.getBackend()).toBe(be.engine === 'wasm' ? 'wasm' : 'cpu');
        for (const t of [ta, tb, y]) be.dispose(t);
      }
    }
    expect(wasm.liveTensors()).toBe(0);
    expect(cpu.liveTensors()).toBe(0);
  });

  it('read hands out copies on every engine', async () => {
    for (const engine of engines) {
      const be = await createTfjsBackend({ engine });
      const t = be.upload(Float32Array.from([1, 2, 3]), [3]);
      const r = await be.read(t);
      r[0] = 42;
      expect(Array.from(await be.read(t))).toEqual([1, 2, 3]);
      be.dispose(t);
    }
  });
});

describe.each(engines)('tfjs %s: tfjs-level memory', (engine) => {
  it('every tf.Tensor is released: by dispose, and cached ones (Wᵀ, masks) by close', async () => {
    const probe = await createTfjsBackend({ engine });
    const tf = probe.tf;
    const before = tf.memory().numTensors;
    const be: TfjsBackend = await createTfjsBackend({ engine });
    const ops = new Ops(be);
    const w = ops.upload(randomF32([64, 32], 10), [64, 32]);
    await ops.tidy(async () => {
      const x = ops.upload(randomF32([2, 300, 32], 11), [2, 300, 32]);
      const h = await ops.linear(x, w);
      const q = await ops.reshape(h, [2, 300, 4, 16]);
      await ops.attention(q, q, q, { scale: 0.25, causal: true });
      await ops.crossEntropy(await ops.reshape(h, [600, 64]), ops.upload(new Int32Array(600), [600]));
      await ops.unary('silu', h);
      await ops.softmax(h);
      await ops.logSoftmax(h);
      await ops.reduce('max', h, [0, 1]);
      return undefined;
    });
    ops.dispose(w);
    expect(be.liveTensors()).toBe(0);
    await be.close();
    expect(tf.memory().numTensors).toBe(before);
    expect(() => be.upload(new Float32Array(1), [1])).toThrow(/after close/);
  });
});
