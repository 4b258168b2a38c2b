package io.moe4j.train.data;

import io.moe4j.text.Tokenizer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.StringJoiner;

/**
 * The built-in synthetic multi-task dataset: an endless, seeded stream of examples from a chosen set
 * of {@link SyntheticTask}s, one example per batch row ({@code bos prompt answer eos}, then padding),
 * with the loss on the answer and eos only.
 *
 * <p>Held-out split: a prompt is an evaluation prompt iff {@link #isHeldOut(String)}, a fixed hash of
 * its text (the same for every seed and every task subset), so a model trained with any seed is
 * evaluated on prompts it never saw. Training draws redraw such prompts.
 *
 * <p>The only state is one {@link SplitMix64}: {@link #position()} and {@link #restore(long)} resume
 * the stream exactly. Not thread-safe.
 */
public final class SyntheticTasks implements BatchSource {

  private static final int HELD_OUT_MODULUS = 10;
  private static final long FNV_OFFSET = 0xCBF29CE484222325L;
  private static final long FNV_PRIME = 0x100000001B3L;

  private final Tokenizer tokenizer;
  private final List<SyntheticTask> tasks;
  private final TaskSizes sizes;
  private final int seqLen;
  private final SplitMix64 rng;

  /** The tasks at {@link TaskSizes#DEFAULT}. */
  public SyntheticTasks(Tokenizer tokenizer, Set<SyntheticTask> tasks, int seqLen, long seed) {
    this(tokenizer, tasks, TaskSizes.DEFAULT, seqLen, seed);
  }

  /**
   * @param tasks  the tasks to draw from, each with equal probability
   * @param sizes  how long inputs may be
   * @param seqLen row length; must hold the longest example of every chosen task minus one token
   *               (inputs are the example without its last token, targets without its first)
   * @param seed   initial state of the data stream
   */
  public SyntheticTasks(Tokenizer tokenizer, Set<SyntheticTask> tasks, TaskSizes sizes, int seqLen, long seed) {
    if (tokenizer == null || sizes == null) {
      throw new IllegalArgumentException("tokenizer and sizes must not be null");
    }
    if (tasks == null || tasks.isEmpty()) {
      throw new IllegalArgumentException("tasks must name at least one SyntheticTask, got " + tasks);
    }
    this.tokenizer = tokenizer;
    // Enum order, not the caller's set order, so the same task set always gives the same stream.
    this.tasks = List.copyOf(EnumSet.copyOf(tasks));
    this.sizes = sizes;
    int needed = requiredSeqLen(this.tasks, sizes);
    if (seqLen < needed) {
      StringJoiner each = new StringJoiner(", ");
      for (SyntheticTask task : this.tasks) {
        each.add(task + " needs " + requiredSeqLen(List.of(task), sizes));
      }
      throw new IllegalArgumentException("seqLen must be >= " + needed + " for tasks " + this.tasks
          + " (" + each + "), got " + seqLen);
    }
    this.seqLen = seqLen;
    this.rng = new SplitMix64(seed);
  }

  /** {@link #requiredSeqLen(Iterable, TaskSizes)} at {@link TaskSizes#DEFAULT}. */
  public static int requiredSeqLen(Iterable<SyntheticTask> tasks) {
    return requiredSeqLen(tasks, TaskSizes.DEFAULT);
  }

  /**
   * Smallest seqLen that holds every example of {@code tasks}: bos + longest prompt + longest answer
   * + eos, less the one token that is only a target. Prompts and answers are ASCII, so a byte-level
   * tokenizer gives one token per character; a tokenizer that gives more is reported per example.
   */
  public static int requiredSeqLen(Iterable<SyntheticTask> tasks, TaskSizes sizes) {
    int needed = 0;
    for (SyntheticTask task : tasks) {
      // bos + prompt + answer + eos tokens, less one: the last token is only ever a target.
      needed = Math.max(needed, 1 + task.maxPromptChars(sizes) + task.maxAnswerChars(sizes));
    }
    return needed;
  }

  /** True iff {@code prompt} belongs to the evaluation set (FNV-1a of its UTF-8 bytes, mixed, mod 10 == 0). */
  public static boolean isHeldOut(String prompt) {
    long hash = FNV_OFFSET;
    for (byte b : prompt.getBytes(StandardCharsets.UTF_8)) {
      hash = (hash ^ (b & 0xFF)) * FNV_PRIME;
    }
    return Long.remainderUnsigned(SplitMix64.mix(hash), HELD_OUT_MODULUS) == 0;
  }

  public List<SyntheticTask> tasks() {
    return tasks;
  }

  public TaskSizes sizes() {
    return sizes;
  }

  @Override
  public int seqLen() {
    return seqLen;
  }

  /** The next training example (never a held-out prompt). */
  public Example nextExample() {
    SyntheticTask task = tasks.get(rng.nextInt(tasks.size()));
    while (true) {
      SyntheticTask.PromptAndAnswer drawn = task.sample(rng, sizes);
      if (!isHeldOut(drawn.prompt())) {
        return example(task, drawn);
      }
    }
  }

  /** {@code batchSize} training examples, one per row, padded with pad ids to seqLen. */
  @Override
  public Batch nextBatch(int batchSize) {
    if (batchSize <= 0) {
      throw new IllegalArgumentException("batchSize must be > 0, got " + batchSize);
    }
    int[] tokens = new int[batchSize * seqLen];
    int[] targets = new int[batchSize * seqLen];
    int[] taskIds = new int[batchSize];
    for (int row = 0; row < batchSize; row++) {
      Example example = nextExample();
      taskIds[row] = example.task().id();
      fillRow(example, tokens, targets, row * seqLen);
    }
    return new Batch(tokens, targets, taskIds, batchSize, seqLen);
  }

  private void fillRow(Example example, int[] tokens, int[] targets, int offset) {
    int[] prompt = example.promptTokens();
    int[] answer = tokenizer.encode(example.answer());
    int length = prompt.length + answer.length + 1;
    if (length - 1 > seqLen) {
      // Only a tokenizer that makes more tokens than bytes of ASCII text can get here.
      throw new IllegalStateException("example " + example + " needs " + (length - 1)
          + " positions with this tokenizer, seqLen is " + seqLen);
    }
    int[] full = new int[length];
    System.arraycopy(prompt, 0, full, 0, prompt.length);
    System.arraycopy(answer, 0, full, prompt.length, answer.length);
    full[length - 1] = tokenizer.eosId();
    for (int i = 0; i < seqLen; i++) {
      boolean inside = i < length - 1;
      tokens[offset + i] = inside ? full[i] : tokenizer.padId();
      // Position i predicts full[i + 1]; only answer tokens and eos are learned.
      targets[offset + i] = inside && i + 1 >= prompt.length ? full[i + 1] : Batch.IGNORE_INDEX;
    }
  }

  /**
   * {@code perTask} distinct evaluation examples for each of this dataset's tasks, drawn with their
   * own generator from {@code seed} (the training stream is not touched), grouped by task in enum
   * order.
   */
  public List<Example> heldOut(int perTask, long seed) {
    if (perTask <= 0) {
      throw new IllegalArgumentException("perTask must be > 0, got " + perTask);
    }
    List<Example> examples = new ArrayList<>(perTask * tasks.size());
    for (SyntheticTask task : tasks) {
      SplitMix64 taskRng = new SplitMix64(SplitMix64.mix(seed) ^ SplitMix64.mix(task.id() + 1L));
      Set<String> seen = new LinkedHashSet<>();
      // About one draw in ten is held out; tiny TaskSizes may have fewer than perTask such prompts.
      long attemptsLeft = 1000L * perTask + 100_000L;
      while (seen.size() < perTask) {
        if (attemptsLeft-- == 0) {
          throw new IllegalArgumentException("perTask = " + perTask + " is more distinct held-out "
              + task + " prompts than could be found; found " + seen.size());
        }
        SyntheticTask.PromptAndAnswer drawn = task.sample(taskRng, sizes);
        if (isHeldOut(drawn.prompt()) && seen.add(drawn.prompt())) {
          examples.add(example(task, drawn));
        }
      }
    }
    return examples;
  }

  @Override
  public long position() {
    return rng.state();
  }

  @Override
  public void restore(long position) {
    rng.restore(position);
  }

  private Example example(SyntheticTask task, SyntheticTask.PromptAndAnswer drawn) {
    int[] promptText = tokenizer.encode(drawn.prompt());
    int[] prompt = new int[promptText.length + 1];
    prompt[0] = tokenizer.bosId();
    System.arraycopy(promptText, 0, prompt, 1, promptText.length);
    return new Example(task, drawn.prompt(), drawn.answer(), prompt);
  }
}
