import { createHash } from 'node:crypto';
import type { LlamaModel } from './llama.js';

/**
 * A content hash of a model: its config and every stored tensor (name, dtype, shape, bytes). Statistics files
 * and training checkpoints record it so that they are never applied to a different model.
 */
export function modelFingerprint(model: LlamaModel): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(model.config));
  for (const [name, t] of model.stateDict()) {
    h.update(`\0${name}\0${t.dtype}\0${t.shape.join(',')}\0`);
    h.update(t.bytes());
  }
  return `sha256:${h.digest('hex')}`;
}
