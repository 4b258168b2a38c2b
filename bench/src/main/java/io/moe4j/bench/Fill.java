package io.moe4j.bench;

import io.moe4j.ops.Backend;
import io.moe4j.tensor.Tensor;
import java.util.SplittableRandom;

/** Setup helpers: fill large tensors chunk by chunk (no huge Java arrays). */
final class Fill {

  private static final int CHUNK = 1 << 20;

  private Fill() {}

  /** Uniform values in [-scale, scale) (any float dtype), written through 1-D views. */
  static void uniform(Backend backend, Tensor t, long seed, float scale) {
    SplittableRandom random = new SplittableRandom(seed);
    long n = t.numel();
    float[] chunk = new float[(int) Math.min(CHUNK, n)];
    for (long off = 0; off < n; off += chunk.length) {
      int len = (int) Math.min(chunk.length, n - off);
      float[] values = len == chunk.length ? chunk : new float[len];
      for (int i = 0; i < len; i++) values[i] = (float) ((random.nextDouble() * 2 - 1) * scale);
      Tensor view = t.view(off, len);
      backend.copyFromFloats(values, view);
      view.close();
    }
  }

  /** Values in [lo, hi) (any float dtype). */
  static void range(Backend backend, Tensor t, long seed, float lo, float hi) {
    SplittableRandom random = new SplittableRandom(seed);
    long n = t.numel();
    float[] chunk = new float[(int) Math.min(CHUNK, n)];
    for (long off = 0; off < n; off += chunk.length) {
      int len = (int) Math.min(chunk.length, n - off);
      float[] values = len == chunk.length ? chunk : new float[len];
      for (int i = 0; i < len; i++) values[i] = (float) (lo + random.nextDouble() * (hi - lo));
      Tensor view = t.view(off, len);
      backend.copyFromFloats(values, view);
      view.close();
    }
  }

  /** Closes tensors (nulls skipped), then the backend. */
  static void closeAll(Backend backend, Tensor... tensors) {
    for (Tensor t : tensors) if (t != null) t.close();
    if (backend != null) backend.close();
  }
}
