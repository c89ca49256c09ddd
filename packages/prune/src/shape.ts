import { LineageError, type LlamaConfig, modelLayout, withShape } from '@lineage/core';

/**
 * A pruning target in the CLI's words (`--shape layers=4,hidden=48,heads=4,kv-heads=2,ffn=128`); unset
 * fields keep the parent's size. Head size never changes: pruning removes whole heads.
 */
export interface TargetShape {
  layers?: number;
  hidden?: number;
  heads?: number;
  kvHeads?: number;
  ffn?: number;
}

/** The axes a search may cut (a target shape may cut any of them). */
export const AXES = ['heads', 'kv-heads', 'ffn', 'hidden', 'layers'] as const;
export type Axis = (typeof AXES)[number];

const KEYS: Record<string, keyof TargetShape> = {
  layers: 'layers',
  hidden: 'hidden',
  heads: 'heads',
  'kv-heads': 'kvHeads',
  kvHeads: 'kvHeads',
  ffn: 'ffn',
};

/** Parses `layers=4,hidden=48,heads=4,kv-heads=2,ffn=128` (any subset); one-line errors name the part. */
export function parseShape(spec: string): TargetShape {
  const out: TargetShape = {};
  const parts = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!parts.length) throw new LineageError(`--shape is empty (e.g. layers=4,hidden=48,heads=4,ffn=128)`);
  for (const p of parts) {
    const m = /^([a-zA-Z-]+)=(\d+)$/.exec(p);
    const key = m ? KEYS[m[1]!] : undefined;
    if (!m || !key)
      throw new LineageError(
        `--shape: '${p}' is not one of layers=<n>, hidden=<n>, heads=<n>, kv-heads=<n>, ffn=<n>`,
      );
    if (out[key] !== undefined) throw new LineageError(`--shape names ${m[1]} twice`);
    out[key] = Number(m[2]);
  }
  return out;
}

/** Parses a comma list of axes (`heads,ffn`); one-line error naming an unknown one. */
export function parseAxes(spec: string | readonly string[]): Axis[] {
  const parts = (typeof spec === 'string' ? spec.split(',') : [...spec]).map((s) => s.trim()).filter(Boolean);
  if (!parts.length) throw new LineageError(`--axes is empty (known: ${AXES.join(', ')})`);
  for (const p of parts)
    if (!(AXES as readonly string[]).includes(p))
      throw new LineageError(`--axes: unknown axis '${p}' (known: ${AXES.join(', ')})`);
  return [...new Set(parts)] as Axis[];
}

export function formatShape(c: Pick<LlamaConfig, keyof ConfigShape>): string {
  return `layers=${c.numLayers},hidden=${c.hiddenSize},heads=${c.numHeads},kv-heads=${c.numKvHeads},ffn=${c.intermediateSize}`;
}

type ConfigShape = Pick<
  LlamaConfig,
  'numLayers' | 'hiddenSize' | 'numHeads' | 'numKvHeads' | 'intermediateSize'
>;

/**
 * The config of `parent` pruned to `target`, checked against what slicing can reach: every size at most the
 * parent's, query heads a multiple of the KV heads kept with at most the parent's heads per KV group (a
 * pruned group keeps some of its own query heads), at least one layer, widths a multiple of `multipleOf`.
 * Unset query heads follow the KV heads (each kept group keeps all its heads).
 */
export function prunedConfig(parent: LlamaConfig, target: TargetShape, multipleOf = 1): LlamaConfig {
  const bad = (msg: string): never => {
    throw new LineageError(`--shape ${formatTarget(target)}: ${msg}`);
  };
  const G = parent.numHeads / parent.numKvHeads;
  for (const [k, v] of Object.entries(target))
    if (v !== undefined && !(Number.isInteger(v) && v >= 0)) bad(`${k} must be a whole number, got ${v}`);
  const layers = target.layers ?? parent.numLayers;
  if (layers < 1) bad('keeps no layer (a model needs at least one)');
  if (layers > parent.numLayers) bad(`layers ${layers} exceeds the parent's ${parent.numLayers}`);
  const hidden = target.hidden ?? parent.hiddenSize;
  const ffn = target.ffn ?? parent.intermediateSize;
  for (const [name, v, max] of [
    ['hidden', hidden, parent.hiddenSize],
    ['ffn', ffn, parent.intermediateSize],
  ] as const) {
    if (v < 1) bad(`${name} must be at least 1`);
    if (v > max) bad(`${name} ${v} exceeds the parent's ${max}`);
    if (v !== max && v % multipleOf !== 0)
      bad(`${name} ${v} is not a multiple of ${multipleOf} (--multiple-of)`);
  }
  const kv =
    target.kvHeads ??
    (target.heads !== undefined ? Math.min(target.heads, parent.numKvHeads) : parent.numKvHeads);
  if (kv < 1) bad('kv-heads must be at least 1');
  if (kv > parent.numKvHeads) bad(`kv-heads ${kv} exceeds the parent's ${parent.numKvHeads}`);
  const heads = target.heads ?? kv * G;
  if (heads < 1) bad('heads must be at least 1');
  if (heads % kv !== 0)
    bad(
      `heads ${heads} does not divide over ${kv} kv heads (query heads must be a multiple of the kv heads)`,
    );
  if (heads / kv > G)
    bad(
      `heads ${heads} over ${kv} kv heads is ${heads / kv} per group, but the parent's groups hold ${G} (keep more kv heads)`,
    );
  return withShape(parent, {
    numLayers: layers,
    hiddenSize: hidden,
    intermediateSize: ffn,
    numHeads: heads,
    numKvHeads: kv,
    headDim: parent.headDim,
  });
}

function formatTarget(t: TargetShape): string {
  return (
    Object.entries(t)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k === 'kvHeads' ? 'kv-heads' : k}=${v}`)
      .join(',') || '(parent)'
  );
}

/**
 * Total parameters of a dense model of `config` (embedding, norms, every linear with its biases, and the
 * head when untied), as the paper counts them: the shape arithmetic of the budget.
 */
export function denseParams(config: LlamaConfig, untiedHead = !config.tieWordEmbeddings): number {
  let n = 0;
  for (const s of modelLayout(config, untiedHead)) {
    if (s.kind === 'norm') n += s.shape[0];
    else n += s.out * s.in + (s.kind === 'linear' && s.bias ? s.out : 0);
  }
  return n;
}

/** The shape of a config as a TargetShape (every field set). */
export function targetOf(c: LlamaConfig): Required<TargetShape> {
  return {
    layers: c.numLayers,
    hidden: c.hiddenSize,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    ffn: c.intermediateSize,
  };
}
