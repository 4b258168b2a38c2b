package io.moe4j.cli;

import io.moe4j.cli.bench.AttentionReport;
import io.moe4j.cli.bench.AttentionSuite;
import io.moe4j.cli.bench.BenchReport;
import io.moe4j.cli.bench.BenchResult;
import io.moe4j.cli.bench.GemmSuite;
import io.moe4j.cli.bench.GenerateSuite;
import io.moe4j.cli.bench.RoutingSuite;
import io.moe4j.cli.bench.TrainSuite;
import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.List;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.DefaultParser;
import org.apache.commons.cli.HelpFormatter;
import org.apache.commons.cli.Options;
import org.apache.commons.cli.ParseException;

/** {@code moe4j bench <suite> [--device D] [--json FILE] [--quick]}: prints a table, writes JSON + PNG. */
final class BenchCommand {

  static final List<String> SUITES = List.of("gemm", "routing", "generate", "train", "attention");

  int run(String[] args, PrintStream out, PrintStream err) {
    Options options = new Options();
    options.addOption(null, "device", true, "auto | cpu | cuda | cuda:N (default auto)");
    options.addOption(null, "json", true, "write results as JSON to FILE and a PNG chart beside it");
    options.addOption(null, "quick", false, "one small case per suite (smoke run)");
    options.addOption("h", "help", false, "show this help");
    CommandLine cl;
    try {
      cl = new DefaultParser().parse(options, args);
    } catch (ParseException e) {
      throw new Main.UsageException(e.getMessage());
    }
    if (cl.hasOption("help") || cl.getArgList().isEmpty()) {
      new HelpFormatter().printHelp(new java.io.PrintWriter(cl.hasOption("help") ? out : err, true), 100,
          "moe4j bench <" + String.join("|", SUITES) + "> [options]", null, options, 2, 2, null);
      if (!cl.hasOption("help")) throw new Main.UsageException("missing suite: one of " + SUITES);
      return 0;
    }
    String suite = cl.getArgList().get(0);
    if (!SUITES.contains(suite)) throw new Main.UsageException("unknown suite '" + suite + "', expected one of " + SUITES);
    if (cl.getArgList().size() > 1) throw new Main.UsageException("unexpected argument '" + cl.getArgList().get(1) + "'");
    Backend opened;
    try {
      opened = Backends.open(cl.getOptionValue("device", "auto"));
    } catch (IllegalArgumentException e) {
      throw new Main.UsageException(e.getMessage());
    }
    if (suite.equals("attention")) return runAttention(opened, cl, out, err);
    List<BenchResult> results;
    try (Backend backend = opened) {
      boolean quick = cl.hasOption("quick");
      results = switch (suite) {
        case "gemm" -> new GemmSuite(backend, quick, err).run();
        case "generate" -> new GenerateSuite(backend, quick, err).run();
        case "train" -> new TrainSuite(backend, quick, err).run();
        default -> new RoutingSuite(backend, quick, err).run();
      };
    }
    BenchReport.printTable(results, out);
    if (cl.hasOption("json")) {
      try {
        Path png = BenchReport.write(results, Path.of(cl.getOptionValue("json")));
        out.println("wrote " + cl.getOptionValue("json") + " and " + png);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
    return 0;
  }

  /** attention has its own report: three families with different columns, plus scratch bytes. */
  private int runAttention(Backend opened, CommandLine cl, PrintStream out, PrintStream err) {
    List<AttentionSuite.Case> cases;
    try (Backend backend = opened) {
      cases = new AttentionSuite(backend, cl.hasOption("quick"), err).run();
    }
    AttentionReport.printTables(cases, out);
    if (cl.hasOption("json")) {
      try {
        Path png = AttentionReport.write(cases, Path.of(cl.getOptionValue("json")));
        out.println("wrote " + cl.getOptionValue("json") + " and " + png);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
    return 0;
  }
}
