package io.moe4j.train.data;

import java.util.Arrays;

/**
 * The built-in synthetic tasks. A prompt is the task's prefix, its input and {@code '='}; the answer
 * follows. Inputs are short ({@link TaskSizes#DEFAULT}: numbers of 1 to 3 digits, strings of 3 to 8
 * letters from {@code 'a'..'j'}) so a tiny model learns them in minutes on a CPU, yet each task has far
 * more distinct prompts than a training run sees, so held-out accuracy measures the rule, not memory.
 */
public enum SyntheticTask {

  /**
   * {@code add:123+045=} → {@code 0168}: operands zero-padded to {@link TaskSizes#maxDigits()} digits, the
   * sum to one more. Fixed widths put every digit at a fixed position, so the digits to add and the
   * carries are found by position: with unpadded numbers the demo model stayed at 0–10% after
   * 2000–3000 steps, padded it reaches 98% in 3000 (docs/BENCHMARKS.md, "Training").
   */
  ADD("add:") {
    @Override
    String[] inputAndAnswer(SplitMix64 rng, TaskSizes sizes) {
      int a = randomNumber(rng, sizes.maxDigits());
      int b = randomNumber(rng, sizes.maxDigits());
      int digits = sizes.maxDigits();
      return new String[] {padded(a, digits) + "+" + padded(b, digits), padded(a + b, digits + 1)};
    }

    @Override
    int maxInputChars(TaskSizes sizes) {
      return 2 * sizes.maxDigits() + 1;
    }

    @Override
    public int maxAnswerChars(TaskSizes sizes) {
      return sizes.maxDigits() + 1;
    }
  },

  /** {@code copy:cafe=} → {@code cafe}. */
  COPY("copy:") {
    @Override
    String[] inputAndAnswer(SplitMix64 rng, TaskSizes sizes) {
      String s = randomLetters(rng, sizes);
      return new String[] {s, s};
    }
  },

  /** {@code rev:cafe=} → {@code efac}. */
  REVERSE("rev:") {
    @Override
    String[] inputAndAnswer(SplitMix64 rng, TaskSizes sizes) {
      String s = randomLetters(rng, sizes);
      return new String[] {s, new StringBuilder(s).reverse().toString()};
    }
  },

  /** {@code sort:cafe=} → {@code acef}. */
  SORT("sort:") {
    @Override
    String[] inputAndAnswer(SplitMix64 rng, TaskSizes sizes) {
      String s = randomLetters(rng, sizes);
      char[] sorted = s.toCharArray();
      Arrays.sort(sorted);
      return new String[] {s, new String(sorted)};
    }
  },

  /**
   * {@code rot:cafe=} → {@code dbgf}: every letter one step on in {@code 'a'..'j'}, {@code 'j'} wraps to
   * {@code 'a'}. Copy's attention with a new per-letter map: the kind of task new experts can learn
   * on top of a frozen model that already copies (lifelong MoE, {@code --add-experts --freeze-old}).
   */
  SHIFT("rot:") {
    @Override
    String[] inputAndAnswer(SplitMix64 rng, TaskSizes sizes) {
      String s = randomLetters(rng, sizes);
      char[] shifted = s.toCharArray();
      for (int i = 0; i < shifted.length; i++) {
        shifted[i] = shifted[i] == LAST_LETTER ? FIRST_LETTER : (char) (shifted[i] + 1);
      }
      return new String[] {s, new String(shifted)};
    }
  };

  static final char FIRST_LETTER = 'a';
  static final char LAST_LETTER = 'j';

  private final String prefix;

  SyntheticTask(String prefix) {
    this.prefix = prefix;
  }

  /** {@code {input, answer}} drawn from {@code rng}; the prompt is prefix + input + '='. */
  abstract String[] inputAndAnswer(SplitMix64 rng, TaskSizes sizes);

  /** Longest input; the letter tasks' inputs are their strings. */
  int maxInputChars(TaskSizes sizes) {
    return sizes.maxLetters();
  }

  /** Longest answer in characters (ASCII); the letter tasks answer with as many letters. */
  public int maxAnswerChars(TaskSizes sizes) {
    return sizes.maxLetters();
  }

  /** Longest answer at {@link TaskSizes#DEFAULT}. */
  public int maxAnswerChars() {
    return maxAnswerChars(TaskSizes.DEFAULT);
  }

  /** Longest prompt in characters (all ASCII, so also in bytes), prefix and '=' included. */
  public int maxPromptChars(TaskSizes sizes) {
    return prefix.length() + maxInputChars(sizes) + 1;
  }

  /** Longest prompt at {@link TaskSizes#DEFAULT}. */
  public int maxPromptChars() {
    return maxPromptChars(TaskSizes.DEFAULT);
  }

  /** Draws one prompt and its answer at the given sizes. */
  public PromptAndAnswer sample(SplitMix64 rng, TaskSizes sizes) {
    String[] drawn = inputAndAnswer(rng, sizes);
    return new PromptAndAnswer(prefix + drawn[0] + "=", drawn[1]);
  }

  /** Draws one prompt and its answer at {@link TaskSizes#DEFAULT}. */
  public PromptAndAnswer sample(SplitMix64 rng) {
    return sample(rng, TaskSizes.DEFAULT);
  }

  /** Text that marks this task at the start of every prompt, e.g. {@code "add:"}. */
  public String prefix() {
    return prefix;
  }

  /** Stable small id of the task (its position in this enum), e.g. for task × expert statistics. */
  public int id() {
    return ordinal();
  }

  /** The task whose {@link #id()} is {@code id}. */
  public static SyntheticTask ofId(int id) {
    SyntheticTask[] all = values();
    if (id < 0 || id >= all.length) {
      throw new IllegalArgumentException("task id must be in [0, " + all.length + "), got " + id);
    }
    return all[id];
  }

  /** A prompt text and its exact answer text. */
  public record PromptAndAnswer(String prompt, String answer) {}

  /** 1 to maxDigits digits with equal probability, then uniform among numbers with that many digits. */
  private static int randomNumber(SplitMix64 rng, int maxDigits) {
    int digits = rng.nextInt(1, maxDigits);
    if (digits == 1) {
      return rng.nextInt(10);
    }
    int low = 1;
    for (int i = 1; i < digits; i++) {
      low *= 10;
    }
    return rng.nextInt(low, 10 * low - 1);
  }

  /** {@code value} in decimal with leading zeros to {@code digits} digits. */
  private static String padded(int value, int digits) {
    String plain = Integer.toString(value);
    return "0".repeat(Math.max(0, digits - plain.length())) + plain;
  }

  private static String randomLetters(SplitMix64 rng, TaskSizes sizes) {
    int length = rng.nextInt(sizes.minLetters(), sizes.maxLetters());
    char[] letters = new char[length];
    for (int i = 0; i < length; i++) {
      letters[i] = (char) rng.nextInt(FIRST_LETTER, LAST_LETTER);
    }
    return new String(letters);
  }
}
