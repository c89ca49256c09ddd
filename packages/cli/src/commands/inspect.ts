import { loadModel, toHFConfig } from '@lineage/core';
import type { Command } from 'commander';
import { defaultModel } from '../defaults.js';
import { formatBytes, formatCount, printJson, table } from '../output.js';
import { addJsonOption, addModelOptions } from './common.js';

export function inspectCommand(program: Command): void {
  const cmd = program
    .command('inspect')
    .description("show a model's configuration, parameters and stored bytes per layer")
    .argument('[model]', 'llama2.c .bin file or Hugging Face directory (default: ../shared stories260K)');
  addModelOptions(cmd);
  addJsonOption(cmd);
  cmd.action(async (modelArg: string | undefined, o: { tokenizer?: string; json?: boolean }) => {
    const path = modelArg ?? defaultModel();
    const { model, format, tokenizerPath } = await loadModel(path, {
      tokenizer: o.tokenizer,
      tokenizerOptional: true,
    });
    const stats = model.stats();
    const kinds = model.layerKinds();
    // 'low_rank r=16': a kind's settings (e.g. the rank) beside its name
    const kindLabel = (name: string, kind: string) => {
      const meta = kinds[name]?.meta;
      if (!meta || typeof meta !== 'object' || Array.isArray(meta)) return kind;
      const rank = (meta as { rank?: unknown }).rank;
      return typeof rank === 'number' ? `${kind} r=${rank}` : kind;
    };
    const config = toHFConfig(model.config);
    const tokenizer = model.tokenizer ? { path: tokenizerPath, vocabSize: model.tokenizer.vocabSize } : null;
    if (o.json) {
      printJson({
        model: path,
        format,
        params: stats.params,
        bytes: stats.bytes,
        layers: stats.layers.map((l) => ({ ...l, ...(kinds[l.name] ? { meta: kinds[l.name]!.meta } : {}) })),
        config,
        tokenizer,
        provenance: model.provenance ?? null,
      });
      return;
    }
    const c = model.config;
    process.stdout.write(
      [
        `${path} (${format})`,
        `  ${c.architecture}: dim ${c.hiddenSize}, ${c.numLayers} layers, ${c.numHeads} heads (${c.numKvHeads} kv), ffn ${c.intermediateSize}, vocab ${c.vocabSize}, context ${c.maxPositions}${c.tieWordEmbeddings ? ', tied head' : ''}`,
        `  params ${formatCount(stats.params)} (${stats.params}), stored ${formatBytes(stats.bytes)}`,
        `  tokenizer: ${tokenizer ? `${tokenizer.path} (${tokenizer.vocabSize} tokens)` : 'none found'}`,
        ...(model.provenance?.method
          ? [
              `  made by: ${String(model.provenance.method)}${typeof model.provenance.fraction === 'number' ? ` to ${model.provenance.fraction} of the decomposable parameters` : ''}`,
            ]
          : []),
        '',
        table(
          ['layer', 'kind', 'shape', 'params', 'bytes'],
          stats.layers.map((l) => [
            l.name,
            kindLabel(l.name, l.kind),
            `${l.shape[0]}×${l.shape[1]}`,
            l.params,
            l.bytes,
          ]),
        ),
        '',
      ].join('\n'),
    );
  });
}
