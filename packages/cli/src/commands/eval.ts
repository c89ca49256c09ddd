import { loadModel, perplexity, TextDataset } from '@lineage/core';
import type { Command } from 'commander';
import { selectBackend } from '../backend.js';
import { defaultEvalData, defaultModel } from '../defaults.js';
import { log, printJson } from '../output.js';
import { createProgress } from '../progress.js';
import {
  addBackendOptions,
  addJsonOption,
  addModelOptions,
  checkBatchFits,
  checkSeqLen,
  parseFieldName,
  parseIntArg,
  parseSeparator,
  requireContext,
  UsageError,
} from './common.js';

interface EvalFlags {
  data?: string;
  docSeparator?: string;
  field?: string;
  seqLen?: number;
  batchSize?: number;
  limit?: number;
  tokenizer?: string;
  backend?: string;
  device?: string;
  json?: boolean;
}

export function evalCommand(program: Command): void {
  const cmd = program
    .command('eval')
    .description(
      'perplexity on text (a file, JSONL, or a directory of them): documents protocol with --doc-separator or JSONL, else one stream in windows',
    )
    .argument('[model]', 'llama2.c .bin file or Hugging Face directory (default: ../shared stories260K)')
    .option(
      '--data <path>',
      'UTF-8 text or JSONL file, or a directory of them (default: ../shared TinyStories dev set)',
    )
    .option(
      '--doc-separator <s>',
      'documents protocol: split on lines equal to <s>; each document scored alone with BOS',
      parseSeparator,
    )
    .option('--field <name>', 'JSONL: the field holding each record’s text', parseFieldName, 'text')
    .option(
      '--seq-len <n>',
      'window (stream) or truncation (documents) length; default: model context',
      parseIntArg(2),
    )
    .option('--batch-size <n>', 'sequences per forward pass', parseIntArg(), 8)
    .option('--limit <n>', 'score at most n documents or windows', parseIntArg());
  addModelOptions(cmd);
  addBackendOptions(cmd);
  addJsonOption(cmd);
  cmd.action(async (modelArg: string | undefined, o: EvalFlags) => {
    const path = modelArg ?? defaultModel();
    let dataPath = o.data;
    let separator = o.docSeparator;
    if (!dataPath) {
      const d = defaultEvalData();
      dataPath = d.path;
      separator ??= d.separator;
    }
    const dataset = await TextDataset.open(dataPath, {
      ...(separator ? { separator, separatorIfFound: true } : {}),
      ...(o.field ? { field: o.field } : {}),
    });
    // a separator the text never holds would score it as one document cut at the context: say so instead
    if (o.docSeparator && !dataset.separator && !dataset.hasJsonl)
      throw new UsageError(
        '--doc-separator',
        JSON.stringify(o.docSeparator),
        `${dataPath} never holds it (leave it out to score the text as one stream)`,
      );
    const { text, protocol, separator: docSeparator } = dataset.evalText();
    const { model } = await loadModel(path, { tokenizer: o.tokenizer });
    requireContext(model, path);
    checkSeqLen('--seq-len', o.seqLen, [{ model, path }]);
    checkBatchFits(o, [model], { forwardOnly: true });
    const backend = await selectBackend(o);
    const progress = createProgress();
    const t0 = performance.now();
    let started = false;
    let lastDone = 0;
    let fallback: string | undefined;
    const r = await perplexity(
      model,
      backend,
      text,
      {
        protocol,
        ...(docSeparator ? { separator: docSeparator } : {}),
        ...(o.seqLen ? { seqLen: o.seqLen } : {}),
        ...(o.limit ? { limit: o.limit } : {}),
        batchSize: o.batchSize ?? 8,
        // The model is frozen here: the backend's fused whole-model graph may serve it (per-op otherwise).
        fused: true,
        onFusedFallback: (why) => {
          fallback = why;
        },
        onProgress: ({ done, total, tokens }) => {
          if (!started) {
            progress.start('eval', total);
            started = true;
          }
          progress.tick(done - lastDone, { tokens });
          lastDone = done;
        },
      },
      dataPath,
    );
    progress.end();
    const seconds = (performance.now() - t0) / 1000;
    const { params } = model.stats();
    const result = {
      ppl: r.ppl,
      nll: r.nll,
      tokens: r.tokens,
      params,
      sequences: r.sequences,
      protocol: r.protocol,
      seqLen: r.seqLen,
      model: path,
      data: dataPath,
      dataHash: dataset.hash,
      backend: backend.name,
      device: backend.device,
      fused: r.fused,
      seconds,
      tokensPerSecond: r.tokens / seconds,
    };
    if (o.json) printJson(result);
    else {
      process.stdout.write(
        `perplexity ${r.ppl.toFixed(4)}  nll ${r.nll.toFixed(6)}  tokens ${r.tokens}  ${r.protocol === 'documents' ? 'documents' : 'windows'} ${r.sequences}\n`,
      );
      const path = r.fused ? 'fused' : backend.fused ? `per-op: ${fallback ?? 'not fused'}` : 'per-op';
      log(`${seconds.toFixed(1)} s, ${(r.tokens / seconds).toFixed(0)} tokens/s (${path})`);
    }
  });
}
