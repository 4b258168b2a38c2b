package io.moe4j.ops;

import static io.moe4j.runtime.CudaNative.check;

import io.moe4j.runtime.CudaDevice;
import io.moe4j.runtime.CudaNative;

/**
 * {@link Kernels} on libmoe4j_cuda: every call makes the device's primary context current on the
 * calling thread and queues on the device's stream.
 */
final class CudaKernels implements Kernels {

  private final CudaDevice device;

  CudaKernels(CudaDevice device) {
    this.device = device;
  }

  private long stream() {
    device.makeCurrent();
    return device.streamHandle();
  }

  @Override
  public void add(int dtype, long a, long b, long out, long n) {
    check(CudaNative.moe4j_cuda_add(dtype, a, b, out, n, stream()));
  }

  @Override
  public void scale(int dtype, long x, long out, long n, float alpha) {
    check(CudaNative.moe4j_cuda_scale(dtype, x, out, n, alpha, stream()));
  }

  @Override
  public void copy(long src, long dst, long bytes) {
    check(CudaNative.moe4j_cuda_copy(src, dst, bytes, stream()));
  }

  @Override
  public void cast(int srcDtype, long src, int dstDtype, long dst, long n) {
    check(CudaNative.moe4j_cuda_cast(srcDtype, src, dstDtype, dst, n, stream()));
  }

  @Override
  public void rmsNormForward(int dtype, long x, long weight, long y, long rstd, long rows, long cols, float eps) {
    check(CudaNative.moe4j_cuda_rmsnorm_forward(dtype, x, weight, y, rstd, rows, cols, eps, stream()));
  }

  @Override
  public void rmsNormBackward(
      int dtype, long dy, long x, long weight, long rstd, long dx, long dWeight, long rows, long cols,
      boolean accumulate) {
    check(CudaNative.moe4j_cuda_rmsnorm_backward(dtype, dy, x, weight, rstd, dx, dWeight, rows, cols, accumulate ? 1 : 0, stream()));
  }

  @Override
  public void swigluForward(int dtype, long gate, long up, long out, long rows, long cols, long inStride) {
    check(CudaNative.moe4j_cuda_swiglu_forward(dtype, gate, up, out, rows, cols, inStride, stream()));
  }

  @Override
  public void swigluBackward(
      int dtype, long gate, long up, long dOut, long dGate, long dUp, long rows, long cols, long inStride) {
    check(CudaNative.moe4j_cuda_swiglu_backward(dtype, gate, up, dOut, dGate, dUp, rows, cols, inStride, stream()));
  }

  @Override
  public void embeddingForward(int dtype, long table, long ids, long out, long numIds, long vocab, long dim) {
    check(CudaNative.moe4j_cuda_embedding_forward(dtype, table, ids, out, numIds, vocab, dim, stream()));
  }

  @Override
  public void embeddingBackward(
      int dtype, long dOut, long ids, long dTable, long numIds, long vocab, long dim, boolean accumulate) {
    check(CudaNative.moe4j_cuda_embedding_backward(dtype, dOut, ids, dTable, numIds, vocab, dim, accumulate ? 1 : 0, stream()));
  }

  @Override
  public void crossEntropyForward(
      int dtype, long logits, long targets, long losses, long lse, long rows, long vocab, int ignoreIndex) {
    check(CudaNative.moe4j_cuda_cross_entropy_forward(dtype, logits, targets, losses, lse, rows, vocab, ignoreIndex, stream()));
  }

  @Override
  public void crossEntropyBackward(
      int dtype, long logits, long targets, long lse, long dLogits, long rows, long vocab, int ignoreIndex,
      float gradScale) {
    check(CudaNative.moe4j_cuda_cross_entropy_backward(
        dtype, logits, targets, lse, dLogits, rows, vocab, ignoreIndex, gradScale, stream()));
  }

  @Override
  public void adamwStep(
      long param, int gradDtype, long grad, long m, long v, int copyDtype, long paramCopy, long n,
      AdamWConfig c, long step, long gradScale) {
    check(CudaNative.moe4j_cuda_adamw_step(
        param, gradDtype, grad, m, v, copyDtype, paramCopy, n, c.lr(), c.beta1(), c.beta2(), c.eps(),
        c.weightDecay(), step, gradScale, stream()));
  }

  @Override
  public void sumSquares(int dtype, long x, long n, long out) {
    check(CudaNative.moe4j_cuda_sum_squares(dtype, x, n, out, stream()));
  }

  @Override
  public void clipCoefficient(long partials, long count, float maxNorm, long out) {
    check(CudaNative.moe4j_cuda_clip_coefficient(partials, count, maxNorm, out, stream()));
  }

  @Override
  public void groupedGemmForward(
      int inDtype, long x, long w, int outDtype, long y, long offsets, long groups, long rows, long n, long k,
      long rowScale, boolean accumulate) {
    check(CudaNative.moe4j_cuda_grouped_gemm_forward(
        inDtype, x, w, outDtype, y, offsets, groups, rows, n, k, rowScale, accumulate ? 1 : 0, stream()));
  }

  @Override
  public void groupedGemmDgrad(
      int inDtype, long dy, long w, int outDtype, long dx, long offsets, long groups, long rows, long n, long k,
      boolean accumulate) {
    check(CudaNative.moe4j_cuda_grouped_gemm_dgrad(
        inDtype, dy, w, outDtype, dx, offsets, groups, rows, n, k, accumulate ? 1 : 0, stream()));
  }

  @Override
  public void groupedGemmWgrad(
      int inDtype, long dy, long x, int outDtype, long dw, long offsets, long groups, long rows, long n, long k,
      boolean accumulate) {
    check(CudaNative.moe4j_cuda_grouped_gemm_wgrad(
        inDtype, dy, x, outDtype, dw, offsets, groups, rows, n, k, accumulate ? 1 : 0, stream()));
  }

  @Override
  public void groupedGemmSwigluForward(
      int inDtype, long x, long w13, int outDtype, long h, long gateUp, long offsets, long groups, long rows,
      long f, long k) {
    check(CudaNative.moe4j_cuda_grouped_gemm_swiglu_forward(
        inDtype, x, w13, outDtype, h, gateUp, offsets, groups, rows, f, k, stream()));
  }

  @Override
  public boolean hasVendorGemm() {
    return !CudaNative.moe4j_cuda_cublas_library().isEmpty();
  }

  @Override
  public void vendorGemm(int inDtype, long a, long b, int outDtype, long c, long m, long n, long k) {
    check(CudaNative.moe4j_cuda_cublas_gemm(inDtype, a, b, outDtype, c, m, n, k, stream()));
  }

  @Override
  public void routerScores(long logits, long scores, long tokens, long experts, int scoreFn) {
    check(CudaNative.moe4j_cuda_router_scores(logits, scores, tokens, experts, scoreFn, stream()));
  }

  @Override
  public void routerScoresBackward(long scores, long dScores, long dLogits, long tokens, long experts, int scoreFn) {
    check(CudaNative.moe4j_cuda_router_scores_backward(scores, dScores, dLogits, tokens, experts, scoreFn, stream()));
  }

  @Override
  public void routeTopK(
      long scores, long bias, long tokens, long experts, int k, boolean renormalize, long expertIds, long weights) {
    check(CudaNative.moe4j_cuda_route_topk(scores, bias, tokens, experts, k, renormalize ? 1 : 0, expertIds, weights, stream()));
  }

  @Override
  public void routeTopKBackward(
      long scores, long expertIds, long dWeights, long dScores, long tokens, long experts, int k, boolean renormalize) {
    check(CudaNative.moe4j_cuda_route_topk_backward(
        scores, expertIds, dWeights, dScores, tokens, experts, k, renormalize ? 1 : 0, stream()));
  }

  @Override
  public void routePlan(
      long expertIds, long weights, long tokens, long experts, int k, long capacity, long offsets, long sortedToken,
      long slotOf, long counts) {
    check(CudaNative.moe4j_cuda_route_plan(
        expertIds, weights, tokens, experts, k, capacity, offsets, sortedToken, slotOf, counts, stream()));
  }

  @Override
  public void routeGather(int dtype, long x, long sortedToken, long rows, long numRows, long tokens, long hidden) {
    check(CudaNative.moe4j_cuda_route_gather(dtype, x, sortedToken, rows, numRows, tokens, hidden, stream()));
  }

  @Override
  public void routeGatherBackward(
      int dtype, long dRows, long slotOf, long dx, long tokens, int k, long numRows, long hidden, boolean accumulate) {
    check(CudaNative.moe4j_cuda_route_gather_backward(
        dtype, dRows, slotOf, dx, tokens, k, numRows, hidden, accumulate ? 1 : 0, stream()));
  }

  @Override
  public void routeCombine(
      int dtype, long rows, long slotOf, long weights, long y, long tokens, int k, long numRows, long hidden) {
    check(CudaNative.moe4j_cuda_route_combine(dtype, rows, slotOf, weights, y, tokens, k, numRows, hidden, stream()));
  }

  @Override
  public void routeCombineBackward(
      int dtype, long dy, long rows, long slotOf, long weights, long dRows, long dWeights, long tokens, int k,
      long numRows, long hidden) {
    check(CudaNative.moe4j_cuda_route_combine_backward(
        dtype, dy, rows, slotOf, weights, dRows, dWeights, tokens, k, numRows, hidden, stream()));
  }

  @Override
  public void routeExpertChoice(
      long scores, long tokens, long experts, long groupSize, long capacity, long offsets, long sortedToken, long slotOf,
      long weights, long uncovered) {
    check(CudaNative.moe4j_cuda_route_expert_choice(
        scores, tokens, experts, groupSize, capacity, offsets, sortedToken, slotOf, weights, uncovered, stream()));
  }

  @Override
  public void routerBalanceLoss(
      long scores, long expertIds, long tokens, long experts, int k, float coef, long out, long dScores) {
    check(CudaNative.moe4j_cuda_router_balance_loss(scores, expertIds, tokens, experts, k, coef, out, dScores, stream()));
  }

  @Override
  public void routerZLoss(long logits, long tokens, long experts, float coef, long out, long dLogits) {
    check(CudaNative.moe4j_cuda_router_z_loss(logits, tokens, experts, coef, out, dLogits, stream()));
  }

  @Override
  public void routerBiasUpdate(long bias, long counts, long experts, float rate) {
    check(CudaNative.moe4j_cuda_router_bias_update(bias, counts, experts, rate, stream()));
  }

  @Override
  public void rope(
      boolean backward, int dtype, long in, long out, long positions, long tokens, long heads, long headDim, float theta) {
    check(backward
        ? CudaNative.moe4j_cuda_rope_backward(dtype, in, out, positions, tokens, heads, headDim, theta, stream())
        : CudaNative.moe4j_cuda_rope_forward(dtype, in, out, positions, tokens, heads, headDim, theta, stream()));
  }

  @Override
  public void attentionForward(
      int dtype, long q, long k, long v, long out, long lse, long cuSeqlens, long batch, long seq, long qHeads,
      long kvHeads, long headDim, AttentionOptions o) {
    check(CudaNative.moe4j_cuda_attention_forward(
        dtype, q, k, v, out, lse, cuSeqlens, batch, seq, qHeads, kvHeads, headDim, o.causal() ? 1 : 0, o.window(),
        o.scale(), stream()));
  }

  @Override
  public long attentionBackwardWorkspaceBytes(long batch, long seq, long qHeads, long headDim) {
    long[] bytes = {0};
    check(CudaNative.moe4j_cuda_attention_backward_workspace_bytes(batch, seq, qHeads, headDim, bytes));
    return bytes[0];
  }

  @Override
  public void attentionBackward(
      int dtype, long q, long k, long v, long out, long dOut, long lse, long dq, long dk, long dv, long cuSeqlens,
      long batch, long seq, long qHeads, long kvHeads, long headDim, AttentionOptions o, long workspace,
      long workspaceBytes) {
    check(CudaNative.moe4j_cuda_attention_backward(
        dtype, q, k, v, out, dOut, lse, dq, dk, dv, cuSeqlens, batch, seq, qHeads, kvHeads, headDim,
        o.causal() ? 1 : 0, o.window(), o.scale(), workspace, workspaceBytes, stream()));
  }

  @Override
  public void attentionNaiveForward(
      int dtype, long q, long k, long v, long out, long lse, long batch, long seq, long qHeads, long kvHeads,
      long headDim, AttentionOptions o) {
    throw new io.moe4j.runtime.Moe4jException(io.moe4j.runtime.Moe4jException.Status.UNSUPPORTED,
        "attentionNaiveForward: the naive attention baseline exists on the cpu backend only");
  }

  @Override
  public long attentionDecodeWorkspaceBytes(long batch, long newTokens, long qHeads, long headDim, int splitK) {
    long[] bytes = {0};
    check(CudaNative.moe4j_cuda_attention_decode_workspace_bytes(batch, newTokens, qHeads, headDim, splitK, bytes));
    return bytes[0];
  }

  @Override
  public void attentionDecode(
      int dtype, long q, long kNew, long vNew, long kCache, long vCache, long lengths, long out, long batch,
      long newTokens, long maxSeq, long qHeads, long kvHeads, long headDim, long window, float scale, int splitK,
      long workspace, long workspaceBytes) {
    check(CudaNative.moe4j_cuda_attention_decode(
        dtype, q, kNew, vNew, kCache, vCache, lengths, out, batch, newTokens, maxSeq, qHeads, kvHeads, headDim, window,
        scale, splitK, workspace, workspaceBytes, stream()));
  }
}
