package io.moe4j.nn;

import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Tensor;
import java.nio.charset.StandardCharsets;
import java.util.Random;

/**
 * Fresh parameters for training: matrices N(0, std²), norm scales 1, F32 value and gradient. Each
 * tensor's random stream depends on (seed, name) only, so a model's initial values do not depend on
 * the order its modules are built in.
 */
public final class RandomInit implements ParameterSource {

  private final io.moe4j.ops.Backend backend;
  private final long seed;
  private final float std;

  public RandomInit(io.moe4j.ops.Backend backend, long seed, float std) {
    this.backend = backend;
    this.seed = seed;
    this.std = std;
  }

  @Override
  public Parameter create(String name, Kind kind, long... shape) {
    return switch (kind) {
      case MATRIX -> normal(backend, name, seed, std, true, shape);
      case EMBEDDING -> normal(backend, name, seed, std, false, shape);
      case NORM -> ones(backend, name, numel(shape));
    };
  }

  /** Stream for one tensor: the same (seed, name) always draws the same values. */
  private static Random random(long seed, String name) {
    long h = 1125899906842597L;
    for (byte b : name.getBytes(StandardCharsets.UTF_8)) h = 31 * h + b;
    return new Random(seed * 0x9E3779B97F4A7C15L ^ h);
  }

  private static float[] normal(Random random, long n, float std) {
    float[] values = new float[Math.toIntExact(n)];
    for (int i = 0; i < values.length; i++) values[i] = (float) (random.nextGaussian() * std);
    return values;
  }

  private static Parameter normal(Backend backend, String name, long seed, float std, boolean weightDecay,
      long... shape) {
    float[] values = normal(random(seed, name), numel(shape), std);
    return new Parameter(name, backend.fromFloats(values, DType.F32, shape), backend.zeros(DType.F32, shape),
        weightDecay);
  }

  private static Parameter ones(Backend backend, String name, long dim) {
    float[] values = new float[Math.toIntExact(dim)];
    java.util.Arrays.fill(values, 1f);
    return new Parameter(name, backend.fromFloats(values, DType.F32, dim), backend.zeros(DType.F32, dim), false);
  }

  /**
   * A copy of {@code old} grown along dimension 0 to {@code rows} rows: the old rows first (bitwise),
   * the new ones drawn from N(0, std²) with a stream of (seed, name).
   */
  static Parameter grow(Backend backend, Parameter old, long rows, long seed, float std) {
    long[] shape = old.value().shape();
    long rowSize = old.numel() / shape[0];
    long[] grown = shape.clone();
    grown[0] = rows;
    Tensor value = backend.empty(DType.F32, grown);
    backend.copy(old.value(), value.view(0, old.numel()));
    long added = (rows - shape[0]) * rowSize;
    backend.copyFromFloats(normal(random(seed, old.name() + "#grown"), added, std), value.view(old.numel(), added));
    return new Parameter(old.name(), value, backend.zeros(DType.F32, grown), old.weightDecay());
  }

  private static long numel(long... shape) {
    long n = 1;
    for (long d : shape) n = Math.multiplyExact(n, d);
    return n;
  }
}
