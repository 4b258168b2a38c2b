package io.moe4j.runtime;

import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;

/**
 * JNA direct mapping of libmoe4j_cuda (native/include/moe4j.h). Device addresses and the CUstream
 * are passed as {@code long}. Touch this class only after {@link CudaSupport#probe()} said the
 * library is present; loading it needs no GPU (cudart is linked statically).
 */
public final class CudaNative {

  public static final String PATH;

  static {
    PATH =
        NativeLibraries.locate(NativeLibraries.CUDA_LIBRARY)
            .orElseThrow(
                () -> new IllegalStateException("moe4j: libmoe4j_cuda.so was not built into this jar"))
            .toString();
    Native.register(CudaNative.class, NativeLibrary.getInstance(PATH));
  }

  private CudaNative() {}

  public static void check(int status) {
    if (status != Moe4jException.Status.OK) throw new Moe4jException(status, moe4j_cuda_last_error());
  }

  public static native String moe4j_cuda_last_error();

  public static native String moe4j_cuda_build_info();

  public static native int moe4j_cuda_device_count(int[] outCount);

  public static native int moe4j_cuda_versions(int[] outDriver, int[] outRuntime);

  public static native String moe4j_cuda_cublas_library();

  public static native int moe4j_cuda_use_reference_kernels(int enable);

  public static native int moe4j_cuda_add(int dtype, long a, long b, long out, long n, long stream);

  public static native int moe4j_cuda_scale(
      int dtype, long x, long out, long n, float alpha, long stream);

  public static native int moe4j_cuda_copy(long src, long dst, long bytes, long stream);

  public static native int moe4j_cuda_cast(
      int srcDtype, long src, int dstDtype, long dst, long n, long stream);

  public static native int moe4j_cuda_rmsnorm_forward(
      int dtype, long x, long weight, long y, long rstd, long rows, long cols, float eps,
      long stream);

  public static native int moe4j_cuda_rmsnorm_backward(
      int dtype, long dy, long x, long weight, long rstd, long dx, long dweight, long rows,
      long cols, int accumulate, long stream);

  public static native int moe4j_cuda_swiglu_forward(
      int dtype, long gate, long up, long out, long rows, long cols, long inStride, long stream);

  public static native int moe4j_cuda_swiglu_backward(
      int dtype, long gate, long up, long dout, long dgate, long dup, long rows, long cols,
      long inStride, long stream);

  public static native int moe4j_cuda_embedding_forward(
      int dtype, long table, long ids, long out, long numIds, long vocab, long dim, long stream);

  public static native int moe4j_cuda_embedding_backward(
      int dtype, long dout, long ids, long dtable, long numIds, long vocab, long dim,
      int accumulate, long stream);

  public static native int moe4j_cuda_cross_entropy_forward(
      int dtype, long logits, long targets, long losses, long lse, long rows, long vocab,
      int ignoreIndex, long stream);

  public static native int moe4j_cuda_cross_entropy_backward(
      int dtype, long logits, long targets, long lse, long dlogits, long rows, long vocab,
      int ignoreIndex, float gradScale, long stream);

  public static native int moe4j_cuda_adamw_step(
      long param, int gradDtype, long grad, long m, long v, int copyDtype, long paramCopy, long n,
      float lr, float beta1, float beta2, float eps, float weightDecay, long step, long gradScale,
      long stream);

  public static native int moe4j_cuda_sum_squares(int dtype, long x, long n, long out, long stream);

  public static native int moe4j_cuda_clip_coefficient(
      long partials, long count, float maxNorm, long out, long stream);

  public static native int moe4j_cuda_grouped_gemm_forward(
      int inDtype, long x, long w, int outDtype, long y, long offsets, long numGroups, long totalRows,
      long n, long k, long rowScale, int accumulate, long stream);

  public static native int moe4j_cuda_grouped_gemm_dgrad(
      int inDtype, long dy, long w, int outDtype, long dx, long offsets, long numGroups, long totalRows,
      long n, long k, int accumulate, long stream);

  public static native int moe4j_cuda_grouped_gemm_wgrad(
      int inDtype, long dy, long x, int outDtype, long dw, long offsets, long numGroups, long totalRows,
      long n, long k, int accumulate, long stream);

  public static native int moe4j_cuda_grouped_gemm_swiglu_forward(
      int inDtype, long x, long w13, int outDtype, long h, long gateUp, long offsets, long numGroups,
      long totalRows, long f, long k, long stream);

  public static native int moe4j_cuda_cublas_gemm(
      int inDtype, long a, long b, int outDtype, long c, long m, long n, long k, long stream);

  public static native int moe4j_cuda_router_scores(long logits, long scores, long tokens, long experts, int scoreFn, long stream);

  public static native int moe4j_cuda_router_scores_backward(
      long scores, long dScores, long dLogits, long tokens, long experts, int scoreFn, long stream);

  public static native int moe4j_cuda_route_topk(
      long scores, long bias, long tokens, long experts, int k, int renormalize, long expertIds, long weights, long stream);

  public static native int moe4j_cuda_route_topk_backward(
      long scores, long expertIds, long dWeights, long dScores, long tokens, long experts, int k, int renormalize, long stream);

  public static native int moe4j_cuda_route_plan(
      long expertIds, long weights, long tokens, long experts, int k, long capacity, long offsets,
      long sortedToken, long slotOf, long counts, long stream);

  public static native int moe4j_cuda_route_gather(
      int dtype, long x, long sortedToken, long rows, long numRows, long tokens, long hidden, long stream);

  public static native int moe4j_cuda_route_gather_backward(
      int dtype, long dRows, long slotOf, long dx, long tokens, int k, long numRows, long hidden, int accumulate, long stream);

  public static native int moe4j_cuda_route_combine(
      int dtype, long rows, long slotOf, long weights, long y, long tokens, int k, long numRows, long hidden, long stream);

  public static native int moe4j_cuda_route_combine_backward(
      int dtype, long dy, long rows, long slotOf, long weights, long dRows, long dWeights, long tokens, int k,
      long numRows, long hidden, long stream);

  public static native int moe4j_cuda_route_expert_choice(
      long scores, long tokens, long experts, long groupSize, long capacity, long offsets, long sortedToken,
      long slotOf, long weights, long uncovered, long stream);

  public static native int moe4j_cuda_router_balance_loss(
      long scores, long expertIds, long tokens, long experts, int k, float coef, long out, long dScores, long stream);

  public static native int moe4j_cuda_router_z_loss(long logits, long tokens, long experts, float coef, long out, long dLogits, long stream);

  public static native int moe4j_cuda_router_bias_update(long bias, long counts, long experts, float rate, long stream);

  public static native int moe4j_cuda_rope_forward(
      int dtype, long x, long out, long positions, long tokens, long heads, long headDim, float theta, long stream);

  public static native int moe4j_cuda_rope_backward(
      int dtype, long dOut, long dx, long positions, long tokens, long heads, long headDim, float theta, long stream);

  public static native int moe4j_cuda_attention_forward(
      int dtype, long q, long k, long v, long out, long lse, long cuSeqlens, long batch, long seq, long qHeads,
      long kvHeads, long headDim, int causal, long window, float scale, long stream);

  public static native int moe4j_cuda_attention_backward_workspace_bytes(
      long batch, long seq, long qHeads, long headDim, long[] outBytes);

  public static native int moe4j_cuda_attention_backward(
      int dtype, long q, long k, long v, long out, long dOut, long lse, long dq, long dk, long dv, long cuSeqlens,
      long batch, long seq, long qHeads, long kvHeads, long headDim, int causal, long window, float scale,
      long workspace, long workspaceBytes, long stream);

  public static native int moe4j_cuda_attention_decode_workspace_bytes(
      long batch, long newTokens, long qHeads, long headDim, int splitK, long[] outBytes);

  public static native int moe4j_cuda_attention_decode(
      int dtype, long q, long kNew, long vNew, long kCache, long vCache, long lengths, long out, long batch,
      long newTokens, long maxSeq, long qHeads, long kvHeads, long headDim, long window, float scale, int splitK,
      long workspace, long workspaceBytes, long stream);
}
