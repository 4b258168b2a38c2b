package io.moe4j.nn;

import io.moe4j.ops.Backend;
import io.moe4j.ops.ScoreFunction;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Scope;
import io.moe4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Routed SwiGLU experts. Token choice (Mixtral / Qwen3-MoE / OLMoE): softmax router in fp32, top-k,
 * renormalized when normTopkProb, dropless or with a capacity, Switch balance loss and router z-loss.
 * Expert Choice (Zhou et al. 2022): each expert takes its capacity best tokens of each sequence; the
 * combine weight is the score; no balance loss. Either way the assignments are sorted by expert and
 * the three expert projections run as grouped GEMMs over all experts at once.
 *
 * <p>Expert weights are stacked: w1 (gate) and w3 (up) [E, F, H], w2 (down) [E, H, F].
 */
public final class MoeFfn {

  private final Backend backend;
  private final ModelConfig config;
  private final Linear router;
  private final SwigluMlp shared; // null without shared experts
  private final OpTimer timer;
  private Parameter w1;
  private Parameter w3;
  private Parameter w2;

  // saved for backward
  private Tensor savedX;
  private Tensor logits;
  private Tensor scores;
  private Tensor expertIds; // token choice only
  private Tensor weights;
  private Tensor offsets;
  private Tensor slotOf;
  private Tensor rows;
  private Tensor gate;
  private Tensor up;
  private Tensor hidden;
  private Tensor outRows;
  private int k;
  private boolean topK; // this forward routed by top-k (token choice or the causal EC fallback)

  /** The MoE FFN of a block whose HF names start with {@code prefix} (e.g. "model.layers.0.mlp."). */
  public MoeFfn(Backend backend, ModelConfig config, String prefix, ParameterSource params) {
    this(backend, config, prefix, params, new OpTimer(backend));
  }

  MoeFfn(Backend backend, ModelConfig config, String prefix, ParameterSource params, OpTimer timer) {
    this.backend = backend;
    this.config = config;
    this.timer = timer;
    long h = config.hiddenSize();
    long e = config.numExperts();
    long f = config.moeIntermediateSize();
    router = new Linear(backend, params.create(prefix + "gate.weight", ParameterSource.Kind.MATRIX, e, h));
    String experts = prefix + "experts." + Parameter.EXPERT_INDEX + ".";
    boolean mixtral = config.architecture() == ModelConfig.Architecture.MIXTRAL;
    w1 = params.create(experts + (mixtral ? "w1.weight" : "gate_proj.weight"), ParameterSource.Kind.MATRIX, e, f, h);
    w3 = params.create(experts + (mixtral ? "w3.weight" : "up_proj.weight"), ParameterSource.Kind.MATRIX, e, f, h);
    w2 = params.create(experts + (mixtral ? "w2.weight" : "down_proj.weight"), ParameterSource.Kind.MATRIX, e, h, f);
    shared = config.numSharedExperts() == 0 ? null
        : new SwigluMlp(backend, prefix + "shared_expert.", h,
            (long) config.numSharedExperts() * config.sharedExpertIntermediateSize(), params);
  }

  public List<Parameter> parameters() {
    List<Parameter> list = new ArrayList<>(List.of(router.weight(), w1, w3, w2));
    if (shared != null) list.addAll(shared.parameters());
    return list;
  }

  private int experts() {
    return Math.toIntExact(router.outFeatures());
  }

  /**
   * Router output and expert FFN for x [T, hidden] of {@code batch} sequences; y [T, hidden].
   * lossesOut (nullable) += {balance, z} losses; routing (nullable) receives the layer's report.
   * {@code causal}: route each token on its own (inference). Token choice already does; an Expert
   * Choice model then falls back to token choice with k = round(capacityFactor) experts per token,
   * weights = the scores (not renormalized) — EC looks at the whole sequence, which a decoder
   * producing one token at a time does not have.
   */
  public Tensor forward(Tensor x, int batch, int seq, int layer, Scope saved, float[] lossesOut, List<LayerRouting> routing,
      boolean causal) {
    long tokens = x.dim(0);
    int e = experts();
    savedX = x;
    long t0 = timer.start();
    logits = saved.add(backend.empty(DType.F32, tokens, e));
    router.forward(x, logits);
    scores = saved.add(backend.empty(DType.F32, tokens, e));
    backend.routerScores(logits, ScoreFunction.SOFTMAX, scores);
    offsets = saved.add(backend.empty(DType.I64, e + 1));
    Tensor sortedToken;
    double dropped;
    boolean expertChoice = config.routing() == ModelConfig.Routing.EXPERT_CHOICE;
    topK = !expertChoice || causal;
    if (topK) {
      k = expertChoice ? Math.max(1, Math.min(e, Math.round(config.capacityFactor()))) : config.expertsPerToken();
      expertIds = saved.add(backend.empty(DType.I32, tokens, k));
      weights = saved.add(backend.empty(DType.F32, tokens, k));
      backend.routeTopK(scores, null, k, !expertChoice && config.normTopkProb(), expertIds, weights);
      boolean capped = !causal && config.capacityFactor() > 0;
      long capacity = capped ? (long) Math.ceil(config.capacityFactor() * tokens * k / e) : 0;
      sortedToken = saved.add(backend.empty(DType.I32, tokens * k));
      slotOf = saved.add(backend.empty(DType.I32, tokens, k));
      backend.routePlan(expertIds, weights, capacity, offsets, sortedToken, slotOf, null);
      dropped = Double.NaN; // from the offsets below
    } else {
      k = e;
      long capacity = Math.max(1, Math.min(seq, (long) Math.ceil(config.capacityFactor() * seq / e)));
      sortedToken = saved.add(backend.empty(DType.I32, (long) e * batch * capacity));
      slotOf = saved.add(backend.empty(DType.I32, tokens, e));
      weights = saved.add(backend.empty(DType.F32, tokens, e));
      try (Tensor uncovered = backend.empty(DType.I64, 1)) {
        backend.routeExpertChoice(scores, seq, capacity, offsets, sortedToken, slotOf, weights, uncovered);
        dropped = backend.toLongs(uncovered)[0] / (double) tokens;
      }
    }
    long[] offsetsHost = backend.toLongs(offsets);
    long numRows = offsetsHost[e];
    if (Double.isNaN(dropped)) dropped = 1.0 - numRows / (double) (tokens * k);
    if (routing != null) routing.add(routingReport(layer, offsetsHost, dropped));
    rows = saved.add(backend.empty(DType.F32, numRows, config.hiddenSize()));
    backend.routeGather(x, sortedToken, rows);
    timer.stop(OpTimer.Family.ROUTING, t0);

    t0 = timer.start();
    long f = config.moeIntermediateSize();
    gate = saved.add(backend.empty(DType.F32, numRows, f));
    up = saved.add(backend.empty(DType.F32, numRows, f));
    hidden = saved.add(backend.empty(DType.F32, numRows, f));
    outRows = saved.add(backend.empty(DType.F32, numRows, config.hiddenSize()));
    try (Scope casts = new Scope()) {
      DType weights = w1.computeValue().dtype();
      Tensor rowsIn = Linear.castTo(backend, rows, weights, casts);
      backend.groupedGemmForward(rowsIn, w1.computeValue(), offsets, gate, null, false);
      backend.groupedGemmForward(rowsIn, w3.computeValue(), offsets, up, null, false);
      backend.swigluForward(gate, up, hidden);
      backend.groupedGemmForward(Linear.castTo(backend, hidden, weights, casts), w2.computeValue(), offsets, outRows,
          null, false);
    }
    timer.stop(OpTimer.Family.EXPERT_GEMM, t0);

    t0 = timer.start();
    Tensor y = saved.add(backend.empty(DType.F32, tokens, config.hiddenSize()));
    backend.routeCombine(outRows, slotOf, weights, y);
    if (lossesOut != null) try (Tensor loss = backend.empty(DType.F32, 1)) {
      if (!expertChoice && config.routerAuxLossCoef() > 0) {
        backend.routerBalanceLoss(scores, expertIds, config.routerAuxLossCoef(), loss, null);
        lossesOut[0] += backend.toFloats(loss)[0];
      }
      if (config.routerZLossCoef() > 0) {
        backend.routerZLoss(logits, config.routerZLossCoef(), loss, null);
        lossesOut[1] += backend.toFloats(loss)[0];
      }
    }
    timer.stop(OpTimer.Family.ROUTING, t0);
    if (shared != null) shared.forward(x, y, true, saved);
    return y;
  }

  private LayerRouting routingReport(int layer, long[] offsetsHost, double dropped) {
    int e = experts();
    long[] perExpert = new long[e];
    for (int i = 0; i < e; i++) perExpert[i] = offsetsHost[i + 1] - offsetsHost[i];
    int[] slots = backend.toInts(slotOf);
    int[] tokenExperts = new int[slots.length];
    if (topK) {
      int[] ids = backend.toInts(expertIds);
      for (int a = 0; a < slots.length; a++) tokenExperts[a] = slots[a] < 0 ? -1 : ids[a];
    } else {
      for (int a = 0; a < slots.length; a++) tokenExperts[a] = slots[a] < 0 ? -1 : a % e;
    }
    return new LayerRouting(layer, perExpert, dropped, tokenExperts, k);
  }

  /** dx (overwritten) from dy [T, hidden]; lossScale multiplies the router-loss gradients. */
  public void backward(Tensor dy, Tensor dx, float lossScale) {
    long tokens = dy.dim(0);
    int e = experts();
    try (Scope tmp = new Scope()) {
      long t0 = timer.start();
      Tensor dOutRows = tmp.add(backend.empty(DType.F32, outRows.shape()));
      Tensor dWeights = tmp.add(backend.empty(DType.F32, tokens, k));
      backend.routeCombineBackward(dy, outRows, slotOf, weights, dOutRows, dWeights);
      timer.stop(OpTimer.Family.ROUTING, t0);

      t0 = timer.start();
      Tensor dHidden = tmp.add(backend.empty(DType.F32, hidden.shape()));
      Linear.weightGradients(backend, w2, offsets, dOutRows, hidden, dHidden, false);
      Tensor dGate = tmp.add(backend.empty(DType.F32, gate.shape()));
      Tensor dUp = tmp.add(backend.empty(DType.F32, up.shape()));
      backend.swigluBackward(gate, up, dHidden, dGate, dUp);
      Tensor dRows = tmp.add(backend.empty(DType.F32, rows.shape()));
      Linear.weightGradients(backend, w1, offsets, dGate, rows, dRows, false);
      Linear.weightGradients(backend, w3, offsets, dUp, rows, dRows, true);
      timer.stop(OpTimer.Family.EXPERT_GEMM, t0);

      t0 = timer.start();
      backend.routeGatherBackward(dRows, slotOf, dx, false);
      Tensor dScores = tmp.add(backend.empty(DType.F32, tokens, e));
      Tensor unused = tmp.add(backend.empty(DType.F32, 1));
      if (topK) {
        backend.routeTopKBackward(scores, expertIds, dWeights, config.normTopkProb(), dScores);
        if (config.routerAuxLossCoef() > 0)
          backend.routerBalanceLoss(scores, expertIds, config.routerAuxLossCoef() * lossScale, unused, dScores);
      } else {
        backend.copy(dWeights, dScores); // weight = score where chosen; dWeights is 0 elsewhere
      }
      Tensor dLogits = tmp.add(backend.empty(DType.F32, tokens, e));
      backend.routerScoresBackward(scores, dScores, ScoreFunction.SOFTMAX, dLogits);
      if (config.routerZLossCoef() > 0)
        backend.routerZLoss(logits, config.routerZLossCoef() * lossScale, unused, dLogits);
      router.backward(dLogits, savedX, dx, true);
      timer.stop(OpTimer.Family.ROUTING, t0);
    }
    if (shared != null) shared.backward(dy, dx, true);
  }

  /** Appends {@code added} freshly initialized experts and router rows; returns the replaced parameters. */
  List<Parameter> addExperts(int added, long seed) {
    long newE = experts() + added;
    float std = config.initializerRange();
    List<Parameter> old = List.of(router.weight(), w1, w3, w2);
    router.replaceWeight(RandomInit.grow(backend, router.weight(), newE, seed, std));
    w1 = RandomInit.grow(backend, w1, newE, seed, std);
    w3 = RandomInit.grow(backend, w3, newE, seed, std);
    w2 = RandomInit.grow(backend, w2, newE, seed, std);
    return old;
  }

  /** Freezes experts below {@code oldExperts} and their router rows; everything newer stays trainable. */
  void freezeExpertsBelow(int oldExperts) {
    for (Parameter p : List.of(router.weight(), w1, w3, w2))
      p.setTrainableFrom(p.numel() / p.value().dim(0) * oldExperts);
  }
}
