package io.moe4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.jna.Pointer;
import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.HalfFloats;
import io.moe4j.tensor.Tensor;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsFileTest {

  private static Backend cpu;

  @TempDir Path dir;

  @BeforeAll
  static void open() {
    cpu = Backends.open("cpu");
  }

  @AfterAll
  static void close() {
    cpu.close();
  }

  static float[] random(int n, long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    float[] out = new float[n];
    for (int i = 0; i < n; i++) out[i] = (float) (r.nextGaussian() * 3);
    return out;
  }

  /** A file from a hand-written header and {@code dataBytes} zero bytes of data (no padding). */
  private Path raw(String header, int dataBytes) throws IOException {
    byte[] h = header.getBytes(StandardCharsets.UTF_8);
    ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
    b.putLong(h.length).put(h);
    Path p = dir.resolve("raw.safetensors");
    Files.write(p, b.array());
    return p;
  }

  private static String message(Path file) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> SafetensorsFile.open(file).close());
    assertTrue(e.getMessage().contains(file.toString()), () -> "message must name the file: " + e.getMessage());
    return e.getMessage();
  }

  private static void contains(String message, String... parts) {
    for (String p : parts) assertTrue(message.contains(p), () -> "expected '" + p + "' in: " + message);
  }

  @Test
  void writesTheFormatAndReadsItBack() throws IOException {
    Path file = dir.resolve("m.safetensors");
    float[] a = random(6, 1);
    float[] b = random(4, 2);
    float[] c = random((1 << 20) + 3, 3); // more than one writer chunk
    new SafetensorsWriter(file)
        .metadata("note", "hello")
        .add("z.weight", DType.F32, new long[] {2, 3}, a)
        .add("a.weight", DType.BF16, new long[] {4}, b)
        .add("m.big", DType.F16, new long[] {c.length}, c)
        .add("empty", DType.F32, new long[] {0, 5}, new float[0])
        .write();

    byte[] bytes = Files.readAllBytes(file);
    long n = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
    assertEquals(0, (8 + n) % 8, "data section must start 8-byte aligned");
    String header = new String(bytes, 8, (int) n, StandardCharsets.UTF_8);
    assertTrue(header.startsWith("{\"__metadata__\":{\"format\":\"pt\",\"note\":\"hello\"}"), header);
    assertTrue(header.indexOf("\"a.weight\"") < header.indexOf("\"empty\"") && header.indexOf("\"m.big\"") < header.indexOf("\"z.weight\""),
        "tensors sorted by name: " + header);
    assertTrue(header.contains("\"a.weight\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]}"), header);
    assertEquals(8 + n + 6 * 4 + 4 * 2 + 2L * c.length, bytes.length);
    assertFalse(Files.list(dir).anyMatch(p -> p.getFileName().toString().contains(".tmp-")), "no temporary file left");

    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      assertEquals(List.of("a.weight", "empty", "m.big", "z.weight"), List.copyOf(f.names()));
      assertEquals("hello", f.metadata().get("note"));
      assertEquals("pt", f.metadata().get("format"));
      TensorInfo z = f.info("z.weight");
      assertEquals(SafetensorsDType.F32, z.dtype());
      assertEquals(List.of(2L, 3L), z.shape());
      assertArrayEquals(a, f.readFloats("z.weight"));
      float[] bBack = f.readFloats("a.weight");
      for (int i = 0; i < b.length; i++) assertEquals(HalfFloats.roundToBf16(b[i]), bBack[i]);
      float[] cBack = f.readFloats("m.big");
      for (int i = 0; i < c.length; i += 997) assertEquals(HalfFloats.f16ToFloat(HalfFloats.floatToF16(c[i])), cBack[i]);
      assertEquals(0, f.readFloats("empty").length);
    }
  }

  @Test
  void tensorSourcesWriteTheSameBytesAsHostArrays() throws IOException {
    float[] v = random(3 * (1 << 20) / 2, 9); // 1.5 writer chunks
    float[] special = {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, -0f, 65504f, 65520f, 1e-8f, 0x1p-24f,
        1f + 0x1p-8f, 1f + 3 * 0x1p-8f, Float.MIN_VALUE, Float.MAX_VALUE, 3.0e38f, -1e-40f};
    System.arraycopy(special, 0, v, 0, special.length);
    try (Tensor f32 = cpu.fromFloats(v, DType.F32, v.length); Tensor bf16 = cpu.fromFloats(v, DType.BF16, v.length)) {
      for (DType target : List.of(DType.F32, DType.BF16, DType.F16)) {
        Path fromArray = dir.resolve("array-" + target + ".safetensors");
        Path fromTensor = dir.resolve("tensor-" + target + ".safetensors");
        new SafetensorsWriter(fromArray).add("w", target, new long[] {v.length}, v).write();
        new SafetensorsWriter(fromTensor).add("w", target, f32, cpu).write();
        assertArrayEquals(Files.readAllBytes(fromArray), Files.readAllBytes(fromTensor), "F32 tensor -> " + target);
      }
      float[] rounded = new float[v.length];
      for (int i = 0; i < v.length; i++) rounded[i] = HalfFloats.roundToBf16(v[i]);
      Path fromArray = dir.resolve("rounded.safetensors");
      Path fromTensor = dir.resolve("widened.safetensors");
      new SafetensorsWriter(fromArray).add("w", DType.F32, new long[] {v.length}, rounded).write();
      new SafetensorsWriter(fromTensor).add("w", DType.F32, bf16, cpu).write();
      assertArrayEquals(Files.readAllBytes(fromArray), Files.readAllBytes(fromTensor), "BF16 tensor -> F32");
    }
  }

  @Test
  void mapsTensorsForNativeAccess() throws IOException {
    Path file = dir.resolve("m.safetensors");
    float[] a = random(10, 4);
    new SafetensorsWriter(file).add("a", DType.F32, new long[] {10}, a).add("b", DType.F32, new long[] {3}, random(3, 5)).write();
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      SafetensorsFile.MappedTensor m = f.map("a");
      assertTrue(m.address() != 0);
      float[] viaAddress = new float[10];
      new Pointer(m.address()).read(0, viaAddress, 0, 10);
      assertArrayEquals(a, viaAddress);
      assertEquals(40, m.data().remaining());
      assertEquals(a[7], m.data().getFloat(28));
    }
  }

  @Test
  void loadsIntoBackendTensorsWithConversion() throws IOException {
    Path file = dir.resolve("m.safetensors");
    float[] v = random(1000, 6);
    new SafetensorsWriter(file)
        .add("f32", DType.F32, new long[] {10, 100}, v)
        .add("bf16", DType.BF16, new long[] {10, 100}, v)
        .add("f16", DType.F16, new long[] {1000}, v)
        .write();
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      try (Tensor t = f.load(cpu, "f32", DType.F32)) {
        assertArrayEquals(new long[] {10, 100}, t.shape());
        assertArrayEquals(v, cpu.toFloats(t));
      }
      try (Tensor t = f.load(cpu, "f32", DType.BF16)) {
        assertEquals(DType.BF16, t.dtype());
        float[] back = cpu.toFloats(t);
        for (int i = 0; i < v.length; i++) assertEquals(HalfFloats.roundToBf16(v[i]), back[i]);
      }
      try (Tensor t = f.load(cpu, "bf16", DType.F32)) {
        float[] back = cpu.toFloats(t);
        for (int i = 0; i < v.length; i++) assertEquals(HalfFloats.roundToBf16(v[i]), back[i]);
      }
      try (Tensor t = f.load(cpu, "f16", DType.F32)) {
        float[] back = cpu.toFloats(t);
        for (int i = 0; i < v.length; i++) assertEquals(HalfFloats.f16ToFloat(HalfFloats.floatToF16(v[i])), back[i]);
      }
      try (Tensor t = f.load(cpu, "f16", DType.BF16)) {
        float[] back = cpu.toFloats(t);
        for (int i = 0; i < v.length; i++)
          assertEquals(HalfFloats.roundToBf16(HalfFloats.f16ToFloat(HalfFloats.floatToF16(v[i]))), back[i]);
      }
      try (Tensor t = f.load(cpu, "bf16", DType.F16)) {
        float[] back = cpu.toFloats(t);
        for (int i = 0; i < v.length; i++)
          assertEquals(HalfFloats.f16ToFloat(HalfFloats.floatToF16(HalfFloats.roundToBf16(v[i]))), back[i]);
      }
      // Chunked copies (7 elements per mapping, 1000 = 142 * 7 + 6) give the same result.
      for (String name : List.of("f32", "bf16")) {
        try (Tensor whole = f.load(cpu, name, DType.F32); Tensor chunked = cpu.empty(DType.F32, 10, 100)) {
          f.readInto(name, chunked, cpu, 7);
          assertArrayEquals(cpu.toFloats(whole), cpu.toFloats(chunked));
        }
      }
      try (Tensor wrong = cpu.empty(DType.F32, 999)) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> f.readInto("f32", wrong, cpu));
        contains(e.getMessage(), "f32", file.toString(), "1000", "999");
      }
      IllegalArgumentException missing = assertThrows(IllegalArgumentException.class, () -> f.info("nope"));
      contains(missing.getMessage(), "nope", file.toString());
    }
  }

  @Test
  void rejectsIntegerIntoFloat() throws IOException {
    Path file = dir.resolve("i.safetensors");
    byte[] ints = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(7).putInt(-3).array();
    new SafetensorsWriter(file).addBytes("ids", SafetensorsDType.I32, new long[] {2}, ints).write();
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> f.load(cpu, "ids", DType.F32));
      contains(e.getMessage(), "ids", "I32", "F32");
      try (Tensor t = f.load(cpu, "ids", DType.I32)) {
        assertArrayEquals(new int[] {7, -3}, cpu.toInts(t));
      }
    }
  }

  // ---- bad files ----------------------------------------------------------------------------

  @Test
  void rejectsTooShortAndHeaderBeyondFile() throws IOException {
    Path tiny = dir.resolve("tiny.safetensors");
    Files.write(tiny, new byte[] {1, 2, 3});
    contains(message(tiny), "shorter than the 8-byte header length");

    Path beyond = dir.resolve("beyond.safetensors");
    Files.write(beyond, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(1000).array());
    contains(message(beyond), "header length 1000 exceeds the 8 bytes");

    Path huge = dir.resolve("huge.safetensors");
    Files.write(huge, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(-5).array());
    contains(message(huge), "header length must be in");
  }

  @Test
  void rejectsTruncatedData() throws IOException {
    Path file = dir.resolve("t.safetensors");
    new SafetensorsWriter(file).add("w", DType.F32, new long[] {100}, random(100, 7)).write();
    try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
      f.setLength(f.length() - 4);
    }
    contains(message(file), "tensor 'w'", "extend past", "truncated");
  }

  @Test
  void rejectsLyingAndMalformedHeaders() throws IOException {
    contains(message(raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}", 12)),
        "tensor 'w'", "needs 16 bytes", "hold 12");
    contains(message(raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            + "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12)),
        "overlap", "'v'", "'w'");
    contains(message(raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8)), "gap", "'w'");
    contains(message(raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8)), "cover 4 bytes of the 8");
    contains(message(raw("{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4)), "tensor 'w'", "unknown dtype 'F33'", "BF16");
    contains(message(raw("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4)), "unknown dtype 'f32'");
    contains(message(raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4)), "tensor 'w'", "shape");
    contains(message(raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8)), "before begin");
    contains(message(raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4)), "data_offsets");
    contains(message(raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}", 4)), "overflows");
    contains(message(raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4)), "not well-formed JSON");
    contains(message(raw("[1,2]", 0)), "must be a JSON object");
    contains(message(raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        + "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4)), "not well-formed JSON", "w");
    contains(message(raw("{\"__metadata__\":{\"format\":1}}", 0)), "__metadata__", "format");
    Path notUtf8 = dir.resolve("latin.safetensors");
    byte[] h = "{\"x\":{}}".getBytes(StandardCharsets.US_ASCII);
    h[2] = (byte) 0xff;
    Files.write(notUtf8, ByteBuffer.allocate(8 + h.length).order(ByteOrder.LITTLE_ENDIAN).putLong(h.length).put(h).array());
    contains(message(notUtf8), "UTF-8");
  }

  @Test
  void missingFileIsAClearError() {
    Path nope = dir.resolve("nope.safetensors");
    contains(message(nope), "does not exist");
  }

  @Test
  void emptyHeaderAndZeroSizedTensorsAreValid() throws IOException {
    try (SafetensorsFile f = SafetensorsFile.open(raw("{}      ", 0))) {
      assertTrue(f.names().isEmpty());
    }
    try (SafetensorsFile f = SafetensorsFile.open(raw("{\"e\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0))) {
      assertEquals(0, f.info("e").numel());
    }
  }

  @Test
  void fileTruncatedAfterOpeningGivesAnExceptionNotACrash() throws IOException {
    Path file = dir.resolve("shrink.safetensors");
    float[] v = random(1 << 16, 8);
    new SafetensorsWriter(file).add("w", DType.F32, new long[] {v.length}, v).write();
    try (SafetensorsFile f = SafetensorsFile.open(file); Tensor t = cpu.empty(DType.F32, v.length)) {
      try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
        raf.setLength(64);
      }
      Consumer<Runnable> fails = r -> {
        RuntimeException e = assertThrows(RuntimeException.class, r::run);
        assertTrue(e.getMessage().contains("truncated"), e.getMessage());
      };
      fails.accept(() -> f.readInto("w", t, cpu));
      fails.accept(() -> f.readFloats("w"));
    }
  }

  @Test
  void tensorsOver2GiBCannotBeMappedWhole() throws IOException {
    long big = 1L << 31;
    Path file = raw("{\"big\":{\"dtype\":\"U8\",\"shape\":[" + big + "],\"data_offsets\":[0," + big + "]}}      ", 0);
    try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
      f.setLength(f.length() + big); // sparse: no disk used
    }
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      assertEquals(big, f.info("big").byteLength());
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> f.map("big"));
      contains(e.getMessage(), "'big'", "2 GiB", file.toString());
    }
  }

  @Test
  void writerRejectsBadArguments() {
    SafetensorsWriter w = new SafetensorsWriter(dir.resolve("w.safetensors"));
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> w.add("x", DType.F32, new long[] {2, 2}, new float[3]));
    contains(e.getMessage(), "'x'", "needs 4 values, got 3");
    e = assertThrows(IllegalArgumentException.class, () -> w.add("x", DType.I32, new long[] {1}, new float[1]));
    contains(e.getMessage(), "F32, BF16 or F16", "I32");
    e = assertThrows(IllegalArgumentException.class, () -> w.add("__metadata__", DType.F32, new long[] {1}, new float[1]));
    contains(e.getMessage(), "reserved");
    w.add("y", DType.F32, new long[] {1}, new float[1]);
    e = assertThrows(IllegalArgumentException.class, () -> w.add("y", DType.F32, new long[] {1}, new float[1]));
    contains(e.getMessage(), "'y'", "twice");
    IllegalArgumentException noDir = assertThrows(IllegalArgumentException.class,
        () -> new SafetensorsWriter(dir.resolve("missing/w.safetensors")).write());
    contains(noDir.getMessage(), "does not exist");
  }
}
