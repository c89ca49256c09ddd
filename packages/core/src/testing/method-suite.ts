import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as Vitest from 'vitest';
import { JsBackend } from '../backend/js/js-backend.js';
import { Ops } from '../backend/ops.js';
import { loadModel } from '../checkpoint/load-model.js';
import { saveModel } from '../checkpoint/save-model.js';
import { applyMethod, type CompressionMethod, type MethodContext } from '../compress/method.js';
import { modelFingerprint } from '../nn/fingerprint.js';
import type { LlamaModel } from '../nn/llama.js';
import { LineageError } from '../util/errors.js';

// vitest throws when imported outside its runner (see conformance.ts): load it only under vitest.
const vitest: typeof Vitest | undefined = process.env.VITEST ? await import('vitest') : undefined;

export interface MethodSuiteOptions {
  /** Makes the method under test (called for every run, with the same options each time). */
  create(): CompressionMethod;
  /** The parent model (a fresh copy per call is best; the suite checks it is left untouched). */
  model(): Promise<LlamaModel>;
  /** A context that meets every need the method declares, made anew per run (same seed each time). */
  context(): Promise<MethodContext> | MethodContext;
  /** Token ids on which reloaded outputs must give the same logits (default: 16 ids below 32). */
  tokens?: Int32Array;
  /** Per-test timeout in milliseconds. */
  timeout?: number;
}

/** The context without one thing the method needs, for each need it declares. */
function withoutEachNeed(
  method: CompressionMethod,
  ctx: MethodContext,
): { need: string; ctx: MethodContext }[] {
  const out: { need: string; ctx: MethodContext }[] = [];
  const n = method.needs ?? {};
  if (n.data) {
    const { data: _d, ...rest } = ctx;
    out.push({ need: 'data', ctx: rest });
  }
  if (n.training) {
    const { recover: _r, ...rest } = ctx;
    out.push({ need: 'training', ctx: rest });
  }
  if (n.stats?.length) {
    const { stats: _s, calibrate: _c, ...rest } = ctx;
    out.push({ need: `statistics (${n.stats.join(', ')})`, ctx: rest });
  }
  return out;
}

/** A view of `model` that records every property read (a method touching the model before checking its needs). */
function watched(model: LlamaModel): { model: LlamaModel; touched: string[] } {
  const touched: string[] = [];
  const proxy = new Proxy(model, {
    get(target, key, receiver) {
      touched.push(String(key));
      return Reflect.get(target, key, receiver);
    },
  });
  return { model: proxy, touched };
}

const members = (r: LlamaModel | LlamaModel[]): LlamaModel[] => (Array.isArray(r) ? r : [r]);

async function logits(model: LlamaModel, ids: Int32Array): Promise<Float32Array> {
  const ops = new Ops(new JsBackend());
  const t = await model.forward(ops, ids);
  try {
    return (await ops.readF32(t)).slice();
  } finally {
    ops.dispose(t);
  }
}

function sameWeights(a: LlamaModel, b: LlamaModel): string | undefined {
  const sa = a.stateDict();
  const sb = b.stateDict();
  if ([...sa.keys()].join() !== [...sb.keys()].join()) return 'different tensor names';
  for (const [name, t] of sa) {
    const u = sb.get(name)!;
    if (t.dtype !== u.dtype || t.shape.join() !== u.shape.join()) return `${name}: different dtype or shape`;
    const x = t.bytes();
    const y = u.bytes();
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return `${name}: byte ${i} differs`;
  }
  return undefined;
}

/**
 * The conformance suite every compression method runs (`describe('method conformance: <label>')`): its
 * declared needs are checked before any work (a context lacking one fails with a one-line LineageError
 * before the model is touched); every output records the method's provenance and the parent is left as it
 * was; every output saves, reloads and evaluates identically (same weights, same logits); two runs with the
 * same seed give bitwise the same outputs (on the reference backend, which the suite's logits use).
 */
export function describeMethod(label: string, o: MethodSuiteOptions): void {
  if (!vitest) throw new Error('describeMethod must be called from a vitest test file');
  const { beforeAll, describe, expect, it } = vitest;
  const timeout = o.timeout;
  const ids = o.tokens ?? Int32Array.from({ length: 16 }, (_, i) => (i * 7 + 1) % 32);
  describe(`method conformance: ${label}`, () => {
    let parent: LlamaModel;
    let before: string;
    let first: LlamaModel[];
    let method: CompressionMethod;

    beforeAll(async () => {
      method = o.create();
      parent = await o.model();
      before = modelFingerprint(parent);
      first = members(await applyMethod(method, parent, await o.context()));
    }, timeout);

    it(
      'checks its needs before any work: a context lacking one fails in one line, the model untouched',
      async () => {
        const full = await o.context();
        const cases = withoutEachNeed(method, full);
        for (const c of cases) {
          const w = watched(await o.model());
          const err = await applyMethod(o.create(), w.model, c.ctx).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(err, `without ${c.need}`).toBeInstanceOf(LineageError);
          expect((err as Error).message, `without ${c.need}`).not.toMatch(/\n/);
          expect(w.touched, `without ${c.need}: the model was read before the needs were checked`).toEqual(
            [],
          );
        }
      },
      timeout,
    );

    it(
      'records its provenance in every output and leaves the parent as it was',
      () => {
        expect(first.length).toBeGreaterThan(0);
        for (const m of first) {
          expect(m).not.toBe(parent);
          const p = m.provenance ?? {};
          expect(p.method).toBe(method.name);
          expect(p.methodVersion).toBe(method.version);
          expect((p.parent as { fingerprint?: string } | undefined)?.fingerprint).toBe(before);
        }
        expect(modelFingerprint(parent)).toBe(before);
      },
      timeout,
    );

    it(
      'every output saves, reloads and evaluates identically',
      async () => {
        const dir = await mkdtemp(join(tmpdir(), 'lineage-method-suite-'));
        try {
          for (const [i, m] of first.entries()) {
            const out = join(dir, `member-${i + 1}`);
            await saveModel(m, out, { format: 'hf' });
            const { model: back } = await loadModel(out);
            expect(sameWeights(m, back), `member ${i + 1}`).toBeUndefined();
            expect(back.provenance?.method).toBe(method.name);
            expect(back.stats()).toEqual(m.stats());
            const [a, b] = [await logits(m, ids), await logits(back, ids)];
            expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer)), `member ${i + 1} logits`).toBe(true);
          }
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
      timeout,
    );

    it(
      'a second run with the same seed repeats the first bitwise',
      async () => {
        const again = members(await applyMethod(o.create(), await o.model(), await o.context()));
        expect(again.length).toBe(first.length);
        for (const [i, m] of again.entries())
          expect(sameWeights(first[i]!, m), `member ${i + 1}`).toBeUndefined();
      },
      timeout,
    );
  });
}
