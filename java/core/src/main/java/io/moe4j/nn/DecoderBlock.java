package io.moe4j.nn;

import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/** Pre-norm decoder block: h = x + attn(norm1(x)); out = h + ffn(norm2(h)); the FFN is MoE or dense. */
public final class DecoderBlock {

  private final Backend backend;
  private final int layer;
  private final RmsNorm inputNorm;
  private final Attention attention;
  private final RmsNorm postAttentionNorm;
  private final MoeFfn moe; // exactly one of moe / mlp
  private final SwigluMlp mlp;

  /** Block {@code layer} of a model of this config (HF names model.layers.{layer}.*). */
  public DecoderBlock(Backend backend, ModelConfig config, int layer, ParameterSource params) {
    this(backend, config, layer, params, new OpTimer(backend));
  }

  DecoderBlock(Backend backend, ModelConfig config, int layer, ParameterSource params, OpTimer timer) {
    this.backend = backend;
    this.layer = layer;
    String prefix = "model.layers." + layer + ".";
    inputNorm = new RmsNorm(backend, params.create(prefix + "input_layernorm.weight", ParameterSource.Kind.NORM, config.hiddenSize()),
        config.rmsNormEps());
    attention = new Attention(backend, config, prefix + "self_attn.", params, timer);
    postAttentionNorm = new RmsNorm(backend,
        params.create(prefix + "post_attention_layernorm.weight", ParameterSource.Kind.NORM, config.hiddenSize()), config.rmsNormEps());
    if (config.isMoeLayer(layer)) {
      String ffn = config.architecture() == ModelConfig.Architecture.MIXTRAL ? "block_sparse_moe." : "mlp.";
      moe = new MoeFfn(backend, config, prefix + ffn, params, timer);
      mlp = null;
    } else {
      moe = null;
      mlp = new SwigluMlp(backend, prefix + "mlp.", config.hiddenSize(), config.denseIntermediateSize(), params);
    }
  }

  public List<Parameter> parameters() {
    List<Parameter> list = new ArrayList<>();
    list.add(inputNorm.weight());
    list.addAll(attention.parameters());
    list.add(postAttentionNorm.weight());
    list.addAll(moe != null ? moe.parameters() : mlp.parameters());
    return list;
  }

  MoeFfn moe() {
    return moe;
  }

  /**
   * Training (or scoring) forward of x [T = batch·seq, hidden] at RoPE positions [T] (int32):
   * routerLosses (nullable, a MoE layer's) += {balance, z}, routing (nullable) receives its report,
   * causalRouting as in {@link MoeFfn#forward}; what backward needs is kept in {@code saved}.
   */
  public Tensor forward(Tensor x, int batch, int seq, Tensor positions, Scope saved, float[] routerLosses,
      List<LayerRouting> routing, boolean causalRouting) {
    Tensor attnOut = attention.forward(inputNorm.forward(x, saved), batch, seq, positions, saved);
    return addFfn(x, attnOut, batch, seq, saved, routerLosses, routing, causalRouting);
  }

  /** Inference step over n new tokens per sequence with a KV cache (see Attention#forwardCached). */
  Tensor forwardCached(Tensor x, int batch, int n, Tensor positions, KvCache cache, boolean fresh, Scope tmp) {
    Tensor attnOut = attention.forwardCached(inputNorm.forward(x, tmp), batch, n, positions, cache, layer, fresh, tmp);
    return addFfn(x, attnOut, batch, n, tmp, null, null, true);
  }

  /** h = x + attnOut; returns h + ffn(norm2(h)). */
  private Tensor addFfn(Tensor x, Tensor attnOut, int batch, int seq, Scope scope, float[] routerLosses,
      List<LayerRouting> routing, boolean causalRouting) {
    Tensor h = scope.add(backend.empty(DType.F32, x.shape()));
    backend.add(x, attnOut, h);
    Tensor ffnIn = postAttentionNorm.forward(h, scope);
    Tensor ffnOut;
    if (moe != null) {
      ffnOut = moe.forward(ffnIn, batch, seq, layer, scope, routerLosses, routing, causalRouting);
    } else {
      ffnOut = scope.add(backend.empty(DType.F32, x.shape()));
      mlp.forward(ffnIn, ffnOut, false, scope);
    }
    Tensor out = scope.add(backend.empty(DType.F32, x.shape()));
    backend.add(h, ffnOut, out);
    return out;
  }

  /** dx (overwritten) from dOut. */
  public void backward(Tensor dOut, Tensor dx, float lossScale) {
    try (Scope tmp = new Scope()) {
      Tensor dFfnIn = tmp.add(backend.empty(DType.F32, dOut.shape()));
      if (moe != null) moe.backward(dOut, dFfnIn, lossScale);
      else mlp.backward(dOut, dFfnIn, false);
      Tensor dh = tmp.add(backend.empty(DType.F32, dOut.shape()));
      postAttentionNorm.backward(dFfnIn, dh);
      backend.add(dh, dOut, dh);
      Tensor dAttnIn = tmp.add(backend.empty(DType.F32, dOut.shape()));
      attention.backward(dh, dAttnIn);
      inputNorm.backward(dAttnIn, dx);
      backend.add(dx, dh, dx);
    }
  }
}
