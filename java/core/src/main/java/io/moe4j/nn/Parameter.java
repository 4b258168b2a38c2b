package io.moe4j.nn;

import io.moe4j.tensor.Tensor;

/**
 * A trainable tensor of a module: its F32 master value and F32 gradient on the model's backend,
 * named as in the Hugging Face checkpoint. Stacked expert weights ([E, ...], one slice per expert)
 * carry the placeholder {@code {j}} in their name, which checkpoint writers expand to the expert
 * index (e.g. {@code model.layers.0.block_sparse_moe.experts.{j}.w1.weight}).
 *
 * <p>{@link #trainableFrom()} supports growing a model: when old experts (or router rows) are
 * frozen, only elements from that offset to the end are updated by the optimizer (new experts and
 * router rows are appended at the end of dimension 0, so they form one contiguous range).
 */
public final class Parameter implements AutoCloseable {

  /** Placeholder for the expert index in the names of stacked expert weights. */
  public static final String EXPERT_INDEX = "{j}";

  private final String name;
  private final Tensor value;
  private final Tensor grad;
  private final boolean weightDecay;
  private long trainableFrom;
  private Tensor computeCopy; // BF16 copy the GEMMs read in mixed precision, else null

  /**
   * Takes ownership of {@code value} and {@code grad} (same shape, F32). {@code grad} null makes an
   * inference-only parameter (e.g. BF16 weights loaded from a checkpoint).
   */
  public Parameter(String name, Tensor value, Tensor grad, boolean weightDecay) {
    if (name == null || name.isEmpty()) throw new IllegalArgumentException("name must not be empty");
    if (grad != null && value.numel() != grad.numel())
      throw new IllegalArgumentException(name + ": grad must have the value's " + value.numel() + " elements, got " + grad.numel());
    this.name = name;
    this.value = value;
    this.grad = grad;
    this.weightDecay = weightDecay;
  }

  public String name() {
    return name;
  }

  public Tensor value() {
    return value;
  }

  /** The gradient; an error for an inference-only parameter. */
  public Tensor grad() {
    if (grad == null) throw new IllegalStateException(name + " is inference-only (loaded without a gradient)");
    return grad;
  }

  public boolean hasGrad() {
    return grad != null;
  }

  /** What the forward and backward GEMMs read: the BF16 compute copy when there is one, else the value. */
  public Tensor computeValue() {
    return computeCopy != null ? computeCopy : value;
  }

  /** The BF16 compute copy (mixed precision), or null. */
  public Tensor computeCopy() {
    return computeCopy;
  }

  /** Takes ownership of a compute copy (null: none); the optimizer refreshes it after each update. */
  public void setComputeCopy(Tensor copy) {
    if (copy != null && copy.numel() != value.numel())
      throw new IllegalArgumentException(name + ": compute copy must have " + value.numel() + " elements, got " + copy.numel());
    if (computeCopy != null) computeCopy.close();
    computeCopy = copy;
  }

  /** Whether AdamW applies weight decay (not to norms, biases or embeddings by default). */
  public boolean weightDecay() {
    return weightDecay;
  }

  /** True when the name holds {@link #EXPERT_INDEX}: dimension 0 indexes experts. */
  public boolean stackedExperts() {
    return name.contains(EXPERT_INDEX);
  }

  /** First element the optimizer updates: 0 = all, numel = frozen. */
  public long trainableFrom() {
    return trainableFrom;
  }

  public void setTrainableFrom(long element) {
    if (element < 0 || element > value.numel())
      throw new IllegalArgumentException(name + ": trainableFrom must be in [0, " + value.numel() + "], got " + element);
    trainableFrom = element;
  }

  public long numel() {
    return value.numel();
  }

  @Override
  public void close() {
    value.close();
    if (grad != null) grad.close();
    if (computeCopy != null) computeCopy.close();
  }

  @Override
  public String toString() {
    return "Parameter(" + name + ", " + value + ")";
  }
}
