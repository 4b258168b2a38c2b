package io.moe4j.cli;

import io.moe4j.cli.train.MetricsLog;
import io.moe4j.cli.train.ProgressReporter;
import io.moe4j.cli.train.TrainPlots;
import io.moe4j.io.HfConfig;
import io.moe4j.nn.ModelConfig;
import io.moe4j.ops.AdamWConfig;
import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.runtime.CpuNative;
import io.moe4j.tensor.Device;
import io.moe4j.text.ByteTokenizer;
import io.moe4j.text.HfTokenizer;
import io.moe4j.text.Tokenizer;
import io.moe4j.text.Tokenizers;
import io.moe4j.train.EvalResult;
import io.moe4j.train.Evaluator;
import io.moe4j.train.ExactMatchEvaluator;
import io.moe4j.train.LrSchedule;
import io.moe4j.train.Trainer;
import io.moe4j.train.TrainerState;
import io.moe4j.train.TrainingCheckpoint;
import io.moe4j.train.TrainingData;
import io.moe4j.train.TrainingStoppedException;
import io.moe4j.train.ValidationLossEvaluator;
import io.moe4j.train.data.ExactMatch;
import io.moe4j.train.data.SyntheticTask;
import io.moe4j.train.data.SyntheticTasks;
import io.moe4j.train.data.TextDataset;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/**
 * {@code moe4j train}: trains an MoE transformer on the built-in synthetic tasks (the demo, with no
 * options) or on text files, with a progress bar, metrics.jsonl, a loss-curve PNG, expert-load
 * heatmaps and an HF checkpoint directory in the output directory; resumes bit-exactly, and can grow
 * the model by new experts on resume (optionally freezing the old ones).
 */
final class TrainCommand {

  /** The demo's schedule, measured to reach its accuracy within about five minutes on 2 cores (docs/BENCHMARKS.md). */
  static final int DEMO_STEPS = 3000;
  static final int DEMO_BATCH = 32;
  static final float DEMO_LR = 3e-3f;
  /** The demo's tasks; SHIFT is left for growing the trained demo by new experts (README, lifelong MoE). */
  static final Set<SyntheticTask> DEFAULT_TASKS =
      EnumSet.of(SyntheticTask.ADD, SyntheticTask.COPY, SyntheticTask.REVERSE, SyntheticTask.SORT);
  static final int DEFAULT_TEXT_SEQ_LEN = 128;
  static final int EVAL_SEED = 1234;
  /** H100 SXM dense bf16 (the MFU reference for --precision bf16; with f32 the MFU is a lower bound). */
  static final double H100_PEAK_FLOPS = 989e12;

  private Options options() {
    Options o = new Options();
    o.addOption(null, "preset", true, "model preset: demo (default; 4 layers, d=128, 8 experts, top-2), moe-100m (6 layers, "
        + "d=512), moe-1b (16 layers, d=1024); the vocabulary is the tokenizer's");
    o.addOption(null, "config", true, "model from an HF config.json (Mixtral, Qwen3-MoE, OLMoE)");
    o.addOption(Option.builder().longOpt("data").hasArgs().argName("FILE...").desc("text files (byte-level tokens unless --tokenizer); default: the synthetic tasks").build());
    o.addOption(null, "tokenizer", true, "with --data: a Hugging Face tokenizer.json (or a directory holding one) instead of "
        + "byte-level tokens; the demo model takes its vocabulary, the checkpoint keeps the tokenizer's files");
    o.addOption(null, "tasks", true, "synthetic tasks, comma-separated: " + taskNames() + " (default add,copy,reverse,sort)");
    o.addOption(null, "steps", true, "total optimizer steps (a resumed run continues up to this count; demo " + DEMO_STEPS + ")");
    o.addOption(null, "batch-size", true, "rows per micro-batch (demo " + DEMO_BATCH + ")");
    o.addOption(null, "grad-accumulation", true, "micro-batches per optimizer step (default 1)");
    o.addOption(null, "precision", true, "f32 | bf16: bf16 = BF16 compute copies of the matrices, F32 master weights and "
        + "moments (default: bf16 on cuda, f32 on cpu)");
    o.addOption(null, "seq-len", true, "tokens per row (synthetic: the tasks' minimum; text: " + DEFAULT_TEXT_SEQ_LEN + ")");
    o.addOption(null, "lr", true, "peak learning rate (demo " + DEMO_LR + "); warmup then cosine decay to lr/10");
    o.addOption(null, "warmup", true, "warmup steps (default 5% of --steps)");
    o.addOption(null, "routing", true, "token-choice | expert-choice (default: the config's)");
    o.addOption(null, "device", true, "auto | cpu | cuda | cuda:N (default auto)");
    o.addOption(null, "seed", true, "seed of the model init and the data stream (default 1)");
    o.addOption(null, "out", true, "output directory (default train-out; with --resume: the resumed run's directory)");
    o.addOption(null, "resume", true, "continue from a checkpoint directory (or a run directory holding checkpoint/); "
        + "options not given (steps, batch size, accumulation, seq len, lr, seed, tasks, precision) are the checkpoint's, "
        + "so an interrupted run continues bit-exactly");
    o.addOption(null, "add-experts", true, "with --resume: grow every MoE layer by N new experts");
    o.addOption(null, "freeze-old", false, "with --add-experts: train only the new experts and their router rows");
    o.addOption(null, "eval-every", true, "evaluate every N steps (default: 4 times per run; 0 = only at the end)");
    o.addOption(null, "checkpoint-every", true, "checkpoint every N steps (default: only at the end)");
    o.addOption(null, "eval-prompts", true, "held-out prompts per synthetic task (default 50)");
    return o;
  }

  private static String taskNames() {
    List<String> names = new ArrayList<>();
    for (SyntheticTask t : SyntheticTask.values()) names.add(t.name().toLowerCase(Locale.ROOT));
    return String.join(",", names);
  }

  int run(String[] args, PrintStream out, PrintStream err) {
    Options options = options();
    CommandLine cl = Main.parse(options, args, "moe4j train [options]",
        "With no options: the demo (synthetic tasks, ModelConfig.demo()).", out);
    if (cl == null) return 0; // --help
    Settings s = Settings.parse(cl);
    Backend opened;
    try {
      opened = Backends.open(s.device);
    } catch (IllegalArgumentException e) {
      throw new Main.UsageException("--device: " + e.getMessage());
    }
    try (Backend backend = opened) {
      return train(s, backend, out, err);
    }
  }

  /** Parsed, checked options. */
  private record Settings(
      String preset, Path config, List<Path> data, Set<SyntheticTask> tasks, Long steps, Integer batchSize,
      Integer gradAccumulation, Integer seqLen, Float lr, Long warmup, ModelConfig.Routing routing, String device, Long seed,
      Path out, Path resume, int addExperts, boolean freezeOld, Long evalEvery, long checkpointEvery, int evalPrompts,
      Path tokenizer, Boolean bf16) {

    static Settings parse(CommandLine cl) {
      String preset = cl.getOptionValue("preset");
      if (preset != null && !ModelConfig.PRESETS.contains(preset))
        throw new Main.UsageException("--preset must be one of " + String.join(", ", ModelConfig.PRESETS) + ", got '" + preset + "'");
      Path config = cl.hasOption("config") ? Path.of(cl.getOptionValue("config")) : null;
      if (preset != null && config != null) throw new Main.UsageException("--preset and --config are exclusive: give one");
      if (config != null && !Files.isRegularFile(config)) throw new Main.UsageException("--config " + config + " is not a file");
      List<Path> data = new ArrayList<>();
      if (cl.hasOption("data"))
        for (String f : cl.getOptionValues("data")) {
          Path p = Path.of(f);
          if (!Files.isRegularFile(p)) throw new Main.UsageException("--data " + f + " is not a readable file");
          data.add(p);
        }
      Path tokenizer = cl.hasOption("tokenizer") ? Path.of(cl.getOptionValue("tokenizer")) : null;
      if (tokenizer != null && data.isEmpty())
        throw new Main.UsageException("--tokenizer applies to --data text files (the synthetic tasks are byte-level)");
      if (tokenizer != null && !Files.exists(tokenizer)) throw new Main.UsageException("--tokenizer " + tokenizer + " does not exist");
      Set<SyntheticTask> tasks = null; // not given: the defaults, or a resumed run's
      if (cl.hasOption("tasks")) {
        if (!data.isEmpty()) throw new Main.UsageException("--tasks chooses synthetic tasks and cannot be combined with --data");
        tasks = EnumSet.noneOf(SyntheticTask.class);
        for (String t : cl.getOptionValue("tasks").split(",")) {
          try {
            tasks.add(SyntheticTask.valueOf(t.trim().toUpperCase(Locale.ROOT)));
          } catch (IllegalArgumentException e) {
            throw new Main.UsageException("--tasks must list tasks from " + taskNames() + ", got '" + t + "'");
          }
        }
      }
      Path resume = cl.hasOption("resume") ? Path.of(cl.getOptionValue("resume")) : null;
      if (resume != null) {
        if (!Files.isDirectory(resume)) throw new Main.UsageException("--resume " + resume + " is not a directory");
        if (!Files.isRegularFile(resume.resolve(TrainingCheckpoint.STATE_FILE)) && Files.isDirectory(resume.resolve("checkpoint")))
          resume = resume.resolve("checkpoint");
        if (!Files.isRegularFile(resume.resolve(TrainingCheckpoint.STATE_FILE)))
          throw new Main.UsageException("--resume " + cl.getOptionValue("resume") + " has no " + TrainingCheckpoint.STATE_FILE
              + " (neither it nor its checkpoint/ subdirectory is a moe4j training checkpoint)");
        if (preset != null || config != null || cl.hasOption("routing"))
          throw new Main.UsageException("--preset, --config and --routing cannot be combined with --resume: the checkpoint has its model");
      }
      int addExperts = (int) longOption(cl, "add-experts", 0, 0);
      if (addExperts > 0 && resume == null) throw new Main.UsageException("--add-experts needs --resume (it grows a trained model)");
      boolean freezeOld = cl.hasOption("freeze-old");
      if (freezeOld && addExperts == 0) throw new Main.UsageException("--freeze-old needs --add-experts N (nothing new would be trained)");
      ModelConfig.Routing routing = null;
      if (cl.hasOption("routing")) {
        String r = cl.getOptionValue("routing");
        routing = switch (r) {
          case "token-choice" -> ModelConfig.Routing.TOKEN_CHOICE;
          case "expert-choice" -> ModelConfig.Routing.EXPERT_CHOICE;
          default -> throw new Main.UsageException("--routing must be token-choice or expert-choice, got '" + r + "'");
        };
      }
      Float lr = null;
      if (cl.hasOption("lr")) {
        try {
          lr = Float.parseFloat(cl.getOptionValue("lr"));
        } catch (NumberFormatException e) {
          throw new Main.UsageException("--lr must be a number, got '" + cl.getOptionValue("lr") + "'");
        }
        if (!(lr > 0) || !Float.isFinite(lr)) throw new Main.UsageException("--lr must be > 0, got " + cl.getOptionValue("lr"));
      }
      Path out = cl.hasOption("out") ? Path.of(cl.getOptionValue("out"))
          : resume != null ? resume.toAbsolutePath().getParent() : Path.of("train-out");
      if (Files.exists(out) && !Files.isDirectory(out)) throw new Main.UsageException("--out " + out + " exists and is not a directory");
      Long steps = cl.hasOption("steps") ? longOption(cl, "steps", 0, 1) : null;
      Integer batch = cl.hasOption("batch-size") ? (int) longOption(cl, "batch-size", 0, 1) : null;
      Integer seqLen = cl.hasOption("seq-len") ? (int) longOption(cl, "seq-len", 0, 1) : null;
      Long warmup = cl.hasOption("warmup") ? longOption(cl, "warmup", 0, 0) : null;
      Long evalEvery = cl.hasOption("eval-every") ? longOption(cl, "eval-every", 0, 0) : null;
      Integer accumulation = cl.hasOption("grad-accumulation") ? (int) longOption(cl, "grad-accumulation", 0, 1) : null;
      Long seed = cl.hasOption("seed") ? longOption(cl, "seed", 0, Long.MIN_VALUE) : null;
      Boolean bf16 = null;
      if (cl.hasOption("precision")) {
        String p = cl.getOptionValue("precision");
        bf16 = switch (p) {
          case "bf16" -> true;
          case "f32" -> false;
          default -> throw new Main.UsageException("--precision must be f32 or bf16, got '" + p + "'");
        };
      }
      return new Settings(preset, config, data, tasks, steps, batch, accumulation, seqLen, lr, warmup, routing,
          cl.getOptionValue("device", "auto"), seed, out, resume, addExperts, freezeOld, evalEvery,
          longOption(cl, "checkpoint-every", 0, 0), (int) longOption(cl, "eval-prompts", 50, 1), tokenizer, bf16);
    }

    /** A whole-number option ≥ min, or its default; the message names the option and what came. */
    static long longOption(CommandLine cl, String name, long defaultValue, long min) {
      if (!cl.hasOption(name)) return defaultValue;
      String v = cl.getOptionValue(name);
      long x;
      try {
        x = Long.parseLong(v.trim());
      } catch (NumberFormatException e) {
        throw new Main.UsageException("--" + name + " must be a whole number, got '" + v + "'");
      }
      if (x < min) throw new Main.UsageException("--" + name + " must be " + (min == 1 ? "> 0" : ">= " + min) + ", got " + x);
      if (x > Integer.MAX_VALUE && !name.equals("seed") && !name.equals("steps"))
        throw new Main.UsageException("--" + name + " is too large, got " + x);
      return x;
    }
  }

  private int train(Settings s, Backend backend, PrintStream out, PrintStream err) {
    TrainingCheckpoint.Contents resumed = s.resume() == null ? null : TrainingCheckpoint.read(s.resume());
    TrainerState resumedState = resumed == null ? null : resumed.state();
    Tokenizer tokenizer = tokenizer(s, resumed == null ? null : resumed.config());
    ModelConfig config = resumed != null ? resumed.config() : modelConfig(s, tokenizer);
    if (config.vocabSize() < tokenizer.vocabSize())
      throw new Main.UsageException("the model's vocab_size " + config.vocabSize() + " is smaller than the tokenizer's "
          + tokenizer.vocabSize() + (tokenizer instanceof HfTokenizer hf ? " (" + hf.file() + ")" : " (byte-level)"));
    boolean synthetic = s.data().isEmpty();
    // A resumed run keeps what its checkpoint recorded unless an option says otherwise.
    long seed = s.seed() != null ? s.seed() : resumedState != null ? resumedState.seed() : 1;
    Set<SyntheticTask> taskSet = s.tasks() != null ? s.tasks()
        : resumedState != null && !resumedState.tasks().isEmpty() ? savedTasks(resumedState) : EnumSet.copyOf(DEFAULT_TASKS);
    int accumulation = s.gradAccumulation() != null ? s.gradAccumulation()
        : resumedState != null ? resumedState.gradAccumulation() : 1;
    boolean bf16 = s.bf16() != null ? s.bf16()
        : resumedState != null ? resumedState.mixedPrecision() : backend.device().kind() != Device.Kind.CPU;
    int seqLen;
    TrainingData data;
    Evaluator evaluator;
    ExactMatchEvaluator exact = null;
    int batch = s.batchSize() != null ? s.batchSize() : resumedState != null ? resumedState.batchSize() : DEMO_BATCH;
    if (synthetic) {
      int needed = SyntheticTasks.requiredSeqLen(taskSet);
      seqLen = s.seqLen() != null ? s.seqLen() : resumedState != null ? Math.max(resumedState.seqLen(), needed) : needed;
      if (seqLen < needed) throw new Main.UsageException("--seq-len must be >= " + needed + " for the tasks " + taskSet + ", got " + seqLen);
      SyntheticTasks tasks = new SyntheticTasks(tokenizer, taskSet, seqLen, seed);
      data = TrainingData.synthetic(tasks);
      exact = new ExactMatchEvaluator(tokenizer, tasks.heldOut(s.evalPrompts(), EVAL_SEED));
      evaluator = exact;
    } else {
      seqLen = s.seqLen() != null ? s.seqLen()
          : resumedState != null ? resumedState.seqLen() : Math.min(DEFAULT_TEXT_SEQ_LEN, config.maxPositionEmbeddings());
      TextDataset text;
      try {
        text = new TextDataset(s.data(), tokenizer, seqLen, seed);
      } catch (IllegalArgumentException e) {
        throw new Main.UsageException("--data: " + e.getMessage());
      }
      data = TrainingData.text(text);
      evaluator = new ValidationLossEvaluator(text.validationBatches(batch));
    }
    if (seqLen > config.maxPositionEmbeddings())
      throw new Main.UsageException("--seq-len " + seqLen + " exceeds the model's max_position_embeddings " + config.maxPositionEmbeddings());
    // Resuming without --steps: an interrupted run goes on to its planned end; a finished one trains DEMO_STEPS more.
    long steps = s.steps() != null ? s.steps()
        : resumedState == null ? DEMO_STEPS
        : resumedState.schedule().totalSteps() > resumedState.step() && s.addExperts() == 0 ? resumedState.schedule().totalSteps()
        : resumedState.step() + DEMO_STEPS;
    if (resumedState != null && steps <= resumedState.step())
      throw new Main.UsageException("--steps is the total step count and must exceed the checkpoint's step " + resumedState.step()
          + ", got " + steps);
    float lr = s.lr() != null ? s.lr() : resumedState != null ? resumedState.schedule().peak() : DEMO_LR;
    long startStep = resumedState == null ? 0 : resumedState.step();
    long warmup = s.warmup() != null ? s.warmup() : Math.max(1, (steps - startStep) / 20);
    // A resumed run (and a grown one) warms up again from its start step, then decays to the end.
    LrSchedule schedule = new LrSchedule(lr, lr / 10, startStep + warmup, steps, LrSchedule.Decay.COSINE);
    if (resumedState != null && s.addExperts() == 0 && s.lr() == null && s.warmup() == null && steps == resumedState.schedule().totalSteps())
      schedule = resumedState.schedule(); // the same run continued: keep its schedule for a bit-exact curve
    long evalEvery = s.evalEvery() != null ? s.evalEvery() : Math.max(1, (steps - startStep) / 4);
    try {
      Files.createDirectories(s.out());
    } catch (IOException e) {
      throw new UncheckedIOException("cannot create --out " + s.out() + ": " + e.getMessage(), e);
    }
    Path checkpointDir = s.out().resolve("checkpoint");
    double peak = peakFlops(backend);
    out.printf("moe4j train on %s: %s, %d layers, d=%d, %d experts (top-%d, %s), %s, seq %d, batch %d x %d, steps %d, lr %.2g, %s%n",
        backend.name(), config.architecture().modelType(), config.numLayers(), config.hiddenSize(),
        config.numExperts() + s.addExperts(), config.expertsPerToken(), config.routing().name().toLowerCase(Locale.ROOT).replace('_', '-'),
        synthetic ? "synthetic tasks " + taskSet : s.data().size() + " text file(s), "
            + (tokenizer instanceof HfTokenizer hf ? "tokenizer " + hf.file() + " (vocab " + hf.vocabSize() + ")" : "byte-level"), seqLen, batch, accumulation,
        steps, lr, bf16 ? "bf16 compute / f32 master" : "f32");
    long t0 = System.nanoTime();
    int status = 0;
    long keptSteps = resumedState == null ? 0 : resumedState.step(); // a resumed run's log keeps the lines up to its checkpoint
    try (MetricsLog metrics = new MetricsLog(s.out().resolve("metrics.jsonl"), keptSteps)) {
      Trainer.Builder b = Trainer.builder(backend).data(data).steps(steps).batchSize(batch).gradAccumulation(accumulation)
          .mixedPrecision(bf16).schedule(schedule).seed(seed).evaluator(evaluator, evalEvery).checkpoints(checkpointDir, s.checkpointEvery())
          .tokenizer(tokenizer).peakFlops(peak).optimizer(new AdamWConfig(lr, 0.9f, 0.95f, 1e-8f, 0.1f), 1f).callback(metrics);
      if (s.resume() != null) b.resume(s.resume()).grow(s.addExperts(), s.freezeOld());
      else b.model(config);
      try (Trainer trainer = b.build();
          ProgressReporter progress = new ProgressReporter(err, trainer.step(), steps, System.console() != null)) {
        if (s.resume() != null)
          out.printf("resumed %s at step %d%s%n", s.resume(), trainer.step(), s.addExperts() > 0
              ? ", added " + s.addExperts() + " experts per MoE layer" + (s.freezeOld() ? " (old ones frozen)" : "") : "");
        trainer.addCallback(progress);
        try {
          trainer.run();
        } catch (TrainingStoppedException e) {
          err.println("moe4j train: " + e.getMessage());
          status = 1;
        }
        progress.close();
        double seconds = (System.nanoTime() - t0) * 1e-9;
        report(trainer, metrics, exact, seconds, out);
      }
      writePlots(metrics, data, s.out(), out);
    }
    return status;
  }

  /**
   * The tokenizer of the text: --tokenizer; else, resuming a model trained with a Hugging Face
   * tokenizer (vocabulary other than the byte-level one), the checkpoint's own tokenizer.json; else
   * byte-level (always for the synthetic tasks).
   */
  private static Tokenizer tokenizer(Settings s, ModelConfig resumedConfig) {
    if (s.data().isEmpty()) return new ByteTokenizer();
    try {
      if (s.tokenizer() != null) return Tokenizers.load(s.tokenizer());
      if (resumedConfig != null && resumedConfig.vocabSize() != ByteTokenizer.VOCAB_SIZE
          && Files.isRegularFile(s.resume().resolve(HfTokenizer.TOKENIZER_JSON)))
        return Tokenizers.load(s.resume());
    } catch (IllegalArgumentException e) {
      throw new Main.UsageException((s.tokenizer() != null ? "--tokenizer: " : "the checkpoint's tokenizer: ") + e.getMessage());
    }
    return new ByteTokenizer();
  }

  private ModelConfig modelConfig(Settings s, Tokenizer tokenizer) {
    ModelConfig c;
    if (s.config() != null) {
      try {
        c = HfConfig.read(s.config());
      } catch (IllegalArgumentException e) {
        throw new Main.UsageException("--config: " + e.getMessage());
      }
    } else {
      c = ModelConfig.preset(s.preset() != null ? s.preset() : "demo");
      if (c.vocabSize() != tokenizer.vocabSize() || c.bosTokenId() != tokenizer.bosId() || c.eosTokenId() != tokenizer.eosId())
        c = c.withVocabulary(tokenizer.vocabSize(), tokenizer.bosId(), tokenizer.eosId());
    }
    if (s.routing() != null) {
      if (c.numExperts() == 0) throw new Main.UsageException("--routing needs a model with MoE layers; the config has no experts");
      float cf = s.routing() == ModelConfig.Routing.EXPERT_CHOICE && !(c.capacityFactor() > 0) ? c.expertsPerToken() : c.capacityFactor();
      c = c.withRouting(s.routing(), cf);
    }
    return c;
  }

  private static Set<SyntheticTask> savedTasks(TrainerState state) {
    Set<SyntheticTask> tasks = EnumSet.noneOf(SyntheticTask.class);
    for (String name : state.tasks()) {
      try {
        tasks.add(SyntheticTask.valueOf(name));
      } catch (IllegalArgumentException e) {
        throw new Main.UsageException("the checkpoint trains on a task this version does not know: '" + name + "'; choose --tasks from "
            + taskNames());
      }
    }
    return tasks;
  }

  private static double peakFlops(Backend backend) {
    if (backend.device().kind() == Device.Kind.CPU) {
      double[] g = new double[1];
      CpuNative.check(CpuNative.moe4j_cpu_measure_fma_peak(0.3, g));
      return g[0] * 1e9;
    }
    return H100_PEAK_FLOPS;
  }

  private static void report(Trainer trainer, MetricsLog metrics, ExactMatchEvaluator exact, double seconds, PrintStream out) {
    List<Float> losses = metrics.losses();
    out.printf("trained %d steps in %.1f s", trainer.step(), seconds);
    if (!losses.isEmpty()) out.printf(", last loss %.4f", losses.get(losses.size() - 1));
    out.printf(", %d skipped%n", trainer.skippedSteps());
    EvalResult last = trainer.lastEval();
    if (exact != null && !exact.lastPredictions().isEmpty()) {
      out.println("held-out prompts (greedy):");
      List<ExactMatch.Prediction> shown = new ArrayList<>();
      Set<SyntheticTask> seen = EnumSet.noneOf(SyntheticTask.class);
      for (ExactMatch.Prediction p : exact.lastPredictions())
        if (seen.add(p.example().task()) || (shown.size() < 8 && shown.stream().filter(q -> q.example().task() == p.example().task()).count() < 2))
          shown.add(p);
      for (ExactMatch.Prediction p : shown)
        out.printf("  %-22s -> %-10s %s%n", p.example().prompt(), p.output(), p.correct() ? "ok" : "(expected " + p.example().answer() + ")");
    }
    if (last != null) {
      out.printf("%s at step %d: %.4f%n", last.metric().replace('_', ' '), last.step(), last.value());
      last.perTask().forEach((task, acc) -> out.printf("  %-8s %5.1f%%%n", task.toLowerCase(Locale.ROOT), 100 * acc));
    }
  }

  private static void writePlots(MetricsLog metrics, TrainingData data, Path dir, PrintStream out) {
    List<Path> written = new ArrayList<>();
    written.add(TrainPlots.lossCurve(metrics.steps(), metrics.losses(), dir));
    if (!metrics.layerExpertTokens().isEmpty()) written.add(TrainPlots.layerHeatmap(metrics.layerExpertTokens(), dir));
    long[][] te = metrics.taskExpertTokens();
    if (te != null) {
      List<String> labels = new ArrayList<>();
      List<long[]> rows = new ArrayList<>();
      List<String> names = data.taskNames();
      for (int t = 0; t < te.length; t++) {
        long sum = 0;
        for (long v : te[t]) sum += v;
        if (sum == 0) continue;
        labels.add(names.get(t).toLowerCase(Locale.ROOT));
        rows.add(te[t]);
      }
      if (!rows.isEmpty())
        written.add(TrainPlots.expertHeatmap("expert load by task (% of each task's assignments, all layers)", "task", labels, rows,
            dir.resolve("expert_load_tasks.png")));
    }
    out.println("wrote " + dir.resolve("metrics.jsonl") + ", " + written.stream().map(p -> p.getFileName().toString()).toList()
        + " and " + dir.resolve("checkpoint"));
  }
}
