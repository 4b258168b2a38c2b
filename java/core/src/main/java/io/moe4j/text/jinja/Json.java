package io.moe4j.text.jinja;

import java.util.List;
import java.util.Map;

/**
 * transformers' {@code tojson}: Python {@code json.dumps(x, ensure_ascii=False, indent=...)}, so
 * separators are {@code ", "} and {@code ": "} (or newline + indent), non-ASCII text is kept.
 */
final class Json {

  private Json() {}

  static String dump(Object v, int indent) {
    StringBuilder sb = new StringBuilder();
    write(sb, v, indent, 0);
    return sb.toString();
  }

  private static void write(StringBuilder sb, Object v, int indent, int depth) {
    if (v == null || v == Interpreter.UNDEFINED) {
      sb.append("null");
    } else if (v instanceof Boolean b) {
      sb.append(b ? "true" : "false");
    } else if (v instanceof Long l) {
      sb.append(l);
    } else if (v instanceof Double d) {
      sb.append(d.isNaN() ? "NaN" : d.isInfinite() ? (d > 0 ? "Infinity" : "-Infinity") : Values.repr(d));
    } else if (v instanceof String s) {
      string(sb, s);
    } else if (v instanceof List<?> l) {
      if (l.isEmpty()) {
        sb.append("[]");
        return;
      }
      sb.append('[');
      for (int i = 0; i < l.size(); i++) {
        separator(sb, i, indent, depth + 1);
        write(sb, l.get(i), indent, depth + 1);
      }
      close(sb, indent, depth).append(']');
    } else if (v instanceof Map<?, ?> m) {
      if (m.isEmpty()) {
        sb.append("{}");
        return;
      }
      sb.append('{');
      int i = 0;
      for (Map.Entry<?, ?> e : m.entrySet()) {
        separator(sb, i++, indent, depth + 1);
        string(sb, String.valueOf(e.getKey()));
        sb.append(": ");
        write(sb, e.getValue(), indent, depth + 1);
      }
      close(sb, indent, depth).append('}');
    } else if (v instanceof Interpreter.Namespace ns) {
      write(sb, ns.attrs, indent, depth);
    } else {
      throw new TemplateException("cannot convert a " + Values.typeName(v) + " to JSON");
    }
  }

  private static void separator(StringBuilder sb, int i, int indent, int depth) {
    if (indent >= 0) {
      sb.append(i > 0 ? ",\n" : "\n").append(" ".repeat(indent * depth));
    } else if (i > 0) {
      sb.append(", ");
    }
  }

  private static StringBuilder close(StringBuilder sb, int indent, int depth) {
    if (indent >= 0) {
      sb.append('\n').append(" ".repeat(indent * depth));
    }
    return sb;
  }

  private static void string(StringBuilder sb, String s) {
    sb.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> sb.append("\\\"");
        case '\\' -> sb.append("\\\\");
        case '\n' -> sb.append("\\n");
        case '\r' -> sb.append("\\r");
        case '\t' -> sb.append("\\t");
        case '\b' -> sb.append("\\b");
        case '\f' -> sb.append("\\f");
        default -> {
          if (c < 0x20) {
            sb.append(String.format("\\u%04x", (int) c));
          } else {
            sb.append(c);
          }
        }
      }
    }
    sb.append('"');
  }
}
