import type { Backend, Tensor } from '../backend/backend.js';
import type { HostTensor } from '../tensor/host-tensor.js';

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * A named weight in its stored form (any dtype) with per-backend f32 copies made on first use. Replacing
 * the value drops the device copies. Device copies are owned here, not by any Ops scope.
 */
export class Parameter {
  private device = new Map<Backend, Tensor>();
  /** The stored array was handed over by `update(v, true)` and `value` has not been read since. */
  private exclusive = false;

  constructor(
    private stored: HostTensor,
    public trainable = true,
  ) {}

  /** The stored tensor. Reading it lets the tensor escape: it is never written in place afterwards. */
  get value(): HostTensor {
    this.exclusive = false;
    return this.stored;
  }

  set value(v: HostTensor) {
    this.stored = v;
    this.exclusive = false;
    this.release();
  }

  get shape() {
    return this.stored.shape;
  }

  /** Number of values (without reading `value`). */
  get size(): number {
    return this.stored.size;
  }

  /**
   * The stored f32 array when the last `update` handed it over exclusively and nobody has read `value`
   * since (so no clone, state dict or snapshot shares it): an optimiser may write the next values into it
   * instead of a fresh array each step (a fresh allocation of every weight per step costs page faults).
   */
  mutableValues(): Float32Array | undefined {
    return this.exclusive ? (this.stored.data as Float32Array) : undefined;
  }

  /**
   * Replaces the value by new f32 values of the same shape (an optimiser's update): device copies are
   * overwritten in place where their backend can (`Backend.overwrite`), dropped otherwise. `exclusive`:
   * the caller keeps no other reference to v's array (see `mutableValues`).
   */
  update(v: HostTensor, exclusive = false): void {
    if (v.dtype !== 'f32' || !sameShape(v.shape, this.stored.shape)) {
      this.value = v;
      return;
    }
    this.stored = v;
    this.exclusive = exclusive;
    const data = v.data as Float32Array;
    for (const [b, t] of this.device) {
      if (b.overwrite?.(t, data)) continue;
      b.dispose(t);
      this.device.delete(b);
    }
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
