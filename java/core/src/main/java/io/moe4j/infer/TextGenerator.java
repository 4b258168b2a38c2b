package io.moe4j.infer;

import io.moe4j.nn.KvCache;
import io.moe4j.nn.MoeTransformer;
import io.moe4j.text.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Function;

/**
 * Generates continuations of a batch of prompts: one prefill over all prompts, then one decode step
 * per token for every unfinished sequence (finished ones keep decoding a filler token so the batch
 * stays rectangular; their output is ignored). Text is streamed to a listener as soon as it is
 * stable: a piece is emitted once no stop string could still begin inside it and it does not end in
 * an incomplete UTF-8 character.
 */
public final class TextGenerator {

  /** Receives text as it is produced: sequence index and the new piece. */
  public interface Listener {
    void onText(int sequence, String piece);
  }

  private final MoeTransformer model;
  private final Tokenizer tokenizer;
  private final Function<String, int[]> promptEncoder;
  private GenerationStats lastStats;

  /** promptEncoder turns a prompt into ids including the specials the model expects (e.g. bos). */
  public TextGenerator(MoeTransformer model, Tokenizer tokenizer, Function<String, int[]> promptEncoder) {
    this.model = model;
    this.tokenizer = tokenizer;
    this.promptEncoder = promptEncoder;
  }

  /** bos (when the tokenizer has one) followed by the encoded text. */
  public static Function<String, int[]> bosThenText(Tokenizer tokenizer) {
    return text -> {
      int[] ids = tokenizer.encode(text);
      if (tokenizer.bosId() < 0) return ids;
      int[] withBos = new int[ids.length + 1];
      withBos[0] = tokenizer.bosId();
      System.arraycopy(ids, 0, withBos, 1, ids.length);
      return withBos;
    };
  }

  public GenerationStats lastStats() {
    return lastStats;
  }

  public List<Completion> generate(List<String> prompts, GenerationOptions options, Listener listener) {
    int[][] ids = new int[prompts.size()][];
    for (int b = 0; b < ids.length; b++) ids[b] = promptEncoder.apply(prompts.get(b));
    return generateIds(ids, options, listener);
  }

  public List<Completion> generateIds(int[][] prompts, GenerationOptions options, Listener listener) {
    int batch = prompts.length;
    if (batch == 0) throw new IllegalArgumentException("at least one prompt is needed");
    int vocab = model.config().vocabSize();
    int longest = 0;
    long promptTokens = 0;
    for (int[] p : prompts) {
      longest = Math.max(longest, p.length);
      promptTokens += p.length;
    }
    int capacity = longest + options.maxNewTokens();
    Sampler sampler = new Sampler(options.sampling(), batch);
    int[][] history = new int[batch][];
    int[] historyLength = new int[batch];
    List<List<Integer>> generated = new ArrayList<>();
    String[] finish = new String[batch];
    int[] emittedChars = new int[batch];
    String[] finalText = new String[batch];
    for (int b = 0; b < batch; b++) {
      history[b] = Arrays.copyOf(prompts[b], prompts[b].length + options.maxNewTokens());
      historyLength[b] = prompts[b].length;
      generated.add(new ArrayList<>());
    }
    long generatedTokens = 0;
    long start = System.nanoTime();
    double prefillSeconds = 0;
    try (KvCache cache = model.newKvCache(batch, Math.max(1, capacity))) {
      float[] logits = options.maxNewTokens() > 0 ? model.prefill(prompts, cache) : null;
      prefillSeconds = (System.nanoTime() - start) / 1e9;
      long decodeStart = System.nanoTime();
      for (int step = 0; step < options.maxNewTokens(); step++) {
        int[] next = new int[batch];
        boolean anyActive = false;
        for (int b = 0; b < batch; b++) {
          if (finish[b] != null) {
            next[b] = history[b][historyLength[b] - 1];
            continue;
          }
          int token = sampler.next(b, logits, b * vocab, vocab, history[b], historyLength[b]);
          next[b] = token;
          if (options.eosIds().contains(token)) {
            finish[b] = "eos";
            continue;
          }
          generatedTokens++;
          history[b][historyLength[b]++] = token;
          generated.get(b).add(token);
          String text = tokenizer.decode(toArray(generated.get(b)));
          int stopAt = firstStop(text, options.stopStrings());
          if (stopAt >= 0) {
            finish[b] = "stop";
            text = text.substring(0, stopAt);
          } else if (generated.get(b).size() == options.maxNewTokens()) {
            finish[b] = "length";
          }
          finalText[b] = text;
          int stable = finish[b] != null ? text.length() : stablePrefix(text, options.stopStrings());
          if (listener != null && stable > emittedChars[b]) listener.onText(b, text.substring(emittedChars[b], stable));
          emittedChars[b] = Math.max(emittedChars[b], stable);
          if (finish[b] == null) anyActive = true;
        }
        if (!anyActive || step == options.maxNewTokens() - 1) break;
        logits = model.decode(next, cache);
      }
      double decodeSeconds = (System.nanoTime() - decodeStart) / 1e9;
      lastStats = new GenerationStats(promptTokens, prefillSeconds, generatedTokens, decodeSeconds, batch);
    }
    List<Completion> out = new ArrayList<>();
    for (int b = 0; b < batch; b++) {
      String text = finalText[b] == null ? "" : finalText[b];
      if (listener != null && text.length() > emittedChars[b]) listener.onText(b, text.substring(emittedChars[b]));
      out.add(new Completion(text, toArray(generated.get(b)), finish[b] == null ? "length" : finish[b]));
    }
    return out;
  }

  private static int[] toArray(List<Integer> list) {
    int[] a = new int[list.size()];
    for (int i = 0; i < a.length; i++) a[i] = list.get(i);
    return a;
  }

  private static int firstStop(String text, List<String> stops) {
    int first = -1;
    for (String s : stops) {
      int i = text.indexOf(s);
      if (i >= 0 && (first < 0 || i < first)) first = i;
    }
    return first;
  }

  /**
   * Length of the prefix that can be shown: no trailing replacement character (an incomplete UTF-8
   * sequence may still complete) and no suffix that could be the start of a stop string.
   */
  private static int stablePrefix(String text, List<String> stops) {
    int end = text.length();
    while (end > 0 && text.charAt(end - 1) == '\uFFFD') end--;
    for (String s : stops)
      for (int len = Math.min(s.length() - 1, end); len > 0; len--)
        if (text.startsWith(s.substring(0, len), end - len)) {
          end -= len;
          break;
        }
    return Math.max(0, end);
  }
}
