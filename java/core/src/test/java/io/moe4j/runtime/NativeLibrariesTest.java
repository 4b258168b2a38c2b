package io.moe4j.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class NativeLibrariesTest {

  /** Run in a child JVM: loads the library and prints where it was extracted. */
  public static void main(String[] args) {
    System.out.println(CpuNative.PATH + " " + CpuNative.moe4j_cpu_noop());
  }

  @Test
  void cpuLibraryLoadsFromTheJarResources() {
    assertTrue(CpuNative.PATH.contains("moe4j-native-"), CpuNative.PATH);
    assertEquals(0, CpuNative.moe4j_cpu_noop());
    String simd = CpuNative.moe4j_cpu_simd_level();
    assertTrue(List.of("avx512", "avx2", "baseline").contains(simd), simd);
    assertTrue(CpuNative.moe4j_cpu_build_info().contains("version="));
    assertTrue(CpuNative.moe4j_cpu_num_threads() >= 1);
  }

  @Test
  void parallelProcessesExtractToTheirOwnDirectories() throws IOException, InterruptedException {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    List<Process> processes = new ArrayList<>();
    for (int i = 0; i < 3; i++)
      processes.add(new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), NativeLibrariesTest.class.getName())
          .redirectErrorStream(true).start());
    List<String> dirs = new ArrayList<>();
    for (Process p : processes) {
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
      assertEquals(0, p.waitFor(), out);
      assertTrue(out.endsWith(" 0"), out);
      dirs.add(Path.of(out.split(" ")[0]).getParent().toString());
    }
    assertNotEquals(dirs.get(0), dirs.get(1));
    assertNotEquals(dirs.get(1), dirs.get(2));
    assertNotEquals(dirs.get(0), Path.of(CpuNative.PATH).getParent().toString());
  }
}
