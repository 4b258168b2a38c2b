package io.moe4j.cli.train;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.HeatMapChart;
import org.knowm.xchart.HeatMapChartBuilder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;

/** The PNGs of a training run: loss curve and expert-load heatmaps (share of each row's assignments). */
public final class TrainPlots {

  private TrainPlots() {}

  public static Path lossCurve(List<Long> steps, List<Float> losses, Path dir) {
    XYChart chart = new XYChartBuilder().width(900).height(500).title("training loss").xAxisTitle("step")
        .yAxisTitle("cross-entropy (nats / target token)").build();
    List<Double> x = new ArrayList<>(), y = new ArrayList<>();
    for (int i = 0; i < steps.size(); i++) {
      if (!Float.isFinite(losses.get(i))) continue; // skipped steps have no loss to draw
      x.add((double) steps.get(i));
      y.add((double) losses.get(i));
    }
    if (x.isEmpty()) {
      x.add(0.0);
      y.add(0.0);
    }
    chart.addSeries("loss", x, y).setMarker(org.knowm.xchart.style.markers.SeriesMarkers.NONE);
    chart.getStyler().setLegendVisible(false);
    // Plain step numbers, spaced so that four-digit steps do not run into each other.
    chart.getStyler().setXAxisDecimalPattern("#");
    chart.getStyler().setXAxisTickMarkSpacingHint(120);
    return save(chart, dir.resolve("loss.png"));
  }

  /**
   * Heatmap of {@code rows} (row label → assignments per expert): each cell is the percentage of
   * that row's assignments that went to the expert, so rows with different token counts compare.
   */
  public static Path expertHeatmap(String title, String rowAxis, List<String> rowLabels, List<long[]> rows, Path file) {
    int experts = 0;
    for (long[] r : rows) experts = Math.max(experts, r.length);
    int[] xs = new int[experts];
    for (int e = 0; e < experts; e++) xs[e] = e;
    int[] ys = new int[rows.size()];
    for (int i = 0; i < ys.length; i++) ys[i] = i;
    List<Number[]> cells = new ArrayList<>();
    for (int i = 0; i < rows.size(); i++) {
      long total = 0;
      for (long v : rows.get(i)) total += v;
      for (int e = 0; e < experts; e++) {
        long v = e < rows.get(i).length ? rows.get(i)[e] : 0;
        cells.add(new Number[] {e, i, total == 0 ? 0 : (int) Math.round(100.0 * v / total)});
      }
    }
    HeatMapChart chart = new HeatMapChartBuilder().width(Math.max(500, 60 * experts + 250)).height(Math.max(300, 50 * rows.size() + 150))
        .title(title).xAxisTitle("expert").yAxisTitle(rowAxis).build();
    List<Integer> xList = new ArrayList<>();
    for (int e : xs) xList.add(e);
    chart.addSeries("share %", xList, rowLabels, cells);
    chart.getStyler().setShowValue(true);
    return save(chart, file);
  }

  /** Layer × expert from the per-layer totals. */
  public static Path layerHeatmap(Map<Integer, long[]> layerExpert, Path dir) {
    List<String> labels = new ArrayList<>();
    List<long[]> rows = new ArrayList<>();
    layerExpert.forEach((layer, counts) -> {
      labels.add("layer " + layer);
      rows.add(counts);
    });
    return expertHeatmap("expert load (% of each layer's assignments)", "layer", labels, rows, dir.resolve("expert_load_layers.png"));
  }

  private static Path save(org.knowm.xchart.internal.chartpart.Chart<?, ?> chart, Path file) {
    try {
      BitmapEncoder.saveBitmap(chart, file.toString(), BitmapEncoder.BitmapFormat.PNG);
      return file;
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
    }
  }
}
