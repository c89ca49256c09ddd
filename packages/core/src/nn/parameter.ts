import type { Backend, Tensor } from '../backend/backend.js';
import type { HostTensor } from '../tensor/host-tensor.js';

/**
 * A named weight in its stored form (any dtype) with per-backend f32 copies made on first use. Replacing
 * the value drops the device copies. Device copies are owned here, not by any Ops scope.
 */
export class Parameter {
  private device = new Map<Backend, Tensor>();

  constructor(
    private stored: HostTensor,
    public trainable = true,
  ) {}

  get value(): HostTensor {
    return this.stored;
  }

  set value(v: HostTensor) {
    this.stored = v;
    this.release();
  }

  get shape() {
    return this.stored.shape;
  }

  /** The f32 tensor on `backend`, uploading (and decoding f16/bf16/packed) on first use. */
  tensor(backend: Backend): Tensor {
    let t = this.device.get(backend);
    if (!t) {
      const host = this.stored.toF32();
      // toF32 returns the storage itself for f32: copy, since backends take ownership of uploads.
      t = backend.upload(host === this.stored.data ? host.slice() : host, this.stored.shape);
      this.device.set(backend, t);
    }
    return t;
  }

  /** Frees device copies (e.g. after a layer is replaced or the backend is closed). */
  release(): void {
    for (const [b, t] of this.device) b.dispose(t);
    this.device.clear();
  }
}
