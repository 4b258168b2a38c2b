package io.moe4j.text.jinja;

import io.moe4j.text.jinja.Interpreter.Callable;
import io.moe4j.text.jinja.Interpreter.Loop;
import io.moe4j.text.jinja.Interpreter.Namespace;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/**
 * The functions, filters, tests and string/dict methods that Hugging Face chat templates use
 * (transformers adds {@code raise_exception}, {@code strftime_now} and a {@code tojson} that keeps
 * non-ASCII text as is).
 */
final class Builtins {

  private final Supplier<LocalDateTime> clock;

  Builtins(Supplier<LocalDateTime> clock) {
    this.clock = clock;
  }

  Map<String, Object> globals() {
    Map<String, Object> g = new LinkedHashMap<>();
    g.put("raise_exception", (Callable) (args, kw) -> {
      throw new TemplateException(args.isEmpty() ? "raise_exception" : Values.str(args.get(0)));
    });
    g.put("namespace", (Callable) (args, kw) -> {
      Namespace ns = new Namespace();
      for (Object a : args) {
        if (a instanceof Map<?, ?> m) {
          m.forEach((k, v) -> ns.attrs.put(String.valueOf(k), v));
        }
      }
      ns.attrs.putAll(kw);
      return ns;
    });
    g.put("range", (Callable) (args, kw) -> {
      long start = 0;
      long stop;
      long step = 1;
      if (args.size() == 1) {
        stop = Values.asLong(args.get(0), "range stop");
      } else if (args.size() >= 2) {
        start = Values.asLong(args.get(0), "range start");
        stop = Values.asLong(args.get(1), "range stop");
        if (args.size() == 3) {
          step = Values.asLong(args.get(2), "range step");
        }
      } else {
        throw new TemplateException("range() needs 1 to 3 arguments");
      }
      if (step == 0) {
        throw new TemplateException("range() step must not be zero");
      }
      List<Object> out = new ArrayList<>();
      for (long i = start; step > 0 ? i < stop : i > stop; i += step) {
        out.add(i);
      }
      return out;
    });
    g.put("dict", (Callable) (args, kw) -> new LinkedHashMap<>(kw));
    g.put("strftime_now", (Callable) (args, kw) ->
        strftime(args.isEmpty() ? "%Y-%m-%d" : Values.str(args.get(0)), clock.get()));
    return g;
  }

  /** {@code target.name}: a mapping key, a loop/namespace attribute, or a bound method. */
  Object attribute(Object target, String name) {
    if (target instanceof Loop loop) {
      return switch (name) {
        case "index" -> (long) loop.index0() + 1;
        case "index0" -> (long) loop.index0();
        case "revindex" -> (long) (loop.length() - loop.index0());
        case "revindex0" -> (long) (loop.length() - loop.index0() - 1);
        case "first" -> loop.index0() == 0;
        case "last" -> loop.index0() == loop.length() - 1;
        case "length" -> (long) loop.length();
        case "previtem" -> loop.previtem();
        case "nextitem" -> loop.nextitem();
        default -> Interpreter.UNDEFINED;
      };
    }
    if (target instanceof Namespace ns) {
      return ns.attrs.containsKey(name) ? ns.attrs.get(name) : Interpreter.UNDEFINED;
    }
    if (target instanceof String s) {
      return stringMethod(s, name);
    }
    if (target instanceof Map<?, ?> m) {
      if (m.containsKey(name)) {
        return m.get(name);
      }
      return dictMethod(m, name);
    }
    return Interpreter.UNDEFINED;
  }

  private static Object stringMethod(String s, String name) {
    return switch (name) {
      case "strip" -> (Callable) (a, kw) -> lstrip(rstrip(s, chars(a)), chars(a));
      case "lstrip" -> (Callable) (a, kw) -> lstrip(s, chars(a));
      case "rstrip" -> (Callable) (a, kw) -> rstrip(s, chars(a));
      case "startswith" -> (Callable) (a, kw) -> s.startsWith(arg(a, 0, "startswith"));
      case "endswith" -> (Callable) (a, kw) -> s.endsWith(arg(a, 0, "endswith"));
      case "upper" -> (Callable) (a, kw) -> s.toUpperCase(java.util.Locale.ROOT);
      case "lower" -> (Callable) (a, kw) -> s.toLowerCase(java.util.Locale.ROOT);
      case "title" -> (Callable) (a, kw) -> title(s);
      case "capitalize" -> (Callable) (a, kw) -> s.isEmpty() ? s
          : s.substring(0, 1).toUpperCase(java.util.Locale.ROOT) + s.substring(1).toLowerCase(java.util.Locale.ROOT);
      case "replace" -> (Callable) (a, kw) -> s.replace(arg(a, 0, "replace"), arg(a, 1, "replace"));
      case "split" -> (Callable) (a, kw) -> split(s, a.isEmpty() || a.get(0) == null ? null : arg(a, 0, "split"));
      case "find" -> (Callable) (a, kw) -> (long) s.indexOf(arg(a, 0, "find"));
      case "count" -> (Callable) (a, kw) -> (long) count(s, arg(a, 0, "count"));
      case "join" -> (Callable) (a, kw) -> join(Values.iterate(a.isEmpty() ? List.of() : a.get(0)), s);
      default -> Interpreter.UNDEFINED;
    };
  }

  private static Object dictMethod(Map<?, ?> m, String name) {
    return switch (name) {
      case "items" -> (Callable) (a, kw) -> {
        List<Object> out = new ArrayList<>();
        m.forEach((k, v) -> {
          List<Object> pair = new ArrayList<>();
          pair.add(k);
          pair.add(v);
          out.add(pair);
        });
        return out;
      };
      case "keys" -> (Callable) (a, kw) -> new ArrayList<Object>(m.keySet());
      case "values" -> (Callable) (a, kw) -> new ArrayList<Object>(m.values());
      case "get" -> (Callable) (a, kw) -> {
        Object key = a.isEmpty() ? null : a.get(0);
        if (m.containsKey(key)) {
          return m.get(key);
        }
        return a.size() > 1 ? a.get(1) : null;
      };
      default -> Interpreter.UNDEFINED;
    };
  }

  Object filter(String name, Object v, List<Object> args, Map<String, Object> kw) {
    switch (name) {
      case "length":
      case "count":
        if (v instanceof String s) {
          return (long) s.codePointCount(0, s.length());
        }
        if (v instanceof Map<?, ?> m) {
          return (long) m.size();
        }
        return (long) Values.iterate(v).size();
      case "trim":
        return Values.str(v).strip();
      case "string":
        return Values.str(v);
      case "upper":
        return Values.str(v).toUpperCase(java.util.Locale.ROOT);
      case "lower":
        return Values.str(v).toLowerCase(java.util.Locale.ROOT);
      case "title":
        return title(Values.str(v));
      case "capitalize":
        String c = Values.str(v);
        return c.isEmpty() ? c : c.substring(0, 1).toUpperCase(java.util.Locale.ROOT)
            + c.substring(1).toLowerCase(java.util.Locale.ROOT);
      case "replace":
        return Values.str(v).replace(arg(args, 0, "replace"), arg(args, 1, "replace"));
      case "safe":
      case "e":
      case "escape":
        // chat templates render plain text (transformers turns autoescape off)
        return v;
      case "list":
        return Values.iterate(v);
      case "first": {
        List<Object> l = Values.iterate(v);
        return l.isEmpty() ? Interpreter.UNDEFINED : l.get(0);
      }
      case "last": {
        List<Object> l = Values.iterate(v);
        return l.isEmpty() ? Interpreter.UNDEFINED : l.get(l.size() - 1);
      }
      case "reverse":
        if (v instanceof String s) {
          return new StringBuilder(s).reverse().toString();
        }
        List<Object> r = Values.iterate(v);
        java.util.Collections.reverse(r);
        return r;
      case "join":
        return join(Values.iterate(v), args.isEmpty() ? "" : Values.str(args.get(0)));
      case "default":
      case "d": {
        boolean boolMode = args.size() > 1 && Values.truthy(args.get(1));
        boolean useDefault = v == Interpreter.UNDEFINED || (boolMode && !Values.truthy(v));
        return useDefault ? (args.isEmpty() ? "" : args.get(0)) : v;
      }
      case "int":
        return toInt(v);
      case "float":
        return v instanceof String s ? Double.parseDouble(s.strip()) : Values.toDouble(v);
      case "abs":
        return v instanceof Long l ? (Object) Math.abs(l) : (Object) Math.abs(Values.toDouble(v));
      case "items":
        return ((Callable) dictMethod((Map<?, ?>) v, "items")).call(List.of(), Map.of());
      case "tojson":
        Object indent = kw.getOrDefault("indent", args.isEmpty() ? null : args.get(0));
        return Json.dump(v, indent == null ? -1 : (int) Values.asLong(indent, "tojson indent"));
      case "selectattr":
      case "rejectattr": {
        String attr = arg(args, 0, name);
        List<Object> out = new ArrayList<>();
        for (Object item : Values.iterate(v)) {
          Object value = attribute(item, attr);
          boolean ok = args.size() > 1
              ? test(Values.str(args.get(1)), value, args.subList(2, args.size()))
              : Values.truthy(value);
          if (ok == name.equals("selectattr")) {
            out.add(item);
          }
        }
        return out;
      }
      case "map": {
        List<Object> out = new ArrayList<>();
        if (kw.containsKey("attribute")) {
          String attr = Values.str(kw.get("attribute"));
          for (Object item : Values.iterate(v)) {
            Object x = attribute(item, attr);
            out.add(x == Interpreter.UNDEFINED && kw.containsKey("default") ? kw.get("default") : x);
          }
        } else {
          String f = arg(args, 0, "map");
          for (Object item : Values.iterate(v)) {
            out.add(filter(f, item, args.subList(1, args.size()), Map.of()));
          }
        }
        return out;
      }
      default:
        throw new TemplateException("unknown filter '" + name + "'");
    }
  }

  boolean test(String name, Object v, List<Object> args) {
    return switch (name) {
      case "defined" -> v != Interpreter.UNDEFINED;
      case "undefined" -> v == Interpreter.UNDEFINED;
      case "none" -> v == null;
      case "string" -> v instanceof String;
      case "number" -> Values.isNumber(v);
      case "integer" -> v instanceof Long;
      case "float" -> v instanceof Double;
      case "boolean" -> v instanceof Boolean;
      case "true" -> Boolean.TRUE.equals(v);
      case "false" -> Boolean.FALSE.equals(v);
      case "mapping" -> v instanceof Map;
      case "sequence", "iterable" -> v instanceof List || v instanceof String || v instanceof Map;
      case "callable" -> v instanceof Callable;
      case "odd" -> Values.asLong(v, "odd") % 2 != 0;
      case "even" -> Values.asLong(v, "even") % 2 == 0;
      case "divisibleby" -> Values.asLong(v, "divisibleby") % Values.asLong(args.get(0), "divisibleby") == 0;
      case "equalto", "eq", "==", "sameas" -> !args.isEmpty() && Values.equal(v, args.get(0));
      case "ne", "!=" -> args.isEmpty() || !Values.equal(v, args.get(0));
      case "in" -> !args.isEmpty() && Values.contains(args.get(0), v);
      case "lower" -> v instanceof String s && s.equals(s.toLowerCase(java.util.Locale.ROOT));
      case "upper" -> v instanceof String s && s.equals(s.toUpperCase(java.util.Locale.ROOT));
      default -> throw new TemplateException("unknown test '" + name + "'");
    };
  }

  private static String arg(List<Object> args, int i, String fn) {
    if (args.size() <= i || !(args.get(i) instanceof String s)) {
      throw new TemplateException(fn + "() argument " + (i + 1) + " must be a string");
    }
    return s;
  }

  private static String chars(List<Object> args) {
    if (args.isEmpty() || args.get(0) == null) {
      return null;
    }
    return arg(args, 0, "strip");
  }

  private static boolean strip(String chars, int cp) {
    return chars == null ? Character.isWhitespace(cp) : chars.indexOf(cp) >= 0;
  }

  static String lstrip(String s, String chars) {
    int i = 0;
    while (i < s.length() && strip(chars, s.codePointAt(i))) {
      i += Character.charCount(s.codePointAt(i));
    }
    return s.substring(i);
  }

  static String rstrip(String s, String chars) {
    int j = s.length();
    while (j > 0 && strip(chars, s.codePointBefore(j))) {
      j -= Character.charCount(s.codePointBefore(j));
    }
    return s.substring(0, j);
  }

  /** Python str.split: on a separator, or (none) on runs of whitespace without empty parts. */
  private static List<Object> split(String s, String sep) {
    List<Object> out = new ArrayList<>();
    if (sep == null) {
      for (String part : s.strip().split("\\s+")) {
        if (!part.isEmpty()) {
          out.add(part);
        }
      }
      return out;
    }
    if (sep.isEmpty()) {
      throw new TemplateException("split() separator must not be empty");
    }
    int from = 0;
    while (true) {
      int at = s.indexOf(sep, from);
      if (at < 0) {
        out.add(s.substring(from));
        return out;
      }
      out.add(s.substring(from, at));
      from = at + sep.length();
    }
  }

  private static int count(String s, String sub) {
    if (sub.isEmpty()) {
      return s.length() + 1;
    }
    int n = 0;
    for (int at = s.indexOf(sub); at >= 0; at = s.indexOf(sub, at + sub.length())) {
      n++;
    }
    return n;
  }

  private static String join(List<Object> items, String sep) {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < items.size(); i++) {
      sb.append(i > 0 ? sep : "").append(Values.str(items.get(i)));
    }
    return sb.toString();
  }

  private static String title(String s) {
    StringBuilder sb = new StringBuilder(s.length());
    boolean start = true;
    for (char ch : s.toCharArray()) {
      sb.append(start ? Character.toUpperCase(ch) : Character.toLowerCase(ch));
      start = !Character.isLetter(ch);
    }
    return sb.toString();
  }

  private static long toInt(Object v) {
    if (v instanceof Long l) {
      return l;
    }
    if (v instanceof Double d) {
      return d.longValue();
    }
    if (v instanceof Boolean b) {
      return b ? 1 : 0;
    }
    try {
      return Long.parseLong(Values.str(v).strip());
    } catch (NumberFormatException e) {
      return 0;
    }
  }

  /** The strftime directives that chat templates use for dates. */
  static String strftime(String format, LocalDateTime t) {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < format.length(); i++) {
      char ch = format.charAt(i);
      if (ch != '%' || i + 1 == format.length()) {
        sb.append(ch);
        continue;
      }
      char d = format.charAt(++i);
      sb.append(switch (d) {
        case 'Y' -> String.valueOf(t.getYear());
        case 'm' -> String.format("%02d", t.getMonthValue());
        case 'd' -> String.format("%02d", t.getDayOfMonth());
        case 'H' -> String.format("%02d", t.getHour());
        case 'M' -> String.format("%02d", t.getMinute());
        case 'S' -> String.format("%02d", t.getSecond());
        case 'b' -> t.format(DateTimeFormatter.ofPattern("MMM", java.util.Locale.ENGLISH));
        case 'B' -> t.format(DateTimeFormatter.ofPattern("MMMM", java.util.Locale.ENGLISH));
        case 'a' -> t.format(DateTimeFormatter.ofPattern("EEE", java.util.Locale.ENGLISH));
        case 'A' -> t.format(DateTimeFormatter.ofPattern("EEEE", java.util.Locale.ENGLISH));
        case '%' -> "%";
        default -> "%" + d;
      });
    }
    return sb.toString();
  }
}
