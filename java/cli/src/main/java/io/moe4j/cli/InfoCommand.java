package io.moe4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.moe4j.Moe4j;
import io.moe4j.runtime.CpuNative;
import io.moe4j.runtime.CudaNative;
import io.moe4j.runtime.CudaSupport;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Options;

/**
 * {@code moe4j info [--json]}: what this installation is and can use — version, Java, native
 * libraries with their build flags, CPU, GPUs, cuBLAS, and each backend with the reason when it is
 * unavailable. Works on machines without a GPU.
 */
final class InfoCommand {

  private static final Set<String> ISA_FLAGS =
      Set.of("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
          "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_tile");

  int run(String[] args, PrintStream out, PrintStream err) {
    Options options = new Options();
    options.addOption(null, "json", false, "print one JSON object");
    CommandLine cl = Main.parse(options, args, "moe4j info [--json]", null, out);
    if (cl == null) return 0; // --help
    Map<String, Object> report = collect();
    if (cl.hasOption("json")) {
      try {
        out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(report));
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    } else {
      printText(report, out);
    }
    return 0;
  }

  static Map<String, Object> collect() {
    Map<String, Object> r = new LinkedHashMap<>();
    r.put("version", Moe4j.VERSION);
    r.put("java", Map.of(
        "version", System.getProperty("java.version"),
        "vendor", System.getProperty("java.vendor"),
        "home", System.getProperty("java.home")));

    Map<String, Object> cpuLib = new LinkedHashMap<>();
    cpuLib.put("path", CpuNative.PATH);
    cpuLib.put("build", parseKeyValues(CpuNative.moe4j_cpu_build_info()));
    cpuLib.put("simd_level", CpuNative.moe4j_cpu_simd_level());
    cpuLib.put("threads", CpuNative.moe4j_cpu_num_threads());

    CudaSupport.Status cuda = CudaSupport.probe();
    Map<String, Object> cudaLib = new LinkedHashMap<>();
    cudaLib.put("path", cuda.libraryPath());
    if (cuda.libraryPath() != null) cudaLib.put("build", parseKeyValues(CudaNative.moe4j_cuda_build_info()));
    r.put("libraries", Map.of("cpu", cpuLib, "cuda", cudaLib));

    r.put("cpu", cpuDescription());

    List<Map<String, Object>> gpus = new ArrayList<>();
    for (CudaSupport.GpuInfo g : cuda.devices()) {
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("index", g.index());
      m.put("name", g.name());
      m.put("multiprocessors", g.multiprocessors());
      m.put("memory_bytes", g.totalMemoryBytes());
      m.put("compute_capability", g.computeCapabilityMajor() + "." + g.computeCapabilityMinor());
      m.put("driver_cuda_version", CudaSupport.version(cuda.driverVersion()));
      gpus.add(m);
    }
    r.put("gpus", gpus);
    r.put("cublas", cuda.cublasLibrary().isEmpty()
        ? Map.of("found", false)
        : Map.of("found", true, "library", cuda.cublasLibrary()));

    List<Map<String, Object>> backends = new ArrayList<>();
    backends.add(Map.of("name", "cpu", "available", true));
    Map<String, Object> cudaBackend = new LinkedHashMap<>();
    cudaBackend.put("name", "cuda");
    cudaBackend.put("available", cuda.available());
    if (!cuda.available()) cudaBackend.put("reason", cuda.reason());
    backends.add(cudaBackend);
    r.put("backends", backends);
    r.put("default_device", cuda.available() ? "cuda:0" : "cpu");
    return r;
  }

  private static Map<String, String> parseKeyValues(String s) {
    Map<String, String> m = new LinkedHashMap<>();
    for (String part : s.split(";")) {
      int eq = part.indexOf('=');
      if (eq > 0) m.put(part.substring(0, eq), part.substring(eq + 1));
    }
    return m;
  }

  private static Map<String, Object> cpuDescription() {
    Map<String, Object> m = new LinkedHashMap<>();
    String model = "unknown";
    List<String> isa = new ArrayList<>();
    try {
      for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
        if (line.startsWith("model name") && model.equals("unknown")) model = line.substring(line.indexOf(':') + 1).trim();
        if (line.startsWith("flags") && isa.isEmpty())
          for (String f : line.substring(line.indexOf(':') + 1).trim().split("\\s+")) if (ISA_FLAGS.contains(f)) isa.add(f);
      }
    } catch (IOException | RuntimeException e) {
      model = "unknown (" + e.getMessage() + ")";
    }
    m.put("model", model);
    m.put("cores", Runtime.getRuntime().availableProcessors());
    m.put("isa", isa);
    m.put("arch", System.getProperty("os.arch"));
    return m;
  }

  @SuppressWarnings("unchecked")
  private static void printText(Map<String, Object> r, PrintStream out) {
    Map<String, Object> java = (Map<String, Object>) r.get("java");
    Map<String, Object> libs = (Map<String, Object>) r.get("libraries");
    Map<String, Object> cpuLib = (Map<String, Object>) libs.get("cpu");
    Map<String, Object> cudaLib = (Map<String, Object>) libs.get("cuda");
    Map<String, Object> cpu = (Map<String, Object>) r.get("cpu");
    out.println("moe4j " + r.get("version"));
    out.println("java        " + java.get("version") + " (" + java.get("vendor") + ", " + java.get("home") + ")");
    out.println("cpu         " + cpu.get("model") + ", " + cpu.get("cores") + " cores, ISA " + String.join(" ", (List<String>) cpu.get("isa")));
    out.println("libmoe4j_cpu   " + cpuLib.get("path"));
    out.println("  build        " + cpuLib.get("build"));
    out.println("  simd in use  " + cpuLib.get("simd_level") + ", " + cpuLib.get("threads") + " OpenMP threads");
    if (cudaLib.get("path") == null) {
      out.println("libmoe4j_cuda  not built");
    } else {
      out.println("libmoe4j_cuda  " + cudaLib.get("path"));
      out.println("  build        " + cudaLib.get("build"));
    }
    List<Map<String, Object>> gpus = (List<Map<String, Object>>) r.get("gpus");
    if (gpus.isEmpty()) out.println("gpus        none");
    for (Map<String, Object> g : gpus)
      out.printf("gpu %s       %s, %s SMs, %.1f GiB, compute %s, driver CUDA %s%n", g.get("index"), g.get("name"),
          g.get("multiprocessors"), ((Long) g.get("memory_bytes")) / (double) (1L << 30), g.get("compute_capability"),
          g.get("driver_cuda_version"));
    Map<String, Object> cublas = (Map<String, Object>) r.get("cublas");
    out.println("cublas      " + (Boolean.TRUE.equals(cublas.get("found")) ? cublas.get("library") : "not found (moe4j's own GEMM kernel serves dense GEMMs)"));
    out.println("backends");
    for (Map<String, Object> b : (List<Map<String, Object>>) r.get("backends"))
      out.println("  " + b.get("name") + "  " + (Boolean.TRUE.equals(b.get("available")) ? "available" : "unavailable: " + b.get("reason")));
    out.println("default device  " + r.get("default_device"));
  }
}
