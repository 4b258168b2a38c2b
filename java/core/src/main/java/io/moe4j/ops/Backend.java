package io.moe4j.ops;

import io.moe4j.tensor.DType;
import io.moe4j.tensor.Device;
import io.moe4j.tensor.MemoryStats;
import io.moe4j.tensor.Tensor;
import java.util.List;

/**
 * The operations every backend (cpu, cuda) provides, with the same signatures and semantics. Shapes
 * are checked here in Java (an {@link IllegalArgumentException} naming the argument); what only the
 * native side can check (dtype support, index ranges, alignment) surfaces as a
 * {@link io.moe4j.runtime.Moe4jException} carrying the native message.
 *
 * <p>Tensors passed to a backend must live on its device. Outputs are written in place.
 */
public interface Backend extends AutoCloseable {

  /** "cpu" or "cuda:N". */
  String name();

  Device device();

  // ---- memory -------------------------------------------------------------------------------

  /** Uninitialized tensor from this backend's caching allocator. Close it (or its scope). */
  Tensor empty(DType dtype, long... shape);

  /** Zero-filled tensor. */
  Tensor zeros(DType dtype, long... shape);

  /** New tensor holding {@code values} converted to {@code dtype} (F32, BF16 or F16). */
  Tensor fromFloats(float[] values, DType dtype, long... shape);

  /** New I32 tensor holding {@code values}. */
  Tensor fromInts(int[] values, long... shape);

  /** New I64 tensor holding {@code values} (e.g. group offsets). */
  Tensor fromLongs(long[] values, long... shape);

  /** Contents of an I64 tensor. */
  long[] toLongs(Tensor tensor);

  /** Contents as floats (converted from F32, BF16 or F16). */
  float[] toFloats(Tensor tensor);

  /** Contents of an I32 tensor. */
  int[] toInts(Tensor tensor);

  /** Copies host floats into an existing tensor (converted to its dtype). */
  void copyFromFloats(float[] values, Tensor destination);

  /** Live and peak bytes of this backend's allocator. */
  MemoryStats memoryStats();

  /** Waits until all queued work is done (no-op on the CPU). */
  void synchronize();

  // ---- element-wise -------------------------------------------------------------------------

  /** out = a + b (F32 or BF16, same shape). */
  void add(Tensor a, Tensor b, Tensor out);

  /** out = alpha * x (may be the same tensor). */
  void scale(Tensor x, float alpha, Tensor out);

  /** destination = source (same dtype and element count). */
  void copy(Tensor source, Tensor destination);

  /** destination = source converted between F32, BF16 and F16 (same element count). */
  void cast(Tensor source, Tensor destination);

  // ---- RMSNorm ------------------------------------------------------------------------------

  /**
   * y = x * rstd * weight over the last dim. x, y [rows, cols], weight [cols] (same dtype);
   * rstd F32 [rows] saved for backward (may be null).
   */
  void rmsNormForward(Tensor x, Tensor weight, float eps, Tensor y, Tensor rstd);

  /** dx [rows, cols] (dtype of x); dWeight F32 [cols], overwritten or accumulated. */
  void rmsNormBackward(
      Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor dx, Tensor dWeight, boolean accumulate);

  // ---- SwiGLU -------------------------------------------------------------------------------

  /** out = silu(gate) * up; gate, up, out [rows, cols]. */
  void swigluForward(Tensor gate, Tensor up, Tensor out);

  /** dGate, dUp [rows, cols]. */
  void swigluBackward(Tensor gate, Tensor up, Tensor dOut, Tensor dGate, Tensor dUp);

  /**
   * SwiGLU over a combined gate|up buffer [rows, 2*cols] (gate in the first half of each row), as a
   * fused gate/up projection produces it; out [rows, cols].
   */
  void swigluForwardCombined(Tensor gateUp, Tensor out);

  /** dGateUp [rows, 2*cols] in the combined layout. */
  void swigluBackwardCombined(Tensor gateUp, Tensor dOut, Tensor dGateUp);

  // ---- embedding ----------------------------------------------------------------------------

  /** out[i] = table[ids[i]]; table [vocab, dim], ids I32 [n] (any shape), out [n, dim]. */
  void embeddingForward(Tensor table, Tensor ids, Tensor out);

  /** dTable F32 [vocab, dim] += dOut rows by id, deterministic; zeroed first unless accumulate. */
  void embeddingBackward(Tensor dOut, Tensor ids, Tensor dTable, boolean accumulate);

  // ---- cross-entropy ------------------------------------------------------------------------

  /**
   * Per-row softmax cross-entropy. logits [rows, vocab] (F32|BF16); targets I32 [rows]; losses and
   * lse F32 [rows]. Rows whose target is {@code ignoreIndex} get loss 0.
   */
  void crossEntropyForward(
      Tensor logits, Tensor targets, int ignoreIndex, Tensor losses, Tensor logSumExp);

  /**
   * dLogits = (softmax - onehot) * gradScale; ignored rows 0. dLogits may be the logits tensor
   * itself (in place).
   */
  void crossEntropyBackward(
      Tensor logits,
      Tensor targets,
      Tensor logSumExp,
      int ignoreIndex,
      float gradScale,
      Tensor dLogits);

  // ---- optimizer ----------------------------------------------------------------------------

  /**
   * One fused AdamW step. param, m, v: F32; grad F32|BF16; paramCopy (nullable) receives the new
   * param in its own dtype (BF16 for mixed precision). gradScale (nullable) is a one-element F32
   * tensor on this device multiplying the gradient (the clip coefficient).
   */
  void adamwStep(
      Tensor param,
      Tensor grad,
      Tensor m,
      Tensor v,
      Tensor paramCopy,
      AdamWConfig config,
      long step,
      Tensor gradScale);

  /**
   * Global L2 norm of the gradients and the clip coefficient min(1, maxNorm / (norm + 1e-6)),
   * computed without a host round trip; returns F32 [2] = {norm, coefficient} on this device.
   */
  Tensor gradNormAndClipCoefficient(List<Tensor> grads, float maxNorm);

  // ---- grouped-expert GEMM (dense GEMM is the one-group case) --------------------------------

  /**
   * Per group e (rows offsets[e]..offsets[e+1] of x, sorted by group): y_e (=|+=) rowScale ⊙ (x_e ·
   * w_eᵀ). x [T, K] (F32|BF16), w [E, N, K] (same dtype; [N, K] when offsets is null), offsets I64
   * [E + 1] on this device (null: one dense group), y [T, N] (F32|BF16), rowScale F32 [T] or null.
   * On the GPU the offsets are not read by the host and cannot be validated there.
   */
  void groupedGemmForward(Tensor x, Tensor w, Tensor offsets, Tensor y, Tensor rowScale, boolean accumulate);

  /** dx_e (=|+=) dy_e · w_e; dy [T, N], w [E, N, K], dx [T, K]. */
  void groupedGemmDgrad(Tensor dy, Tensor w, Tensor offsets, Tensor dx, boolean accumulate);

  /** dw_e (=|+=) dy_eᵀ · x_e; dy [T, N], x [T, K], dw [E, N, K] (F32|BF16); empty groups get zeros. */
  void groupedGemmWgrad(Tensor dy, Tensor x, Tensor offsets, Tensor dw, boolean accumulate);

  /**
   * Forward through a combined gate/up weight w13 [E, 2F, K] (gate rows first) with the SwiGLU
   * epilogue fused: h [T, F] = silu(x·w_gateᵀ) * (x·w_upᵀ). gateUp [T, 2F] (nullable) receives the
   * pre-activations for {@link #swigluBackwardCombined}.
   */
  void groupedGemmSwigluForward(Tensor x, Tensor w13, Tensor offsets, Tensor h, Tensor gateUp);

  /**
   * Dense c (=|+=) a · bᵀ: a [M, K], b [N, K], c [M, N]. On cuda, cuBLAS serves it when found
   * (overwrite, bf16 inputs); otherwise our GEMM kernel (the one-group grouped GEMM).
   */
  void gemm(Tensor a, Tensor b, Tensor c, boolean accumulate);

  /**
   * The vendor BLAS dense GEMM c = a · bᵀ (cuBLAS on cuda), a benchmark baseline; throws
   * {@link io.moe4j.runtime.Moe4jException} (UNSUPPORTED) where there is none.
   */
  void vendorGemm(Tensor a, Tensor b, Tensor c);

  // ---- routing (token choice) ---------------------------------------------------------------

  /** scores [T, E] = softmax or sigmoid of the router logits [T, E] (F32). */
  void routerScores(Tensor logits, ScoreFunction fn, Tensor scores);

  /** dLogits [T, E] from dScores through the score function (scores saved from the forward). */
  void routerScoresBackward(Tensor scores, Tensor dScores, ScoreFunction fn, Tensor dLogits);

  /**
   * Per token the k best experts by scores + bias (bias F32 [E] or null; selection only), ties to
   * the lower index: expertIds I32 [T, k], weights F32 [T, k] (renormalized to sum 1 if asked).
   */
  void routeTopK(Tensor scores, Tensor bias, int k, boolean renormalize, Tensor expertIds, Tensor weights);

  /** dScores [T, E] (zero where unselected) from dWeights [T, k]. */
  void routeTopKBackward(Tensor scores, Tensor expertIds, Tensor dWeights, boolean renormalize, Tensor dScores);

  /**
   * Sorts the assignments by expert for the grouped GEMM. capacity <= 0: dropless; else at most
   * capacity per expert by priority (weight, then token order). offsets I64 [E + 1], sortedToken I32
   * [T·k] (-1 past offsets[E]), slotOf I32 [T, k] (-1 = dropped), counts I64 [E] before dropping
   * (nullable).
   */
  void routePlan(
      Tensor expertIds, Tensor weights, long capacity, Tensor offsets, Tensor sortedToken, Tensor slotOf, Tensor counts);

  /** rows [R, H] = x [T, H] rows picked by sortedToken (first R entries). */
  void routeGather(Tensor x, Tensor sortedToken, Tensor rows);

  /** dx [T, H] (=|+=) sum of each token's kept rows of dRows [R, H], in rank order. */
  void routeGatherBackward(Tensor dRows, Tensor slotOf, Tensor dx, boolean accumulate);

  /** y [T, H] = Σ_j weights[t, j] · rows[slotOf[t, j]] (weights null: 1), rank order. */
  void routeCombine(Tensor rows, Tensor slotOf, Tensor weights, Tensor y);

  /** dRows [R, H] and dWeights [T, k] (nullable) from dy [T, H]. */
  void routeCombineBackward(Tensor dy, Tensor rows, Tensor slotOf, Tensor weights, Tensor dRows, Tensor dWeights);

  /**
   * Expert Choice (Zhou et al. 2022): in each group of groupSize consecutive tokens every expert
   * takes its capacity best tokens by score (not causal: decode with token choice, k = round(cf)).
   * Outputs in the combine layout with k = E: offsets I64 [E + 1], sortedToken I32 [E·groups·capacity],
   * slotOf I32 [T, E], weights F32 [T, E] (score where chosen, else 0), uncovered I64 [1] (nullable):
   * tokens no expert chose.
   */
  void routeExpertChoice(
      Tensor scores, long groupSize, long capacity, Tensor offsets, Tensor sortedToken, Tensor slotOf, Tensor weights,
      Tensor uncovered);

  /** Switch load-balancing loss coef·E·Σ f_e·P_e into out F32 [1]; dScores [T, E] (nullable) += its gradient. */
  void routerBalanceLoss(Tensor scores, Tensor expertIds, float coef, Tensor out, Tensor dScores);

  /** Router z-loss coef·mean(logsumexp(logits)²) into out F32 [1]; dLogits (nullable) += its gradient. */
  void routerZLoss(Tensor logits, float coef, Tensor out, Tensor dLogits);

  /** Aux-loss-free balancing: bias[e] += rate·sign(mean(counts) − counts[e]); counts I64 [E] from routePlan. */
  void routerBiasUpdate(Tensor bias, Tensor counts, float rate);

  // ---- attention ----------------------------------------------------------------------------

  /**
   * RoPE, rotate-half convention: x, out [..., heads, headDim] (F32|BF16; out may be x), one
   * position per token (positions I32 with numel = tokens = x.numel / (heads·headDim)).
   */
  void ropeForward(Tensor x, Tensor positions, float theta, Tensor out);

  /** The transpose rotation (dx may be dOut). */
  void ropeBackward(Tensor dOut, Tensor positions, float theta, Tensor dx);

  /**
   * Flash attention forward: q, out [B, S, Hq, D]; k, v [B, S, Hkv, D] (Hq % Hkv == 0, GQA);
   * lse F32 [B, Hq, S] saved for the backward. F32 | BF16.
   */
  void attentionForward(Tensor q, Tensor k, Tensor v, AttentionOptions options, Tensor out, Tensor lse);

  /** Flash attention backward: dq like q; dk, dv like k (overwritten; GQA heads summed). */
  void attentionBackward(
      Tensor q, Tensor k, Tensor v, Tensor out, Tensor dOut, Tensor lse, AttentionOptions options, Tensor dq, Tensor dk,
      Tensor dv);

  /**
   * The naive attention forward — the full S×S score matrix materialized per (batch, head) — with
   * the arguments and results of {@link #attentionForward}: a benchmark baseline and test oracle.
   * cpu only; throws {@link io.moe4j.runtime.Moe4jException} (UNSUPPORTED) elsewhere.
   */
  void attentionNaiveForward(Tensor q, Tensor k, Tensor v, AttentionOptions options, Tensor out, Tensor lse);

  /**
   * Flash attention forward of a packed variable-length batch (FlashAttention "varlen"): B
   * sequences packed without padding, sequence b = tokens cuSeqlens[b] .. cuSeqlens[b+1] − 1.
   * q, out [T, Hq, D]; k, v [T, Hkv, D]; cuSeqlens I32 [B + 1] on this backend's device with
   * 0 = c[0] ≤ … ≤ c[B] = T (the CPU checks the values; CUDA clamps them); lse F32 [Hq, T].
   * Positions, the causal mask and the window restart at every sequence; no token sees another
   * sequence.
   */
  void attentionForwardVarlen(
      Tensor q, Tensor k, Tensor v, Tensor cuSeqlens, AttentionOptions options, Tensor out, Tensor lse);

  /** The backward of {@link #attentionForwardVarlen}: dq like q; dk, dv like k (overwritten). */
  void attentionBackwardVarlen(
      Tensor q, Tensor k, Tensor v, Tensor out, Tensor dOut, Tensor lse, Tensor cuSeqlens, AttentionOptions options,
      Tensor dq, Tensor dk, Tensor dv);

  /**
   * KV-cache decode: appends kNew, vNew [B, N, Hkv, D] to kCache, vCache [B, maxSeq, Hkv, D] at
   * lengths[b] (I32 [B]; not advanced) and attends q [B, N, Hq, D] causally to the cache (window and
   * scale from options) into out [B, N, Hq, D]; splitK chunks the context (flash-decoding).
   */
  void attentionDecode(
      Tensor q, Tensor kNew, Tensor vNew, Tensor kCache, Tensor vCache, Tensor lengths, AttentionOptions options,
      int splitK, Tensor out);

  @Override
  void close();
}
