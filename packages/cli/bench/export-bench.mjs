// `lineage export --to onnx` on stories260K and three compressed members: ONNX file size against the
// model's reported bytes, and evaluation speed of the exported graph in onnxruntime-node against lineage's
// own forward on its onnxruntime backend, on the same windows of TinyStories dev (same perplexity expected). Run: node packages/cli/bench/export-bench.mjs
// [--smoke] (needs built packages). Prints a Markdown table and one JSON line.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getBackend, loadModel, Ops, readTextFile, sharedPath } from '@lineage/core';
import '@lineage/backend-onnxruntime';
import * as ort from 'onnxruntime-node';
import { sane, smoke } from '../../../scripts/bench-kit.mjs';
import '@lineage/quant';
import '@lineage/svd';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'bin.js');
const MODEL = sharedPath('models', 'stories260K', 'stories260K.bin');
const DEV = sharedPath('data', 'tinystories', 'valid-dev.txt');
const tmp = mkdtempSync(join(tmpdir(), 'lineage-export-bench-'));
const cli = (...args) => execFileSync('node', [BIN, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
const SEQ = 256;
const WINDOWS = smoke ? 4 : 64;
const BATCH = 8;

try {
  const members = { parent: MODEL, rtn4: join(tmp, 'rtn4') };
  cli('compress', MODEL, '--method', 'rtn', '--bits', '4', '--out', members.rtn4, '--backend', 'js');
  if (!smoke) {
    members.svd50 = join(tmp, 'svd50');
    cli('compress', MODEL, '--method', 'svd', '--params', '0.5', '--out', members.svd50, '--backend', 'js');
    members.pruned = join(tmp, 'pruned');
    cli(
      'compress',
      MODEL,
      '--method',
      'minitron',
      '--shape',
      'layers=4,hidden=48,heads=6,kv-heads=3,ffn=128',
      '--data',
      DEV,
      '--doc-separator',
      '<|endoftext|>',
      '--calib-samples',
      '8',
      '--out',
      members.pruned,
      '--backend',
      'js',
    );
  }
  // One text, cut into windows of SEQ tokens (BOS first), scored by both.
  const text = (await readTextFile(DEV)).replaceAll('<|endoftext|>', '\n');
  const rows = [];
  for (const [name, path] of Object.entries(members)) {
    const out = join(tmp, `${name}-onnx`);
    const exp = JSON.parse(cli('export', path, '--to', 'onnx', '--out', out, '--json'));
    const reported = JSON.parse(cli('inspect', path, '--json')).bytes;
    const size = statSync(join(out, 'onnx', 'model.onnx')).size;
    const { model } = await loadModel(path);
    const ids = model.tokenizer.encode(text, { bos: false });
    const s = await ort.InferenceSession.create(join(out, 'onnx', 'model.onnx'));
    const { numLayers: L, numKvHeads: Hkv, headDim: D, vocabSize: V } = model.config;
    const past = {};
    for (let l = 0; l < L; l++)
      for (const kv of ['key', 'value'])
        past[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [
          BATCH,
          Hkv,
          0,
          D,
        ]);
    const i64 = (v, dims) => new ort.Tensor('int64', BigInt64Array.from(v, BigInt), dims);
    const windows = [];
    for (let w = 0; w < WINDOWS; w++) windows.push([1, ...ids.slice(w * (SEQ - 1), (w + 1) * (SEQ - 1))]);
    /** Perplexity of next tokens and tokens/s over the windows in batches of BATCH, given each batch's logits. */
    const score = async (logitsOf) => {
      let nll = 0;
      let scored = 0;
      const t0 = performance.now();
      for (let w = 0; w < WINDOWS; w += BATCH) {
        const batch = windows.slice(w, w + BATCH);
        const logits = await logitsOf(batch);
        for (let b = 0; b < batch.length; b++)
          for (let t = 0; t < SEQ - 1; t++) {
            const o = (b * SEQ + t) * V;
            let m = -Infinity;
            for (let v = 0; v < V; v++) m = Math.max(m, logits[o + v]);
            let z = 0;
            for (let v = 0; v < V; v++) z += Math.exp(logits[o + v] - m);
            nll += Math.log(z) + m - logits[o + batch[b][t + 1]];
            scored++;
          }
      }
      return {
        ppl: Math.exp(nll / scored),
        tokensPerSecond: (WINDOWS * SEQ) / ((performance.now() - t0) / 1000),
      };
    };
    // the exported graph in onnxruntime-node
    const onnx = await score(async (batch) => {
      const flat = batch.flat();
      const r = await s.run({
        input_ids: i64(flat, [batch.length, SEQ]),
        attention_mask: i64(
          flat.map(() => 1),
          [batch.length, SEQ],
        ),
        position_ids: i64(
          batch.flatMap(() => Array.from({ length: SEQ }, (_, i) => i)),
          [batch.length, SEQ],
        ),
        ...past,
      });
      return r.logits.data;
    });
    await s.release();
    // lineage's own forward on its onnxruntime backend, same windows
    const ops = new Ops(await getBackend('onnxruntime'));
    const own = await score(async (batch) => {
      const y = await model.forward(ops, Int32Array.from(batch.flat()), batch.length);
      const data = await ops.readF32(y);
      ops.dispose(y);
      return data;
    });
    rows.push({
      model: name,
      reportedBytes: sane('reported', reported),
      onnxBytes: sane('onnx', size),
      ratio: size / reported,
      onnxTokensPerSecond: sane('onnx tok/s', onnx.tokensPerSecond),
      onnxPpl: sane('onnx ppl', onnx.ppl),
      lineageTokensPerSecond: sane('lineage tok/s', own.tokensPerSecond),
      lineagePpl: sane('lineage ppl', own.ppl),
      exportSeconds: exp.seconds,
    });
  }
  console.log(
    '| model | reported bytes | ONNX bytes | ratio | exported graph in onnxruntime-node: tok/s (ppl) | lineage forward, onnxruntime backend: tok/s (ppl) |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows)
    console.log(
      `| ${r.model} | ${r.reportedBytes} | ${r.onnxBytes} | ${r.ratio.toFixed(3)} | ${r.onnxTokensPerSecond.toFixed(0)} (${r.onnxPpl.toFixed(4)}) | ${r.lineageTokensPerSecond.toFixed(0)} (${r.lineagePpl.toFixed(4)}) |`,
    );
  console.log(JSON.stringify({ bench: 'export', smoke, loadavg: loadavg(), rows }));
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
