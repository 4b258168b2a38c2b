package io.moe4j.cli.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moe4j.train.EvalResult;
import io.moe4j.train.ExpertLoad;
import io.moe4j.train.StepMetrics;
import io.moe4j.train.TrainingCallback;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes one JSON object per step (and per evaluation, with {@code "eval"}) to metrics.jsonl and
 * keeps what the plots need: the loss curve and the expert-load totals (layer × expert, task ×
 * expert) over the run.
 */
public final class MetricsLog implements TrainingCallback, AutoCloseable {

  private static final ObjectMapper JSON = new ObjectMapper();

  private final BufferedWriter out;
  private final List<Long> steps = new ArrayList<>();
  private final List<Float> losses = new ArrayList<>();
  private final Map<Integer, long[]> layerExpert = new LinkedHashMap<>();
  private long[][] taskExpert;
  private final List<EvalResult> evals = new ArrayList<>();

  /**
   * Opens {@code file} for a run that starts after step {@code resumedStep}: a fresh run (0) starts
   * an empty log; a resumed run keeps the lines of steps up to its checkpoint's and drops later ones
   * (written after that checkpoint by the interrupted run, which the resumed run repeats).
   */
  public MetricsLog(Path file, long resumedStep) {
    try {
      List<String> kept = new ArrayList<>();
      if (resumedStep > 0 && Files.exists(file))
        for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
          JsonNode o = parse(line);
          if (o.path("step").asLong(0) > resumedStep) continue;
          kept.add(line);
          if (o.has("loss")) { // the loss curve covers the whole run, before and after the resume
            steps.add(o.get("step").asLong());
            losses.add((float) o.get("loss").asDouble());
          }
        }
      Files.write(file, kept, StandardCharsets.UTF_8);
      out = Files.newBufferedWriter(file, StandardCharsets.UTF_8, StandardOpenOption.APPEND);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot open " + file + ": " + e.getMessage(), e);
    }
  }

  /** A metrics line as JSON; a line that is not JSON reads as an empty object (kept, step 0). */
  private static JsonNode parse(String line) {
    try {
      return JSON.readTree(line);
    } catch (IOException e) {
      return JSON.createObjectNode();
    }
  }

  @Override
  public void onStep(StepMetrics m) {
    ObjectNode o = JSON.createObjectNode();
    o.put("step", m.step());
    o.put("loss", m.loss());
    o.put("aux_loss", m.auxLoss());
    o.put("z_loss", m.zLoss());
    o.put("lr", m.lr());
    o.put("grad_norm", m.gradNorm());
    o.put("skipped", m.skipped());
    o.put("skipped_total", m.skippedTotal());
    o.put("tokens", m.tokens());
    o.put("seconds", m.seconds());
    o.put("tokens_per_s", m.tokensPerSecond());
    if (Double.isFinite(m.mfu())) o.put("mfu", m.mfu());
    ArrayNode layers = o.putArray("expert_load");
    for (ExpertLoad load : m.expertLoad()) {
      ObjectNode l = layers.addObject();
      l.put("layer", load.layer());
      ArrayNode tokens = l.putArray("tokens");
      for (long t : load.expertTokens()) tokens.add(t);
      l.put("dropped_fraction", load.droppedFraction());
      long[] sum = layerExpert.computeIfAbsent(load.layer(), k -> new long[load.expertTokens().length]);
      if (sum.length < load.expertTokens().length) layerExpert.put(load.layer(), sum = java.util.Arrays.copyOf(sum, load.expertTokens().length));
      long[] add = load.expertTokens();
      for (int e = 0; e < add.length; e++) sum[e] += add[e];
    }
    if (m.taskExpertTokens() != null) {
      long[][] te = m.taskExpertTokens();
      if (taskExpert == null || taskExpert[0].length < te[0].length) taskExpert = grow(taskExpert, te.length, te[0].length);
      for (int t = 0; t < te.length; t++) for (int e = 0; e < te[t].length; e++) taskExpert[t][e] += te[t][e];
    }
    steps.add(m.step());
    losses.add(m.loss());
    write(o);
  }

  private static long[][] grow(long[][] old, int tasks, int experts) {
    long[][] next = new long[tasks][experts];
    if (old != null) for (int t = 0; t < old.length; t++) System.arraycopy(old[t], 0, next[t], 0, old[t].length);
    return next;
  }

  @Override
  public void onEval(EvalResult r) {
    evals.add(r);
    ObjectNode o = JSON.createObjectNode();
    o.put("step", r.step());
    ObjectNode e = o.putObject("eval");
    e.put(r.metric(), r.value());
    r.perTask().forEach(e::put);
    write(o);
  }

  private void write(ObjectNode o) {
    try {
      out.write(JSON.writeValueAsString(o));
      out.newLine();
      out.flush();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write metrics.jsonl: " + e.getMessage(), e);
    }
  }

  public List<Long> steps() {
    return steps;
  }

  public List<Float> losses() {
    return losses;
  }

  /** Assignments per expert summed over the run, per MoE layer (in layer order). */
  public Map<Integer, long[]> layerExpertTokens() {
    return layerExpert;
  }

  /** [task id][expert] over the run, or null for text data. */
  public long[][] taskExpertTokens() {
    return taskExpert;
  }

  public List<EvalResult> evals() {
    return evals;
  }

  @Override
  public void close() {
    try {
      out.close();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
