package io.moe4j.cli.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.awt.Graphics2D;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.Map;
import javax.imageio.ImageIO;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.CategoryChart;
import org.knowm.xchart.CategoryChartBuilder;

/**
 * Output of {@code moe4j bench attention}: one table per family (forward, backward, decode — their
 * columns differ, so {@link BenchReport}'s single table does not fit), JSON with one object per case
 * (the {@link BenchResult} fields plus family, scratch bytes and extras), and a PNG with two panels
 * (FLOP/s of forward/backward, GB/s of decode).
 */
public final class AttentionReport {

  private AttentionReport() {}

  public static void printTables(List<AttentionSuite.Case> cases, PrintStream out) {
    List<AttentionSuite.Case> fwd = family(cases, "forward"), bwd = family(cases, "backward"), dec = family(cases, "decode");
    if (!fwd.isEmpty()) {
      String unit = fwd.get(0).result().unit();
      boolean naive = fwd.get(0).result().baselines().containsKey("naive_materialized");
      out.printf("%-22s %-30s %10s %9s %6s", "forward", "shape", "flash ms", unit, "%peak");
      if (naive) out.printf(" %10s %9s %9s %10s", "naive ms", unit, "vs naive", "max|diff|");
      out.printf(" %12s %12s%n", "flash scratch", naive ? "naive scratch" : "");
      for (AttentionSuite.Case c : fwd) {
        BenchResult r = c.result();
        out.printf("%-22s %-30s %10.3f %9.1f %5.1f%%", r.caseName(), r.shape(), r.timing().medianMs(), r.throughput(),
            100 * r.fractionOfPeak());
        if (naive) {
          BenchResult.Baseline n = r.baselines().get("naive_materialized");
          out.printf(" %10.3f %9.1f %8.2fx %10.2g", n.timing().medianMs(), n.throughput(), r.ratios().get("vs_naive_materialized"),
              extra(c, "max_abs_diff_vs_naive"));
        }
        out.printf(" %12s %12s%n", bytes(c.scratch().flashBytes()), naive ? bytes(c.scratch().naiveBytes()) : "");
      }
      out.println("(vs naive: naive time / flash time, same run; scratch: bytes each implementation allocates beyond its "
          + "tensors, by construction)");
    }
    if (!bwd.isEmpty()) {
      String unit = bwd.get(0).result().unit();
      out.printf("%n%-22s %-30s %10s %9s %6s %12s %6s %12s%n", "backward (2.5x fwd)", "shape", "flash ms", unit, "%peak",
          "fwd+bwd " + unit, "%peak", "flash scratch");
      for (AttentionSuite.Case c : bwd) {
        BenchResult r = c.result();
        out.printf("%-22s %-30s %10.3f %9.1f %5.1f%% %12.1f %5.1f%% %12s%n", r.caseName(), r.shape(), r.timing().medianMs(),
            r.throughput(), 100 * r.fractionOfPeak(), extra(c, "fwd_bwd_throughput"), 100 * extra(c, "fwd_bwd_fraction_of_peak"),
            bytes(c.scratch().flashBytes()));
      }
    }
    if (!dec.isEmpty()) {
      out.printf("%n%-22s %-52s %10s %9s %9s%n", "decode", "shape", "median ms", "KV GB/s", "of copy");
      for (AttentionSuite.Case c : dec) {
        BenchResult r = c.result();
        out.printf("%-22s %-52s %10.3f %9.1f %8.1f%%%n", r.caseName(), r.shape(), r.timing().medianMs(), r.throughput(),
            100 * r.fractionOfPeak());
      }
      out.println("(" + dec.get(0).result().peak() + "; GB/s = KV-cache bytes read per call / median time)");
    }
    if (!cases.isEmpty()) out.println("peak: " + cases.get(0).result().peak());
  }

  /** Writes FILE (JSON) and FILE with a .png extension; returns the PNG path. */
  public static Path write(List<AttentionSuite.Case> cases, Path json) throws IOException {
    Path parent = json.toAbsolutePath().getParent();
    if (parent != null) Files.createDirectories(parent);
    ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    ArrayNode array = mapper.createArrayNode();
    for (AttentionSuite.Case c : cases) {
      ObjectNode node = mapper.valueToTree(c.result());
      node.put("family", c.family());
      node.set("scratchBytes", mapper.valueToTree(c.scratch()));
      c.extra().forEach(node::put);
      array.add(node);
    }
    Path tmp = json.resolveSibling(json.getFileName() + ".tmp");
    mapper.writeValue(tmp.toFile(), array);
    Files.move(tmp, json, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    String name = json.getFileName().toString();
    Path png = json.resolveSibling((name.endsWith(".json") ? name.substring(0, name.length() - 5) : name) + ".png");
    System.setProperty("java.awt.headless", "true");
    BufferedImage left = BitmapEncoder.getBufferedImage(computeChart(cases));
    BufferedImage right = BitmapEncoder.getBufferedImage(decodeChart(cases));
    BufferedImage both = new BufferedImage(left.getWidth() + right.getWidth(), Math.max(left.getHeight(), right.getHeight()),
        BufferedImage.TYPE_INT_RGB);
    Graphics2D g = both.createGraphics();
    try {
      g.setColor(java.awt.Color.WHITE);
      g.fillRect(0, 0, both.getWidth(), both.getHeight());
      g.drawImage(left, 0, 0, null);
      g.drawImage(right, left.getWidth(), 0, null);
    } finally {
      g.dispose();
    }
    ImageIO.write(both, "png", png.toFile());
    return png;
  }

  private static CategoryChart computeChart(List<AttentionSuite.Case> cases) {
    List<AttentionSuite.Case> fwd = family(cases, "forward"), bwd = family(cases, "backward");
    String device = cases.isEmpty() ? "" : cases.get(0).result().device();
    CategoryChart chart = new CategoryChartBuilder().width(Math.max(900, 50 * fwd.size())).height(600)
        .title("attention fwd / bwd on " + device).xAxisTitle("shape")
        .yAxisTitle(fwd.isEmpty() ? "" : fwd.get(0).result().unit()).build();
    chart.getStyler().setXAxisLabelRotation(60);
    if (fwd.isEmpty()) return chart;
    List<String> labels = fwd.stream().map(c -> c.result().caseName().substring(4)).toList();
    chart.addSeries("flash forward", labels, fwd.stream().map(c -> c.result().throughput()).toList());
    if (fwd.stream().allMatch(c -> c.result().baselines().containsKey("naive_materialized")))
      chart.addSeries("naive forward", labels,
          fwd.stream().map(c -> c.result().baselines().get("naive_materialized").throughput()).toList());
    if (bwd.size() == fwd.size())
      chart.addSeries("flash backward", labels, bwd.stream().map(c -> c.result().throughput()).toList());
    return chart;
  }

  private static CategoryChart decodeChart(List<AttentionSuite.Case> cases) {
    List<AttentionSuite.Case> dec = family(cases, "decode");
    CategoryChart chart = new CategoryChartBuilder().width(600).height(600).title("decode: KV-cache GB/s")
        .xAxisTitle("context").yAxisTitle("GB/s").build();
    chart.getStyler().setXAxisLabelRotation(60);
    if (dec.isEmpty()) return chart;
    List<String> labels = dec.stream().map(c -> c.result().caseName().replace("decode ctx=", "")).toList();
    chart.addSeries("decode", labels, dec.stream().map(c -> c.result().throughput()).toList());
    chart.addSeries("copy (same run)", labels,
        dec.stream().map(c -> c.result().baselines().get("copy_bandwidth").throughput()).toList());
    return chart;
  }

  private static List<AttentionSuite.Case> family(List<AttentionSuite.Case> cases, String family) {
    return cases.stream().filter(c -> c.family().equals(family)).toList();
  }

  static String bytes(Long b) {
    if (b == null) return "-";
    if (b >= 1L << 30) return String.format("%.2f GiB", b / (double) (1L << 30));
    if (b >= 1L << 20) return String.format("%.1f MiB", b / (double) (1L << 20));
    if (b >= 1L << 10) return String.format("%.0f KiB", b / (double) (1L << 10));
    return b + " B";
  }

  private static double extra(AttentionSuite.Case c, String name) {
    Map<String, Double> e = c.extra();
    Double v = e.get(name);
    if (v == null) throw new IllegalArgumentException("case " + c.result().caseName() + " has no '" + name + "', has " + e.keySet());
    return v;
  }
}
