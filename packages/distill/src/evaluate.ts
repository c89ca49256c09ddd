import { createHash } from 'node:crypto';
import {
  type Backend,
  LineageError,
  type LlamaModel,
  type Logger,
  type PerplexityOptions,
  perplexity,
} from '@lineage/core';
import type { EvalRecord } from './checkpoint.js';
import { loadSources } from './data.js';
import type { JsonlLog } from './log.js';
import type { TrainState } from './train-state.js';
import type { CommonTrainOptions } from './trainer.js';

/** The held-out evaluation of a run: its text, perplexity protocol, name and hash. */
export interface EvalSetup {
  text: string;
  options: PerplexityOptions;
  name: string;
  hash: string;
}

/** The evaluation text and protocol: `evalData` (documents or a stream), else the held-out documents. */
export async function evalSetup(
  o: CommonTrainOptions,
  model: LlamaModel,
  seqLen: number,
  heldOut: { docs: string[]; separator: string; from: string } | undefined,
): Promise<EvalSetup | undefined> {
  const common = {
    ...(o.evalLimit ? { limit: o.evalLimit } : {}),
    batchSize: o.evalBatchSize ?? 8,
  };
  let text: string;
  let options: PerplexityOptions;
  let name: string;
  if (o.evalData) {
    const sources = await loadSources(o.evalData, 'evaluation data');
    const sep = sources[0]!.separator;
    if (sources.some((s) => s.separator !== sep))
      throw new LineageError('evaluation sources must all have the same document separator, or none');
    name = sources.map((s) => s.name).join(' + ');
    if (sep) {
      text = sources.flatMap((s) => s.documents).join(`\n${sep}\n`);
      options = {
        protocol: 'documents',
        separator: sep,
        seqLen: o.evalSeqLen ?? model.config.maxPositions,
        ...common,
      };
    } else {
      text = sources.flatMap((s) => s.documents).join('\n\n');
      options = { protocol: 'stream', seqLen: o.evalSeqLen ?? seqLen, ...common };
    }
  } else if (heldOut) {
    text = heldOut.docs.join(`\n${heldOut.separator}\n`);
    name = heldOut.from;
    options = {
      protocol: 'documents',
      separator: heldOut.separator,
      seqLen: o.evalSeqLen ?? model.config.maxPositions,
      ...common,
    };
  } else return undefined;
  const hash = `sha256:${createHash('sha256').update(text).digest('hex')}`;
  return { text, options, name, hash };
}

/** Where an evaluation is reported. */
export interface EvalSinks {
  log: Logger;
  jsonl: JsonlLog | undefined;
  onEval: ((r: EvalRecord) => void) | undefined;
}

/**
 * Evaluates the model's held-out perplexity at the state's step, records it (with the early-stopping
 * bookkeeping: improvements below `minDelta` nats do not count) and reports it.
 */
export async function evaluate(
  model: LlamaModel,
  backend: Backend,
  ev: EvalSetup,
  state: TrainState,
  minDelta: number,
  sinks: EvalSinks,
): Promise<EvalRecord> {
  const r = await perplexity(model, backend, ev.text, ev.options, ev.name);
  const rec: EvalRecord = {
    step: state.step,
    tokens: state.tokens,
    ppl: r.ppl,
    nll: r.nll,
    scored: r.tokens,
  };
  state.addEval(rec, minDelta);
  const isBest = state.bestStep === state.step;
  sinks.jsonl?.write({ type: 'eval', ...rec, best: isBest });
  sinks.log.info(
    `eval step ${state.step}: ppl ${r.ppl.toFixed(4)} (nll ${r.nll.toFixed(4)}, ${r.tokens} tokens of ${ev.name})${isBest ? '' : `; best ${Math.exp(state.bestNll!).toFixed(4)} at step ${state.bestStep}`}`,
  );
  sinks.onEval?.(rec);
  return rec;
}
