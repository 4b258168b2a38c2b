package io.moe4j.text.jinja;

import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Python value semantics for template values: {@code String}, {@code Long}, {@code Double},
 * {@code Boolean}, {@code null} (None), {@code List}, {@code Map<String, ?>}, undefined, namespaces.
 */
final class Values {

  private Values() {}

  /** Java inputs (records are not supported; use maps) to template values. */
  static Object fromJava(Object v) {
    if (v instanceof Integer || v instanceof Short || v instanceof Byte) {
      return ((Number) v).longValue();
    }
    if (v instanceof Float f) {
      return f.doubleValue();
    }
    if (v instanceof Map<?, ?> m) {
      Map<String, Object> out = new LinkedHashMap<>();
      m.forEach((k, x) -> out.put(String.valueOf(k), fromJava(x)));
      return out;
    }
    if (v instanceof Collection<?> c) {
      List<Object> out = new ArrayList<>(c.size());
      for (Object x : c) {
        out.add(fromJava(x));
      }
      return out;
    }
    return v;
  }

  static boolean truthy(Object v) {
    if (v == null || v == Interpreter.UNDEFINED) {
      return false;
    }
    if (v instanceof Boolean b) {
      return b;
    }
    if (v instanceof String s) {
      return !s.isEmpty();
    }
    if (v instanceof Long l) {
      return l != 0;
    }
    if (v instanceof Double d) {
      return d != 0;
    }
    if (v instanceof Collection<?> c) {
      return !c.isEmpty();
    }
    if (v instanceof Map<?, ?> m) {
      return !m.isEmpty();
    }
    return true;
  }

  /** {@code {{ v }}} and {@code ~}: Python's str(), undefined as nothing. */
  static String str(Object v) {
    if (v instanceof String s) {
      return s;
    }
    if (v == Interpreter.UNDEFINED) {
      return "";
    }
    return repr(v);
  }

  static String repr(Object v) {
    if (v == null) {
      return "None";
    }
    if (v == Interpreter.UNDEFINED) {
      return "";
    }
    if (v instanceof Boolean b) {
      return b ? "True" : "False";
    }
    if (v instanceof Double d) {
      if (d.isNaN()) {
        return "nan";
      }
      if (d.isInfinite()) {
        return d > 0 ? "inf" : "-inf";
      }
      return d == Math.rint(d) && Math.abs(d) < 1e16 ? String.format("%.1f", d) : Double.toString(d);
    }
    if (v instanceof String s) {
      return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'";
    }
    if (v instanceof List<?> l) {
      StringBuilder sb = new StringBuilder("[");
      for (int i = 0; i < l.size(); i++) {
        sb.append(i > 0 ? ", " : "").append(repr(l.get(i)));
      }
      return sb.append(']').toString();
    }
    if (v instanceof Map<?, ?> m) {
      StringBuilder sb = new StringBuilder("{");
      boolean first = true;
      for (Map.Entry<?, ?> e : m.entrySet()) {
        sb.append(first ? "" : ", ").append(repr(e.getKey())).append(": ").append(repr(e.getValue()));
        first = false;
      }
      return sb.append('}').toString();
    }
    return String.valueOf(v);
  }

  static String typeName(Object v) {
    if (v == null) {
      return "none";
    }
    if (v == Interpreter.UNDEFINED) {
      return "undefined";
    }
    if (v instanceof String) {
      return "string";
    }
    if (v instanceof Long) {
      return "integer";
    }
    if (v instanceof Double) {
      return "float";
    }
    if (v instanceof Boolean) {
      return "boolean";
    }
    if (v instanceof List) {
      return "list";
    }
    if (v instanceof Map) {
      return "mapping";
    }
    return v.getClass().getSimpleName();
  }

  static List<Object> iterate(Object v) {
    if (v == Interpreter.UNDEFINED || v == null) {
      if (v == null) {
        throw new TemplateException("cannot iterate over none");
      }
      return List.of();
    }
    if (v instanceof List<?> l) {
      return new ArrayList<>(l);
    }
    if (v instanceof Map<?, ?> m) {
      return new ArrayList<>(m.keySet());
    }
    if (v instanceof String s) {
      List<Object> out = new ArrayList<>();
      s.codePoints().forEach(cp -> out.add(new String(Character.toChars(cp))));
      return out;
    }
    throw new TemplateException("cannot iterate over a " + typeName(v));
  }

  static boolean equal(Object a, Object b) {
    if (isNumber(a) && isNumber(b)) {
      return toDouble(a) == toDouble(b);
    }
    if (a == Interpreter.UNDEFINED || b == Interpreter.UNDEFINED) {
      return a == b;
    }
    return a == null ? b == null : a.equals(b);
  }

  static boolean compare(String op, Object a, Object b) {
    int c;
    if (isNumber(a) && isNumber(b)) {
      c = Double.compare(toDouble(a), toDouble(b));
    } else if (a instanceof String x && b instanceof String y) {
      c = x.compareTo(y);
    } else {
      throw new TemplateException("cannot compare " + typeName(a) + " " + op + " " + typeName(b));
    }
    return switch (op) {
      case "<" -> c < 0;
      case ">" -> c > 0;
      case "<=" -> c <= 0;
      default -> c >= 0;
    };
  }

  static boolean contains(Object container, Object item) {
    if (container instanceof String s) {
      if (!(item instanceof String x)) {
        throw new TemplateException("'in <string>' needs a string on the left, got " + typeName(item));
      }
      return s.contains(x);
    }
    if (container instanceof List<?> l) {
      for (Object o : l) {
        if (equal(o, item)) {
          return true;
        }
      }
      return false;
    }
    if (container instanceof Map<?, ?> m) {
      return m.containsKey(item);
    }
    if (container == Interpreter.UNDEFINED) {
      return false;
    }
    throw new TemplateException("'in' needs a string, list or mapping, got " + typeName(container));
  }

  static boolean isNumber(Object v) {
    return v instanceof Long || v instanceof Double;
  }

  static double toDouble(Object v) {
    return ((Number) v).doubleValue();
  }

  static Object arithmetic(String op, Object a, Object b) {
    if (op.equals("+")) {
      if (a instanceof String x && b instanceof String y) {
        return x + y;
      }
      if (a instanceof List<?> x && b instanceof List<?> y) {
        List<Object> out = new ArrayList<>(x);
        out.addAll(y);
        return out;
      }
    }
    if (op.equals("*") && a instanceof String s && b instanceof Long n) {
      return s.repeat((int) Math.max(0, n));
    }
    if (!isNumber(a) || !isNumber(b)) {
      throw new TemplateException("unsupported operand types for " + op + ": "
          + typeName(a) + " and " + typeName(b));
    }
    if (a instanceof Long x && b instanceof Long y) {
      return switch (op) {
        case "+" -> x + y;
        case "-" -> x - y;
        case "*" -> x * y;
        case "/" -> (double) x / y;
        case "//" -> {
          checkDivisor(y);
          yield Math.floorDiv(x, y);
        }
        case "%" -> {
          checkDivisor(y);
          yield Math.floorMod(x, y);
        }
        case "**" -> y >= 0 ? (Object) (long) Math.pow(x, y) : (Object) Math.pow(x, y);
        default -> throw new TemplateException("unknown operator " + op);
      };
    }
    double x = toDouble(a);
    double y = toDouble(b);
    return switch (op) {
      case "+" -> x + y;
      case "-" -> x - y;
      case "*" -> x * y;
      case "/" -> x / y;
      case "//" -> Math.floor(x / y);
      case "%" -> x - y * Math.floor(x / y);
      case "**" -> Math.pow(x, y);
      default -> throw new TemplateException("unknown operator " + op);
    };
  }

  private static void checkDivisor(long y) {
    if (y == 0) {
      throw new TemplateException("integer division or modulo by zero");
    }
  }

  static Object item(Object target, Object key) {
    if (target instanceof Map<?, ?> m) {
      Object k = key instanceof String ? key : str(key);
      return m.containsKey(k) ? m.get(k) : Interpreter.UNDEFINED;
    }
    if (target instanceof Interpreter.Namespace ns && key instanceof String k) {
      return ns.attrs.containsKey(k) ? ns.attrs.get(k) : Interpreter.UNDEFINED;
    }
    if ((target instanceof List || target instanceof String) && key instanceof Long i) {
      List<Object> items = target instanceof String ? iterate(target) : castList(target);
      long index = i < 0 ? items.size() + i : i;
      if (index < 0 || index >= items.size()) {
        throw new TemplateException("index " + i + " out of range for a " + typeName(target)
            + " of length " + items.size());
      }
      return items.get((int) index);
    }
    if (target == Interpreter.UNDEFINED) {
      return Interpreter.UNDEFINED;
    }
    if (target instanceof Interpreter.Loop || key instanceof String) {
      return Interpreter.UNDEFINED;
    }
    throw new TemplateException("cannot index a " + typeName(target) + " with " + typeName(key));
  }

  @SuppressWarnings("unchecked")
  private static List<Object> castList(Object o) {
    return (List<Object>) o;
  }

  /** Python slicing {@code [start:stop:step]} of a list or string. */
  static Object slice(Object target, Object start, Object stop, Object step) {
    boolean isString = target instanceof String;
    if (!isString && !(target instanceof List)) {
      throw new TemplateException("cannot slice a " + typeName(target));
    }
    List<Object> items = isString ? iterate(target) : castList(target);
    int n = items.size();
    long st = step == null ? 1 : asLong(step, "slice step");
    if (st == 0) {
      throw new TemplateException("slice step cannot be zero");
    }
    List<Object> out = new ArrayList<>();
    if (st > 0) {
      long lo = bound(start, 0, n, false);
      long hi = bound(stop, n, n, false);
      for (long i = lo; i < hi; i += st) {
        out.add(items.get((int) i));
      }
    } else {
      long hi = bound(start, n - 1, n, true);
      long lo = stop == null ? -1 : bound(stop, -1, n, true);
      for (long i = hi; i > lo; i += st) {
        out.add(items.get((int) i));
      }
    }
    if (isString) {
      StringBuilder sb = new StringBuilder();
      out.forEach(sb::append);
      return sb.toString();
    }
    return out;
  }

  private static long bound(Object v, long dflt, int n, boolean negativeStep) {
    if (v == null) {
      return dflt;
    }
    long i = asLong(v, "slice index");
    if (i < 0) {
      i += n;
    }
    if (negativeStep) {
      return Math.max(-1, Math.min(i, n - 1));
    }
    return Math.max(0, Math.min(i, n));
  }

  static long asLong(Object v, String what) {
    if (v instanceof Long l) {
      return l;
    }
    throw new TemplateException(what + " must be an integer, got " + typeName(v));
  }
}
