package io.moe4j.cli.bench;

/** Expert group sizes for benchmark cases: balanced or Zipf-skewed, deterministic. */
public final class Routing {

  private Routing() {}

  /** Rows per expert for {@code rows} assignments over {@code experts}. */
  public static long[] groupSizes(String kind, long rows, int experts) {
    long[] sizes = new long[experts];
    switch (kind) {
      case "balanced" -> {
        for (int e = 0; e < experts; e++) sizes[e] = rows / experts + (e < rows % experts ? 1 : 0);
      }
      case "zipf" -> {
        // p_e ∝ 1 / (e + 1)^1.2: expert 0 gets the most; rounding remainder goes to expert 0
        double[] p = new double[experts];
        double total = 0;
        for (int e = 0; e < experts; e++) total += p[e] = 1 / Math.pow(e + 1, 1.2);
        long assigned = 0;
        for (int e = 0; e < experts; e++) assigned += sizes[e] = (long) Math.floor(rows * p[e] / total);
        sizes[0] += rows - assigned;
      }
      default -> throw new IllegalArgumentException("routing must be balanced or zipf, got " + kind);
    }
    return sizes;
  }

  /** Exclusive prefix sum with the total appended: offsets[E + 1]. */
  public static long[] offsets(long[] sizes) {
    long[] o = new long[sizes.length + 1];
    for (int e = 0; e < sizes.length; e++) o[e + 1] = o[e] + sizes[e];
    return o;
  }
}
