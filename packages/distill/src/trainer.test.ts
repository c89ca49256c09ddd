import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  applyMethod,
  type CompressionMethod,
  JsBackend,
  LineageError,
  LlamaModel,
  loadModel,
  methodContext,
  namedParameters,
} from '@lineage/core';
import { sharedPath } from '@lineage/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initLike, perturbLinearWeights } from './init.js';
import { readJsonl } from './log.js';
import { recoverCapability, withRecover } from './recover.js';
import { type DistillOptions, distill, type TrainResult, train } from './trainer.js';

const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const TRAIN = sharedPath('data', 'tinystories', 'train-head.txt');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const SEP = '<|endoftext|>';
const js = new JsBackend();
const tmp = mkdtempSync(join(tmpdir(), 'lineage-distill-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function stories(): Promise<LlamaModel> {
  return (await loadModel(MODEL)).model;
}

/** A damaged copy of stories260K (every linear weight × (1 + 0.3·N(0,1))). */
async function noised(seed = 1): Promise<LlamaModel> {
  return perturbLinearWeights(await stories(), 0.3, seed);
}

function bits(model: LlamaModel): Uint32Array[] {
  return [...namedParameters(model).values()].map((p) => new Uint32Array(p.value.toF32().slice().buffer));
}

/** Small, fast settings: 4 × 32 tokens per step on the js backend for teacher and student. */
const small = {
  data: TRAIN,
  seqLen: 32,
  batchSize: 4,
  lr: 3e-3,
  backend: js,
  teacherBackend: js,
} satisfies Partial<DistillOptions>;

let teacher: LlamaModel;
beforeAll(async () => {
  teacher = await stories();
});

describe('distill', () => {
  it('lowers the KL to the teacher (forward KL, T = 1) and the held-out perplexity', async () => {
    const kl: number[] = [];
    const live = js.liveTensors();
    const student = await noised();
    const r = await distill({
      ...small,
      teacher,
      student,
      tokens: 12 * 128,
      evalData: { path: DEV, separator: SEP, documents: [780, 800] },
      evalSeqLen: 64,
      onStep: (s) => kl.push(s.kl!),
    });
    expect(r.steps).toBe(12);
    expect(r.tokens).toBe(12 * 128);
    expect(r.stopped).toBe('budget');
    expect(kl.length).toBe(12);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(kl.slice(8))).toBeLessThan(mean(kl.slice(0, 2)) * 0.8);
    expect(r.evals.map((e) => e.step)).toEqual([0, 12]);
    expect(r.evals[1]!.ppl).toBeLessThan(r.evals[0]!.ppl * 0.6);
    expect(r.flops.student).toBeGreaterThan(6 * 200_000);
    expect(r.tokensPerSecond).toBeGreaterThan(0);
    // nothing leaks: once the parameters' device copies are released, the backend holds what it held before
    teacher.release();
    student.release();
    expect(js.liveTensors()).toBe(live);
  });

  it("'kl+ce' trains on both; 'ce' ignores the teacher's logits", async () => {
    const seen: { kl?: number; ce?: number; loss: number }[] = [];
    await distill({
      ...small,
      teacher,
      student: await noised(),
      tokens: 128,
      loss: 'kl+ce',
      ceWeight: 0.5,
      hidden: false,
      onStep: (s) => seen.push(s),
    });
    expect(seen[0]!.loss).toBeCloseTo(seen[0]!.kl! + 0.5 * seen[0]!.ce!, 4);
    const ce: { kl?: number; ce?: number; loss: number }[] = [];
    await distill({
      ...small,
      teacher,
      student: await noised(),
      tokens: 128,
      loss: 'ce',
      onStep: (s) => ce.push(s),
    });
    expect(ce[0]!.kl).toBeUndefined();
    expect(ce[0]!.loss).toBeCloseTo(ce[0]!.ce!, 6);
  });

  it('adds an intermediate hidden-state loss through a layer map for a depth-pruned student', async () => {
    // keep layers 0, 2, 4 of a damaged copy: a depth-pruned student of the 5-layer teacher
    const src = await noised(3);
    const student = new LlamaModel(
      { ...src.config, numLayers: 3 },
      src.embed,
      [src.blocks[0]!, src.blocks[2]!, src.blocks[4]!],
      src.norm,
      src.lmHead,
      src.tokenizer,
    );
    const hidden: number[] = [];
    const r = await distill({
      ...small,
      teacher,
      student,
      tokens: 8 * 128,
      hidden: { layers: 'uniform', weight: 0.5 },
      onStep: (s) => hidden.push(s.hidden!),
    });
    expect(r.steps).toBe(8);
    expect(hidden.every((h) => Number.isFinite(h) && h > 0)).toBe(true);
    expect(hidden[7]!).toBeLessThan(hidden[0]!);
    await expect(
      distill({ ...small, teacher, student, tokens: 128, hidden: { layers: [[0, 7]] } }),
    ).rejects.toThrow(/the teacher has layers 0..4/);
  });

  it('is reproducible from its seed: same seed, same weights bit for bit; another seed differs', async () => {
    const once = async (seed: number) => {
      const student = await noised();
      await distill({ ...small, teacher, student, tokens: 3 * 128, seed });
      return bits(student);
    };
    const a = await once(5);
    expect(await once(5)).toEqual(a);
    expect(await once(6)).not.toEqual(a);
  });

  it('accumulates micro-batches to the same step as the full batch', async () => {
    const losses = async (microBatchSize?: number) => {
      const out: number[] = [];
      await distill({
        ...small,
        teacher,
        student: await noised(),
        tokens: 2 * 128,
        ...(microBatchSize ? { microBatchSize } : {}),
        onStep: (s) => out.push(s.loss),
      });
      return out;
    };
    const full = await losses();
    const micro = await losses(1);
    expect(Math.abs(micro[0]! - full[0]!)).toBeLessThan(1e-5);
    expect(Math.abs(micro[1]! - full[1]!)).toBeLessThan(1e-3 * full[1]!);
  });
});

describe('train', () => {
  it('trains a randomly initialised model (init --like) with the next-token loss', async () => {
    const model = initLike(teacher, { dim: 32, layers: 2, heads: 4, kvHeads: 2, hidden: 64 }, { seed: 1 });
    expect(model.config.vocabSize).toBe(512);
    expect(model.tokenizer).toBe(teacher.tokenizer);
    const ce: number[] = [];
    const r = await train({ ...small, model, lr: 1e-2, tokens: 20 * 128, onStep: (s) => ce.push(s.ce!) });
    expect(r.steps).toBe(20);
    expect(ce[0]).toBeGreaterThan(Math.log(512) - 0.3); // a random model is near uniform
    expect(ce[19]!).toBeLessThan(ce[0]! - 0.7);
  });
});

describe('held-out evaluation and early stopping', () => {
  it('evaluates on held-out documents and stops on a plateau', async () => {
    const evals: number[] = [];
    const r = await distill({
      ...small,
      teacher,
      student: await stories(), // already equal to the teacher: nothing to gain
      data: { path: DEV, separator: SEP, documents: [0, 60] },
      holdout: 10,
      evalEvery: 1,
      evalLimit: 10,
      evalSeqLen: 64,
      earlyStop: { patience: 2, minDelta: 0.05 },
      lr: 1e-5,
      tokens: 20 * 128,
      onEval: (e) => evals.push(e.ppl),
    });
    expect(r.stopped).toBe('early-stop');
    expect(r.steps).toBe(2);
    expect(evals.length).toBe(3); // before the first step, after steps 1 and 2
    expect(r.evalData).toMatch(/valid-dev.txt\[0:60\]\[50:\]$/);
    expect(Math.max(...evals) / Math.min(...evals)).toBeLessThan(1.05);
  });
});

describe('checkpoints and exact resume', () => {
  const opts = (
    dir: string,
    extra: Partial<DistillOptions> & Pick<DistillOptions, 'student'>,
  ): DistillOptions => ({
    ...small,
    teacher,
    tokens: 6 * 128,
    checkpointDir: join(dir, 'ckpt'),
    checkpointEvery: 2,
    logFile: join(dir, 'log.jsonl'),
    ...extra,
  });
  const curve = (dir: string) =>
    readJsonl(join(dir, 'log.jsonl'))
      .filter((r) => r.type === 'step')
      .map((r) => [r.step, r.loss, r.lr, r.gradNorm]);

  it('an interrupted run resumed from its last checkpoint ends bitwise equal to the uninterrupted run', async () => {
    const full = join(tmp, 'full');
    const a = await noised();
    await distill(opts(full, { student: a }));
    // killed during step 3, after the checkpoint of step 2 (no checkpoint on stop)
    const cut = join(tmp, 'cut');
    const ac = new AbortController();
    const b = await noised();
    const r1 = await distill(
      opts(cut, {
        student: b,
        signal: ac.signal,
        checkpointOnStop: false,
        onStep: (s) => s.step === 3 && ac.abort(),
      }),
    );
    expect(r1.stopped).toBe('interrupted');
    expect(r1.steps).toBe(3);
    const state = JSON.parse(readFileSync(join(cut, 'ckpt', 'state.json'), 'utf8'));
    expect(state.step).toBe(2);
    // a new process: a fresh student loaded from the same file
    const r2 = await distill(opts(cut, { student: await noised(), resume: true }));
    expect(r2.resumedFrom).toBe(2);
    expect(r2.steps).toBe(6);
    expect(bits(r2.model)).toEqual(bits(a));
    expect(curve(cut)).toEqual(curve(full));
  });

  it('stopAfter writes a checkpoint there; resuming finishes the same run', async () => {
    const dir = join(tmp, 'stop');
    const ref = await noised();
    await distill({ ...small, teacher, student: ref, tokens: 6 * 128 });
    const r1 = await distill(opts(dir, { student: await noised(), stopAfter: 3 }));
    expect(r1.stopped).toBe('stop-after');
    expect(JSON.parse(readFileSync(join(dir, 'ckpt', 'state.json'), 'utf8')).step).toBe(3);
    const r2 = await distill(opts(dir, { student: await noised(), resume: true }));
    expect(r2.stopped).toBe('budget');
    expect(bits(r2.model)).toEqual(bits(ref));
  });

  it('refuses a checkpoint from a different model, other settings, or a stale one, touching nothing', async () => {
    const dir = join(tmp, 'refuse');
    await distill(opts(dir, { student: await noised(), stopAfter: 2 }));
    const ckpt = join(dir, 'ckpt');
    const snapshot = () =>
      Object.fromEntries(
        [...readdirSync(ckpt).map((f) => join(ckpt, f)), join(dir, 'log.jsonl')].map((f) => [
          f,
          `${statSync(f).mtimeMs}:${readFileSync(f).toString('base64').slice(0, 64)}`,
        ]),
      );
    const before = snapshot();
    const fail = async (extra: Partial<DistillOptions>, re: RegExp) => {
      const e = await distill(
        opts(dir, { resume: true, ...extra, student: extra.student ?? (await noised()) }),
      ).catch((x) => x);
      expect(e).toBeInstanceOf(LineageError);
      expect(String(e.message)).toMatch(re);
      expect(String(e.message)).not.toContain('\n');
    };
    await fail({ student: await noised(9) }, /was made from a different student \(fingerprint sha256:/);
    await fail({ teacher: await noised(4) }, /was made with a different teacher/);
    await fail({ lr: 1e-3 }, /was made with different settings: lr 0.003 in the checkpoint, 0.001 now/);
    await fail({ resume: false }, /holds a checkpoint of an earlier run: resume it/);
    expect(snapshot()).toEqual(before);
  });
});

describe('bad input', () => {
  const expectLineageError = async (p: Promise<TrainResult>, re: RegExp) => {
    const e = await p.catch((x) => x);
    expect(e).toBeInstanceOf(LineageError);
    expect(String(e.message)).toMatch(re);
    expect(String(e.message)).not.toContain('\n');
  };

  it('a teacher and a student with different vocabularies', async () => {
    const other = initLike(teacher, {}, { seed: 1 });
    const wide = new LlamaModel(
      { ...other.config, vocabSize: 600 },
      other.embed,
      other.blocks,
      other.norm,
      other.lmHead,
    );
    await expectLineageError(
      distill({ ...small, teacher, student: wide, tokens: 128 }),
      /different vocabularies \(teacher 512 tokens, student 600\)/,
    );
  });

  it('a budget of zero tokens, or less than one step', async () => {
    const out = join(tmp, 'zero');
    await expectLineageError(
      distill({
        ...small,
        teacher,
        student: await noised(),
        tokens: 0,
        checkpointDir: out,
        logFile: join(out, 'l'),
      }),
      /a budget of 0 tokens is less than one step \(batch size 4 × seq-len 32 = 128 tokens\)/,
    );
    expect(existsSync(out)).toBe(false);
  });

  it('a data file shorter than one sequence', async () => {
    const short = join(tmp, 'short.txt');
    writeFileSync(short, 'Once upon a time.');
    await expectLineageError(
      train({ ...small, model: await noised(), data: short, tokens: 1000 }),
      /short.txt has \d+ tokens, fewer than one sequence of 33 \(seq-len 32 \+ 1 target\)/,
    );
  });

  it('a student that shares trainable parameters with the teacher', async () => {
    const shared = new LlamaModel(
      teacher.config,
      teacher.embed,
      teacher.blocks,
      teacher.norm,
      undefined,
      teacher.tokenizer,
    );
    await expectLineageError(
      distill({ ...small, teacher, student: shared, tokens: 128 }),
      /shares the parameter 'model.embed_tokens.weight' with the teacher/,
    );
  });
});

describe('the recover capability of a method context', () => {
  it('lets a compression method recover its output from the parent without importing this package', async () => {
    // a stand-in for PLRD/Minitron: damage the model, then ask the context to recover it
    const damage: CompressionMethod<LlamaModel> = {
      name: 'damage',
      version: '1',
      needs: { training: true },
      async apply(model, ctx) {
        const copy = perturbLinearWeights((await loadModel(MODEL)).model, 0.3, ctx.seed);
        return ctx.recover!(copy, { tokens: 4 * 128, teacher: model });
      },
    };
    const results: TrainResult[] = [];
    const ctx = methodContext(js, {
      recover: recoverCapability({ ...small, onResult: (r) => results.push(r) }),
    });
    const out = await applyMethod(damage, teacher, ctx);
    expect(out).not.toBe(teacher);
    expect(results[0]!.steps).toBe(4);
    expect(results[0]!.teacherBackend).toBe('js (cpu)');
    expect(() => withRecover(methodContext(js))).toThrow(/needs training data/);
    const withData = withRecover(methodContext(js, { data: { text: 'x', path: 'x.txt' } }));
    expect(typeof withData.recover).toBe('function');
  });

  it('successive calls continue the data stream, so k calls of n tokens see what one run of k·n sees', async () => {
    const ends = async (continueData?: boolean) => {
      const seen: TrainResult[] = [];
      const recover = recoverCapability({
        ...small,
        ...(continueData === undefined ? {} : { continueData }),
        onResult: (r) => seen.push(r),
      });
      for (let k = 0; k < 3; k++) await recover(await noised(), { tokens: 5 * 128, teacher });
      return seen.map((r) => r.dataEnd);
    };
    const once = await distill({ ...small, teacher, student: await noised(), tokens: 15 * 128 });
    expect(once.dataEnd).toEqual({ epoch: 0, cursor: 15 * 4 });
    const continued = await ends();
    expect(continued[2]).toEqual(once.dataEnd);
    expect(continued[0]).not.toEqual(continued[1]);
    const restarted = await ends(false);
    expect(restarted[1]).toEqual(restarted[0]);
    expect(restarted[2]).toEqual(restarted[0]);
  }, 120_000);
});
