import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { LineageError } from '@lineage/core';

/**
 * The files of `lineage export --to web` besides the model: transformers.js's self-contained browser build
 * and onnxruntime-web's WebAssembly runtime, copied from the installed packages (no CDN), and a page that
 * loads ./model and generates. Needs @huggingface/transformers installed (an optional dependency of the CLI).
 */
export async function writeWebPage(dir: string, title: string): Promise<string[]> {
  const require = createRequire(import.meta.url);
  let tjs: string;
  let wasm: string;
  try {
    tjs = dirname(require.resolve('@huggingface/transformers'));
    // the WebAssembly build onnxruntime-web runs on device 'wasm' (the .mjs loader lies beside it)
    wasm = dirname(
      createRequire(join(tjs, 'x.js')).resolve('onnxruntime-web/ort-wasm-simd-threaded.asyncify.wasm'),
    );
  } catch {
    throw new LineageError(
      '--to web copies transformers.js and onnxruntime-web from the installed packages: install @huggingface/transformers',
    );
  }
  const vendor = join(dir, 'vendor');
  await mkdir(vendor);
  await copyFile(join(tjs, 'transformers.min.js'), join(vendor, 'transformers.min.js'));
  for (const f of ['ort-wasm-simd-threaded.asyncify.mjs', 'ort-wasm-simd-threaded.asyncify.wasm'])
    await copyFile(join(wasm, f), join(vendor, f));
  await writeFile(join(dir, 'index.html'), page(title));
  return [
    'index.html',
    'vendor/transformers.min.js',
    'vendor/ort-wasm-simd-threaded.asyncify.mjs',
    'vendor/ort-wasm-simd-threaded.asyncify.wasm',
  ];
}

const escapeHtml = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/**
 * The page: a prompt, a token budget, greedy generation streamed into the page with tokens/s. `?prompt=…
 * &max=…` runs at once; when done, `<body data-done>` is set and `#ids` holds the new token ids as JSON
 * (what the page test reads).
 */
function page(title: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${escapeHtml(title)}</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  textarea { width: 100%; font: inherit; }
  #out { white-space: pre-wrap; background: #f6f6f4; padding: 1rem; min-height: 6rem; border-radius: 6px; }
  #stats { color: #555; }
  #ids { display: none; }
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<p>Runs in this browser with transformers.js and onnxruntime-web (WebAssembly), greedy decoding.</p>
<textarea id="prompt" rows="3">Once upon a time</textarea>
<p><label>new tokens <input id="max" type="number" value="64" min="1" max="4096"></label>
<button id="go" disabled>Generate</button></p>
<div id="out"></div>
<p id="stats">loading the model…</p>
<pre id="ids"></pre>
<script type="module">
import { AutoModelForCausalLM, AutoTokenizer, env, TextStreamer } from './vendor/transformers.min.js';

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.useBrowserCache = false;
// a path, not a URL: transformers.js joins it with the model id as a path
env.localModelPath = new URL('./', location.href).pathname;
env.backends.onnx.wasm.wasmPaths = new URL('./vendor/', location.href).href;
env.backends.onnx.wasm.numThreads = 1; // no cross-origin isolation needed

const $ = (id) => document.getElementById(id);
const stats = $('stats');
try {
  const tokenizer = await AutoTokenizer.from_pretrained('model');
  const model = await AutoModelForCausalLM.from_pretrained('model', { dtype: 'fp32', device: 'wasm' });
  stats.textContent = 'ready';
  const run = async () => {
    $('go').disabled = true;
    $('out').textContent = $('prompt').value;
    stats.textContent = 'generating…';
    let first = 0;
    let n = 0;
    const streamer = new TextStreamer(tokenizer, {
      skip_prompt: true,
      callback_function: (text) => {
        $('out').textContent += text;
      },
      token_callback_function: () => {
        if (!n++) first = performance.now();
      },
    });
    const inputs = tokenizer($('prompt').value);
    const t0 = performance.now();
    const out = await model.generate({ ...inputs, max_new_tokens: Number($('max').value), do_sample: false, streamer });
    const t1 = performance.now();
    const all = out.tolist()[0].map(Number);
    const fresh = all.slice(inputs.input_ids.dims[1]);
    const rate = (n, ms) => (ms > 0 ? (n / (ms / 1000)).toFixed(1) : '–');
    stats.textContent = fresh.length + ' tokens in ' + ((t1 - t0) / 1000).toFixed(2) + ' s: ' + rate(fresh.length, t1 - t0) + ' tokens/s (' + rate(fresh.length - 1, t1 - first) + ' after the first)';
    $('ids').textContent = JSON.stringify(fresh);
    document.body.dataset.done = '1';
    $('go').disabled = false;
  };
  $('go').onclick = run;
  $('go').disabled = false;
  const q = new URLSearchParams(location.search);
  if (q.has('prompt')) $('prompt').value = q.get('prompt');
  if (q.has('max')) $('max').value = q.get('max');
  if (q.has('prompt') || q.has('run')) await run();
} catch (e) {
  stats.textContent = 'error: ' + (e && e.message ? e.message : e);
  document.body.dataset.error = '1';
  console.error(e);
}
</script>
</body>
</html>
`;
}
