package io.moe4j.train;

import io.moe4j.nn.MoeTransformer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Greedy decoding of many prompts at once with {@link MoeTransformer#logits}: each round feeds the
 * unfinished rows, right-padded to the longest, and appends each row's argmax at its own last
 * position. Causal attention keeps padding after a row's end from changing that row's logits (with
 * dropless routing; a capacity limit would let padding compete for expert slots). No KV cache:
 * meant for evaluation prompts of a few dozen tokens.
 */
public final class GreedyDecoder {

  private final MoeTransformer model;
  private final int padId;
  private final int maxRows;

  /** @param maxRows rows per forward (bounds the logits buffer: rows × length × vocab floats) */
  public GreedyDecoder(MoeTransformer model, int padId, int maxRows) {
    if (model == null) throw new IllegalArgumentException("model must not be null");
    if (maxRows <= 0) throw new IllegalArgumentException("maxRows must be > 0, got " + maxRows);
    this.model = model;
    this.padId = padId;
    this.maxRows = maxRows;
  }

  /**
   * Continues every prompt by up to {@code maxNewTokens[i]} tokens, stopping a row at {@code eosId}
   * (not included in its output).
   */
  public List<int[]> generate(List<int[]> prompts, int[] maxNewTokens, int eosId) {
    if (prompts.size() != maxNewTokens.length)
      throw new IllegalArgumentException("maxNewTokens must have one entry per prompt (" + prompts.size() + "), got "
          + maxNewTokens.length);
    List<int[]> out = new ArrayList<>(prompts.size());
    for (int start = 0; start < prompts.size(); start += maxRows) {
      int end = Math.min(prompts.size(), start + maxRows);
      out.addAll(generateChunk(prompts.subList(start, end), Arrays.copyOfRange(maxNewTokens, start, end), eosId));
    }
    return out;
  }

  private List<int[]> generateChunk(List<int[]> prompts, int[] maxNew, int eosId) {
    int rows = prompts.size();
    int vocab = model.config().vocabSize();
    int maxLen = model.config().maxPositionEmbeddings();
    int[][] seq = new int[rows][];
    int[] len = new int[rows];
    int[] generated = new int[rows];
    boolean[] done = new boolean[rows];
    for (int r = 0; r < rows; r++) {
      int[] p = prompts.get(r);
      if (p.length == 0) throw new IllegalArgumentException("prompt " + r + " is empty");
      if (p.length + maxNew[r] > maxLen)
        throw new IllegalArgumentException("prompt " + r + " (" + p.length + " tokens) + " + maxNew[r]
            + " new tokens exceeds maxPositionEmbeddings " + maxLen);
      seq[r] = Arrays.copyOf(p, p.length + maxNew[r]);
      len[r] = p.length;
      done[r] = maxNew[r] == 0;
    }
    while (true) {
      int[] active = activeRows(done);
      if (active.length == 0) break;
      int width = 0;
      for (int r : active) width = Math.max(width, len[r]);
      int[] tokens = new int[active.length * width];
      Arrays.fill(tokens, padId);
      for (int i = 0; i < active.length; i++) System.arraycopy(seq[active[i]], 0, tokens, i * width, len[active[i]]);
      float[] logits = model.logits(tokens, active.length, width);
      for (int i = 0; i < active.length; i++) {
        int r = active[i];
        int next = argmax(logits, ((long) i * width + len[r] - 1) * vocab, vocab);
        if (next == eosId) {
          done[r] = true;
          continue;
        }
        seq[r][len[r]++] = next;
        done[r] = ++generated[r] == maxNew[r];
      }
    }
    List<int[]> out = new ArrayList<>(rows);
    for (int r = 0; r < rows; r++) out.add(Arrays.copyOfRange(seq[r], prompts.get(r).length, len[r]));
    return out;
  }

  private static int[] activeRows(boolean[] done) {
    int n = 0;
    for (boolean d : done) if (!d) n++;
    int[] rows = new int[n];
    for (int r = 0, i = 0; r < done.length; r++) if (!done[r]) rows[i++] = r;
    return rows;
  }

  /** First index of the largest value (ties → lowest token id, so decoding is deterministic). */
  static int argmax(float[] values, long offset, int n) {
    int best = 0;
    float bestValue = values[(int) offset];
    for (int j = 1; j < n; j++) {
      float x = values[(int) offset + j];
      if (x > bestValue) {
        bestValue = x;
        best = j;
      }
    }
    return best;
  }
}
