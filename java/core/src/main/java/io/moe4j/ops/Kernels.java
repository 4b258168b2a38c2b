package io.moe4j.ops;

/**
 * The C ABI of one native library, over raw addresses, with the status already checked (a failure
 * throws {@link io.moe4j.runtime.Moe4jException} carrying the native message). {@link CpuKernels}
 * and {@link CudaKernels} implement it; {@link NativeBackend} does the Java-side shape checks once
 * for both.
 */
interface Kernels {

  void add(int dtype, long a, long b, long out, long n);

  void scale(int dtype, long x, long out, long n, float alpha);

  void copy(long src, long dst, long bytes);

  void cast(int srcDtype, long src, int dstDtype, long dst, long n);

  void rmsNormForward(int dtype, long x, long weight, long y, long rstd, long rows, long cols, float eps);

  void rmsNormBackward(
      int dtype, long dy, long x, long weight, long rstd, long dx, long dWeight, long rows, long cols,
      boolean accumulate);

  void swigluForward(int dtype, long gate, long up, long out, long rows, long cols, long inStride);

  void swigluBackward(
      int dtype, long gate, long up, long dOut, long dGate, long dUp, long rows, long cols, long inStride);

  void embeddingForward(int dtype, long table, long ids, long out, long numIds, long vocab, long dim);

  void embeddingBackward(
      int dtype, long dOut, long ids, long dTable, long numIds, long vocab, long dim, boolean accumulate);

  void crossEntropyForward(
      int dtype, long logits, long targets, long losses, long lse, long rows, long vocab, int ignoreIndex);

  void crossEntropyBackward(
      int dtype, long logits, long targets, long lse, long dLogits, long rows, long vocab, int ignoreIndex,
      float gradScale);

  void adamwStep(
      long param, int gradDtype, long grad, long m, long v, int copyDtype, long paramCopy, long n,
      AdamWConfig config, long step, long gradScale);

  void sumSquares(int dtype, long x, long n, long out);

  void clipCoefficient(long partials, long count, float maxNorm, long out);

  /** Grouped GEMM, see moe4j.h; offsets 0 = one dense group. */
  void groupedGemmForward(
      int inDtype, long x, long w, int outDtype, long y, long offsets, long groups, long rows, long n, long k,
      long rowScale, boolean accumulate);

  void groupedGemmDgrad(
      int inDtype, long dy, long w, int outDtype, long dx, long offsets, long groups, long rows, long n, long k,
      boolean accumulate);

  void groupedGemmWgrad(
      int inDtype, long dy, long x, int outDtype, long dw, long offsets, long groups, long rows, long n, long k,
      boolean accumulate);

  void groupedGemmSwigluForward(
      int inDtype, long x, long w13, int outDtype, long h, long gateUp, long offsets, long groups, long rows,
      long f, long k);

  /** Whether {@link #vendorGemm} is usable (cuBLAS found). */
  boolean hasVendorGemm();

  /** The vendor library's dense GEMM c = a·bᵀ (cuBLAS), a benchmark baseline. */
  void vendorGemm(int inDtype, long a, long b, int outDtype, long c, long m, long n, long k);

  void routerScores(long logits, long scores, long tokens, long experts, int scoreFn);

  void routerScoresBackward(long scores, long dScores, long dLogits, long tokens, long experts, int scoreFn);

  void routeTopK(long scores, long bias, long tokens, long experts, int k, boolean renormalize, long expertIds, long weights);

  void routeTopKBackward(
      long scores, long expertIds, long dWeights, long dScores, long tokens, long experts, int k, boolean renormalize);

  void routePlan(
      long expertIds, long weights, long tokens, long experts, int k, long capacity, long offsets, long sortedToken,
      long slotOf, long counts);

  void routeGather(int dtype, long x, long sortedToken, long rows, long numRows, long tokens, long hidden);

  void routeGatherBackward(
      int dtype, long dRows, long slotOf, long dx, long tokens, int k, long numRows, long hidden, boolean accumulate);

  void routeCombine(int dtype, long rows, long slotOf, long weights, long y, long tokens, int k, long numRows, long hidden);

  void routeCombineBackward(
      int dtype, long dy, long rows, long slotOf, long weights, long dRows, long dWeights, long tokens, int k,
      long numRows, long hidden);

  void routeExpertChoice(
      long scores, long tokens, long experts, long groupSize, long capacity, long offsets, long sortedToken, long slotOf,
      long weights, long uncovered);

  void routerBalanceLoss(long scores, long expertIds, long tokens, long experts, int k, float coef, long out, long dScores);

  void routerZLoss(long logits, long tokens, long experts, float coef, long out, long dLogits);

  void routerBiasUpdate(long bias, long counts, long experts, float rate);

  void rope(boolean backward, int dtype, long in, long out, long positions, long tokens, long heads, long headDim, float theta);

  /** cuSeqlens 0 (NULL): a uniform batch; else a packed varlen batch (seq = total tokens). */
  void attentionForward(
      int dtype, long q, long k, long v, long out, long lse, long cuSeqlens, long batch, long seq, long qHeads,
      long kvHeads, long headDim, AttentionOptions options);

  long attentionBackwardWorkspaceBytes(long batch, long seq, long qHeads, long headDim);

  void attentionBackward(
      int dtype, long q, long k, long v, long out, long dOut, long lse, long dq, long dk, long dv, long cuSeqlens,
      long batch, long seq, long qHeads, long kvHeads, long headDim, AttentionOptions options, long workspace,
      long workspaceBytes);

  /** The materialized (naive) attention forward, a benchmark baseline; cpu only. */
  void attentionNaiveForward(
      int dtype, long q, long k, long v, long out, long lse, long batch, long seq, long qHeads, long kvHeads,
      long headDim, AttentionOptions options);

  long attentionDecodeWorkspaceBytes(long batch, long newTokens, long qHeads, long headDim, int splitK);

  void attentionDecode(
      int dtype, long q, long kNew, long vNew, long kCache, long vCache, long lengths, long out, long batch,
      long newTokens, long maxSeq, long qHeads, long kvHeads, long headDim, long window, float scale, int splitK,
      long workspace, long workspaceBytes);
}
