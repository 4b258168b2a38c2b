package io.moe4j.train.data;

import io.moe4j.text.Tokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.MalformedInputException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A token stream over text files for language-model training: the files, read as UTF-8 and tokenized,
 * are joined with eos between them; the last 10% of tokens (at least seqLen + 1) are validation, the
 * rest training. Training batches are seeded random windows of seqLen + 1 tokens (inputs the first
 * seqLen, targets the last seqLen); validation batches are fixed consecutive windows.
 *
 * <p>The only state is one {@link SplitMix64}: {@link #position()} and {@link #restore(long)} resume
 * exactly. Not thread-safe.
 */
public final class TextDataset implements BatchSource {

  private static final double VALIDATION_FRACTION = 0.1;

  private final int[] tokens;
  private final int trainTokens;
  private final int seqLen;
  private final SplitMix64 rng;

  public TextDataset(List<Path> files, Tokenizer tokenizer, int seqLen, long seed) {
    if (files == null || files.isEmpty()) {
      throw new IllegalArgumentException("files must name at least one text file, got " + files);
    }
    if (tokenizer == null) {
      throw new IllegalArgumentException("tokenizer must not be null");
    }
    if (files.size() > 1 && tokenizer.eosId() < 0) {
      throw new IllegalArgumentException("the tokenizer has no eos token to put between the " + files.size()
          + " files; give one file or a tokenizer whose tokenizer_config.json names an eos_token");
    }
    if (seqLen <= 0) {
      throw new IllegalArgumentException("seqLen must be > 0, got " + seqLen);
    }
    this.tokens = readAll(files, tokenizer);
    this.seqLen = seqLen;
    int window = seqLen + 1;
    // Both splits need one whole window.
    long needed = 2L * window;
    if (tokens.length < needed) {
      throw new IllegalArgumentException("files " + files + " hold " + tokens.length
          + " tokens; seqLen " + seqLen + " needs at least " + needed
          + " (one window of seqLen + 1 tokens for training and one for validation)");
    }
    int validation = Math.max((int) Math.ceil(tokens.length * VALIDATION_FRACTION), window);
    this.trainTokens = tokens.length - validation;
    this.rng = new SplitMix64(seed);
  }

  private static int[] readAll(List<Path> files, Tokenizer tokenizer) {
    List<int[]> parts = new ArrayList<>(files.size());
    long total = 0;
    for (Path file : files) {
      if (file == null || !Files.isRegularFile(file)) {
        throw new IllegalArgumentException("text file " + file + " does not exist or is not a file");
      }
      String text;
      try {
        text = Files.readString(file, StandardCharsets.UTF_8);
      } catch (MalformedInputException e) {
        throw new IllegalArgumentException("text file " + file + " is not valid UTF-8 ("
            + e.getMessage() + ")", e);
      } catch (IOException e) {
        throw new UncheckedIOException("cannot read text file " + file + ": " + e, e);
      }
      int[] ids = tokenizer.encode(text);
      parts.add(ids);
      total += ids.length + 1L;
    }
    if (total - 1 > Integer.MAX_VALUE - 8) {
      throw new IllegalArgumentException("files " + files + " hold " + (total - 1)
          + " tokens; at most " + (Integer.MAX_VALUE - 8) + " fit in one dataset");
    }
    int[] all = new int[(int) (total - 1)];
    int at = 0;
    for (int i = 0; i < parts.size(); i++) {
      if (i > 0) {
        all[at++] = tokenizer.eosId();
      }
      System.arraycopy(parts.get(i), 0, all, at, parts.get(i).length);
      at += parts.get(i).length;
    }
    return all;
  }

  @Override
  public int seqLen() {
    return seqLen;
  }

  /** Tokens in all files together, eos separators included. */
  public int totalTokens() {
    return tokens.length;
  }

  public int trainTokens() {
    return trainTokens;
  }

  public int validationTokens() {
    return tokens.length - trainTokens;
  }

  /** {@code batchSize} windows starting at uniformly random training positions. */
  public Batch nextTrainBatch(int batchSize) {
    if (batchSize <= 0) {
      throw new IllegalArgumentException("batchSize must be > 0, got " + batchSize);
    }
    int starts = trainTokens - seqLen; // windows of seqLen + 1 that fit in the training part
    int[] inputs = new int[batchSize * seqLen];
    int[] targets = new int[batchSize * seqLen];
    for (int row = 0; row < batchSize; row++) {
      copyWindow(rng.nextInt(starts), inputs, targets, row);
    }
    return new Batch(inputs, targets, noTasks(batchSize), batchSize, seqLen);
  }

  /**
   * The validation part as consecutive windows (each window's last token is the next one's first, so
   * every validation token after the first is a target exactly once), {@code batchSize} per batch; the
   * last batch may be smaller. Always the same batches.
   */
  public List<Batch> validationBatches(int batchSize) {
    if (batchSize <= 0) {
      throw new IllegalArgumentException("batchSize must be > 0, got " + batchSize);
    }
    int windows = (validationTokens() - 1) / seqLen;
    List<Batch> batches = new ArrayList<>();
    for (int first = 0; first < windows; first += batchSize) {
      int rows = Math.min(batchSize, windows - first);
      int[] inputs = new int[rows * seqLen];
      int[] targets = new int[rows * seqLen];
      for (int row = 0; row < rows; row++) {
        copyWindow(trainTokens + (first + row) * seqLen, inputs, targets, row);
      }
      batches.add(new Batch(inputs, targets, noTasks(rows), rows, seqLen));
    }
    return batches;
  }

  private void copyWindow(int start, int[] inputs, int[] targets, int row) {
    System.arraycopy(tokens, start, inputs, row * seqLen, seqLen);
    System.arraycopy(tokens, start + 1, targets, row * seqLen, seqLen);
  }

  private static int[] noTasks(int rows) {
    int[] ids = new int[rows];
    Arrays.fill(ids, Batch.NO_TASK);
    return ids;
  }

  /** Training batches: the same as {@link #nextTrainBatch}. */
  @Override
  public Batch nextBatch(int batchSize) {
    return nextTrainBatch(batchSize);
  }

  @Override
  public long position() {
    return rng.state();
  }

  @Override
  public void restore(long position) {
    rng.restore(position);
  }
}
