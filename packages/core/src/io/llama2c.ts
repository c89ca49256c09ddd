import type { FileHandle } from 'node:fs/promises';
import type { LlamaConfig } from '../nn/config.js';
import { isFloat } from '../tensor/dtype.js';
import { HostTensor, type Shape, sizeOf } from '../tensor/host-tensor.js';
import { LineageError } from '../util/errors.js';
import { writeFileAtomic } from './atomic.js';
import { openRegularFile, quote, readFully } from './fs-util.js';
import { isTensorSource, type TensorInfo, type TensorSource } from './tensor-source.js';

/** The 7 int32 of a legacy llama2.c checkpoint header. */
export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** Always positive here; the sign in the file is `sharedClassifier`. */
  vocabSize: number;
  seqLen: number;
  /** The classifier is the token embedding (the file's vocab_size is positive). */
  sharedClassifier: boolean;
}

const HEADER_BYTES = 28;
/** Version 1/2 exports (export.py) start with this uint32 ("ak42"); only the legacy format is read. */
const V1_MAGIC = 0x616b3432;
const INT32_MAX = 2 ** 31 - 1;

type Key =
  | 'embed'
  | 'rms_att'
  | 'wq'
  | 'wk'
  | 'wv'
  | 'wo'
  | 'rms_ffn'
  | 'w1'
  | 'w2'
  | 'w3'
  | 'rms_final'
  | 'freq_real'
  | 'freq_imag'
  | 'wcls';

interface Segment {
  key: Key;
  perLayer: boolean;
  /** Shape of one (per-layer) tensor. */
  shape: number[];
}

/** The f32 arrays of the file in order, as run.c's memory_map_weights walks them. */
function segments(h: Llama2cHeader): Segment[] {
  const { dim, hiddenDim: hid, vocabSize: v, seqLen } = h;
  const kvDim = (dim * h.nKvHeads) / h.nHeads;
  const half = dim / h.nHeads / 2;
  const s: Segment[] = [
    { key: 'embed', perLayer: false, shape: [v, dim] },
    { key: 'rms_att', perLayer: true, shape: [dim] },
    { key: 'wq', perLayer: true, shape: [dim, dim] },
    { key: 'wk', perLayer: true, shape: [kvDim, dim] },
    { key: 'wv', perLayer: true, shape: [kvDim, dim] },
    { key: 'wo', perLayer: true, shape: [dim, dim] },
    { key: 'rms_ffn', perLayer: true, shape: [dim] },
    { key: 'w1', perLayer: true, shape: [hid, dim] },
    { key: 'w2', perLayer: true, shape: [dim, hid] },
    { key: 'w3', perLayer: true, shape: [hid, dim] },
    { key: 'rms_final', perLayer: false, shape: [dim] },
    { key: 'freq_real', perLayer: false, shape: [seqLen, half] },
    { key: 'freq_imag', perLayer: false, shape: [seqLen, half] },
  ];
  if (!h.sharedClassifier) s.push({ key: 'wcls', perLayer: false, shape: [v, dim] });
  return s;
}

/** Hugging Face Llama name of a segment's tensor (undefined for the unused RoPE tables). */
function hfName(key: Key, layer: number): string | undefined {
  const l = `model.layers.${layer}.`;
  switch (key) {
    case 'embed':
      return 'model.embed_tokens.weight';
    case 'rms_att':
      return `${l}input_layernorm.weight`;
    case 'wq':
      return `${l}self_attn.q_proj.weight`;
    case 'wk':
      return `${l}self_attn.k_proj.weight`;
    case 'wv':
      return `${l}self_attn.v_proj.weight`;
    case 'wo':
      return `${l}self_attn.o_proj.weight`;
    case 'rms_ffn':
      return `${l}post_attention_layernorm.weight`;
    case 'w1':
      return `${l}mlp.gate_proj.weight`;
    case 'w2':
      return `${l}mlp.down_proj.weight`;
    case 'w3':
      return `${l}mlp.up_proj.weight`;
    case 'rms_final':
      return 'model.norm.weight';
    case 'wcls':
      return 'lm_head.weight';
    default:
      return undefined;
  }
}

/** HF per-layer order (what transformers' state_dict lists), used for names(). */
const LAYER_ORDER: Key[] = ['rms_att', 'wq', 'wk', 'wv', 'wo', 'rms_ffn', 'w1', 'w3', 'w2'];

function expectedBytes(h: Llama2cHeader): bigint {
  let floats = 0n;
  for (const s of segments(h)) floats += BigInt(sizeOf(s.shape)) * (s.perLayer ? BigInt(h.nLayers) : 1n);
  return BigInt(HEADER_BYTES) + 4n * floats;
}

/**
 * Reorders the rows of a q/k projection between llama2.c's interleaved RoPE pairs (x[2i], x[2i+1]) and
 * Hugging Face's rotate-half pairs (x[i], x[i + headDim/2]), as transformers' convert_llama_weights_to_hf
 * does: rows viewed as [nHeads, headDim/2, 2] become [nHeads, 2, headDim/2]. `inverse` undoes it.
 * A pure row permutation, so bitwise lossless. `w` is row-major [nHeads*headDim, dim]; returns a new array.
 */
export function permuteRopeRows(
  w: Float32Array,
  nHeads: number,
  headDim: number,
  dim: number,
  inverse: boolean,
): Float32Array {
  if (headDim % 2 !== 0) throw new RangeError(`permuteRopeRows: headDim ${headDim} is odd`);
  if (w.length !== nHeads * headDim * dim) {
    throw new RangeError(`permuteRopeRows: ${w.length} values for [${nHeads}*${headDim}, ${dim}]`);
  }
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const interleaved = h * headDim + i * 2 + j;
        const rotateHalf = h * headDim + j * half + i;
        const [from, to] = inverse ? [rotateHalf, interleaved] : [interleaved, rotateHalf];
        out.set(w.subarray(from * dim, (from + 1) * dim), to * dim);
      }
    }
  }
  return out;
}

/**
 * The freq_cis tables as llama2.c's export computed them, in f32 like torch: freqs = 1/θ^(2i/hd),
 * angles = outer(arange(seqLen), freqs), then cos and sin. Each op is rounded to f32 as torch does;
 * torch's f32 cos/sin are not always correctly rounded, so a few entries may differ from a torch export
 * by one ulp (run.c never reads these tables).
 */
export function computeFreqCis(
  headDim: number,
  seqLen: number,
  theta = 10000,
): { real: Float32Array; imag: Float32Array } {
  const f = Math.fround;
  const half = headDim / 2;
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) freqs[i] = f(1 / f(theta ** f((2 * i) / headDim)));
  const real = new Float32Array(seqLen * half);
  const imag = new Float32Array(seqLen * half);
  for (let t = 0; t < seqLen; t++) {
    for (let i = 0; i < half; i++) {
      const angle = f(t * freqs[i]!);
      real[t * half + i] = Math.cos(angle);
      imag[t * half + i] = Math.sin(angle);
    }
  }
  return { real, imag };
}

/** The LlamaConfig a legacy llama2.c checkpoint implies (run.c's fixed numerics). */
export function llama2cConfig(h: Llama2cHeader): LlamaConfig {
  return {
    architecture: 'llama',
    vocabSize: h.vocabSize,
    hiddenSize: h.dim,
    intermediateSize: h.hiddenDim,
    numLayers: h.nLayers,
    numHeads: h.nHeads,
    numKvHeads: h.nKvHeads,
    headDim: h.dim / h.nHeads,
    maxPositions: h.seqLen,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    tieWordEmbeddings: h.sharedClassifier,
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    // llama2.c tokenizers use SentencePiece ids (1 = BOS, 2 = EOS); run.c itself stops on BOS.
    bosTokenId: 1,
    eosTokenId: 2,
  };
}

function validateHeader(ints: Int32Array, size: number, file: string): Llama2cHeader {
  const bad = (msg: string): never => {
    throw new LineageError(msg, file);
  };
  if (ints[0]! >>> 0 === V1_MAGIC) {
    bad(
      `this is a llama2.c version-${ints[1]} export (magic 'ak42'); only the legacy (version 0) format is supported`,
    );
  }
  const fields = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'];
  for (let i = 0; i < 7; i++) {
    const v = i === 5 ? Math.abs(ints[i]!) : ints[i]!;
    if (v <= 0) bad(`header ${fields[i]} ${ints[i]} must be positive; not a llama2.c checkpoint?`);
  }
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = Array.from(ints) as number[];
  const h: Llama2cHeader = {
    dim: dim!,
    hiddenDim: hiddenDim!,
    nLayers: nLayers!,
    nHeads: nHeads!,
    nKvHeads: nKvHeads!,
    vocabSize: Math.abs(rawVocab!),
    seqLen: seqLen!,
    sharedClassifier: rawVocab! > 0,
  };
  if (h.dim % h.nHeads !== 0) bad(`header dim ${h.dim} is not divisible by n_heads ${h.nHeads}`);
  if (h.nHeads % h.nKvHeads !== 0)
    bad(`header n_heads ${h.nHeads} is not a multiple of n_kv_heads ${h.nKvHeads}`);
  if ((h.dim / h.nHeads) % 2 !== 0)
    bad(`header head size ${h.dim / h.nHeads} (dim / n_heads) must be even for RoPE`);
  const want = expectedBytes(h);
  if (BigInt(size) < want) bad(`file is truncated: header implies ${want} bytes, file has ${size}`);
  if (BigInt(size) > want)
    bad(`file has ${size} bytes but the header implies ${want}; extra data or a wrong header`);
  return h;
}

interface Slot {
  offset: number;
  shape: number[];
  /** Heads whose rows get the RoPE permutation (q: n_heads, k: n_kv_heads). */
  permuteHeads?: number;
}

/** A legacy llama2.c checkpoint as a TensorSource under Hugging Face Llama names (q/k rows permuted to rotate-half). */
export class Llama2cSource implements TensorSource {
  private readonly order: string[] = [];

  private constructor(
    readonly path: string,
    readonly header: Llama2cHeader,
    private handle: FileHandle | undefined,
    private readonly slots: Map<string, Slot>,
    private readonly freqOffset: number,
  ) {
    const names = (k: Key, l = 0) => hfName(k, l);
    this.order.push(names('embed')!);
    for (let l = 0; l < header.nLayers; l++) for (const k of LAYER_ORDER) this.order.push(names(k, l)!);
    this.order.push(names('rms_final')!);
    if (!header.sharedClassifier) this.order.push(names('wcls')!);
  }

  static async open(path: string): Promise<Llama2cSource> {
    const { handle, size } = await openRegularFile(path);
    try {
      if (size < HEADER_BYTES)
        throw new LineageError(`file is too small for a llama2.c header (${size} bytes)`, path);
      const ints = new Int32Array(7);
      await readFully(handle, new Uint8Array(ints.buffer), 0, 'the header', path);
      const h = validateHeader(ints, size, path);
      const slots = new Map<string, Slot>();
      let offset = HEADER_BYTES;
      let freqOffset = 0;
      for (const seg of segments(h)) {
        const bytes = 4 * sizeOf(seg.shape);
        if (seg.key === 'freq_real') freqOffset = offset;
        for (let l = 0; l < (seg.perLayer ? h.nLayers : 1); l++) {
          const name = hfName(seg.key, l);
          if (name) {
            const slot: Slot = { offset, shape: seg.shape };
            if (seg.key === 'wq') slot.permuteHeads = h.nHeads;
            if (seg.key === 'wk') slot.permuteHeads = h.nKvHeads;
            slots.set(name, slot);
          }
          offset += bytes;
        }
      }
      return new Llama2cSource(path, h, handle, slots, freqOffset);
    } catch (err) {
      await handle.close().catch(() => {});
      throw err;
    }
  }

  names(): string[] {
    return [...this.order];
  }

  info(name: string): TensorInfo {
    return { dtype: 'f32', shape: this.slot(name).shape };
  }

  async read(name: string): Promise<HostTensor> {
    const s = this.slot(name);
    const data = await this.readF32(s.offset, sizeOf(s.shape), `tensor ${quote(name)}`);
    const headDim = this.header.dim / this.header.nHeads;
    const out = s.permuteHeads
      ? permuteRopeRows(data, s.permuteHeads, headDim, this.header.dim, false)
      : data;
    return new HostTensor('f32', s.shape, out);
  }

  /** The stored freq_cis tables (unused by run.c, but kept so a rewrite is byte-identical). */
  async readFreqCis(): Promise<{ real: Float32Array; imag: Float32Array }> {
    const n = (this.header.seqLen * this.header.dim) / this.header.nHeads / 2;
    const real = await this.readF32(this.freqOffset, n, 'freq_cis_real');
    const imag = await this.readF32(this.freqOffset + 4 * n, n, 'freq_cis_imag');
    return { real, imag };
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close();
  }

  private async readF32(offset: number, n: number, what: string): Promise<Float32Array> {
    if (!this.handle) throw new LineageError(`cannot read ${what}: the file was closed`, this.path);
    const data = new Float32Array(n);
    await readFully(this.handle, new Uint8Array(data.buffer), offset, what, this.path);
    return data;
  }

  private slot(name: string): Slot {
    const s = this.slots.get(name);
    if (!s) throw new LineageError(`no tensor named ${quote(name)}`, this.path);
    return s;
  }
}

/** Opens a legacy llama2.c `.bin` checkpoint: validated header, implied config, and lazy tensor access. */
export async function openLlama2c(path: string): Promise<{ config: LlamaConfig; source: Llama2cSource }> {
  const source = await Llama2cSource.open(path);
  return { config: llama2cConfig(source.header), source };
}

/**
 * Writes `config` + weights (HF Llama names) as a legacy llama2.c checkpoint, atomically and one tensor
 * at a time. Refuses configs run.c cannot run as-is. Float weights of any dtype become f32; q/k rows go
 * back to llama2.c's interleaved RoPE order. The freq_cis tables are copied from a Llama2cSource of the
 * same shape (so read → write is byte-identical), else computed as the export did.
 */
export async function writeLlama2c(
  path: string,
  config: LlamaConfig,
  source: TensorSource | Map<string, HostTensor>,
): Promise<void> {
  const refuse = (what: string): never => {
    throw new LineageError(`the llama2.c format cannot represent ${what}`, path);
  };
  if (config.qkvBias || config.oBias) refuse('attention biases');
  if (config.mlpBias) refuse('MLP biases');
  if (config.ropeScaling) refuse(`RoPE scaling (${config.ropeScaling.type})`);
  if (config.ropeTheta !== 10000) refuse(`rope_theta ${config.ropeTheta} (it assumes 10000)`);
  if (config.rmsNormEps !== 1e-5) refuse(`rms_norm_eps ${config.rmsNormEps} (it assumes 1e-5)`);
  if (config.slidingWindow !== undefined) refuse(`a sliding window (${config.slidingWindow})`);
  if (config.headDim * config.numHeads !== config.hiddenSize) {
    refuse(
      `head_dim ${config.headDim} != hidden_size / num_heads (${config.hiddenSize} / ${config.numHeads})`,
    );
  }
  const h: Llama2cHeader = {
    dim: config.hiddenSize,
    hiddenDim: config.intermediateSize,
    nLayers: config.numLayers,
    nHeads: config.numHeads,
    nKvHeads: config.numKvHeads,
    vocabSize: config.vocabSize,
    seqLen: config.maxPositions,
    sharedClassifier: config.tieWordEmbeddings,
  };
  for (const [k, v] of Object.entries(h)) {
    if (typeof v === 'number' && (!Number.isInteger(v) || v <= 0 || v > INT32_MAX)) refuse(`${k} ${v}`);
  }
  if (h.nHeads % h.nKvHeads !== 0 || config.headDim % 2 !== 0)
    refuse(`${h.nHeads} heads over ${h.nKvHeads} KV heads of size ${config.headDim}`);

  // In-memory tensors have no file of their own; name the output being written instead.
  const sourcePath = isTensorSource(source) ? source.path : path;
  const available = new Set(isTensorSource(source) ? source.names() : source.keys());
  // Check every tensor's presence before creating anything.
  for (const seg of segments(h)) {
    for (let l = 0; l < (seg.perLayer ? h.nLayers : 1); l++) {
      const name = hfName(seg.key, l);
      if (name && !available.has(name))
        throw new LineageError(`missing tensor ${quote(name)} for llama2.c export`, sourcePath);
    }
  }

  const load = async (name: string, shape: Shape): Promise<Float32Array> => {
    const t = isTensorSource(source) ? await source.read(name) : source.get(name)!;
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new LineageError(`tensor ${quote(name)} has shape [${t.shape}], expected [${shape}]`, sourcePath);
    }
    if (!isFloat(t.dtype)) {
      throw new LineageError(
        `tensor ${quote(name)} is ${t.dtype}; llama2.c stores f32 weights (dequantize first)`,
        sourcePath,
      );
    }
    return t.toF32();
  };

  let freq: { real: Float32Array; imag: Float32Array };
  const same =
    source instanceof Llama2cSource &&
    source.header.seqLen === h.seqLen &&
    source.header.dim / source.header.nHeads === config.headDim;
  if (same) freq = await (source as Llama2cSource).readFreqCis();
  else freq = computeFreqCis(config.headDim, h.seqLen);

  await writeFileAtomic(path, async (sink) => {
    const header = Int32Array.of(
      h.dim,
      h.hiddenDim,
      h.nLayers,
      h.nHeads,
      h.nKvHeads,
      h.sharedClassifier ? h.vocabSize : -h.vocabSize,
      h.seqLen,
    );
    await sink.write(new Uint8Array(header.buffer));
    const f32bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    for (const seg of segments(h)) {
      if (seg.key === 'freq_real' || seg.key === 'freq_imag') {
        await sink.write(f32bytes(seg.key === 'freq_real' ? freq.real : freq.imag));
        continue;
      }
      for (let l = 0; l < (seg.perLayer ? h.nLayers : 1); l++) {
        let w = await load(hfName(seg.key, l)!, seg.shape);
        if (seg.key === 'wq') w = permuteRopeRows(w, h.nHeads, config.headDim, h.dim, true);
        if (seg.key === 'wk') w = permuteRopeRows(w, h.nKvHeads, config.headDim, h.dim, true);
        await sink.write(f32bytes(w));
      }
    }
  });
}
