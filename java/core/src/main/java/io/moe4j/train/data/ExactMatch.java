package io.moe4j.train.data;

import io.moe4j.text.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * Exact-match accuracy of a greedy generator on synthetic examples: an answer counts only if its
 * decoded text equals the expected answer exactly. The generator gets the task's longest answer plus
 * one token (for eos) to produce it, so it cannot be told the answer's length.
 */
public final class ExactMatch {

  /** Greedy continuation of a prompt, as the model under test produces it. */
  @FunctionalInterface
  public interface Generator {
    /**
     * @return the generated tokens without the prompt, stopping at eos and excluding it (anything from an eos on is ignored), at most
     *     {@code maxNewTokens}
     */
    int[] greedy(int[] promptTokens, int maxNewTokens, int eosId);
  }

  /** One example with what the generator answered. */
  public record Prediction(Example example, String output, boolean correct) {}

  private final Tokenizer tokenizer;
  private final TaskSizes sizes;

  /** For examples at {@link TaskSizes#DEFAULT}. */
  public ExactMatch(Tokenizer tokenizer) {
    this(tokenizer, TaskSizes.DEFAULT);
  }

  /** For examples drawn at {@code sizes} (they bound the generation budget). */
  public ExactMatch(Tokenizer tokenizer, TaskSizes sizes) {
    if (tokenizer == null || sizes == null) {
      throw new IllegalArgumentException("tokenizer and sizes must not be null");
    }
    this.tokenizer = tokenizer;
    this.sizes = sizes;
  }

  /** Accuracy in [0, 1] per task that occurs in {@code examples}. */
  public Map<SyntheticTask, Double> evaluate(List<Example> examples, Generator generator) {
    return accuracy(predict(examples, generator));
  }

  /** Runs the generator on every example, in order (e.g. to print a few answers). */
  public List<Prediction> predict(List<Example> examples, Generator generator) {
    if (examples == null || generator == null) {
      throw new IllegalArgumentException("examples and generator must not be null");
    }
    List<Prediction> predictions = new ArrayList<>(examples.size());
    for (Example example : examples) {
      int maxNewTokens = example.task().maxAnswerChars(sizes) + 1;
      int[] generated = generator.greedy(example.promptTokens(), maxNewTokens, tokenizer.eosId());
      if (generated == null) {
        throw new IllegalStateException("generator returned null for " + example);
      }
      int[] answer = untilEos(generated);
      if (answer.length > maxNewTokens) {
        throw new IllegalStateException("generator must return at most " + maxNewTokens
            + " tokens before eos for " + example + ", got " + answer.length);
      }
      String output = tokenizer.decode(answer);
      predictions.add(new Prediction(example, output, output.equals(example.answer())));
    }
    return predictions;
  }

  /** Fraction correct per task, in enum order. */
  public static Map<SyntheticTask, Double> accuracy(List<Prediction> predictions) {
    Map<SyntheticTask, int[]> counts = new EnumMap<>(SyntheticTask.class);
    for (Prediction p : predictions) {
      int[] correctAndTotal = counts.computeIfAbsent(p.example().task(), t -> new int[2]);
      correctAndTotal[0] += p.correct() ? 1 : 0;
      correctAndTotal[1]++;
    }
    Map<SyntheticTask, Double> accuracy = new EnumMap<>(SyntheticTask.class);
    counts.forEach((task, c) -> accuracy.put(task, (double) c[0] / c[1]));
    return accuracy;
  }

  /** Fraction correct over all predictions (NaN for none). */
  public static double overall(List<Prediction> predictions) {
    long correct = predictions.stream().filter(Prediction::correct).count();
    return (double) correct / predictions.size();
  }

  // Generators that return a fixed-length buffer or forget to strip eos are scored on the text
  // before eos only.
  private int[] untilEos(int[] generated) {
    for (int i = 0; i < generated.length; i++) {
      if (generated[i] == tokenizer.eosId()) {
        return Arrays.copyOf(generated, i);
      }
    }
    return generated;
  }
}
