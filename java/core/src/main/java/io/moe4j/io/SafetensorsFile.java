package io.moe4j.io;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import io.moe4j.ops.Backend;
import io.moe4j.tensor.DType;
import io.moe4j.tensor.Device;
import io.moe4j.tensor.HalfFloats;
import io.moe4j.tensor.Tensor;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * A safetensors file opened for reading. The header is parsed and checked completely when the file
 * is opened (a file that fails any check is rejected before a byte of data is touched); tensor
 * bytes are then read through memory mappings of their ranges, never copied whole onto the Java heap.
 *
 * <p>Mappings stay valid until the buffers are garbage collected (Java 17 cannot unmap without
 * internal APIs); {@link #map} keeps the buffers it hands out reachable until {@link #close()}.
 * Every read first checks the file is still as long as its header says, so a file truncated by
 * someone else after opening gives an error naming it. Copies go through {@link ByteBuffer} bulk
 * operations, which the JVM guards: a truncation racing a copy surfaces as
 * {@link InternalError} (possibly a little later, from compiled code), not as a crash. Native code
 * reading an address from {@link #map} has no such guard: keep the file unchanged while it runs.
 */
public final class SafetensorsFile implements TensorStore {

  /** Headers above this are rejected as corrupt (the reference implementation's limit too). */
  public static final long MAX_HEADER_BYTES = 100L << 20;

  /** Elements copied per mapping: bounds the staging memory and each mapping well below 2 GiB. */
  static final long CHUNK_ELEMENTS = 1L << 24;

  private static final ObjectMapper JSON =
      new ObjectMapper().enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

  private final Path path;
  private final FileChannel channel;
  private final long dataStart;
  private final Map<String, TensorInfo> tensors;
  private final Map<String, String> metadata;
  private final List<MappedByteBuffer> handedOut = new ArrayList<>();
  private boolean closed;

  private SafetensorsFile(Path path, FileChannel channel, long dataStart, Map<String, TensorInfo> tensors, Map<String, String> metadata) {
    this.path = path;
    this.channel = channel;
    this.dataStart = dataStart;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  /** Opens and validates {@code file}; every error names the file (and the tensor, where one is at fault). */
  public static SafetensorsFile open(Path file) {
    FileChannel channel;
    try {
      channel = FileChannel.open(file, StandardOpenOption.READ);
    } catch (NoSuchFileException e) {
      throw new IllegalArgumentException("safetensors file " + file + " does not exist");
    } catch (IOException e) {
      throw new UncheckedIOException("cannot open safetensors file " + file + ": " + e.getMessage(), e);
    }
    try {
      return parse(file, channel);
    } catch (RuntimeException e) {
      closeQuietly(channel);
      throw e;
    }
  }

  private static SafetensorsFile parse(Path file, FileChannel channel) {
    long size;
    ByteBuffer lengthBytes = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
    try {
      size = channel.size();
      if (size < 8) throw bad(file, "is " + size + " bytes, shorter than the 8-byte header length");
      readFully(channel, lengthBytes, 0);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
    }
    long headerLength = lengthBytes.flip().getLong();
    if (headerLength < 2 || headerLength > MAX_HEADER_BYTES)
      throw bad(file, "header length must be in [2, " + MAX_HEADER_BYTES + "] bytes, got " + Long.toUnsignedString(headerLength));
    if (headerLength > size - 8)
      throw bad(file, "header length " + headerLength + " exceeds the " + (size - 8) + " bytes after the length field (truncated file?)");
    ByteBuffer header = ByteBuffer.allocate((int) headerLength);
    try {
      readFully(channel, header, 8);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read the header of " + file + ": " + e.getMessage(), e);
    }
    String text;
    try {
      text = StandardCharsets.UTF_8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(header.flip())
          .toString();
    } catch (CharacterCodingException e) {
      throw bad(file, "header is not valid UTF-8");
    }
    JsonNode root;
    try {
      root = JSON.readTree(text);
    } catch (JsonProcessingException e) {
      throw bad(file, "header is not well-formed JSON: " + e.getOriginalMessage());
    }
    if (root == null || !root.isObject()) throw bad(file, "header must be a JSON object");
    long dataStart = 8 + headerLength;
    long dataLength = size - dataStart;
    Map<String, String> metadata = new LinkedHashMap<>();
    Map<String, TensorInfo> tensors = new TreeMap<>();
    for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> field = it.next();
      if (field.getKey().equals("__metadata__")) {
        readMetadata(file, field.getValue(), metadata);
        continue;
      }
      TensorInfo info = readEntry(file, field.getKey(), field.getValue());
      if (info.end() > dataLength)
        throw bad(file, "tensor '" + info.name() + "': data_offsets [" + info.begin() + ", " + info.end()
            + "] extend past the " + dataLength + "-byte data section (truncated file or lying header)");
      tensors.put(info.name(), info);
    }
    checkLayout(file, tensors.values(), dataLength);
    return new SafetensorsFile(file, channel, dataStart, Collections.unmodifiableMap(tensors), Collections.unmodifiableMap(metadata));
  }

  private static void readMetadata(Path file, JsonNode node, Map<String, String> out) {
    if (!node.isObject()) throw bad(file, "\"__metadata__\" must be an object of strings, got " + node.getNodeType());
    for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      if (!e.getValue().isTextual())
        throw bad(file, "\"__metadata__\" value of '" + e.getKey() + "' must be a string, got " + e.getValue().getNodeType());
      out.put(e.getKey(), e.getValue().textValue());
    }
  }

  private static TensorInfo readEntry(Path file, String name, JsonNode node) {
    String where = "tensor '" + name + "'";
    if (name.isEmpty()) throw bad(file, "a tensor has an empty name");
    if (!node.isObject()) throw bad(file, where + ": entry must be an object with dtype, shape, data_offsets");
    JsonNode dtypeNode = node.get("dtype");
    if (dtypeNode == null || !dtypeNode.isTextual()) throw bad(file, where + ": \"dtype\" must be a string");
    SafetensorsDType dtype = SafetensorsDType.parse(dtypeNode.textValue())
        .orElseThrow(() -> bad(file, where + ": unknown dtype '" + dtypeNode.textValue() + "', expected one of " + SafetensorsDType.names()));
    JsonNode shapeNode = node.get("shape");
    if (shapeNode == null || !shapeNode.isArray()) throw bad(file, where + ": \"shape\" must be an array of integers >= 0");
    List<Long> shape = new ArrayList<>();
    for (JsonNode d : shapeNode) {
      if (!d.isIntegralNumber() || !d.canConvertToLong() || d.longValue() < 0)
        throw bad(file, where + ": \"shape\" must be an array of integers >= 0, got " + shapeNode);
      shape.add(d.longValue());
    }
    JsonNode offsets = node.get("data_offsets");
    if (offsets == null || !offsets.isArray() || offsets.size() != 2)
      throw bad(file, where + ": \"data_offsets\" must be [begin, end], got " + offsets);
    for (JsonNode o : offsets)
      if (!o.isIntegralNumber() || !o.canConvertToLong() || o.longValue() < 0)
        throw bad(file, where + ": \"data_offsets\" must be two integers >= 0, got " + offsets);
    long begin = offsets.get(0).longValue();
    long end = offsets.get(1).longValue();
    if (end < begin) throw bad(file, where + ": data_offsets end " + end + " is before begin " + begin);
    long bytes;
    try {
      long numel = 1;
      for (long d : shape) numel = Math.multiplyExact(numel, d);
      bytes = Math.multiplyExact(numel, (long) dtype.size());
    } catch (ArithmeticException e) {
      throw bad(file, where + ": shape " + shape + " overflows 64-bit byte counts");
    }
    if (end - begin != bytes)
      throw bad(file, where + ": shape " + shape + " of " + dtype + " needs " + bytes + " bytes, but data_offsets ["
          + begin + ", " + end + "] hold " + (end - begin));
    return new TensorInfo(name, dtype, shape, begin, end);
  }

  /** Ranges must tile the data section exactly: no gaps, no overlaps, nothing after the last. */
  private static void checkLayout(Path file, java.util.Collection<TensorInfo> infos, long dataLength) {
    List<TensorInfo> sorted = new ArrayList<>(infos);
    sorted.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
    long expected = 0;
    TensorInfo previous = null;
    for (TensorInfo t : sorted) {
      if (t.begin() < expected)
        throw bad(file, "tensor '" + t.name() + "' bytes [" + t.begin() + ", " + t.end() + ") overlap tensor '"
            + previous.name() + "' [" + previous.begin() + ", " + previous.end() + ")");
      if (t.begin() > expected)
        throw bad(file, "tensor '" + t.name() + "' starts at " + t.begin() + " but the previous tensor ends at " + expected
            + " (gap in the data section)");
      expected = t.end();
      previous = t;
    }
    if (expected != dataLength)
      throw bad(file, "tensors cover " + expected + " bytes of the " + dataLength + "-byte data section (trailing bytes or lying header)");
  }

  private static void readFully(FileChannel channel, ByteBuffer buffer, long position) throws IOException {
    long pos = position;
    while (buffer.hasRemaining()) {
      int n = channel.read(buffer, pos);
      if (n < 0) throw new IOException("unexpected end of file at byte " + pos);
      pos += n;
    }
  }

  static IllegalArgumentException bad(Path file, String message) {
    return new IllegalArgumentException("safetensors file " + file + ": " + message);
  }

  private static void closeQuietly(FileChannel channel) {
    try {
      channel.close();
    } catch (IOException ignored) {
      // already failing with a better message
    }
  }

  // ---- queries ------------------------------------------------------------------------------

  public Path path() {
    return path;
  }

  /** The "__metadata__" strings (empty when absent). */
  public Map<String, String> metadata() {
    return metadata;
  }

  @Override
  public Set<String> names() {
    return tensors.keySet();
  }

  @Override
  public boolean contains(String name) {
    return tensors.containsKey(name);
  }

  @Override
  public TensorInfo info(String name) {
    TensorInfo t = tensors.get(name);
    if (t == null) throw bad(path, "has no tensor '" + name + "'" + nearby(name));
    return t;
  }

  @Override
  public Path fileOf(String name) {
    return path;
  }

  @Override
  public Path source() {
    return path;
  }

  private String nearby(String name) {
    int dot = name.lastIndexOf('.');
    String prefix = dot > 0 ? name.substring(0, dot) : name;
    List<String> similar = tensors.keySet().stream().filter(n -> n.startsWith(prefix)).limit(4).toList();
    return similar.isEmpty() ? " (" + tensors.size() + " tensors in the file)" : " (similar: " + similar + ")";
  }

  // ---- memory mapping -----------------------------------------------------------------------

  /**
   * A tensor's bytes, mapped read-only (little-endian): {@code address} is for native code, valid
   * while {@code data} is reachable (0 for an empty tensor).
   */
  public record MappedTensor(TensorInfo info, ByteBuffer data, long address) {}

  /**
   * Maps tensor {@code name} (little-endian buffer) and returns it with its native address. The
   * buffer stays reachable until {@link #close()}. One mapping is limited to 2 GiB - 1 by Java 17's
   * {@link FileChannel#map}; larger tensors are rejected here (use {@link #readInto}, which maps in chunks).
   */
  public MappedTensor map(String name) {
    TensorInfo t = info(name);
    if (t.byteLength() > Integer.MAX_VALUE)
      throw bad(path, "tensor '" + name + "' is " + t.byteLength() + " bytes; a single mapping is limited to "
          + Integer.MAX_VALUE + " bytes (2 GiB - 1) on Java 17, use readInto/load which map in chunks");
    MappedByteBuffer buffer = mapRange(name, t.begin(), t.byteLength());
    synchronized (handedOut) {
      handedOut.add(buffer);
    }
    long address = t.byteLength() == 0 ? 0 : Pointer.nativeValue(Native.getDirectBufferPointer(buffer));
    return new MappedTensor(t, buffer.order(ByteOrder.LITTLE_ENDIAN), address);
  }

  private MappedByteBuffer mapRange(String name, long begin, long length) {
    if (closed) throw new IllegalStateException("safetensors file " + path + " is closed");
    try {
      long size = channel.size();
      if (dataStart + begin + length > size)
        throw bad(path, "tensor '" + name + "' needs bytes up to " + (dataStart + begin + length) + ", but the file was truncated to "
            + size + " bytes after it was opened");
      return channel.map(FileChannel.MapMode.READ_ONLY, dataStart + begin, length);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot map tensor '" + name + "' of " + path + ": " + e.getMessage(), e);
    }
  }

  // ---- copies into tensors ------------------------------------------------------------------

  @Override
  public void readInto(String name, Tensor destination, Backend backend) {
    readInto(name, destination, backend, CHUNK_ELEMENTS);
  }

  /** {@link #readInto} with a chosen number of elements per mapping (tests use small chunks). */
  void readInto(String name, Tensor destination, Backend backend, long chunkElements) {
    TensorInfo t = info(name);
    String where = "tensor '" + name + "' of " + path;
    if (!destination.device().equals(backend.device()))
      throw new IllegalArgumentException(where + ": destination must be on " + backend.device() + ", got " + destination.device());
    if (destination.numel() != t.numel())
      throw new IllegalArgumentException(where + ": destination must have " + t.numel() + " elements (shape " + t.shape()
          + "), got " + destination.numel());
    DType source = t.dtype().moe4j().orElse(null);
    boolean convertible = t.dtype().isFloatingPoint() && destination.dtype().isFloatingPoint();
    if (source == null || !(convertible || source == destination.dtype()))
      throw new IllegalArgumentException(where + ": cannot load " + t.dtype() + " into a " + destination.dtype()
          + " tensor (supported: F32/BF16/F16 into F32/BF16/F16, integers into the same type)");
    boolean onHost = backend.device().kind() == Device.Kind.CPU;
    if (!onHost && !convertible)
      throw new IllegalArgumentException(where + ": integer tensors can only be loaded on the cpu backend, got " + backend.device());
    int elementSize = t.dtype().size();
    for (long offset = 0; offset < t.numel(); offset += chunkElements) {
      long n = Math.min(chunkElements, t.numel() - offset);
      ByteBuffer bytes = mapRange(name, t.begin() + offset * elementSize, n * elementSize).order(ByteOrder.LITTLE_ENDIAN);
      Tensor part = destination.view(offset, n);
      try {
        if (onHost && source == destination.dtype()) {
          copyToHost(bytes, part.address());
        } else if (onHost) {
          try (Tensor staging = backend.empty(source, n)) {
            copyToHost(bytes, staging.address());
            backend.cast(staging, part);
          }
        } else {
          backend.copyFromFloats(decode(bytes, t.dtype(), (int) n), part);
        }
      } catch (InternalError e) {
        // The JVM turns SIGBUS on a mapping of a file truncated under us into this error.
        throw bad(path, "tensor '" + name + "': the file changed or was truncated while being read (" + e.getMessage() + ")");
      }
    }
  }

  private static void copyToHost(ByteBuffer source, long address) {
    new Pointer(address).getByteBuffer(0, source.remaining()).put(source);
  }

  private static float[] decode(ByteBuffer bytes, SafetensorsDType dtype, int n) {
    float[] out = new float[n];
    switch (dtype) {
      case F32 -> bytes.asFloatBuffer().get(out);
      case BF16 -> {
        for (int i = 0; i < n; i++) out[i] = HalfFloats.bf16ToFloat(bytes.getShort(2 * i));
      }
      case F16 -> {
        for (int i = 0; i < n; i++) out[i] = HalfFloats.f16ToFloat(bytes.getShort(2 * i));
      }
      default -> throw new IllegalStateException("not a floating-point dtype: " + dtype);
    }
    return out;
  }

  @Override
  public float[] readFloats(String name) {
    TensorInfo t = info(name);
    if (!t.dtype().isFloatingPoint())
      throw bad(path, "tensor '" + name + "' is " + t.dtype() + ", not F32/BF16/F16");
    if (t.numel() > Integer.MAX_VALUE - 8)
      throw bad(path, "tensor '" + name + "' has " + t.numel() + " elements, too many for a Java array");
    float[] out = new float[(int) t.numel()];
    int elementSize = t.dtype().size();
    for (long offset = 0; offset < t.numel(); offset += CHUNK_ELEMENTS) {
      int n = (int) Math.min(CHUNK_ELEMENTS, t.numel() - offset);
      ByteBuffer bytes = mapRange(name, t.begin() + offset * elementSize, (long) n * elementSize).order(ByteOrder.LITTLE_ENDIAN);
      try {
        System.arraycopy(decode(bytes, t.dtype(), n), 0, out, (int) offset, n);
      } catch (InternalError e) {
        throw bad(path, "tensor '" + name + "': the file changed or was truncated while being read (" + e.getMessage() + ")");
      }
    }
    return out;
  }

  /** Closes the channel and drops the mappings handed out by {@link #map} (unmapped when collected). */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    synchronized (handedOut) {
      handedOut.clear();
    }
    closeQuietly(channel);
  }
}
