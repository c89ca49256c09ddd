import { resolve } from 'node:path';
import {
  applyMethod,
  familyRecord,
  type HeldOutScore,
  type Json,
  type LlamaModel,
  readTextFile,
} from '@lineage/core';
import type { Command } from 'commander';
import { nameMethodOptions } from '../errors.js';
import { log, printJson } from '../output.js';
import { type CompiledRecipe, compileRecipe } from '../recipe/parse.js';
import { addJsonOption, checkSeqLen } from './common.js';
import {
  type CompressionFlags,
  checkResumable,
  type HeldOutText,
  type HoldoutSpec,
  memberDirs,
  prepare,
} from './compress.js';
import { DEFAULT_HOLDOUT, heldOutScore } from './family.js';
import { onInterrupt } from './interrupt.js';

/** The flags `compress` would take for what the recipe says (prepare reads them). */
function flagsOf(c: CompiledRecipe, o: { resume?: boolean; force?: boolean }): CompressionFlags {
  const r = c.recipe;
  const rec = r.recovery ?? {};
  return {
    out: c.file,
    runDir: r.runDir ?? `${resolve(c.file)}.run`,
    seed: r.seed,
    ...(r.data ? { data: r.data.train as string[] } : {}),
    ...(r.data?.docSeparator ? { docSeparator: r.data.docSeparator } : {}),
    ...(r.data?.stats ? { stats: r.data.stats } : {}),
    ...(r.data?.calibSamples ? { calibSamples: r.data.calibSamples } : {}),
    ...(rec.lr !== undefined ? { lr: rec.lr } : {}),
    ...(rec.minLr !== undefined ? { minLr: rec.minLr } : {}),
    ...(rec.batchSize ? { batchSize: rec.batchSize } : {}),
    ...(rec.seqLen ? { seqLen: rec.seqLen, seqLenFlag: `${c.file}: recovery.seqLen` } : {}),
    ...(rec.hiddenWeight !== undefined ? { hiddenWeight: rec.hiddenWeight } : {}),
    ...(rec.earlyStop === false ? { earlyStop: false } : {}),
    ...(r.tokenizer ? { tokenizer: r.tokenizer } : {}),
    ...(r.backend ? { backend: r.backend } : {}),
    ...(r.device ? { device: r.device } : {}),
    ...(r.dtype ? { dtype: r.dtype } : {}),
    resume: o.resume ?? false,
    force: o.force ?? false,
  };
}

/** Runs a compiled recipe: its stages as one pipeline on the parent, then evaluation, then every output. */
export async function runRecipe(c: CompiledRecipe, o: { resume?: boolean; force?: boolean; json?: boolean }) {
  const flags = flagsOf(c, o);
  if (o.resume) checkResumable(resolve(flags.runDir!));
  const ev = c.recipe.evaluation;
  const holdout: HoldoutSpec | undefined =
    ev && !ev.data
      ? ev.holdout
        ? { docs: ev.holdout, separator: c.recipe.data!.docSeparator!, flag: `${c.file}: evaluation.holdout` }
        : { fraction: ev.fraction ?? DEFAULT_HOLDOUT }
      : undefined;
  const interrupt = onInterrupt();
  const t0 = performance.now();
  let result: LlamaModel | LlamaModel[];
  let p: Awaited<ReturnType<typeof prepare>>;
  try {
    p = await prepare(c.recipe.parent, flags, holdout, interrupt);
    checkSeqLen(`${c.file}: evaluation.seqLen`, ev?.seqLen, [{ model: p.model, path: p.path }]);
    result = await applyMethod(c.method, p.model, p.ctx);
  } finally {
    interrupt.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  const models = Array.isArray(result) ? result : [result];
  // the recipe as run goes into every result's provenance: `lineage run` of it makes the same model
  const recorded = JSON.parse(JSON.stringify(c.recipe)) as Json;
  for (const m of models) m.provenance = { ...(m.provenance ?? {}), recipe: recorded };
  let held: HeldOutText | undefined = p.heldOut;
  if (ev?.data) {
    const text = await readTextFile(ev.data);
    const sep = c.recipe.data?.docSeparator;
    held = { text, name: ev.data, ...(sep && text.includes(sep) ? { separator: sep } : {}) };
  }
  const evalFlags = {
    ...(ev?.limit ? { evalLimit: ev.limit } : {}),
    ...(ev?.seqLen ? { evalSeqLen: ev.seqLen } : {}),
  };
  let parentScore: HeldOutScore | undefined;
  const scores: (HeldOutScore | undefined)[] = models.map(() => undefined);
  if (ev && held) {
    log(`evaluating the parent and ${models.length} result${models.length > 1 ? 's' : ''} on ${held.name}`);
    parentScore = await heldOutScore(p.model, p.backend, held, evalFlags);
    for (const [i, m] of models.entries()) {
      const score = await heldOutScore(m, p.backend, held, evalFlags);
      scores[i] = score;
      // recorded with the model, so that `lineage report <its directory>` shows it
      m.provenance = { ...m.provenance, perplexity: score.ppl, heldOut: held.name };
    }
  }
  const dirs = Array.isArray(result)
    ? memberDirs(c.stages.map((s) => s.def.name).join('-'), models)
    : ['model'];
  const record = familyRecord({
    method: { name: c.method.name, version: c.method.version },
    parent: { path: p.path, model: p.model, ...(parentScore ? { score: parentScore } : {}) },
    ...(held && ev ? { heldOut: held.name } : {}),
    members: models.map((model, i) => ({ dir: dirs[i]!, model, ...(scores[i] ? { score: scores[i] } : {}) })),
    wallSeconds: seconds,
  });
  const written: { kind: string; path: string }[] = [];
  for (const out of c.outputs) {
    const path = await out.kind.write(
      out.options,
      { models, family: Array.isArray(result), record, ...(c.recipe.dtype ? { dtype: c.recipe.dtype } : {}) },
      o.force ?? false,
    );
    written.push({ kind: out.kind.kind, path });
  }
  if (o.json) printJson({ recipe: c.file, outputs: written, family: record });
  else {
    for (const w of written) log(`${w.kind}: ${w.path}`);
    process.stdout.write(
      `${c.method.name}: ${models.length} model${models.length > 1 ? 's' : ''} in ${seconds.toFixed(1)} s\n`,
    );
  }
}

export function runCommand(program: Command): void {
  const cmd = program
    .command('run')
    .description(
      'run a recipe: one YAML file naming the parent, the data, the stages (any registered methods, each with its options and recovery budget), the evaluation and the outputs (docs/recipes.md)',
    )
    .argument(
      '<recipe>',
      'recipe file (YAML; JSON is YAML too, e.g. a recipe recorded in a model’s provenance)',
    )
    .option('--resume', 'resume an interrupted recovery from the run directory')
    .option('--force', 'replace existing outputs');
  addJsonOption(cmd);
  cmd.action(async (file: string, o: { resume?: boolean; force?: boolean; json?: boolean }) => {
    // a recipe names a method's options by key (`options: { rank: 8 }`), not by flag
    nameMethodOptions({ flags: false });
    // every check (syntax, fields, methods and their options, outputs, files) before any work
    const compiled = await compileRecipe(file, o);
    await runRecipe(compiled, o);
  });
}
