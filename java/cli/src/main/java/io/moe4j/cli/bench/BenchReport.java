package io.moe4j.cli.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.CategoryChart;
import org.knowm.xchart.CategoryChartBuilder;

/** Prints results as a table, writes them as JSON (one object per case) and a PNG bar chart. */
public final class BenchReport {

  private BenchReport() {}

  public static void printTable(List<BenchResult> results, PrintStream out) {
    if (results.isEmpty()) return;
    List<String> ratioNames = new ArrayList<>(results.get(0).ratios().keySet());
    StringBuilder header = new StringBuilder(String.format("%-30s %10s %12s %7s", "case", "median ms", results.get(0).unit(), "% " + (results.get(0).peak().contains("peak") ? "peak" : "of ref")));
    for (String name : ratioNames) header.append(String.format(" %20s", name.replace('_', ' ')));
    out.println(header);
    for (BenchResult r : results) {
      StringBuilder row = new StringBuilder(String.format("%-30s %10.3f %12.1f %6.1f%%", r.caseName(), r.timing().medianMs(),
          r.throughput(), 100 * r.fractionOfPeak()));
      for (String name : ratioNames) row.append(String.format(" %19.2fx", r.ratios().get(name)));
      out.println(row);
    }
    if (!ratioNames.isEmpty())
      out.println("(ratios: baseline time / our time, measured in the same run; > 1 means ours is faster)");
    out.println("peak: " + results.get(0).peak());
  }

  /** Writes FILE (JSON) and FILE with a .png extension (chart of throughput per case and method). */
  public static Path write(List<BenchResult> results, Path json) throws IOException {
    Path parent = json.toAbsolutePath().getParent();
    if (parent != null) Files.createDirectories(parent);
    Path tmp = json.resolveSibling(json.getFileName() + ".tmp");
    new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValue(tmp.toFile(), results);
    Files.move(tmp, json, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    String name = json.getFileName().toString();
    Path png = json.resolveSibling((name.endsWith(".json") ? name.substring(0, name.length() - 5) : name) + ".png");
    chart(results).ifPresent(c -> {
      try {
        BitmapEncoder.saveBitmap(c, png.toString(), BitmapEncoder.BitmapFormat.PNG);
      } catch (IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    });
    return png;
  }

  private static java.util.Optional<CategoryChart> chart(List<BenchResult> results) {
    if (results.isEmpty()) return java.util.Optional.empty();
    System.setProperty("java.awt.headless", "true");
    BenchResult first = results.get(0);
    CategoryChart chart = new CategoryChartBuilder().width(Math.max(900, 60 * results.size())).height(600)
        .title("moe4j bench " + first.suite() + " on " + first.device())
        .xAxisTitle("case").yAxisTitle(first.unit()).build();
    chart.getStyler().setXAxisLabelRotation(60);
    List<String> cases = results.stream().map(BenchResult::caseName).toList();
    Map<String, List<Double>> series = new LinkedHashMap<>();
    series.put("moe4j " + first.suite(), results.stream().map(BenchResult::throughput).toList());
    for (String b : first.baselines().keySet())
      series.put(b, results.stream().map(r -> r.baselines().get(b).throughput()).toList());
    series.forEach((name, values) -> chart.addSeries(name, cases, values));
    return java.util.Optional.of(chart);
  }
}
