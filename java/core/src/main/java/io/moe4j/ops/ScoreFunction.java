package io.moe4j.ops;

/** How router logits become scores: softmax over the experts (Mixtral, Qwen3-MoE, OLMoE) or sigmoid. */
public enum ScoreFunction {
  SOFTMAX(0),
  SIGMOID(1);

  private final int code;

  ScoreFunction(int code) {
    this.code = code;
  }

  /** The score_fn code of the C ABI. */
  public int code() {
    return code;
  }
}
