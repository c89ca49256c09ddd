import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
const flags = process.argv.slice(2);
const gpu = create(flags);
for (const opts of [{}, {featureLevel:'compatibility'}]) {
try {
  const a = await gpu.requestAdapter(opts);
  console.log(JSON.stringify(opts), 'adapter', a && JSON.stringify({v:a.info?.vendor, arch:a.info?.architecture, d:a.info?.description, fl: a.featureLevel, limits: a.limits.maxStorageBuffersPerShaderStage, maxbuf: a.limits.maxStorageBufferBindingSize, f:[...a.features]}));
} catch (e) { console.log('err', e.message); }
}
process.exit(0);
