package io.moe4j.ops;

/** AdamW hyper-parameters (PyTorch defaults via {@link #defaults(float)}). */
public record AdamWConfig(float lr, float beta1, float beta2, float eps, float weightDecay) {

  public AdamWConfig {
    if (!(lr >= 0) || !Float.isFinite(lr)) throw new IllegalArgumentException("lr must be finite and >= 0, got " + lr);
    if (!(beta1 >= 0 && beta1 < 1)) throw new IllegalArgumentException("beta1 must be in [0, 1), got " + beta1);
    if (!(beta2 >= 0 && beta2 < 1)) throw new IllegalArgumentException("beta2 must be in [0, 1), got " + beta2);
    if (!(eps > 0) || !Float.isFinite(eps)) throw new IllegalArgumentException("eps must be finite and > 0, got " + eps);
    if (!(weightDecay >= 0) || !Float.isFinite(weightDecay))
      throw new IllegalArgumentException("weightDecay must be finite and >= 0, got " + weightDecay);
  }

  public static AdamWConfig defaults(float lr) {
    return new AdamWConfig(lr, 0.9f, 0.999f, 1e-8f, 0.01f);
  }
}
