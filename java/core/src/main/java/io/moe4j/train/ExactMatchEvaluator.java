package io.moe4j.train;

import io.moe4j.nn.MoeTransformer;
import io.moe4j.text.Tokenizer;
import io.moe4j.train.data.Example;
import io.moe4j.train.data.ExactMatch;
import io.moe4j.train.data.SyntheticTask;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Exact match on held-out synthetic prompts: all prompts are decoded in batches by
 * {@link GreedyDecoder}, then scored by {@link ExactMatch} (which sees each answer through its
 * per-prompt generator interface, served from the batched results).
 */
public final class ExactMatchEvaluator implements Evaluator {

  private static final int ROWS_PER_FORWARD = 128;

  private final Tokenizer tokenizer;
  private final List<Example> examples;
  private List<ExactMatch.Prediction> lastPredictions = List.of();

  public ExactMatchEvaluator(Tokenizer tokenizer, List<Example> examples) {
    if (tokenizer == null) throw new IllegalArgumentException("tokenizer must not be null");
    if (examples == null || examples.isEmpty()) throw new IllegalArgumentException("examples must not be empty");
    this.tokenizer = tokenizer;
    this.examples = List.copyOf(examples);
  }

  public List<Example> examples() {
    return examples;
  }

  /** The predictions of the most recent {@link #evaluate} (empty before the first). */
  public List<ExactMatch.Prediction> lastPredictions() {
    return lastPredictions;
  }

  /** Every example with the model's answer. */
  public List<ExactMatch.Prediction> predict(MoeTransformer model) {
    List<int[]> prompts = new ArrayList<>(examples.size());
    int[] maxNew = new int[examples.size()];
    for (int i = 0; i < examples.size(); i++) {
      prompts.add(examples.get(i).promptTokens());
      maxNew[i] = examples.get(i).task().maxAnswerChars() + 1;
    }
    List<int[]> outputs = new GreedyDecoder(model, tokenizer.padId(), ROWS_PER_FORWARD).generate(prompts, maxNew, tokenizer.eosId());
    int[] next = {0};
    // ExactMatch asks in example order; hand out the batched answers in the same order.
    ExactMatch.Generator precomputed = (prompt, maxNewTokens, eos) -> outputs.get(next[0]++);
    return new ExactMatch(tokenizer).predict(examples, precomputed);
  }

  @Override
  public EvalResult evaluate(MoeTransformer model, long step) {
    List<ExactMatch.Prediction> predictions = predict(model);
    lastPredictions = predictions;
    Map<String, Double> perTask = new LinkedHashMap<>();
    for (Map.Entry<SyntheticTask, Double> e : ExactMatch.accuracy(predictions).entrySet())
      perTask.put(e.getKey().name(), e.getValue());
    return new EvalResult(step, "exact_match", ExactMatch.overall(predictions), perTask);
  }
}
