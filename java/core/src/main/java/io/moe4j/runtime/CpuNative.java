package io.moe4j.runtime;

import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;

/**
 * JNA direct mapping of libmoe4j_cpu (native/include/moe4j.h). Addresses are passed as
 * {@code long}. Call {@link #check(int)} on every returned status.
 */
public final class CpuNative {

  /** Where the library was loaded from. */
  public static final String PATH;

  static {
    PATH =
        NativeLibraries.locate(NativeLibraries.CPU_LIBRARY)
            .orElseThrow(
                () ->
                    new IllegalStateException(
                        "moe4j: libmoe4j_cpu.so is not in the moe4j-core jar; build with `mvn verify`"))
            .toString();
    Native.register(CpuNative.class, NativeLibrary.getInstance(PATH));
  }

  private CpuNative() {}

  /** Throws a {@link Moe4jException} carrying the native message unless status is OK. */
  public static void check(int status) {
    if (status != Moe4jException.Status.OK) throw new Moe4jException(status, moe4j_last_error());
  }

  public static native String moe4j_last_error();

  public static native String moe4j_cpu_build_info();

  public static native String moe4j_cpu_simd_level();

  public static native int moe4j_cpu_num_threads();

  public static native int moe4j_cpu_noop();

  public static native int moe4j_cpu_measure_fma_peak(double seconds, double[] outGflops);

  public static native int moe4j_cpu_alloc(long bytes, long[] outAddress);

  public static native int moe4j_cpu_free(long ptr);

  public static native int moe4j_cpu_memset_zero(long ptr, long bytes);

  public static native int moe4j_cpu_add(int dtype, long a, long b, long out, long n);

  public static native int moe4j_cpu_scale(int dtype, long x, long out, long n, float alpha);

  public static native int moe4j_cpu_copy(long src, long dst, long bytes);

  public static native int moe4j_cpu_cast(int srcDtype, long src, int dstDtype, long dst, long n);

  public static native int moe4j_cpu_rmsnorm_forward(
      int dtype, long x, long weight, long y, long rstd, long rows, long cols, float eps);

  public static native int moe4j_cpu_rmsnorm_backward(
      int dtype, long dy, long x, long weight, long rstd, long dx, long dweight, long rows,
      long cols, int accumulate);

  public static native int moe4j_cpu_swiglu_forward(
      int dtype, long gate, long up, long out, long rows, long cols, long inStride);

  public static native int moe4j_cpu_swiglu_backward(
      int dtype, long gate, long up, long dout, long dgate, long dup, long rows, long cols,
      long inStride);

  public static native int moe4j_cpu_embedding_forward(
      int dtype, long table, long ids, long out, long numIds, long vocab, long dim);

  public static native int moe4j_cpu_embedding_backward(
      int dtype, long dout, long ids, long dtable, long numIds, long vocab, long dim,
      int accumulate);

  public static native int moe4j_cpu_cross_entropy_forward(
      int dtype, long logits, long targets, long losses, long lse, long rows, long vocab,
      int ignoreIndex);

  public static native int moe4j_cpu_cross_entropy_backward(
      int dtype, long logits, long targets, long lse, long dlogits, long rows, long vocab,
      int ignoreIndex, float gradScale);

  public static native int moe4j_cpu_adamw_step(
      long param, int gradDtype, long grad, long m, long v, int copyDtype, long paramCopy, long n,
      float lr, float beta1, float beta2, float eps, float weightDecay, long step, long gradScale);

  public static native int moe4j_cpu_sum_squares(int dtype, long x, long n, long out);

  public static native int moe4j_cpu_clip_coefficient(
      long partials, long count, float maxNorm, long out);

  public static native int moe4j_cpu_grouped_gemm_forward(
      int inDtype, long x, long w, int outDtype, long y, long offsets, long numGroups, long totalRows,
      long n, long k, long rowScale, int accumulate);

  public static native int moe4j_cpu_grouped_gemm_dgrad(
      int inDtype, long dy, long w, int outDtype, long dx, long offsets, long numGroups, long totalRows,
      long n, long k, int accumulate);

  public static native int moe4j_cpu_grouped_gemm_wgrad(
      int inDtype, long dy, long x, int outDtype, long dw, long offsets, long numGroups, long totalRows,
      long n, long k, int accumulate);

  public static native int moe4j_cpu_grouped_gemm_swiglu_forward(
      int inDtype, long x, long w13, int outDtype, long h, long gateUp, long offsets, long numGroups,
      long totalRows, long f, long k);

  public static native int moe4j_cpu_router_scores(long logits, long scores, long tokens, long experts, int scoreFn);

  public static native int moe4j_cpu_router_scores_backward(
      long scores, long dScores, long dLogits, long tokens, long experts, int scoreFn);

  public static native int moe4j_cpu_route_topk(
      long scores, long bias, long tokens, long experts, int k, int renormalize, long expertIds, long weights);

  public static native int moe4j_cpu_route_topk_backward(
      long scores, long expertIds, long dWeights, long dScores, long tokens, long experts, int k, int renormalize);

  public static native int moe4j_cpu_route_plan(
      long expertIds, long weights, long tokens, long experts, int k, long capacity, long offsets,
      long sortedToken, long slotOf, long counts);

  public static native int moe4j_cpu_route_gather(
      int dtype, long x, long sortedToken, long rows, long numRows, long tokens, long hidden);

  public static native int moe4j_cpu_route_gather_backward(
      int dtype, long dRows, long slotOf, long dx, long tokens, int k, long numRows, long hidden, int accumulate);

  public static native int moe4j_cpu_route_combine(
      int dtype, long rows, long slotOf, long weights, long y, long tokens, int k, long numRows, long hidden);

  public static native int moe4j_cpu_route_combine_backward(
      int dtype, long dy, long rows, long slotOf, long weights, long dRows, long dWeights, long tokens, int k,
      long numRows, long hidden);

  public static native int moe4j_cpu_route_expert_choice(
      long scores, long tokens, long experts, long groupSize, long capacity, long offsets, long sortedToken,
      long slotOf, long weights, long uncovered);

  public static native int moe4j_cpu_router_balance_loss(
      long scores, long expertIds, long tokens, long experts, int k, float coef, long out, long dScores);

  public static native int moe4j_cpu_router_z_loss(long logits, long tokens, long experts, float coef, long out, long dLogits);

  public static native int moe4j_cpu_router_bias_update(long bias, long counts, long experts, float rate);

  public static native int moe4j_cpu_rope_forward(
      int dtype, long x, long out, long positions, long tokens, long heads, long headDim, float theta);

  public static native int moe4j_cpu_rope_backward(
      int dtype, long dOut, long dx, long positions, long tokens, long heads, long headDim, float theta);

  public static native int moe4j_cpu_attention_forward(
      int dtype, long q, long k, long v, long out, long lse, long cuSeqlens, long batch, long seq, long qHeads,
      long kvHeads, long headDim, int causal, long window, float scale);

  public static native int moe4j_cpu_attention_backward_workspace_bytes(
      long batch, long seq, long qHeads, long headDim, long[] outBytes);

  public static native int moe4j_cpu_attention_backward(
      int dtype, long q, long k, long v, long out, long dOut, long lse, long dq, long dk, long dv, long cuSeqlens,
      long batch, long seq, long qHeads, long kvHeads, long headDim, int causal, long window, float scale,
      long workspace, long workspaceBytes);

  public static native int moe4j_cpu_attention_naive_forward(
      int dtype, long q, long k, long v, long out, long lse, long batch, long seq, long qHeads, long kvHeads,
      long headDim, int causal, long window, float scale);

  public static native int moe4j_cpu_attention_decode_workspace_bytes(
      long batch, long newTokens, long qHeads, long headDim, int splitK, long[] outBytes);

  public static native int moe4j_cpu_attention_decode(
      int dtype, long q, long kNew, long vNew, long kCache, long vCache, long lengths, long out, long batch,
      long newTokens, long maxSeq, long qHeads, long kvHeads, long headDim, long window, float scale, int splitK,
      long workspace, long workspaceBytes);
}
