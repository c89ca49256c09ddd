// Where the time of one distillation step goes on onnxruntime-cpu (issue #16, "Fused training"): the step
// of train-bench.mjs (teacher forward, student forward, KL at T = 1 with the CE metric, backward, clipping,
// AdamW) taken apart phase by phase on the stories42M-shaped synthetic model at 4 × 256 tokens.
//
// Per phase: wall seconds, the seconds spent inside backend calls (split into the head/loss, i.e. ops on a
// tensor with a vocabulary-sized dimension, and the blocks), and the seconds inside onnxruntime's
// session.run (an instrumented onnxruntime-node module injected through the backend's `ort` option); the
// rest of a phase is JavaScript (the tape, kernels of tiny ops on the js side, host loops). Variants:
// `composite` (no fused pieces: per-op blocks and loss ops), `fused` (the backend's fused KD head,
// `Backend.fusedTraining.kdHead`, per-op blocks), `blocks` (the fused KD head and the fused decoder blocks,
// `blockForward`/`blockBackward`: the default path of onnxruntime-cpu). `--composite`, `--fused` or
// `--blocks` profiles one; by default all three.
//
// Run after `pnpm build`: node packages/distill/bench/train-profile.mjs [--json file]
// Env: LINEAGE_BENCH_STEPS (profiled steps after one warm-up, default 2), LINEAGE_BENCH_BATCH ×
// LINEAGE_BENCH_SEQ (default 4 × 256). --smoke: a tiny model, 1 × 16 tokens, one step; fails unless every
// figure is finite.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AdamW,
  clipGradNorm,
  crossEntropyLoss,
  GradOps,
  initModel,
  klDivergence,
  llamaConfig,
  Ops,
  Random,
} from '@lineage/core';
import {
  benchShape,
  median,
  saneNonNegative,
  smoke,
  startBench,
  timeBackendOps,
} from '../../../scripts/bench-kit.mjs';
import { forwardCapture, forwardFinal, fusedKdHead, perturbLinearWeights } from '../dist/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..', '..');
const env = (k, d) => process.env[k] ?? d;

const config = llamaConfig({ ...benchShape });
const V = config.vocabSize;
const B = Number(env('LINEAGE_BENCH_BATCH', smoke ? 1 : 4));
const T = Number(env('LINEAGE_BENCH_SEQ', smoke ? 16 : 256));
const steps = Number(env('LINEAGE_BENCH_STEPS', smoke ? 1 : 2));
const args = process.argv.slice(2);
const variants = ['composite', 'fused', 'blocks'].filter((v) => args.includes(`--${v}`));
if (!variants.length) variants.push('composite', 'fused', 'blocks');

// ---- instrumentation: seconds inside onnxruntime's session.run, and inside each backend call
const ortPkg = createRequire(join(repo, 'packages', 'backend-onnxruntime', 'package.json'))(
  'onnxruntime-node',
);
let ortSeconds = 0;
const ort = {
  ...ortPkg,
  InferenceSession: {
    ...ortPkg.InferenceSession,
    create: async (...a) => {
      const s = await ortPkg.InferenceSession.create(...a);
      const run = s.run.bind(s);
      s.run = async (...r) => {
        const t0 = performance.now();
        try {
          return await run(...r);
        } finally {
          ortSeconds += (performance.now() - t0) / 1000;
        }
      };
      return s;
    },
  },
};
const { createOnnxruntimeBackend } = await import(
  join(repo, 'packages', 'backend-onnxruntime', 'dist', 'index.js')
);
const backend = await createOnnxruntimeBackend({ ort });

let phase = 'setup';
// LINEAGE_BENCH_OPS=1: also the seconds of each backend method by phase and output shape (summed over steps)
const perOp = env('LINEAGE_BENCH_OPS', '') === '1';
const opAcc = new Map();
const acc = new Map(); // `${phase}|${part}` → seconds inside backend calls
const isHead = (shape) => shape?.some((d) => d === V);
timeBackendOps(backend, (m, a, y, seconds) => {
  const head = a.some((x) => isHead(x?.shape)) || isHead(y?.shape);
  const part = m === 'read' || m === 'readOnce' ? 'read' : head ? 'head' : 'blocks';
  const k = `${phase}|${part}`;
  acc.set(k, (acc.get(k) ?? 0) + seconds);
  if (perOp) {
    const o = `${phase} · ${part} · ${m} [${(y?.shape ?? a.find((x) => x?.shape)?.shape ?? []).join('×')}]`;
    opAcc.set(o, (opAcc.get(o) ?? 0) + seconds);
  }
});

// the fused KD head and the fused blocks are backend calls too (head/loss side, blocks side)
const full = backend.fusedTraining;
if (full) {
  const timed = (name, part) => {
    const f = full[name].bind(full);
    full[name] = async (i) => {
      const t0 = performance.now();
      try {
        return await f(i);
      } finally {
        const k = `${phase}|${part}`;
        acc.set(k, (acc.get(k) ?? 0) + (performance.now() - t0) / 1000);
      }
    };
  };
  timed('kdHead', 'head');
  if (full.blockForward) timed('blockForward', 'blocks');
  if (full.blockBackward) timed('blockBackward', 'blocks');
}
/** The backend's fused capability for a variant: none, the KD head only, or everything. */
const capability = (variant) =>
  variant === 'composite' ? undefined : variant === 'fused' ? { kdHead: full.kdHead } : full;

// ---- the step, phase by phase
const teacher = initModel(config, { seed: 1 });
let student;
let params;
let rng;
const batchIds = () => {
  const ids = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  for (let i = 0; i < ids.length; i++) ids[i] = Math.floor(rng.next() * V);
  for (let i = 0; i < ids.length; i++) targets[i] = i + 1 < ids.length ? ids[i + 1] : ids[0];
  return { ids, targets };
};

async function profiledStep(variant, optimizer) {
  opAcc.clear(); // the per-op table shows the last step
  const wall = {};
  const ort0 = {};
  const faults = {}; // minor page faults per phase: a fresh large array costs more than its arithmetic here
  const faults0 = {};
  const minorFaults = () => process.resourceUsage().minorPageFault;
  const t = (name) => {
    phase = name;
    ort0[name] = ortSeconds;
    faults0[name] = minorFaults();
    return performance.now();
  };
  const end = (name, t0) => {
    wall[name] = (wall[name] ?? 0) + (performance.now() - t0) / 1000;
    ort0[name] = ortSeconds - ort0[name];
    faults[name] = (faults[name] ?? 0) + minorFaults() - faults0[name];
  };
  const ortIn = {};
  let klValue;
  const { ids, targets } = batchIds();
  const tops = new Ops(backend);
  let t0 = t('teacher forward');
  const tout = await tops.tidy(() =>
    variant !== 'composite' ? forwardFinal(tops, teacher, ids, B) : forwardCapture(tops, teacher, ids, B),
  );
  end('teacher forward', t0);
  ortIn['teacher forward'] = ort0['teacher forward'];
  const g = new GradOps(backend);
  const byTensor = new Map();
  for (const p of params) byTensor.set(g.watch(p), p);
  const grads = new Map();
  try {
    const loss = await g.tidy(async () => {
      t0 = t('student forward');
      const s =
        variant !== 'composite'
          ? await forwardFinal(g, student, ids, B)
          : await forwardCapture(g, student, ids, B);
      end('student forward', t0);
      ortIn['student forward'] = ort0['student forward'];
      t0 = t('loss (head, KL, CE)');
      let kl;
      if (variant !== 'composite') {
        const r = await fusedKdHead(g, student, s.final, teacher, tout.final, targets, { temperature: 1 });
        if (!r) throw new Error('the backend has no fused KD head');
        kl = r.kl;
      } else {
        await g.tape.untaped(() => crossEntropyLoss(g, s.logits, targets));
        kl = await klDivergence(g, tout.logits, s.logits, { temperature: 1 });
      }
      klValue = (await g.readF32(kl))[0];
      end('loss (head, KL, CE)', t0);
      ortIn['loss (head, KL, CE)'] = ort0['loss (head, KL, CE)'];
      return kl;
    });
    t0 = t('backward');
    await g.backward(loss, {
      // as valueAndGrad: a gradient nothing else holds is taken without a copy
      onGrad: async (leaf, gr, sole) => {
        grads.set(byTensor.get(leaf), await (sole ? g.readF32Once(gr) : g.readF32(gr)));
      },
    });
    end('backward', t0);
    ortIn.backward = ort0.backward;
  } finally {
    g.tape.dispose();
    backend.dispose(tout.final ?? tout.logits);
  }
  t0 = t('clip');
  clipGradNorm(grads, 1);
  end('clip', t0);
  t0 = t('AdamW');
  optimizer.step(grads, 1e-4);
  end('AdamW', t0);
  return { wall, ortIn, faults, kl: klValue };
}

const bench = startBench('distill-train-profile');
const results = {};
const firstKl = {};
// Each variant has its own student, optimiser and batch stream (the same seeds, so first losses must agree);
// the variants' steps are interleaved, so a change of the machine's load hits them alike.
const state = {};
for (const variant of variants) {
  const s = perturbLinearWeights(initModel(config, { seed: 1 }), 0.3, 2);
  state[variant] = {
    student: s,
    params: [...s.namedParameters().values()],
    rng: new Random(7),
    optimizer: new AdamW(s.namedParameters(), { lr: 1e-4 }),
    runs: [],
  };
}
for (let s = 0; s <= steps; s++) {
  for (const variant of variants) {
    const st = state[variant];
    backend.fusedTraining = capability(variant);
    ({ student, params, rng } = st);
    acc.clear();
    const r = await profiledStep(variant, st.optimizer);
    if (s === 0) firstKl[variant] = r.kl;
    if (s > 0 || steps === 0) st.runs.push({ ...r, ops: Object.fromEntries(acc) });
    if (!smoke)
      process.stderr.write(
        `${variant} step ${s}: ${Object.values(r.wall)
          .reduce((a, b) => a + b, 0)
          .toFixed(2)} s\n`,
      );
  }
}
for (const variant of variants) {
  const { runs } = state[variant];
  const phases = Object.keys(runs[0].wall);
  const rows = phases.map((p) => {
    const m = (f) => median(runs.map(f));
    return {
      phase: p,
      seconds: saneNonNegative(
        `${p} seconds`,
        m((r) => r.wall[p]),
      ),
      insideOnnxruntime: m((r) => r.ortIn[p] ?? 0),
      backendHead: m((r) => r.ops[`${p}|head`] ?? 0),
      backendBlocks: m((r) => r.ops[`${p}|blocks`] ?? 0),
      backendRead: m((r) => r.ops[`${p}|read`] ?? 0),
      minorFaults: m((r) => r.faults[p] ?? 0),
    };
  });
  const total = rows.reduce((a, r) => a + r.seconds, 0);
  console.log(
    `\n${variant} step, ${B}×${T} tokens: ${total.toFixed(2)} s (${((B * T) / total).toFixed(1)} tokens/s), median of ${runs.length} steps`,
  );
  console.log(
    '| phase | s | share | inside onnxruntime | backend calls: head/loss | blocks | reads to host | JS (rest) | page faults |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const inOps = r.backendHead + r.backendBlocks + r.backendRead;
    console.log(
      `| ${r.phase} | ${r.seconds.toFixed(3)} | ${((100 * r.seconds) / total).toFixed(0)}% | ${r.insideOnnxruntime.toFixed(3)} | ${r.backendHead.toFixed(3)} | ${r.backendBlocks.toFixed(3)} | ${r.backendRead.toFixed(3)} | ${Math.max(0, r.seconds - inOps).toFixed(3)} | ${Math.round(r.minorFaults)} |`,
    );
  }
  results[variant] = { total, tokensPerSecond: (B * T) / total, rows };
}
backend.fusedTraining = full;
if (perOp)
  for (const [k, v] of [...opAcc]
    .sort((a, b) => b[1] - a[1])
    .filter(([k], i) => i < 12 || k.includes(String(V))))
    console.log(`${v.toFixed(3)} s  ${k}`);
await backend.close();
const ref = firstKl.composite ?? firstKl.fused;
for (const v of ['fused', 'blocks']) {
  if (ref === undefined || firstKl[v] === undefined || (v === 'fused' && firstKl.composite === undefined))
    continue;
  const rel = Math.abs(firstKl[v] - ref) / ref;
  console.log(
    `first-step KL: reference ${ref}, ${v} ${firstKl[v]} (relative difference ${rel.toExponential(1)})`,
  );
  if (!(rel <= 1e-4)) throw new Error(`the ${v} variant disagrees with the per-op loss`);
}
bench.finish({ batch: B, seq: T, steps, results, firstKl });
