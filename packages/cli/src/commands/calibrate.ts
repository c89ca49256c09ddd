import { statSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { calibrate, loadDataset, openStreamedModel, parseStatistics, STATISTICS } from '@lineage/calibrate';
import { LineageError } from '@lineage/core';
import { type Command, Option } from 'commander';
import { selectBackend } from '../backend.js';
import { defaultModel } from '../defaults.js';
import { formatBytes, log, printJson } from '../output.js';
import { checkNoOverlap, checkOutput } from '../output-policy.js';
import { createProgress } from '../progress.js';
import {
  addBackendOptions,
  addJsonOption,
  addModelOptions,
  checkSeqLen,
  parseFieldName,
  parseIntArg,
  parseSeparator,
  UsageError,
} from './common.js';

interface CalibrateFlags {
  data: string;
  docSeparator?: string;
  field?: string;
  protocol?: 'documents' | 'stream';
  samples: number;
  seqLen: number;
  seed: number;
  stats: string;
  out: string;
  microBatch?: number;
  force?: boolean;
  tokenizer?: string;
  backend?: string;
  device?: string;
  json?: boolean;
}

/**
 * V8's garbage collector as a function. The layer walk calls it between micro-batches so peak memory is what is
 * live (one layer's weights and activations), not that plus up to ~64 MiB of dead backend buffers.
 */
function exposeGc(): (() => void) | undefined {
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === 'function') return g;
  try {
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as unknown;
    return typeof fn === 'function' ? (fn as () => void) : undefined;
  } catch {
    return undefined;
  }
}

export function calibrateCommand(program: Command): void {
  const cmd = program
    .command('calibrate')
    .description(
      'collect calibration statistics (input Hessians, Minitron importance) layer by layer into a safetensors file',
    )
    .argument('[model]', 'llama2.c .bin file or Hugging Face directory (default: ../shared stories260K)')
    .requiredOption('--data <path>', 'UTF-8 text file, JSONL file, or a directory of them')
    .option(
      '--doc-separator <s>',
      'documents protocol: split text files on lines equal to <s>; each sample is one document with BOS',
      parseSeparator,
    )
    .option('--field <name>', 'JSONL: the field holding the text', parseFieldName, 'text')
    .addOption(
      new Option(
        '--protocol <p>',
        'documents or stream (default: documents with --doc-separator or JSONL, else stream)',
      ).choices(['documents', 'stream']),
    )
    .requiredOption('--samples <n>', 'number of sequences to sample', parseIntArg())
    .requiredOption(
      '--seq-len <n>',
      'tokens per sequence (stream window / document truncation)',
      parseIntArg(),
    )
    .option('--seed <n>', 'sampling seed', parseIntArg(0), 0)
    .option(
      '--stats <list>',
      `statistics to compute, comma-separated: ${STATISTICS.join(', ')}`,
      STATISTICS.join(','),
    )
    .requiredOption('--out <file>', 'statistics file to write (.safetensors)')
    .option('--micro-batch <tokens>', 'largest micro-batch in tokens (memory vs speed)', parseIntArg())
    .option('--force', 'replace an existing --out');
  addModelOptions(cmd);
  addBackendOptions(cmd);
  addJsonOption(cmd);
  cmd.action(async (modelArg: string | undefined, o: CalibrateFlags) => {
    // Cheap checks first, so a typo never costs a model load.
    let statistics: ReturnType<typeof parseStatistics>;
    try {
      statistics = parseStatistics(o.stats);
    } catch (e) {
      if (e instanceof LineageError) throw new UsageError('--stats', JSON.stringify(o.stats), e.message);
      throw e;
    }
    const path = modelArg ?? defaultModel();
    const inputs = [
      { path, what: 'the model' },
      { path: o.tokenizer, what: 'the tokenizer' },
      { path: o.data, what: '--data' },
    ];
    checkOutput({ path: o.out, kind: 'file', force: o.force, inputs, noun: 'the statistics file' });
    const dataset = await loadDataset(o.data, {
      field: o.field ?? 'text',
      ...(o.docSeparator ? { separator: o.docSeparator } : {}),
    });
    const model = await openStreamedModel(path, { tokenizer: o.tokenizer });
    try {
      checkSeqLen('--seq-len', o.seqLen, [{ model, path }]);
      checkNoOverlap(o.out, [{ path: model.tokenizer?.source, what: 'the tokenizer' }]);
      const backend = await selectBackend(o);
      const progress = createProgress();
      let layer = 0;
      let layerStart = performance.now();
      let lastTokens = 0;
      const r = await calibrate(model, backend, dataset, {
        samples: o.samples,
        seqLen: o.seqLen,
        seed: o.seed,
        statistics,
        out: o.out,
        ...(o.protocol ? { protocol: o.protocol } : {}),
        ...(o.microBatch ? { microBatchTokens: o.microBatch } : {}),
        collectGarbage: exposeGc(),
        onProgress: (p) => {
          if (p.layer !== layer) {
            layer = p.layer;
            layerStart = performance.now();
            lastTokens = 0;
            progress.start(`layer ${p.layer}/${p.layers}`, p.tokens);
          }
          progress.tick(p.layerTokens - lastTokens, { 'tokens/s': Math.round(p.tokensPerSecond) });
          lastTokens = p.layerTokens;
          if (p.layerTokens === p.tokens) {
            progress.end();
            const s = (performance.now() - layerStart) / 1000;
            log(
              `layer ${p.layer} of ${p.layers}: ${s.toFixed(1)} s, ${Math.round(p.tokensPerSecond)} tokens/s overall`,
            );
          }
        },
      });
      progress.end();
      const info = r.stats.info;
      const bytes = statSync(o.out).size;
      const result = {
        out: o.out,
        bytes,
        model: path,
        data: o.data,
        statistics: info.statistics,
        protocol: info.protocol,
        samples: info.samples,
        seqLen: info.seqLen,
        seed: info.seed,
        tokens: info.tokens,
        tensors: r.stats.tensorNames().length,
        modelFingerprint: info.modelFingerprint,
        datasetHash: info.datasetHash,
        sampleHash: info.sampleHash,
        backend: backend.name,
        device: backend.device,
        seconds: r.seconds,
        tokensPerSecond: r.tokensPerSecond,
      };
      await r.stats.close();
      if (o.json) printJson(result);
      else {
        process.stdout.write(
          `wrote ${o.out} (${formatBytes(bytes)}): ${info.statistics.join(', ')} over ${info.samples} ${info.protocol === 'documents' ? 'documents' : 'windows'} (${info.tokens} tokens)\n`,
        );
        log(`${r.seconds.toFixed(1)} s, ${Math.round(r.tokensPerSecond)} tokens/s`);
      }
    } finally {
      await model.close();
    }
  });
}
