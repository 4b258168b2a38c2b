package io.moe4j.text.jinja;

import io.moe4j.text.jinja.Node.Expr;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Renders parsed nodes with Python/Jinja value semantics (see {@link Values}). */
final class Interpreter {

  /** Jinja's undefined: falsy, renders as nothing, any attribute of it is undefined too. */
  static final Object UNDEFINED = new Object() {
    @Override
    public String toString() {
      return "Undefined";
    }
  };

  /** A callable value (globals and bound string/dict methods). */
  @FunctionalInterface
  interface Callable {
    Object call(List<Object> args, Map<String, Object> kwargs);
  }

  /** {@code namespace(...)}: the one object whose attributes templates may assign. */
  static final class Namespace {
    final Map<String, Object> attrs = new LinkedHashMap<>();
  }

  /** The {@code loop} variable of a for loop. */
  record Loop(int index0, int length, Object previtem, Object nextitem) {}

  private static final class Scope {
    final Scope parent;
    final Map<String, Object> vars = new HashMap<>();

    Scope(Scope parent) {
      this.parent = parent;
    }

    Object get(String name) {
      for (Scope s = this; s != null; s = s.parent) {
        if (s.vars.containsKey(name)) {
          return s.vars.get(name);
        }
      }
      return UNDEFINED;
    }
  }

  private static final class BreakSignal extends RuntimeException {
    BreakSignal() {
      super(null, null, false, false);
    }
  }

  private static final class ContinueSignal extends RuntimeException {
    ContinueSignal() {
      super(null, null, false, false);
    }
  }

  private final Builtins builtins;

  Interpreter(Builtins builtins) {
    this.builtins = builtins;
  }

  String render(List<Node> nodes, Map<String, Object> context) {
    Scope root = new Scope(null);
    root.vars.putAll(builtins.globals());
    Scope top = new Scope(root);
    context.forEach((k, v) -> top.vars.put(k, Values.fromJava(v)));
    StringBuilder out = new StringBuilder();
    try {
      exec(nodes, top, out);
    } catch (BreakSignal | ContinueSignal e) {
      throw new TemplateException("break/continue outside a for loop");
    }
    return out.toString();
  }

  private void exec(List<Node> nodes, Scope scope, StringBuilder out) {
    for (Node node : nodes) {
      exec(node, scope, out);
    }
  }

  private void exec(Node node, Scope scope, StringBuilder out) {
    if (node instanceof Node.Text text) {
      out.append(text.text());
    } else if (node instanceof Node.Output o) {
      out.append(Values.str(eval(o.value(), scope)));
    } else if (node instanceof Node.If n) {
      for (int i = 0; i < n.conditions().size(); i++) {
        if (Values.truthy(eval(n.conditions().get(i), scope))) {
          exec(n.bodies().get(i), scope, out);
          return;
        }
      }
      exec(n.otherwise(), scope, out);
    } else if (node instanceof Node.For n) {
      loop(n, scope, out);
    } else if (node instanceof Node.Set n) {
      Object value = eval(n.value(), scope);
      if (n.attr() == null) {
        scope.vars.put(n.name(), value);
      } else if (scope.get(n.name()) instanceof Namespace ns) {
        ns.attrs.put(n.attr(), value);
      } else {
        throw new TemplateException("cannot set " + n.name() + "." + n.attr()
            + ": only namespace() objects have assignable attributes");
      }
    } else if (node instanceof Node.Break) {
      throw new BreakSignal();
    } else if (node instanceof Node.Continue) {
      throw new ContinueSignal();
    }
  }

  private void loop(Node.For n, Scope scope, StringBuilder out) {
    List<Object> items = new ArrayList<>();
    for (Object item : Values.iterate(eval(n.iterable(), scope))) {
      if (n.filter() != null) {
        Scope probe = new Scope(scope);
        bind(n.targets(), item, probe);
        if (!Values.truthy(eval(n.filter(), probe))) {
          continue;
        }
      }
      items.add(item);
    }
    if (items.isEmpty()) {
      exec(n.otherwise(), scope, out);
      return;
    }
    for (int i = 0; i < items.size(); i++) {
      // Jinja: assignments inside a loop body stay in that iteration (hence namespace()).
      Scope body = new Scope(scope);
      bind(n.targets(), items.get(i), body);
      body.vars.put("loop", new Loop(i, items.size(),
          i > 0 ? items.get(i - 1) : UNDEFINED, i + 1 < items.size() ? items.get(i + 1) : UNDEFINED));
      try {
        exec(n.body(), body, out);
      } catch (BreakSignal b) {
        return;
      } catch (ContinueSignal c) {
        // next item
      }
    }
  }

  private static void bind(List<String> targets, Object item, Scope scope) {
    if (targets.size() == 1) {
      scope.vars.put(targets.get(0), item);
      return;
    }
    List<Object> parts = Values.iterate(item);
    if (parts.size() != targets.size()) {
      throw new TemplateException("cannot unpack " + parts.size() + " values into " + targets);
    }
    for (int i = 0; i < targets.size(); i++) {
      scope.vars.put(targets.get(i), parts.get(i));
    }
  }

  Object eval(Expr e, Scope scope) {
    if (e instanceof Node.Literal l) {
      return l.value();
    } else if (e instanceof Node.Name n) {
      return scope.get(n.name());
    } else if (e instanceof Node.Attr a) {
      return builtins.attribute(eval(a.target(), scope), a.name());
    } else if (e instanceof Node.Item i) {
      return Values.item(eval(i.target(), scope), eval(i.key(), scope));
    } else if (e instanceof Node.Slice s) {
      return Values.slice(eval(s.target(), scope), evalOrNull(s.start(), scope),
          evalOrNull(s.stop(), scope), evalOrNull(s.step(), scope));
    } else if (e instanceof Node.Call c) {
      Object fn = eval(c.function(), scope);
      if (!(fn instanceof Callable callable)) {
        throw new TemplateException("'" + describe(c.function()) + "' is not callable");
      }
      return callable.call(evalAll(c.args(), scope), evalKw(c.kwNames(), c.kwValues(), scope));
    } else if (e instanceof Node.Filter f) {
      return builtins.filter(f.name(), eval(f.value(), scope), evalAll(f.args(), scope),
          evalKw(f.kwNames(), f.kwValues(), scope));
    } else if (e instanceof Node.Test t) {
      boolean r = builtins.test(t.name(), eval(t.value(), scope), evalAll(t.args(), scope));
      return r != t.negated();
    } else if (e instanceof Node.Unary u) {
      Object v = eval(u.operand(), scope);
      return switch (u.op()) {
        case "not" -> !Values.truthy(v);
        case "-" -> Values.arithmetic("-", 0L, v);
        default -> v;
      };
    } else if (e instanceof Node.Binary b) {
      return binary(b, scope);
    } else if (e instanceof Node.Conditional c) {
      return Values.truthy(eval(c.condition(), scope)) ? eval(c.then(), scope) : eval(c.otherwise(), scope);
    } else if (e instanceof Node.ListExpr l) {
      return evalAll(l.items(), scope);
    } else if (e instanceof Node.DictExpr d) {
      Map<String, Object> m = new LinkedHashMap<>();
      for (int i = 0; i < d.keys().size(); i++) {
        m.put(Values.str(eval(d.keys().get(i), scope)), eval(d.values().get(i), scope));
      }
      return m;
    }
    throw new IllegalStateException("unknown expression " + e);
  }

  private Object binary(Node.Binary b, Scope scope) {
    Object left = eval(b.left(), scope);
    switch (b.op()) {
      case "and":
        return Values.truthy(left) ? eval(b.right(), scope) : left;
      case "or":
        return Values.truthy(left) ? left : eval(b.right(), scope);
      default:
        break;
    }
    Object right = eval(b.right(), scope);
    return switch (b.op()) {
      case "==" -> Values.equal(left, right);
      case "!=" -> !Values.equal(left, right);
      case "<", ">", "<=", ">=" -> Values.compare(b.op(), left, right);
      case "in" -> Values.contains(right, left);
      case "~" -> Values.str(left) + Values.str(right);
      default -> Values.arithmetic(b.op(), left, right);
    };
  }

  private Object evalOrNull(Expr e, Scope scope) {
    return e == null ? null : eval(e, scope);
  }

  private List<Object> evalAll(List<Expr> exprs, Scope scope) {
    List<Object> out = new ArrayList<>(exprs.size());
    for (Expr x : exprs) {
      out.add(eval(x, scope));
    }
    return out;
  }

  private Map<String, Object> evalKw(List<String> names, List<Expr> values, Scope scope) {
    Map<String, Object> kw = new LinkedHashMap<>();
    for (int i = 0; i < names.size(); i++) {
      kw.put(names.get(i), eval(values.get(i), scope));
    }
    return kw;
  }

  private static String describe(Expr e) {
    if (e instanceof Node.Name n) {
      return n.name();
    }
    if (e instanceof Node.Attr a) {
      return describe(a.target()) + "." + a.name();
    }
    return "expression";
  }
}
