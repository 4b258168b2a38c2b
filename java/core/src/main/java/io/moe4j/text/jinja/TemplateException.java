package io.moe4j.text.jinja;

/** A template that cannot be parsed or rendered, or that called {@code raise_exception}. */
public final class TemplateException extends IllegalArgumentException {

  public TemplateException(String message) {
    super(message);
  }
}
