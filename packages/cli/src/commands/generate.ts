import { decodeContinuation, generate, loadModel } from '@lineage/core';
import type { Command } from 'commander';
import { selectBackend } from '../backend.js';
import { defaultModel } from '../defaults.js';
import { printJson } from '../output.js';
import {
  addBackendOptions,
  addJsonOption,
  addModelOptions,
  parseFloatArg,
  parseIntArg,
  UsageError,
} from './common.js';

interface GenerateFlags {
  prompt: string;
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  tokenizer?: string;
  backend?: string;
  device?: string;
  json?: boolean;
}

export function generateCommand(program: Command): void {
  const cmd = program
    .command('generate')
    .description('continue a prompt (greedy by default; --temperature and --top-p sample, seeded)')
    .argument('[model]', 'llama2.c .bin file or Hugging Face directory (default: ../shared stories260K)')
    .option('--prompt <text>', 'prompt text (BOS is prepended)', 'Once upon a time')
    .option(
      '--max-tokens <n>',
      "new tokens at most (default 128, or what the model's context leaves after the prompt; more than that is an error)",
      parseIntArg(),
      128,
    )
    .option('--temperature <t>', '0 = greedy', parseFloatArg(0, 100), 0)
    .option('--top-p <p>', 'nucleus sampling mass, in (0, 1]', parseFloatArg(0, 1, { minExclusive: true }), 1)
    .option('--seed <n>', 'sampling seed', parseIntArg(0), 0);
  addModelOptions(cmd);
  addBackendOptions(cmd);
  addJsonOption(cmd);
  cmd.action(async (modelArg: string | undefined, o: GenerateFlags) => {
    const path = modelArg ?? defaultModel();
    const { model } = await loadModel(path, { tokenizer: o.tokenizer });
    const backend = await selectBackend(o);
    const streaming = !o.json;
    const tok = model.tokenizer!;
    // the context bounds prompt + continuation: a --max-tokens past it is refused, not silently cut
    const ctx = model.config.maxPositions;
    const promptIds = tok.encode(o.prompt, { bos: true });
    const promptTokens = promptIds.length;
    if (promptTokens > ctx)
      throw new UsageError(
        '--prompt',
        undefined,
        `${promptTokens} tokens, more than the model's context of ${ctx} tokens (${path})`,
      );
    const room = ctx - promptTokens;
    if (o.maxTokens > room && cmd.getOptionValueSource('maxTokens') !== 'default')
      throw new UsageError(
        '--max-tokens',
        o.maxTokens,
        `more than the model's context leaves after the prompt (context ${ctx} tokens, prompt ${promptTokens}: at most ${room}; ${path})`,
      );
    if (streaming) process.stdout.write(o.prompt);
    const t0 = performance.now();
    const generatedSoFar: number[] = [];
    let printed = '';
    const r = await generate(model, backend, o.prompt, {
      maxTokens: o.maxTokens,
      temperature: o.temperature,
      topP: o.topP,
      seed: o.seed,
      onToken: (id) => {
        if (!streaming) return;
        // Decode the whole continuation each time so multi-byte characters split over tokens print whole.
        generatedSoFar.push(id);
        const text = decodeContinuation(tok, promptIds, generatedSoFar);
        const safe = text.endsWith('\uFFFD') ? text.slice(0, -1) : text;
        if (safe.startsWith(printed)) {
          process.stdout.write(safe.slice(printed.length));
          printed = safe;
        }
      },
    });
    const seconds = (performance.now() - t0) / 1000;
    if (o.json) {
      printJson({
        prompt: o.prompt,
        text: r.text,
        promptTokens: r.ids.length - r.generated.length,
        generatedTokens: r.generated.length,
        ids: r.generated,
        seconds,
        tokensPerSecond: r.generated.length / seconds,
        backend: backend.name,
      });
    } else {
      if (r.text?.startsWith(printed)) process.stdout.write(r.text.slice(printed.length));
      process.stdout.write('\n');
    }
  });
}
