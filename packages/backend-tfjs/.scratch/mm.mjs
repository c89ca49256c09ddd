import * as tf from '@tensorflow/tfjs-core';
await import('@tensorflow/tfjs-backend-' + process.argv[2]);
await tf.setBackend(process.argv[2]); await tf.ready();
console.log('backend', tf.getBackend());
function bench(name, fn, flops, reps=5) {
  let r = fn(); r.dataSync(); r.dispose();
  const t0 = performance.now();
  for (let i=0;i<reps;i++){ r = fn(); r.dataSync(); r.dispose(); }
  const ms = (performance.now()-t0)/reps;
  console.log(name.padEnd(40), ms.toFixed(2)+' ms', (flops/ms/1e6).toFixed(2)+' GFLOP/s');
}
const M=512, K=512, N=1376;
const x = tf.randomNormal([M,K]); const w = tf.randomNormal([N,K]); const wt = tf.transpose(w);
bench('2d x·wT (transposeB)', () => tf.matMul(x, w, false, true), 2*M*K*N);
bench('2d x·w (pre-transposed)', () => tf.matMul(x, wt), 2*M*K*N);
const x3 = tf.randomNormal([8,64,K]);
bench('3d batched x3·wT broadcast', () => tf.matMul(x3, w, false, true), 2*M*K*N);
bench('3d batched x3·wt broadcast', () => tf.matMul(x3, wt), 2*M*K*N);
bench('3d reshape->2d x·wt', () => tf.tidy(()=>tf.matMul(x3.reshape([512,K]), wt).reshape([8,64,N])), 2*M*K*N);
// attention-shaped
const B=8,H=8,T=256,D=64;
const q = tf.randomNormal([B*H,T,D]); const k = tf.randomNormal([B*H,T,D]);
bench('attn q·kT batched', () => tf.matMul(q, k, false, true), 2*B*H*T*T*D);
const kt = tf.transpose(k,[0,2,1]);
bench('attn q·kt batched (pre)', () => tf.matMul(q, kt), 2*B*H*T*T*D);
bench('attn transpose+q·kt', () => tf.tidy(()=>tf.matMul(q, tf.transpose(k,[0,2,1]))), 2*B*H*T*T*D);
const p = tf.randomNormal([B*H,T,T]); const v = tf.randomNormal([B*H,T,D]);
bench('attn p·v', () => tf.matMul(p, v), 2*B*H*T*T*D);
const a2 = tf.randomNormal([2048,2048]); const b2 = tf.randomNormal([2048,2048]);
bench('2048^3', () => tf.matMul(a2, b2), 2*2048**3, 2);
