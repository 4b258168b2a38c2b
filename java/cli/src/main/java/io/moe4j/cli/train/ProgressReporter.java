package io.moe4j.cli.train;

import io.moe4j.train.EvalResult;
import io.moe4j.train.StepMetrics;
import io.moe4j.train.TrainingCallback;
import java.io.PrintStream;
import java.time.Duration;
import me.tongfei.progressbar.ConsoleProgressBarConsumer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/**
 * Progress of a run: a live bar (loss, tokens/s, ETA) on a terminal; otherwise (logs, CI) a plain
 * line every tenth of the run, so redirected output stays readable.
 */
public final class ProgressReporter implements TrainingCallback, AutoCloseable {

  private final PrintStream out;
  private final long total;
  private final long start;
  private final ProgressBar bar;
  private final long lineEvery;
  private double smoothedLoss = Double.NaN;
  private String lastEval = "";
  private boolean closed;
  private final long t0 = System.nanoTime();

  public ProgressReporter(PrintStream out, long startStep, long totalSteps, boolean interactive) {
    this.out = out;
    this.total = totalSteps;
    this.start = startStep;
    this.lineEvery = Math.max(1, (totalSteps - startStep) / 10);
    this.bar = interactive
        ? new ProgressBarBuilder().setTaskName("train").setInitialMax(totalSteps).startsFrom(startStep, Duration.ZERO)
            .setStyle(ProgressBarStyle.ASCII).setConsumer(new ConsoleProgressBarConsumer(out)).setUpdateIntervalMillis(250).build()
        : null;
  }

  @Override
  public void onStep(StepMetrics m) {
    if (Float.isFinite(m.loss())) smoothedLoss = Double.isNaN(smoothedLoss) ? m.loss() : 0.9 * smoothedLoss + 0.1 * m.loss();
    String extra = String.format("loss %.3f  %,.0f tok/s%s%s", smoothedLoss, m.tokensPerSecond(), lastEval,
        m.skipped() ? "  (step skipped: non-finite)" : "");
    if (bar != null) {
      bar.stepTo(m.step());
      bar.setExtraMessage(extra);
    } else if ((m.step() - start) % lineEvery == 0 || m.step() == total || m.skipped()) {
      double elapsed = (System.nanoTime() - t0) * 1e-9;
      double eta = elapsed / (m.step() - start) * (total - m.step());
      out.printf("step %d/%d  %s  elapsed %s  ETA %s%n", m.step(), total, extra, clock(elapsed), clock(eta));
    }
  }

  @Override
  public void onEval(EvalResult r) {
    if (bar != null) {
      // The bar has one line: keep the latest result short beside the loss.
      lastEval = r.metric().equals("exact_match") ? String.format("  exact %.1f%%", 100 * r.value()) : String.format("  val %.3f", r.value());
    } else {
      out.printf("eval at step %d: %s %.4f %s%n", r.step(), r.metric(), r.value(), r.perTask().isEmpty() ? "" : r.perTask());
    }
  }

  static String clock(double seconds) {
    long s = Math.round(seconds);
    return String.format("%d:%02d", s / 60, s % 60);
  }

  @Override
  public void close() {
    if (closed) return;
    closed = true;
    if (bar != null) bar.close();
  }
}
