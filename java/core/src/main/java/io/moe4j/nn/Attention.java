package io.moe4j.nn;

import io.moe4j.ops.AttentionOptions;
import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Causal GQA self-attention: q, k, v projections, optional RMSNorm of q and k (per head as in
 * Qwen3-MoE, or over the whole projection as in OLMoE), RoPE (rotate-half), flash attention, output
 * projection. Rows are tokens of a [B, S] batch in row-major order, so [T, H·D] is [B, S, H, D].
 */
public final class Attention {

  private final Backend backend;
  private final ModelConfig config;
  private final Linear q;
  private final Linear k;
  private final Linear v;
  private final Linear o;
  private final RmsNorm qNorm; // null without q/k norm
  private final RmsNorm kNorm;
  private final OpTimer timer;

  // saved for backward
  private Tensor savedX;
  private Tensor qRot; // the attention kernel's inputs and output: BF16 in mixed precision, else F32
  private Tensor kRot;
  private Tensor vAttn;
  private Tensor attnOut;
  private Tensor lse;
  private Tensor positions;
  private int batch;
  private int seq;

  /** The attention of a block whose HF names start with {@code prefix} (e.g. "model.layers.0.self_attn."). */
  public Attention(Backend backend, ModelConfig config, String prefix, ParameterSource params) {
    this(backend, config, prefix, params, new OpTimer(backend));
  }

  Attention(Backend backend, ModelConfig config, String prefix, ParameterSource params, OpTimer timer) {
    this.backend = backend;
    this.config = config;
    this.timer = timer;
    long h = config.hiddenSize();
    long qWidth = (long) config.numHeads() * config.headDim();
    long kvWidth = (long) config.numKvHeads() * config.headDim();
    q = new Linear(backend, params.create(prefix + "q_proj.weight", ParameterSource.Kind.MATRIX, qWidth, h));
    k = new Linear(backend, params.create(prefix + "k_proj.weight", ParameterSource.Kind.MATRIX, kvWidth, h));
    v = new Linear(backend, params.create(prefix + "v_proj.weight", ParameterSource.Kind.MATRIX, kvWidth, h));
    o = new Linear(backend, params.create(prefix + "o_proj.weight", ParameterSource.Kind.MATRIX, h, qWidth));
    switch (config.qkNorm()) {
      case PER_HEAD -> {
        qNorm = new RmsNorm(backend, params.create(prefix + "q_norm.weight", ParameterSource.Kind.NORM, config.headDim()), config.rmsNormEps());
        kNorm = new RmsNorm(backend, params.create(prefix + "k_norm.weight", ParameterSource.Kind.NORM, config.headDim()), config.rmsNormEps());
      }
      case WHOLE -> {
        qNorm = new RmsNorm(backend, params.create(prefix + "q_norm.weight", ParameterSource.Kind.NORM, qWidth), config.rmsNormEps());
        kNorm = new RmsNorm(backend, params.create(prefix + "k_norm.weight", ParameterSource.Kind.NORM, kvWidth), config.rmsNormEps());
      }
      default -> {
        qNorm = null;
        kNorm = null;
      }
    }
  }

  public List<Parameter> parameters() {
    List<Parameter> list = new ArrayList<>(List.of(q.weight(), k.weight(), v.weight(), o.weight()));
    if (qNorm != null) {
      list.add(qNorm.weight());
      list.add(kNorm.weight());
    }
    return list;
  }

  private AttentionOptions options() {
    return AttentionOptions.causal(config.headDim());
  }

  /**
   * Mixed precision (the projections have BF16 compute copies): the attention kernel runs on BF16
   * q, k, v (f32 softmax statistics and accumulation inside; the FlashAttention-2 tensor-core path
   * on CUDA), its BF16 output feeds the BF16 o-projection, and its gradients come back in BF16.
   */
  private boolean bf16Attention() {
    return q.weight().computeCopy() != null;
  }

  /** t itself in F32 mode, else a BF16 copy owned by {@code scope}. */
  private Tensor attentionInput(Tensor t, Scope scope) {
    return bf16Attention() ? Linear.castTo(backend, t, DType.BF16, scope) : t;
  }

  /** q and k after the optional norm and RoPE, and v: F32 [batch, n, heads, headDim]. */
  private record Qkv(Tensor q, Tensor k, Tensor v) {}

  /**
   * The projections of x [batch·n, hidden], q/k-normed and rotated: the projections' outputs and
   * the norms' saved state go to {@code normScope} (what the norms' backward reads), the results to
   * {@code scope}.
   */
  private Qkv projectQkv(Tensor x, int batch, int n, Tensor positions, Scope normScope, Scope scope) {
    long tokens = (long) batch * n;
    int hq = config.numHeads();
    int hkv = config.numKvHeads();
    int d = config.headDim();
    Tensor qp = normScope.add(backend.empty(DType.F32, tokens, (long) hq * d));
    Tensor kp = normScope.add(backend.empty(DType.F32, tokens, (long) hkv * d));
    Tensor vp = scope.add(backend.empty(DType.F32, batch, n, hkv, d));
    q.forward(x, qp);
    k.forward(x, kp);
    v.forward(x, vp.reshape(tokens, (long) hkv * d));
    Tensor qIn = qNorm == null ? qp : qNorm.forward(qp, normScope);
    Tensor kIn = kNorm == null ? kp : kNorm.forward(kp, normScope);
    Tensor qr = scope.add(backend.empty(DType.F32, batch, n, hq, d));
    Tensor kr = scope.add(backend.empty(DType.F32, batch, n, hkv, d));
    backend.ropeForward(qIn.reshape(tokens, hq, d), positions, config.ropeTheta(), qr.reshape(tokens, hq, d));
    backend.ropeForward(kIn.reshape(tokens, hkv, d), positions, config.ropeTheta(), kr.reshape(tokens, hkv, d));
    return new Qkv(qr, kr, vp);
  }

  /** y [T, hidden] = attention(x [T, hidden]) for T = batch·seq tokens. */
  public Tensor forward(Tensor x, int batch, int seq, Tensor positions, Scope saved) {
    this.batch = batch;
    this.seq = seq;
    this.savedX = x;
    this.positions = positions;
    long tokens = (long) batch * seq;
    int hq = config.numHeads();
    int d = config.headDim();
    try (Scope f32 = new Scope()) { // the F32 values the BF16 attention inputs are cast from
      Qkv qkv = projectQkv(x, batch, seq, positions, saved, bf16Attention() ? f32 : saved);
      qRot = attentionInput(qkv.q(), saved);
      kRot = attentionInput(qkv.k(), saved);
      vAttn = attentionInput(qkv.v(), saved);
    }
    attnOut = saved.add(backend.empty(qRot.dtype(), batch, seq, hq, d));
    lse = saved.add(backend.empty(DType.F32, batch, hq, seq));
    long t0 = timer.start();
    backend.attentionForward(qRot, kRot, vAttn, options(), attnOut, lse);
    timer.stop(OpTimer.Family.ATTENTION, t0);
    Tensor y = saved.add(backend.empty(DType.F32, tokens, config.hiddenSize()));
    o.forward(attnOut.reshape(tokens, (long) hq * d), y);
    return y;
  }

  /**
   * Inference over {@code n} new tokens per sequence with a KV cache; nothing is kept for backward.
   * {@code fresh} (empty cache, a prompt): flash attention over the right-padded prompts, then their
   * keys and values are copied into the cache (padding after a prompt is never seen by its tokens:
   * attention is causal; the cache length is set to the real prompt length afterwards). Otherwise
   * the decode kernel appends the new keys and values at each sequence's length and attends to the
   * cache.
   */
  Tensor forwardCached(Tensor x, int batch, int n, Tensor positions, KvCache cache, int layer, boolean fresh,
      Scope tmp) {
    long tokens = (long) batch * n;
    int hq = config.numHeads();
    int hkv = config.numKvHeads();
    int d = config.headDim();
    Qkv qkv = projectQkv(x, batch, n, positions, tmp, tmp);
    Tensor qr = qkv.q(), kr = qkv.k(), vp = qkv.v();
    Tensor out = tmp.add(backend.empty(DType.F32, batch, n, hq, d));
    long t0 = timer.start();
    if (fresh) {
      Tensor scratchLse = tmp.add(backend.empty(DType.F32, batch, hq, n));
      backend.attentionForward(qr, kr, vp, options(), out, scratchLse);
      long rowsPerSeq = (long) n * hkv * d;
      long cacheStride = (long) cache.maxSeq() * hkv * d;
      for (int b = 0; b < batch; b++) {
        backend.copy(kr.view(b * rowsPerSeq, rowsPerSeq), cache.keys(layer).view(b * cacheStride, rowsPerSeq));
        backend.copy(vp.view(b * rowsPerSeq, rowsPerSeq), cache.values(layer).view(b * cacheStride, rowsPerSeq));
      }
    } else {
      backend.attentionDecode(qr, kr, vp, cache.keys(layer), cache.values(layer), cache.lengthsOnDevice(), options(),
          decodeSplits(batch, cache), out);
    }
    timer.stop(OpTimer.Family.ATTENTION, t0);
    Tensor y = tmp.add(backend.empty(DType.F32, tokens, config.hiddenSize()));
    o.forward(out.reshape(tokens, (long) hq * d), y);
    return y;
  }

  /**
   * Context chunks for the decode kernel: (batch, head) pairs already give enough parallel work when
   * there are many; with few, long contexts are split (flash-decoding) into chunks of >= 512 keys.
   */
  private int decodeSplits(int batch, KvCache cache) {
    long pairs = (long) batch * config.numHeads();
    if (pairs >= 64) return 1;
    int longest = 0;
    for (int len : cache.lengths()) longest = Math.max(longest, len);
    return (int) Math.max(1, Math.min(16, longest / 512));
  }

  /** dx (overwritten) from dy [T, hidden]; parameter gradients accumulated. */
  public void backward(Tensor dy, Tensor dx) {
    long tokens = (long) batch * seq;
    int hq = config.numHeads();
    int hkv = config.numKvHeads();
    int d = config.headDim();
    try (Scope tmp = new Scope()) {
      Tensor dAttn = tmp.add(backend.empty(DType.F32, tokens, (long) hq * d));
      o.backward(dy, attnOut.reshape(tokens, (long) hq * d), dAttn, false);
      DType attnType = qRot.dtype();
      Tensor dqA = tmp.add(backend.empty(attnType, batch, seq, hq, d));
      Tensor dkA = tmp.add(backend.empty(attnType, batch, seq, hkv, d));
      Tensor dvA = tmp.add(backend.empty(attnType, batch, seq, hkv, d));
      long t0 = timer.start();
      backend.attentionBackward(qRot, kRot, vAttn, attnOut,
          Linear.castTo(backend, dAttn, attnType, tmp).reshape(batch, seq, hq, d), lse, options(), dqA, dkA, dvA);
      timer.stop(OpTimer.Family.ATTENTION, t0);
      Tensor dq = Linear.castTo(backend, dqA, DType.F32, tmp).reshape(tokens, (long) hq * d);
      Tensor dk = Linear.castTo(backend, dkA, DType.F32, tmp).reshape(tokens, (long) hkv * d);
      Tensor dv = Linear.castTo(backend, dvA, DType.F32, tmp).reshape(tokens, (long) hkv * d);
      backend.ropeBackward(dq.reshape(tokens, hq, d), positions, config.ropeTheta(), dq.reshape(tokens, hq, d));
      backend.ropeBackward(dk.reshape(tokens, hkv, d), positions, config.ropeTheta(), dk.reshape(tokens, hkv, d));
      Tensor dqRaw = dq;
      Tensor dkRaw = dk;
      if (qNorm != null) {
        dqRaw = tmp.add(backend.empty(DType.F32, dq.shape()));
        dkRaw = tmp.add(backend.empty(DType.F32, dk.shape()));
        qNorm.backward(dq, dqRaw);
        kNorm.backward(dk, dkRaw);
      }
      q.backward(dqRaw, savedX, dx, false);
      k.backward(dkRaw, savedX, dx, true);
      v.backward(dv, savedX, dx, true);
    }
  }
}
