package io.moe4j.io;

import com.sun.jna.LastErrorException;
import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;
import com.sun.jna.Platform;
import java.io.IOException;
import java.nio.file.Path;

/**
 * Linux renameat2(RENAME_EXCHANGE): swaps two existing paths in one atomic step, so replacing a
 * checkpoint directory never passes through a moment where its name is missing. Where the C library,
 * kernel or file system lacks it, {@link #exchange} says so and the caller falls back to two renames.
 */
final class DirectorySwap {

  private static final int AT_FDCWD = -100;
  private static final int RENAME_EXCHANGE = 2;
  private static final int EINVAL = 22;
  private static final int ENOSYS = 38;
  private static final int EOPNOTSUPP = 95;

  private static final boolean LINKED = link();

  private DirectorySwap() {}

  private static boolean link() {
    if (!Platform.isLinux()) return false;
    try {
      Native.register(DirectorySwap.class, NativeLibrary.getInstance(Platform.C_LIBRARY_NAME));
      return true;
    } catch (LinkageError e) {
      return false; // a C library without renameat2 (glibc < 2.28, some others)
    }
  }

  private static native int renameat2(int oldDirFd, String oldPath, int newDirFd, String newPath, int flags)
      throws LastErrorException;

  /** Exchanges {@code a} and {@code b} (both must exist); false if this platform cannot, nothing changed then. */
  static boolean exchange(Path a, Path b) throws IOException {
    if (!LINKED) return false;
    try {
      renameat2(AT_FDCWD, a.toAbsolutePath().toString(), AT_FDCWD, b.toAbsolutePath().toString(), RENAME_EXCHANGE);
      return true;
    } catch (LastErrorException e) {
      int errno = e.getErrorCode();
      if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) return false;
      throw new IOException("cannot exchange " + a + " and " + b + " (renameat2 errno " + errno + ")", e);
    }
  }
}
