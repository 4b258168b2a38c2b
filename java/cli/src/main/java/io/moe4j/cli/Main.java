package io.moe4j.cli;

import java.io.PrintStream;
import java.io.PrintWriter;
import java.util.Arrays;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.DefaultParser;
import org.apache.commons.cli.HelpFormatter;
import org.apache.commons.cli.Options;
import org.apache.commons.cli.ParseException;

/** {@code moe4j <command> [options]}. Exit codes: 0 ok, 1 runtime failure, 2 bad usage. */
public final class Main {

  private Main() {}

  public static void main(String[] args) {
    System.exit(run(args, System.out, System.err));
  }

  static int run(String[] args, PrintStream out, PrintStream err) {
    if (args.length == 0 || args[0].equals("--help") || args[0].equals("-h") || args[0].equals("help")) {
      usage(args.length == 0 ? err : out);
      return args.length == 0 ? 2 : 0;
    }
    String[] rest = Arrays.copyOfRange(args, 1, args.length);
    try {
      switch (args[0]) {
        case "info":
          return new InfoCommand().run(rest, out, err);
        case "bench":
          return new BenchCommand().run(rest, out, err);
        case "generate":
          return new GenerateCommand().run(rest, out, err);
        case "chat":
          return new ChatCommand().run(rest, System.in, out, err);
        case "score":
          return new ScoreCommand().run(rest, out, err);
        case "train":
          return new TrainCommand().run(rest, out, err);
        case "tokenize":
          return new TokenizeCommand().run(rest, out, err);
        case "--version":
        case "version":
          out.println("moe4j " + io.moe4j.Moe4j.VERSION);
          return 0;
        default:
          err.println("moe4j: unknown command '" + args[0] + "'");
          usage(err);
          return 2;
      }
    } catch (UsageException e) {
      err.println("moe4j " + args[0] + ": " + e.getMessage());
      return 2;
    } catch (RuntimeException e) {
      err.println("moe4j " + args[0] + ": " + e.getMessage());
      return 1;
    } catch (LinkageError e) {
      err.println("moe4j " + args[0] + ": cannot load a native library: " + e.getMessage());
      return 1;
    }
  }

  private static void usage(PrintStream s) {
    s.println("usage: moe4j <command> [options]");
    s.println();
    s.println("commands:");
    s.println("  info [--json]   version, libraries and build flags, CPU, GPUs, cuBLAS, backends");
    s.println("  train [options] train an MoE model (no options: the built-in demo on synthetic tasks)");
    s.println("  bench <suite>   benchmarks: gemm | routing | attention | generate | train (--device D, --json FILE)");
    s.println("  generate        continue prompts with a Hugging Face MoE model (--model DIR --prompt T)");
    s.println("  chat            interactive chat with a model's chat template (--model DIR)");
    s.println("  score           per-token negative log-likelihood and perplexity of a text (--model DIR --text T)");
    s.println("  tokenize        token ids and pieces of a text (--model DIR | --tokenizer FILE, --text T, --json)");
    s.println("  version         print the version");
    s.println();
    s.println("Run 'moe4j <command> --help' for a command's options.");
  }

  /**
   * Parses a command's options (adding -h/--help): a parse error or a positional argument is a usage
   * error; --help prints the help to {@code out} and returns null (the command then exits 0).
   */
  static CommandLine parse(Options options, String[] args, String usage, String header, PrintStream out) {
    options.addOption("h", "help", false, "show this help");
    CommandLine cl;
    try {
      cl = new DefaultParser().parse(options, args);
    } catch (ParseException e) {
      throw new UsageException(e.getMessage());
    }
    if (cl.hasOption("help")) {
      new HelpFormatter().printHelp(new PrintWriter(out, true), 100, usage, header, options, 2, 2, null);
      return null;
    }
    if (!cl.getArgList().isEmpty()) throw new UsageException("unexpected argument '" + cl.getArgList().get(0) + "'");
    return cl;
  }

  /** Bad command-line input: exit code 2. */
  static final class UsageException extends RuntimeException {
    UsageException(String message) {
      super(message);
    }
  }
}
