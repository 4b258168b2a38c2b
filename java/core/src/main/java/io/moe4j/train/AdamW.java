package io.moe4j.train;

import io.moe4j.nn.Parameter;
import io.moe4j.ops.AdamWConfig;
import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdamW over a model's {@link Parameter}s with the backend's fused kernel: F32 master weights and
 * moments, global gradient-norm clipping without a host round trip (the clip coefficient stays on
 * the device and scales the gradient inside the kernel), weight decay only where
 * {@link Parameter#weightDecay()} says so, and only the trainable range
 * [{@link Parameter#trainableFrom()}, numel) touched, so frozen old experts keep their values and
 * their moments.
 *
 * <p>A step whose gradient norm is NaN or infinite changes nothing (not even the step count that
 * drives bias correction) and reports itself as skipped; the caller zeroes the gradients.
 */
public final class AdamW implements AutoCloseable {

  /** The outcome of one {@link #step}: the global gradient norm before clipping, and whether it was applied. */
  public record StepResult(float gradNorm, boolean skipped) {}

  private final Backend backend;
  private final AdamWConfig config;
  private final AdamWConfig noDecay;
  private final float maxGradNorm;
  private List<Parameter> params;
  private List<Tensor> m;
  private List<Tensor> v;
  private long step;

  /**
   * @param maxGradNorm global L2 clipping threshold; {@code Float.POSITIVE_INFINITY} disables clipping
   */
  public AdamW(Backend backend, List<Parameter> params, AdamWConfig config, float maxGradNorm) {
    if (backend == null) throw new IllegalArgumentException("backend must not be null");
    if (config == null) throw new IllegalArgumentException("config must not be null");
    if (!(maxGradNorm > 0)) throw new IllegalArgumentException("maxGradNorm must be > 0, got " + maxGradNorm);
    this.backend = backend;
    this.config = config;
    this.noDecay = new AdamWConfig(config.lr(), config.beta1(), config.beta2(), config.eps(), 0f);
    this.maxGradNorm = maxGradNorm;
    this.params = checkedParams(params);
    this.m = new ArrayList<>();
    this.v = new ArrayList<>();
    for (Parameter p : this.params) {
      m.add(backend.zeros(DType.F32, p.numel()));
      v.add(backend.zeros(DType.F32, p.numel()));
    }
  }

  private static List<Parameter> checkedParams(List<Parameter> params) {
    if (params == null || params.isEmpty()) throw new IllegalArgumentException("params must hold at least one parameter");
    Map<String, Parameter> byName = new HashMap<>();
    for (Parameter p : params)
      if (byName.put(p.name(), p) != null) throw new IllegalArgumentException("params holds '" + p.name() + "' twice");
    return List.copyOf(params);
  }

  public AdamWConfig config() {
    return config;
  }

  public float maxGradNorm() {
    return maxGradNorm;
  }

  /** Steps applied so far (skipped steps excluded); the next step's bias correction uses step + 1. */
  public long stepCount() {
    return step;
  }

  /** Restores the applied-step count (resume). */
  public void setStepCount(long count) {
    if (count < 0) throw new IllegalArgumentException("step count must be >= 0, got " + count);
    step = count;
  }

  public List<Parameter> parameters() {
    return params;
  }

  /**
   * Clips and applies the accumulated gradients with learning rate {@code lr}. Reads one value back
   * to the host (the norm) to decide whether the step is finite.
   */
  public StepResult step(float lr) {
    if (!(lr >= 0) || !Float.isFinite(lr)) throw new IllegalArgumentException("lr must be finite and >= 0, got " + lr);
    List<Integer> trainable = new ArrayList<>();
    List<Tensor> grads = new ArrayList<>();
    for (int i = 0; i < params.size(); i++) {
      Parameter p = params.get(i);
      long from = p.trainableFrom();
      if (from == p.numel()) continue;
      trainable.add(i);
      grads.add(p.grad().view(from, p.numel() - from));
    }
    if (trainable.isEmpty()) throw new IllegalStateException("every parameter is frozen: nothing to train");
    try (Tensor normAndCoef = backend.gradNormAndClipCoefficient(grads, maxGradNorm)) {
      float norm = backend.toFloats(normAndCoef)[0];
      if (!Float.isFinite(norm)) return new StepResult(norm, true);
      step++;
      Tensor coefficient = normAndCoef.view(1, 1);
      AdamWConfig decay = withLr(config, lr);
      AdamWConfig plain = withLr(noDecay, lr);
      for (int i : trainable) {
        Parameter p = params.get(i);
        long from = p.trainableFrom();
        long n = p.numel() - from;
        Tensor copy = p.computeCopy() == null ? null : p.computeCopy().view(from, n); // mixed precision: BF16 refreshed
        backend.adamwStep(p.value().view(from, n), p.grad().view(from, n), m.get(i).view(from, n), v.get(i).view(from, n),
            copy, p.weightDecay() ? decay : plain, step, coefficient);
      }
      return new StepResult(norm, false);
    }
  }

  private static AdamWConfig withLr(AdamWConfig c, float lr) {
    return new AdamWConfig(lr, c.beta1(), c.beta2(), c.eps(), c.weightDecay());
  }

  /**
   * Takes over the parameters of a grown model (same names; stacked tensors longer in dimension 0):
   * old moments are copied into the prefix of the new, appended elements start at zero, new names
   * get zero moments. The old parameter objects are no longer referenced.
   */
  public void grow(List<Parameter> grown) {
    List<Parameter> next = checkedParams(grown);
    Map<String, Integer> oldIndex = new HashMap<>();
    for (int i = 0; i < params.size(); i++) oldIndex.put(params.get(i).name(), i);
    List<Tensor> nextM = new ArrayList<>();
    List<Tensor> nextV = new ArrayList<>();
    try {
      for (Parameter p : next) {
        Tensor newM = backend.zeros(DType.F32, p.numel());
        nextM.add(newM);
        Tensor newV = backend.zeros(DType.F32, p.numel());
        nextV.add(newV);
        Integer old = oldIndex.get(p.name());
        if (old == null) continue;
        long oldN = m.get(old).numel();
        if (oldN > p.numel())
          throw new IllegalArgumentException(p.name() + " shrank from " + oldN + " to " + p.numel() + " elements; grow only appends");
        backend.copy(m.get(old), newM.view(0, oldN));
        backend.copy(v.get(old), newV.view(0, oldN));
      }
    } catch (RuntimeException e) {
      nextM.forEach(Tensor::close);
      nextV.forEach(Tensor::close);
      throw e;
    }
    m.forEach(Tensor::close);
    v.forEach(Tensor::close);
    params = next;
    m = nextM;
    v = nextV;
  }

  /**
   * The moments by name ({@code <param>.exp_avg}, {@code <param>.exp_avg_sq}), flat F32. The tensors
   * belong to this optimizer: read or overwrite them, do not close them.
   */
  public Map<String, Tensor> stateTensors() {
    Map<String, Tensor> state = new LinkedHashMap<>();
    for (int i = 0; i < params.size(); i++) {
      state.put(params.get(i).name() + ".exp_avg", m.get(i));
      state.put(params.get(i).name() + ".exp_avg_sq", v.get(i));
    }
    return state;
  }

  /** Copies saved moments back (every key of {@link #stateTensors()} must be present with its size). */
  public void loadState(Map<String, float[]> saved) {
    Map<String, Tensor> state = stateTensors();
    for (Map.Entry<String, Tensor> e : state.entrySet()) {
      float[] values = saved.get(e.getKey());
      if (values == null) throw new IllegalArgumentException("optimizer state lacks '" + e.getKey() + "'");
      if (values.length != e.getValue().numel())
        throw new IllegalArgumentException("optimizer state '" + e.getKey() + "' must have " + e.getValue().numel()
            + " elements, got " + values.length);
    }
    for (Map.Entry<String, Tensor> e : state.entrySet()) backend.copyFromFloats(saved.get(e.getKey()), e.getValue());
  }

  @Override
  public void close() {
    m.forEach(Tensor::close);
    v.forEach(Tensor::close);
    m = List.of();
    v = List.of();
  }
}
