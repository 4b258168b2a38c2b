package io.moe4j.io;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.jna.Pointer;
import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Device;
import io.moe4j.tensor.HalfFloats;
import io.moe4j.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;

/**
 * Writes one safetensors file: tensors are registered first (name, dtype, shape, where the values
 * come from), then {@link #write()} streams them in name order after a header padded with spaces to
 * a multiple of 8 bytes, into a temporary file next to the target that is synced and renamed over
 * it (a reader never sees a half-written file). Values are converted chunk by chunk, so no tensor
 * is held whole on the heap in its target format.
 */
public final class SafetensorsWriter {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final int CHUNK_ELEMENTS = 1 << 20;

  private final Path file;
  private final Map<String, String> metadata = new LinkedHashMap<>();
  private final Map<String, Entry> entries = new TreeMap<>();

  private interface Source {
    void writeTo(FileChannel out, SafetensorsDType dtype) throws IOException;
  }

  private record Entry(SafetensorsDType dtype, long[] shape, long bytes, Source source) {}

  public SafetensorsWriter(Path file) {
    if (file == null) throw new IllegalArgumentException("file must not be null");
    this.file = file;
    metadata.put("format", "pt");
  }

  /** Adds a "__metadata__" string ("format": "pt" is always there). */
  public SafetensorsWriter metadata(String key, String value) {
    if (key == null || value == null) throw new IllegalArgumentException("metadata key and value must not be null");
    metadata.put(key, value);
    return this;
  }

  /** Host values stored as {@code dtype} (F32, BF16 or F16). */
  public SafetensorsWriter add(String name, DType dtype, long[] shape, float[] values) {
    SafetensorsDType st = floatType(name, dtype);
    long numel = numel(name, shape);
    if (values == null || values.length != numel)
      throw new IllegalArgumentException(where(name) + ": shape " + Arrays.toString(shape) + " needs " + numel
          + " values, got " + (values == null ? "null" : values.length));
    return put(name, new Entry(st, shape.clone(), numel * st.size(), (out, d) -> {
      for (int off = 0; off < values.length; off += CHUNK_ELEMENTS) {
        int n = Math.min(CHUNK_ELEMENTS, values.length - off);
        writeFully(out, encode(values, off, n, d));
      }
    }));
  }

  /**
   * A backend tensor (of any floating-point dtype; a view selects a slice) stored as {@code dtype}
   * with the tensor's shape. The tensor is read during {@link #write()}, so it must stay open until then.
   */
  public SafetensorsWriter add(String name, DType dtype, Tensor tensor, Backend backend) {
    SafetensorsDType st = floatType(name, dtype);
    if (tensor == null || backend == null) throw new IllegalArgumentException(where(name) + ": tensor and backend must not be null");
    if (!tensor.dtype().isFloatingPoint())
      throw new IllegalArgumentException(where(name) + ": tensor must be F32, BF16 or F16, got " + tensor.dtype());
    long[] shape = tensor.shape();
    long numel = tensor.numel();
    return put(name, new Entry(st, shape, numel * st.size(), (out, d) -> {
      // Host tensors go to the file straight from native memory (cast by the backend's kernel,
      // which rounds exactly like HalfFloats); device tensors come over as floats.
      boolean direct = backend.device().kind() == Device.Kind.CPU && ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN;
      for (long off = 0; off < numel; off += CHUNK_ELEMENTS) {
        int n = (int) Math.min(CHUNK_ELEMENTS, numel - off);
        Tensor part = tensor.view(off, n);
        if (direct && part.dtype() == dtype) {
          writeFully(out, hostBytes(part));
        } else if (direct) {
          try (Tensor staging = backend.empty(dtype, n)) {
            backend.cast(part, staging);
            writeFully(out, hostBytes(staging));
          }
        } else {
          writeFully(out, encode(backend.toFloats(part), 0, n, d));
        }
      }
    }));
  }

  private static ByteBuffer hostBytes(Tensor t) {
    return new Pointer(t.address()).getByteBuffer(0, t.byteSize());
  }

  /** Raw little-endian bytes of any safetensors dtype (e.g. integer tensors). */
  public SafetensorsWriter addBytes(String name, SafetensorsDType dtype, long[] shape, byte[] data) {
    if (dtype == null) throw new IllegalArgumentException(where(name) + ": dtype must not be null");
    long numel = numel(name, shape);
    long bytes = Math.multiplyExact(numel, (long) dtype.size());
    if (data == null || data.length != bytes)
      throw new IllegalArgumentException(where(name) + ": shape " + Arrays.toString(shape) + " of " + dtype + " needs "
          + bytes + " bytes, got " + (data == null ? "null" : data.length));
    return put(name, new Entry(dtype, shape.clone(), bytes, (out, d) -> writeFully(out, ByteBuffer.wrap(data))));
  }

  private SafetensorsWriter put(String name, Entry entry) {
    if (entries.containsKey(name)) throw new IllegalArgumentException(where(name) + ": added twice");
    entries.put(name, entry);
    return this;
  }

  private String where(String name) {
    return "safetensors file " + file + ", tensor '" + name + "'";
  }

  private SafetensorsDType floatType(String name, DType dtype) {
    checkName(name);
    if (dtype == null || !dtype.isFloatingPoint())
      throw new IllegalArgumentException(where(name) + ": dtype must be F32, BF16 or F16, got " + dtype);
    return SafetensorsDType.of(dtype);
  }

  private void checkName(String name) {
    if (name == null || name.isEmpty()) throw new IllegalArgumentException("safetensors file " + file + ": tensor name must not be empty");
    if (name.equals("__metadata__")) throw new IllegalArgumentException(where(name) + ": the name is reserved");
  }

  private long numel(String name, long[] shape) {
    checkName(name);
    if (shape == null) throw new IllegalArgumentException(where(name) + ": shape must not be null");
    long n = 1;
    for (long d : shape) {
      if (d < 0) throw new IllegalArgumentException(where(name) + ": shape must be >= 0 in every dim, got " + Arrays.toString(shape));
      n = Math.multiplyExact(n, d);
    }
    return n;
  }

  private static ByteBuffer encode(float[] values, int offset, int n, SafetensorsDType dtype) {
    ByteBuffer buffer = ByteBuffer.allocate(n * dtype.size()).order(ByteOrder.LITTLE_ENDIAN);
    switch (dtype) {
      case F32 -> buffer.asFloatBuffer().put(values, offset, n);
      case BF16 -> {
        for (int i = 0; i < n; i++) buffer.putShort(2 * i, HalfFloats.floatToBf16(values[offset + i]));
      }
      case F16 -> {
        for (int i = 0; i < n; i++) buffer.putShort(2 * i, HalfFloats.floatToF16(values[offset + i]));
      }
      default -> throw new IllegalStateException("not a floating-point dtype: " + dtype);
    }
    return buffer;
  }

  private static void writeFully(FileChannel out, ByteBuffer buffer) throws IOException {
    while (buffer.hasRemaining()) out.write(buffer);
  }

  /** The header bytes (JSON padded with spaces so the data starts 8-byte aligned). */
  byte[] header() {
    ObjectNode root = JSON.createObjectNode();
    ObjectNode meta = root.putObject("__metadata__");
    metadata.forEach(meta::put);
    long offset = 0;
    for (Map.Entry<String, Entry> e : entries.entrySet()) {
      ObjectNode t = root.putObject(e.getKey());
      t.put("dtype", e.getValue().dtype().name());
      ArrayNode shape = t.putArray("shape");
      for (long d : e.getValue().shape()) shape.add(d);
      ArrayNode offsets = t.putArray("data_offsets");
      offsets.add(offset);
      offset += e.getValue().bytes();
      offsets.add(offset);
    }
    byte[] json = root.toString().getBytes(StandardCharsets.UTF_8);
    int padded = (json.length + 7) & ~7;
    byte[] out = Arrays.copyOf(json, padded);
    Arrays.fill(out, json.length, padded, (byte) ' ');
    return out;
  }

  /** Writes the file (temporary file, fsync, atomic rename). */
  public void write() {
    AtomicFiles.write(file, out -> {
      byte[] header = header();
      ByteBuffer length = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, header.length);
      writeFully(out, length);
      writeFully(out, ByteBuffer.wrap(header));
      for (Map.Entry<String, Entry> e : entries.entrySet()) {
        long before = out.position();
        e.getValue().source().writeTo(out, e.getValue().dtype());
        if (out.position() - before != e.getValue().bytes())
          throw new IllegalStateException(where(e.getKey()) + ": wrote " + (out.position() - before) + " bytes, expected " + e.getValue().bytes());
      }
    });
  }

  /** Total file size {@link #write()} produces. */
  public long fileSize() {
    long data = entries.values().stream().mapToLong(Entry::bytes).sum();
    return 8 + header().length + data;
  }
}
