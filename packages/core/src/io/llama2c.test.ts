import {
  copyFileSync,
  promises as fsp,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HostTensor } from '../tensor/host-tensor.js';
import { sharedPath } from '../testing/shared.js';
import { LineageError } from '../util/errors.js';
import { computeFreqCis, Llama2cSource, openLlama2c, permuteRopeRows, writeLlama2c } from './llama2c.js';
import type { TensorSource } from './tensor-source.js';

const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lineage-l2c-'));
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

async function expectLineageError(p: Promise<unknown>, file: string, ...parts: string[]) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LineageError);
  const msg = (err as LineageError).message;
  expect(msg).not.toMatch(/[\n\r]/);
  expect(msg).toContain(basename(file));
  for (const part of parts) expect(msg).toContain(part);
}

async function readAll(src: TensorSource): Promise<Map<string, HostTensor>> {
  const m = new Map<string, HostTensor>();
  for (const n of src.names()) m.set(n, await src.read(n));
  return m;
}

describe('openLlama2c on stories260K', () => {
  it('reads the header and implied config', async () => {
    const { config, source } = await openLlama2c(MODEL);
    try {
      expect(source.header).toEqual({
        dim: 64,
        hiddenDim: 172,
        nLayers: 5,
        nHeads: 8,
        nKvHeads: 4,
        vocabSize: 512,
        seqLen: 512,
        sharedClassifier: true,
      });
      expect(config).toEqual({
        architecture: 'llama',
        vocabSize: 512,
        hiddenSize: 64,
        intermediateSize: 172,
        numLayers: 5,
        numHeads: 8,
        numKvHeads: 4,
        headDim: 8,
        maxPositions: 512,
        rmsNormEps: 1e-5,
        ropeTheta: 10000,
        tieWordEmbeddings: true,
        qkvBias: false,
        oBias: false,
        mlpBias: false,
        bosTokenId: 1,
        eosTokenId: 2,
      });
    } finally {
      await source.close();
    }
  });

  it('exposes Hugging Face names and shapes', async () => {
    const { source } = await openLlama2c(MODEL);
    const names = source.names();
    expect(names.length).toBe(1 + 5 * 9 + 1);
    expect(names[0]).toBe('model.embed_tokens.weight');
    expect(names.at(-1)).toBe('model.norm.weight');
    expect(names).not.toContain('lm_head.weight');
    expect(names.slice(1, 10)).toEqual(
      [
        'input_layernorm',
        'self_attn.q_proj',
        'self_attn.k_proj',
        'self_attn.v_proj',
        'self_attn.o_proj',
        'post_attention_layernorm',
        'mlp.gate_proj',
        'mlp.up_proj',
        'mlp.down_proj',
      ].map((s) => `model.layers.0.${s}.weight`),
    );
    const shape = (n: string) => [...source.info(n).shape];
    expect(shape('model.embed_tokens.weight')).toEqual([512, 64]);
    expect(shape('model.layers.4.self_attn.q_proj.weight')).toEqual([64, 64]);
    expect(shape('model.layers.4.self_attn.k_proj.weight')).toEqual([32, 64]);
    expect(shape('model.layers.4.mlp.gate_proj.weight')).toEqual([172, 64]);
    expect(shape('model.layers.4.mlp.down_proj.weight')).toEqual([64, 172]);
    expect(shape('model.norm.weight')).toEqual([64]);
    expect(source.info('model.norm.weight').dtype).toBe('f32');
    await expectLineageError(source.read('lm_head.weight'), MODEL, "no tensor named 'lm_head.weight'");

    // Tensors come from the right offsets: the embedding starts right after the 28-byte header,
    // and layer 1's q_proj is layer 1's wq block with its rows permuted.
    const raw = readFileSync(MODEL);
    const f32 = (off: number, n: number) =>
      new Float32Array(raw.buffer.slice(raw.byteOffset + off, raw.byteOffset + off + 4 * n));
    expect([...(await source.read('model.embed_tokens.weight')).toF32().subarray(0, 64)]).toEqual([
      ...f32(28, 64),
    ]);
    const wqOff = 28 + 4 * (512 * 64 + 5 * 64 + 64 * 64);
    const wq1 = f32(wqOff, 64 * 64);
    expect([...(await source.read('model.layers.1.self_attn.q_proj.weight')).toF32()]).toEqual([
      ...permuteRopeRows(wq1, 8, 8, 64, false),
    ]);
    await source.close();
  });

  it('matches the independent float64 reference logits when run with rotate-half RoPE', async () => {
    const ref = JSON.parse(readFileSync(sharedPath('fixtures', 'stories260K-reference.json'), 'utf8')) as {
      tokens: number[];
      logits_first_16_positions: number[][];
    };
    const { config, source } = await openLlama2c(MODEL);
    const w = await readAll(source);
    await source.close();
    const logits = forwardHF(config, w, ref.tokens.slice(0, 16));
    let maxErr = 0;
    for (let t = 0; t < 16; t++) {
      for (let v = 0; v < 512; v++)
        maxErr = Math.max(maxErr, Math.abs(logits[t]![v]! - ref.logits_first_16_positions[t]![v]!));
    }
    expect(maxErr).toBeLessThan(1e-4);
  });

  it('computes freq_cis tables within one f32 ulp of the exported ones', async () => {
    const src = await Llama2cSource.open(MODEL);
    const stored = await src.readFreqCis();
    await src.close();
    const computed = computeFreqCis(8, 512);
    let maxErr = 0;
    for (let i = 0; i < stored.real.length; i++) {
      maxErr = Math.max(
        maxErr,
        Math.abs(stored.real[i]! - computed.real[i]!),
        Math.abs(stored.imag[i]! - computed.imag[i]!),
      );
    }
    expect(maxErr).toBeLessThan(6e-8 * 2);
  });
});

describe('writeLlama2c', () => {
  it('read → write reproduces stories260K byte for byte', async () => {
    const { config, source } = await openLlama2c(MODEL);
    const out = join(dir, 'copy.bin');
    await writeLlama2c(out, config, source);
    await source.close();
    expect(readFileSync(out).equals(readFileSync(MODEL))).toBe(true);
    expect(readdirSync(dir)).toEqual(['copy.bin']);
  });

  it('writes from in-memory tensors of any float dtype, with a separate classifier', async () => {
    const { config, source } = await openLlama2c(MODEL);
    const w = await readAll(source);
    await source.close();
    const bf = new Map([...w].map(([n, t]) => [n, t.cast('bf16')] as const));
    bf.set(
      'lm_head.weight',
      HostTensor.fromF32(
        w
          .get('model.embed_tokens.weight')!
          .toF32()
          .map((x) => -x),
        [512, 64],
        'f16',
      ),
    );
    const out = join(dir, 'untied.bin');
    await writeLlama2c(out, { ...config, tieWordEmbeddings: false }, bf);
    expect(readFileSync(out).readInt32LE(20)).toBe(-512);
    const back = await openLlama2c(out);
    expect(back.config.tieWordEmbeddings).toBe(false);
    expect(back.source.names()).toContain('lm_head.weight');
    for (const [n, t] of bf) expect([...(await back.source.read(n)).toF32()]).toEqual([...t.toF32()]);
    await back.source.close();
  });

  it('refuses configs llama2.c cannot represent, and bad tensors, creating nothing', async () => {
    const { config, source } = await openLlama2c(MODEL);
    const out = join(dir, 'x.bin');
    await expectLineageError(
      writeLlama2c(out, { ...config, qkvBias: true }, source),
      out,
      'attention biases',
    );
    await expectLineageError(writeLlama2c(out, { ...config, mlpBias: true }, source), out, 'MLP biases');
    await expectLineageError(
      writeLlama2c(out, { ...config, ropeTheta: 5e5 }, source),
      out,
      'rope_theta 500000',
    );
    await expectLineageError(
      writeLlama2c(out, { ...config, rmsNormEps: 1e-6 }, source),
      out,
      'rms_norm_eps 0.000001',
    );
    await expectLineageError(
      writeLlama2c(out, { ...config, ropeScaling: { type: 'linear', factor: 2 } }, source),
      out,
      'RoPE scaling',
    );
    await expectLineageError(writeLlama2c(out, { ...config, headDim: 16 }, source), out, 'head_dim 16');
    await expectLineageError(
      writeLlama2c(out, { ...config, tieWordEmbeddings: false }, source),
      MODEL,
      "missing tensor 'lm_head.weight'",
    );
    const w = await readAll(source);
    await source.close();
    w.set('model.norm.weight', HostTensor.zeros('f32', [63]));
    await expectLineageError(
      writeLlama2c(out, config, w),
      out,
      "tensor 'model.norm.weight' has shape [63], expected [64]",
    );
    w.set('model.norm.weight', HostTensor.zeros('i8', [64]));
    await expectLineageError(writeLlama2c(out, config, w), out, "tensor 'model.norm.weight' is i8");
    expect(readdirSync(dir)).toEqual([]);
  });

  it('leaves no file and no temp file when reading a tensor fails mid-write', async () => {
    const { config, source } = await openLlama2c(MODEL);
    const failing: TensorSource = {
      path: source.path,
      names: () => source.names(),
      info: (n) => source.info(n),
      read: async (n) => {
        if (n === 'model.layers.3.mlp.up_proj.weight') throw new Error('read failed');
        return source.read(n);
      },
      close: async () => {},
    };
    await expect(writeLlama2c(join(dir, 'x.bin'), config, failing)).rejects.toThrow('read failed');
    await source.close();
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('openLlama2c validation', () => {
  const original = () => readFileSync(MODEL);

  it('a truncated file', async () => {
    const p = join(dir, 'trunc.bin');
    writeFileSync(p, original().subarray(0, 1000));
    await expectLineageError(
      openLlama2c(p),
      p,
      'file is truncated: header implies 1056540 bytes, file has 1000',
    );
  });

  it('a file with extra bytes', async () => {
    const p = join(dir, 'long.bin');
    writeFileSync(p, Buffer.concat([original(), Buffer.alloc(4)]));
    await expectLineageError(openLlama2c(p), p, 'file has 1056544 bytes but the header implies 1056540');
  });

  it('nonsense header values', async () => {
    const cases: [number, number, string][] = [
      [0, -64, 'header dim -64 must be positive'],
      [0, 0, 'header dim 0 must be positive'],
      [0, 63, 'header dim 63 is not divisible by n_heads 8'],
      [0, 24, 'header head size 3 (dim / n_heads) must be even'],
      [16, 3, 'header n_heads 8 is not a multiple of n_kv_heads 3'],
      [24, 0, 'header seq_len 0 must be positive'],
      [0, 640, 'file is truncated: header implies'],
      [0, 0x7ffffff0, 'file is truncated: header implies'],
    ];
    for (const [off, value, msg] of cases) {
      const buf = Buffer.from(original());
      buf.writeInt32LE(value, off);
      const p = join(dir, `bad-${off}-${value}.bin`);
      writeFileSync(p, buf);
      await expectLineageError(openLlama2c(p), p, msg);
    }
  });

  it('a newer llama2.c export, a tiny file and a missing file', async () => {
    const v1 = Buffer.alloc(256);
    v1.writeUInt32LE(0x616b3432, 0);
    v1.writeInt32LE(1, 4);
    const p = join(dir, 'v1.bin');
    writeFileSync(p, v1);
    await expectLineageError(openLlama2c(p), p, 'version-1 export');
    const q = join(dir, 'tiny.bin');
    writeFileSync(q, Buffer.alloc(10));
    await expectLineageError(openLlama2c(q), q, 'too small');
    await expectLineageError(openLlama2c(join(dir, 'none.bin')), 'none.bin', 'no such file or directory');
  });

  it('a copy elsewhere opens fine (sanity for the cases above)', async () => {
    const p = join(dir, 'ok.bin');
    copyFileSync(MODEL, p);
    const { source } = await openLlama2c(p);
    await source.close();
  });
});

describe('permuteRopeRows', () => {
  it('maps interleaved pairs to rotate-half halves and back', () => {
    // 1 head of size 4, rows labelled by index, dim 1: interleaved [a0 b0 a1 b1] -> [a0 a1 b0 b1].
    expect([...permuteRopeRows(Float32Array.of(0, 1, 2, 3), 1, 4, 1, false)]).toEqual([0, 2, 1, 3]);
    expect([...permuteRopeRows(Float32Array.of(0, 2, 1, 3), 1, 4, 1, true)]).toEqual([0, 1, 2, 3]);
    const w = Float32Array.from({ length: 4 * 8 * 3 }, (_, i) => i * 1.25 - 7);
    for (const [heads, hd] of [
      [4, 8],
      [2, 16],
      [16, 2],
    ] as const) {
      const p = permuteRopeRows(w, heads, hd, 3, false);
      if (hd > 2) expect(p).not.toEqual(w); // with one pair per head the orders coincide
      expect(permuteRopeRows(p, heads, hd, 3, true)).toEqual(w);
      expect(permuteRopeRows(permuteRopeRows(w, heads, hd, 3, true), heads, hd, 3, false)).toEqual(w);
    }
    expect(() => permuteRopeRows(w, 3, 8, 3, false)).toThrow(RangeError);
  });
});

/** A float64 Llama forward with Hugging Face's rotate-half RoPE, for checking the q/k permutation. */
function forwardHF(
  cfg: {
    hiddenSize: number;
    numHeads: number;
    numKvHeads: number;
    headDim: number;
    numLayers: number;
    vocabSize: number;
    intermediateSize: number;
  },
  w: Map<string, HostTensor>,
  tokens: number[],
): Float64Array[] {
  const {
    hiddenSize: D,
    numHeads: H,
    numKvHeads: Hkv,
    headDim: hd,
    numLayers: L,
    vocabSize: V,
    intermediateSize: F,
  } = cfg;
  const get = (n: string) => w.get(n)!.toF32();
  const matvec = (m: Float32Array, x: Float64Array, rows: number) => {
    const cols = x.length;
    const y = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += m[r * cols + c]! * x[c]!;
      y[r] = s;
    }
    return y;
  };
  const rms = (x: Float64Array, g: Float32Array) => {
    let ss = 0;
    for (const v of x) ss += v * v;
    const k = 1 / Math.sqrt(ss / x.length + 1e-5);
    return x.map((v, i) => v * k * g[i]!);
  };
  const rope = (v: Float64Array, heads: number, pos: number) => {
    const half = hd / 2;
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < half; i++) {
        const ang = pos * 10000 ** (-(2 * i) / hd);
        const a = v[h * hd + i]!;
        const b = v[h * hd + i + half]!;
        v[h * hd + i] = a * Math.cos(ang) - b * Math.sin(ang);
        v[h * hd + i + half] = b * Math.cos(ang) + a * Math.sin(ang);
      }
    }
  };
  const emb = get('model.embed_tokens.weight');
  const keys: Float64Array[][] = Array.from({ length: L }, () => []);
  const vals: Float64Array[][] = Array.from({ length: L }, () => []);
  const out: Float64Array[] = [];
  tokens.forEach((tok, pos) => {
    let x = Float64Array.from(emb.subarray(tok * D, (tok + 1) * D));
    for (let l = 0; l < L; l++) {
      const p = `model.layers.${l}.`;
      const xn = rms(x, get(`${p}input_layernorm.weight`));
      const q = matvec(get(`${p}self_attn.q_proj.weight`), xn, H * hd);
      const k = matvec(get(`${p}self_attn.k_proj.weight`), xn, Hkv * hd);
      const v = matvec(get(`${p}self_attn.v_proj.weight`), xn, Hkv * hd);
      rope(q, H, pos);
      rope(k, Hkv, pos);
      keys[l]!.push(k);
      vals[l]!.push(v);
      const att = new Float64Array(H * hd);
      for (let h = 0; h < H; h++) {
        const kh = Math.floor(h / (H / Hkv));
        const scores = keys[l]!.map((kk) => {
          let s = 0;
          for (let i = 0; i < hd; i++) s += q[h * hd + i]! * kk[kh * hd + i]!;
          return s / Math.sqrt(hd);
        });
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        e.forEach((ei, t) => {
          for (let i = 0; i < hd; i++) att[h * hd + i]! += (ei / z) * vals[l]![t]![kh * hd + i]!;
        });
      }
      const o = matvec(get(`${p}self_attn.o_proj.weight`), att, D);
      x = x.map((xi, i) => xi + o[i]!);
      const xn2 = rms(x, get(`${p}post_attention_layernorm.weight`));
      const g = matvec(get(`${p}mlp.gate_proj.weight`), xn2, F);
      const u = matvec(get(`${p}mlp.up_proj.weight`), xn2, F);
      const hmid = g.map((gi, i) => (gi / (1 + Math.exp(-gi))) * u[i]!);
      const d = matvec(get(`${p}mlp.down_proj.weight`), hmid, D);
      x = x.map((xi, i) => xi + d[i]!);
    }
    out.push(matvec(emb, rms(x, get('model.norm.weight')), V));
  });
  return out;
}
