package io.moe4j.tensor;

/** Where a tensor lives: the host ({@code cpu}) or CUDA device {@code index}. */
public record Device(Kind kind, int index) {

  public enum Kind {
    CPU,
    CUDA
  }

  public static final Device CPU = new Device(Kind.CPU, 0);

  public Device {
    if (kind == null) throw new IllegalArgumentException("kind must not be null");
    if (index < 0) throw new IllegalArgumentException("device index must be >= 0, got " + index);
  }

  public static Device cuda(int index) {
    return new Device(Kind.CUDA, index);
  }

  @Override
  public String toString() {
    return kind == Kind.CPU ? "cpu" : "cuda:" + index;
  }
}
