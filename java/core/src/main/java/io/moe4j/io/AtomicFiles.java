package io.moe4j.io;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.UUID;

/** Temporary-file-then-rename writing, with fsync of the file and its directory. */
final class AtomicFiles {

  private AtomicFiles() {}

  interface Body {
    void writeTo(FileChannel out) throws IOException;
  }

  /** A fresh name next to {@code target} (same directory, so a rename is atomic). */
  static Path sibling(Path target, String kind) {
    Path abs = target.toAbsolutePath();
    return abs.resolveSibling("." + abs.getFileName() + "." + kind + "-" + UUID.randomUUID().toString().substring(0, 8));
  }

  /** Writes {@code target} through a synced temporary file renamed over it. */
  static void write(Path target, Body body) {
    Path abs = target.toAbsolutePath();
    Path parent = abs.getParent();
    if (parent == null || !Files.isDirectory(parent))
      throw new IllegalArgumentException("cannot write " + target + ": directory " + parent + " does not exist");
    Path temp = sibling(abs, "tmp");
    try {
      try (FileChannel out = FileChannel.open(temp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
        body.writeTo(out);
        out.force(true);
      }
      move(temp, abs);
      syncDirectory(parent);
    } catch (IOException e) {
      deleteQuietly(temp);
      throw new UncheckedIOException("cannot write " + target + ": " + e.getMessage(), e);
    } catch (RuntimeException | Error e) {
      deleteQuietly(temp);
      throw e;
    }
  }

  static void writeBytes(Path target, byte[] bytes) {
    write(target, out -> {
      java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(bytes);
      while (b.hasRemaining()) out.write(b);
    });
  }

  static void move(Path from, Path to) throws IOException {
    try {
      Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } catch (AtomicMoveNotSupportedException e) {
      throw new IOException("the file system cannot rename " + from + " to " + to + " atomically", e);
    }
  }

  /** Makes a rename or new entry in {@code directory} durable (a no-op where directories cannot be opened). */
  static void syncDirectory(Path directory) {
    try (FileChannel dir = FileChannel.open(directory, StandardOpenOption.READ)) {
      dir.force(true);
    } catch (IOException ignored) {
      // Some platforms refuse to open or sync directories; the data itself was synced already.
    }
  }

  static void deleteQuietly(Path path) {
    try {
      deleteRecursively(path);
    } catch (IOException ignored) {
      // best effort cleanup of a temporary path
    }
  }

  static void deleteRecursively(Path path) throws IOException {
    if (!Files.exists(path, java.nio.file.LinkOption.NOFOLLOW_LINKS)) return;
    Files.walkFileTree(path, new SimpleFileVisitor<>() {
      @Override
      public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
        Files.delete(file);
        return FileVisitResult.CONTINUE;
      }

      @Override
      public FileVisitResult postVisitDirectory(Path dir, IOException exc) throws IOException {
        if (exc != null) throw exc;
        Files.delete(dir);
        return FileVisitResult.CONTINUE;
      }
    });
  }
}
