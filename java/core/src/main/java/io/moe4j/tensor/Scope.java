package io.moe4j.tensor;

import java.util.ArrayDeque;

/**
 * Lifetime of a group of resources (typically the tensors of one step): {@link #add} them as they
 * are made; {@link #close()} closes them in reverse order.
 */
public final class Scope implements AutoCloseable {

  private final ArrayDeque<AutoCloseable> resources = new ArrayDeque<>();

  public <T extends AutoCloseable> T add(T resource) {
    resources.push(resource);
    return resource;
  }

  @Override
  public void close() {
    RuntimeException first = null;
    while (!resources.isEmpty()) {
      try {
        resources.pop().close();
      } catch (Exception e) {
        if (first == null) first = e instanceof RuntimeException r ? r : new RuntimeException(e);
        else first.addSuppressed(e);
      }
    }
    if (first != null) throw first;
  }
}
