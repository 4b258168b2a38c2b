package io.moe4j.text;

/**
 * Keeps DJL's tokenizers binding on the native library that its jar bundles.
 *
 * <p>DJL extracts {@code libtokenizers.so} from its jar into its cache directory ({@code
 * DJL_CACHE_DIR}, default {@code ~/.djl.ai}), except on a machine with a supported NVIDIA GPU, where
 * it picks a CUDA build of the library that is not in the jar and downloads it. moe4j only tokenizes
 * with it, which the CPU build does, and must work offline, so unless the user chose a flavor
 * ({@code RUST_FLAVOR} as an environment variable or system property) the CPU build is used.
 */
final class DjlOffline {

  static final String FLAVOR = "RUST_FLAVOR";

  private DjlOffline() {}

  static void ensure() {
    // DJL reads this process-wide setting when its native library is first loaded, so it has to
    // be a system property set before that; later calls change nothing.
    if (System.getenv(FLAVOR) == null && System.getProperty(FLAVOR) == null) {
      System.setProperty(FLAVOR, "cpu");
    }
  }
}
