import {
  AdamW,
  clipGradNorm,
  HostTensor,
  JsBackend,
  klDivergence,
  loadModel,
  lrSchedule,
  namedParameters,
  Ops,
  perplexity,
  Random,
  readTextFile,
  sharedPath,
  splitDocuments,
  valueAndGrad,
} from '@lineage/core';

const ort = await (await import('../backend-onnxruntime/dist/index.js')).createOnnxruntimeBackend({});
const be = ort;
const sep = '<|endoftext|>';
const dev = splitDocuments(await readTextFile(sharedPath('data', 'tinystories', 'valid-dev.txt')), sep);
const evalText = dev.slice(600).join(`\n${sep}\n`);
const { model: teacher } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
const { model: student } = await loadModel(sharedPath('models', 'stories260K', 'stories260K.bin'));
const rng = new Random(Number(process.env.SEED ?? 1));
const sigma = Number(process.env.SIGMA ?? 0.3);
for (const [, l] of student.linearLayers())
  for (const [n, p] of l.parameters()) {
    if (n !== 'weight') continue;
    const a = Float32Array.from(p.value.toF32());
    for (let i = 0; i < a.length; i++) a[i] *= 1 + sigma * rng.normal();
    p.value = new HostTensor('f32', p.shape, a);
  }
const ev = async (m) => (await perplexity(m, be, evalText, { protocol: 'documents', separator: sep })).ppl;
let t0 = performance.now();
console.log(
  'orig',
  await ev(teacher),
  'noised',
  await ev(student),
  ((performance.now() - t0) / 1000).toFixed(1) + 's',
);
const train = [await readTextFile(sharedPath('data', 'tinystories', 'train-head.txt'))].concat(
  dev.slice(0, 600),
);
const ids = [];
for (const d of train) ids.push(...teacher.tokenizer.encode(d, { bos: true }));
console.log('train tokens', ids.length);
const B = Number(process.env.B ?? 8),
  T = Number(process.env.T ?? 256),
  LR = Number(process.env.LR ?? 1e-3);
const budget = Number(process.env.TOK ?? 300000);
const steps = Math.floor(budget / (B * T));
const params = namedParameters(student);
const opt = new AdamW(params, { lr: LR, weightDecay: 0, betas: [0.9, Number(process.env.BETA2 ?? 0.999)] });
const sched = lrSchedule({
  lr: LR,
  warmupSteps: Math.min(20, Math.floor(steps / 10)),
  totalSteps: steps,
  decay: 'cosine',
  minLr: LR / Number(process.env.MINDIV ?? 10),
});
const r2 = new Random(5);
t0 = performance.now();
for (let s = 0; s < steps; s++) {
  const tok = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const o = r2.int(ids.length - T);
    for (let t = 0; t < T; t++) tok[b * T + t] = ids[o + t];
  }
  const ops = new Ops(be);
  const tl = await ops.tidy(async () => teacher.forward(ops, tok, B));
  const { loss, grads } = await valueAndGrad(
    be,
    async (g) => klDivergence(g, tl, await student.forward(g, tok, B)),
    params.values(),
  );
  ops.dispose(tl);
  clipGradNorm(grads, 1);
  opt.step(grads, sched(s));
  if (s % 20 === 0 || s === steps - 1)
    console.log(s, loss.toFixed(4), ((performance.now() - t0) / 1000).toFixed(0) + 's');
  if (process.env.EVERY && (s + 1) % Number(process.env.EVERY) === 0)
    console.log('  ppl', s + 1, await ev(student));
}
console.log('recovered', await ev(student), ((performance.now() - t0) / 1000).toFixed(0) + 's');
