package io.moe4j.runtime;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Optional;

/**
 * Finds the native libraries shipped inside the core jar and extracts them once per process into a
 * fresh temporary directory (no fixed names: parallel JVMs never collide). Setting the system
 * property {@code moe4j.native.dir} loads them from that directory instead (development builds).
 */
public final class NativeLibraries {

  static final String RESOURCE_DIR = "/io/moe4j/native/linux-x86-64/";
  public static final String CPU_LIBRARY = "libmoe4j_cpu.so";
  public static final String CUDA_LIBRARY = "libmoe4j_cuda.so";

  private static Path extractionDir;

  private NativeLibraries() {}

  /** Path of a library, or empty when it was not built into this jar. */
  public static synchronized Optional<Path> locate(String fileName) {
    String override = System.getProperty("moe4j.native.dir");
    if (override != null && !override.isBlank()) {
      Path p = Path.of(override).resolve(fileName);
      return Files.isRegularFile(p) ? Optional.of(p) : Optional.empty();
    }
    try (InputStream in = NativeLibraries.class.getResourceAsStream(RESOURCE_DIR + fileName)) {
      if (in == null) return Optional.empty();
      if (extractionDir == null) {
        extractionDir = Files.createTempDirectory("moe4j-native-");
        extractionDir.toFile().deleteOnExit();
      }
      Path target = extractionDir.resolve(fileName);
      if (!Files.exists(target)) {
        Path partial = Files.createTempFile(extractionDir, fileName, ".part");
        Files.copy(in, partial, StandardCopyOption.REPLACE_EXISTING);
        Files.move(partial, target, StandardCopyOption.ATOMIC_MOVE);
        target.toFile().deleteOnExit();
      }
      return Optional.of(target);
    } catch (IOException e) {
      throw new UncheckedIOException("moe4j: cannot extract native library " + fileName, e);
    }
  }
}
