package io.moe4j.runtime;

/** A failure reported by moe4j native code (status code plus the native message) or the runtime. */
public class Moe4jException extends RuntimeException {

  private final int status;

  public Moe4jException(int status, String message) {
    super(message);
    this.status = status;
  }

  public Moe4jException(String message, Throwable cause) {
    super(message, cause);
    this.status = Status.INTERNAL;
  }

  /** The native status code (see {@link Status}). */
  public int status() {
    return status;
  }

  /** Status codes of the C ABI (native/include/moe4j.h). */
  public static final class Status {
    public static final int OK = 0;
    public static final int INVALID_ARGUMENT = 1;
    public static final int UNSUPPORTED = 2;
    public static final int OUT_OF_MEMORY = 3;
    public static final int CUDA = 4;
    public static final int NO_DEVICE = 5;
    public static final int INTERNAL = 6;

    private Status() {}
  }
}
