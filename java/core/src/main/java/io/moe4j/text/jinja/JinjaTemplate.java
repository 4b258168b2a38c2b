package io.moe4j.text.jinja;

import java.time.LocalDateTime;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/**
 * A Jinja template as Hugging Face renders chat templates ({@code trim_blocks}, {@code
 * lstrip_blocks}, loop controls, Python string methods, {@code namespace}, slicing,
 * {@code raise_exception}). Covers the subset that chat templates use; macros, call blocks,
 * includes and template inheritance are not supported and are reported as errors when parsing.
 * Attribute access on an undefined value yields undefined rather than an error.
 *
 * <p>Immutable and thread-safe once parsed.
 */
public final class JinjaTemplate {

  private final List<Node> nodes;
  private final Supplier<LocalDateTime> clock;

  private JinjaTemplate(List<Node> nodes, Supplier<LocalDateTime> clock) {
    this.nodes = nodes;
    this.clock = clock;
  }

  /** @throws TemplateException with the line of the first syntax error */
  public static JinjaTemplate parse(String source) {
    return parse(source, LocalDateTime::now);
  }

  /** With the clock that {@code strftime_now} reads (tests pin it). */
  public static JinjaTemplate parse(String source, Supplier<LocalDateTime> clock) {
    if (source == null) {
      throw new IllegalArgumentException("template source must not be null");
    }
    return new JinjaTemplate(Parser.parse(source), clock);
  }

  /**
   * Renders with {@code context} (strings, numbers, booleans, null, lists and string-keyed maps).
   *
   * @throws TemplateException when rendering fails or the template calls {@code raise_exception}
   */
  public String render(Map<String, ?> context) {
    @SuppressWarnings("unchecked")
    Map<String, Object> ctx = (Map<String, Object>) context;
    return new Interpreter(new Builtins(clock)).render(nodes, ctx);
  }
}
