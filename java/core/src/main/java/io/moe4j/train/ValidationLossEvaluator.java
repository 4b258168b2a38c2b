package io.moe4j.train;

import io.moe4j.nn.ForwardResult;
import io.moe4j.nn.MoeTransformer;
import io.moe4j.train.data.Batch;
import java.util.List;
import java.util.Map;

/** Mean cross-entropy per target token over fixed validation batches (text data). */
public final class ValidationLossEvaluator implements Evaluator {

  private final List<Batch> batches;

  public ValidationLossEvaluator(List<Batch> batches) {
    if (batches == null || batches.isEmpty()) throw new IllegalArgumentException("validation batches must not be empty");
    this.batches = List.copyOf(batches);
  }

  @Override
  public EvalResult evaluate(MoeTransformer model, long step) {
    double weighted = 0;
    long targets = 0;
    for (Batch b : batches) {
      ForwardResult r = model.forward(b.tokens(), b.targets(), b.batchSize(), b.seqLen());
      model.discardActivations();
      weighted += (double) r.loss() * r.targetTokens();
      targets += r.targetTokens();
    }
    return new EvalResult(step, "val_loss", targets == 0 ? Double.NaN : weighted / targets, Map.of());
  }
}
