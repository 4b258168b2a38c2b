package io.moe4j.text.jinja;

import io.moe4j.text.jinja.Lexer.Kind;
import io.moe4j.text.jinja.Lexer.Segment;
import io.moe4j.text.jinja.Lexer.Tok;
import io.moe4j.text.jinja.Lexer.TokType;
import io.moe4j.text.jinja.Node.Expr;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/** Recursive-descent parser for the Jinja subset that chat templates use. */
final class Parser {

  private static final Set<String> STOP_WORDS =
      Set.of("and", "or", "not", "in", "is", "if", "else", "elif", "for", "recursive");

  private final String src;
  private final List<Segment> segments;
  private int seg;
  private List<Tok> toks;
  private int t;

  private Parser(String src) {
    this.src = src;
    this.segments = Lexer.lex(src);
  }

  static List<Node> parse(String src) {
    Parser p = new Parser(src);
    List<Node> body = p.body(Set.of());
    if (p.seg < p.segments.size()) {
      throw p.error("unexpected {% " + p.keyword(p.segments.get(p.seg)) + " %}", p.segments.get(p.seg).pos());
    }
    return body;
  }

  /** Parses nodes until a statement whose keyword is in {@code ends} (left unconsumed). */
  private List<Node> body(Set<String> ends) {
    List<Node> nodes = new ArrayList<>();
    while (seg < segments.size()) {
      Segment s = segments.get(seg);
      switch (s.kind()) {
        case TEXT -> {
          nodes.add(new Node.Text(s.text()));
          seg++;
        }
        case OUTPUT -> {
          begin(s);
          Expr e = expression();
          endOfTag();
          nodes.add(new Node.Output(e));
          seg++;
        }
        case STATEMENT -> {
          String kw = keyword(s);
          if (ends.contains(kw)) {
            return nodes;
          }
          Node n = statement(s, kw);
          if (n != null) {
            nodes.add(n);
          }
        }
      }
    }
    if (!ends.isEmpty()) {
      throw new TemplateException("missing {% " + String.join(" / ", ends) + " %} at the end of the template");
    }
    return nodes;
  }

  private String keyword(Segment s) {
    if (s.tokens().isEmpty() || s.tokens().get(0).type() != TokType.NAME) {
      throw error("a statement must start with a keyword", s.pos());
    }
    return s.tokens().get(0).text();
  }

  private Node statement(Segment s, String kw) {
    begin(s);
    t = 1;
    switch (kw) {
      case "if" -> {
        List<Expr> conds = new ArrayList<>();
        List<List<Node>> bodies = new ArrayList<>();
        conds.add(expression());
        endOfTag();
        seg++;
        bodies.add(body(Set.of("elif", "else", "endif")));
        List<Node> otherwise = List.of();
        while (true) {
          Segment end = segments.get(seg);
          String ek = keyword(end);
          begin(end);
          t = 1;
          seg++;
          if (ek.equals("elif")) {
            conds.add(expression());
            endOfTag();
            bodies.add(body(Set.of("elif", "else", "endif")));
          } else if (ek.equals("else")) {
            endOfTag();
            otherwise = body(Set.of("endif"));
          } else {
            endOfTag();
            return new Node.If(conds, bodies, otherwise);
          }
        }
      }
      case "for" -> {
        List<String> targets = new ArrayList<>();
        targets.add(name());
        while (peek().is(",")) {
          t++;
          targets.add(name());
        }
        expect("in");
        Expr iterable = conditionalFree();
        Expr filter = null;
        if (t < toks.size() && peek().is("if")) {
          t++;
          filter = expression();
        }
        endOfTag();
        seg++;
        List<Node> body = body(Set.of("else", "endfor"));
        List<Node> otherwise = List.of();
        if (keyword(segments.get(seg)).equals("else")) {
          seg++;
          otherwise = body(Set.of("endfor"));
        }
        seg++;
        return new Node.For(targets, iterable, filter, body, otherwise);
      }
      case "set" -> {
        String name = name();
        String attr = null;
        if (peek().is(".")) {
          t++;
          attr = name();
        }
        expect("=");
        Expr value = expression();
        endOfTag();
        seg++;
        return new Node.Set(name, attr, value);
      }
      case "break", "continue" -> {
        endOfTag();
        seg++;
        return kw.equals("break") ? new Node.Break() : new Node.Continue();
      }
      // transformers' AssistantTracker marks assistant text for masks; it renders as nothing
      case "generation", "endgeneration" -> {
        seg++;
        return null;
      }
      default -> throw error("unsupported statement {% " + kw + " %}", s.pos());
    }
  }

  private void begin(Segment s) {
    toks = s.tokens();
    t = 0;
  }

  private Tok peek() {
    if (t >= toks.size()) {
      return new Tok(TokType.OP, "<end of tag>", null, -1);
    }
    return toks.get(t);
  }

  private Tok next() {
    Tok tok = peek();
    if (t >= toks.size()) {
      throw error("unexpected end of tag", segments.get(Math.min(seg, segments.size() - 1)).pos());
    }
    t++;
    return tok;
  }

  private void expect(String s) {
    Tok tok = next();
    if (!tok.is(s)) {
      throw error("expected '" + s + "', got '" + tok.text() + "'", tok.pos());
    }
  }

  private String name() {
    Tok tok = next();
    if (tok.type() != TokType.NAME) {
      throw error("expected a name, got '" + tok.text() + "'", tok.pos());
    }
    return tok.text();
  }

  private void endOfTag() {
    if (t < toks.size()) {
      throw error("unexpected '" + toks.get(t).text() + "'", toks.get(t).pos());
    }
  }

  // Expressions, lowest precedence first.

  private Expr expression() {
    Expr e = or();
    if (peek().is("if")) {
      t++;
      Expr cond = or();
      Expr otherwise = new Node.Literal(Interpreter.UNDEFINED);
      if (peek().is("else")) {
        t++;
        otherwise = expression();
      }
      return new Node.Conditional(e, cond, otherwise);
    }
    return e;
  }

  /** A for loop's iterable: an expression without a trailing {@code if} (that one filters). */
  private Expr conditionalFree() {
    return or();
  }

  private Expr or() {
    Expr e = and();
    while (peek().is("or")) {
      t++;
      e = new Node.Binary("or", e, and());
    }
    return e;
  }

  private Expr and() {
    Expr e = not();
    while (peek().is("and")) {
      t++;
      e = new Node.Binary("and", e, not());
    }
    return e;
  }

  private Expr not() {
    if (peek().is("not")) {
      t++;
      return new Node.Unary("not", not());
    }
    return compare();
  }

  private Expr compare() {
    Expr e = concat();
    while (true) {
      Tok tok = peek();
      if (tok.type() == TokType.OP && Set.of("==", "!=", "<", ">", "<=", ">=").contains(tok.text())) {
        t++;
        e = new Node.Binary(tok.text(), e, concat());
      } else if (tok.is("in")) {
        t++;
        e = new Node.Binary("in", e, concat());
      } else if (tok.is("not") && t + 1 < toks.size() && toks.get(t + 1).is("in")) {
        t += 2;
        e = new Node.Unary("not", new Node.Binary("in", e, concat()));
      } else {
        return e;
      }
    }
  }

  private Expr concat() {
    Expr e = additive();
    while (peek().is("~")) {
      t++;
      e = new Node.Binary("~", e, additive());
    }
    return e;
  }

  private Expr additive() {
    Expr e = multiplicative();
    while (peek().is("+") || peek().is("-")) {
      String op = next().text();
      e = new Node.Binary(op, e, multiplicative());
    }
    return e;
  }

  private Expr multiplicative() {
    Expr e = unary();
    while (peek().is("*") || peek().is("/") || peek().is("//") || peek().is("%")) {
      String op = next().text();
      e = new Node.Binary(op, e, unary());
    }
    return e;
  }

  private Expr unary() {
    if (peek().is("-") || peek().is("+")) {
      String op = next().text();
      return new Node.Unary(op, unary());
    }
    Expr e = power();
    return filtersAndTests(e);
  }

  private Expr power() {
    Expr e = postfix(primary());
    if (peek().is("**")) {
      t++;
      return new Node.Binary("**", e, unary());
    }
    return e;
  }

  private Expr filtersAndTests(Expr e) {
    while (true) {
      if (peek().is("|")) {
        t++;
        String name = name();
        List<Expr> args = new ArrayList<>();
        List<String> kwNames = new ArrayList<>();
        List<Expr> kwValues = new ArrayList<>();
        if (peek().is("(")) {
          t++;
          arguments(args, kwNames, kwValues);
        }
        e = postfix(new Node.Filter(e, name, args, kwNames, kwValues));
      } else if (peek().is("is")) {
        t++;
        boolean negated = false;
        if (peek().is("not")) {
          t++;
          negated = true;
        }
        String name = name();
        List<Expr> args = new ArrayList<>();
        if (peek().is("(")) {
          t++;
          arguments(args, new ArrayList<>(), new ArrayList<>());
        } else if (startsPrimary(peek())) {
          args.add(postfix(primary()));
        }
        e = new Node.Test(e, name, args, negated);
      } else {
        return e;
      }
    }
  }

  private boolean startsPrimary(Tok tok) {
    if (t >= toks.size()) {
      return false;
    }
    return switch (tok.type()) {
      case STRING, INT, FLOAT -> true;
      case NAME -> !STOP_WORDS.contains(tok.text());
      case OP -> tok.text().equals("[") || tok.text().equals("{");
    };
  }

  private Expr primary() {
    Tok tok = next();
    switch (tok.type()) {
      case STRING:
        // adjacent string literals concatenate, as in Python
        StringBuilder sb = new StringBuilder((String) tok.value());
        while (t < toks.size() && peek().type() == TokType.STRING) {
          sb.append((String) next().value());
        }
        return new Node.Literal(sb.toString());
      case INT:
      case FLOAT:
        return new Node.Literal(tok.value());
      case NAME:
        return switch (tok.text()) {
          case "true", "True" -> new Node.Literal(Boolean.TRUE);
          case "false", "False" -> new Node.Literal(Boolean.FALSE);
          case "none", "None" -> new Node.Literal(null);
          default -> new Node.Name(tok.text());
        };
      default:
        break;
    }
    if (tok.is("(")) {
      Expr e = expression();
      if (peek().is(",")) {
        List<Expr> items = new ArrayList<>(List.of(e));
        while (peek().is(",")) {
          t++;
          if (peek().is(")")) {
            break;
          }
          items.add(expression());
        }
        e = new Node.ListExpr(items);
      }
      expect(")");
      return e;
    }
    if (tok.is("[")) {
      List<Expr> items = new ArrayList<>();
      while (!peek().is("]")) {
        items.add(expression());
        if (!peek().is("]")) {
          expect(",");
        }
      }
      t++;
      return new Node.ListExpr(items);
    }
    if (tok.is("{")) {
      List<Expr> keys = new ArrayList<>();
      List<Expr> values = new ArrayList<>();
      while (!peek().is("}")) {
        keys.add(expression());
        expect(":");
        values.add(expression());
        if (!peek().is("}")) {
          expect(",");
        }
      }
      t++;
      return new Node.DictExpr(keys, values);
    }
    throw error("unexpected '" + tok.text() + "'", tok.pos());
  }

  private Expr postfix(Expr e) {
    while (true) {
      if (peek().is(".")) {
        t++;
        Tok tok = next();
        if (tok.type() == TokType.NAME) {
          e = new Node.Attr(e, tok.text());
        } else if (tok.type() == TokType.INT) {
          e = new Node.Item(e, new Node.Literal(tok.value()));
        } else {
          throw error("expected an attribute name after '.', got '" + tok.text() + "'", tok.pos());
        }
      } else if (peek().is("[")) {
        t++;
        e = subscript(e);
      } else if (peek().is("(")) {
        t++;
        List<Expr> args = new ArrayList<>();
        List<String> kwNames = new ArrayList<>();
        List<Expr> kwValues = new ArrayList<>();
        arguments(args, kwNames, kwValues);
        e = new Node.Call(e, args, kwNames, kwValues);
      } else {
        return e;
      }
    }
  }

  private Expr subscript(Expr target) {
    Expr[] parts = new Expr[3];
    int part = 0;
    boolean slice = false;
    while (!peek().is("]")) {
      if (peek().is(":")) {
        t++;
        slice = true;
        part++;
        if (part > 2) {
          throw error("a slice has at most three parts", peek().pos());
        }
        continue;
      }
      parts[part] = expression();
    }
    t++;
    if (!slice) {
      if (parts[0] == null) {
        throw error("empty subscript", peek().pos());
      }
      return new Node.Item(target, parts[0]);
    }
    return new Node.Slice(target, parts[0], parts[1], parts[2]);
  }

  /** After '(': positional and keyword arguments up to and including ')'. */
  private void arguments(List<Expr> args, List<String> kwNames, List<Expr> kwValues) {
    while (!peek().is(")")) {
      if (peek().type() == TokType.NAME && t + 1 < toks.size() && toks.get(t + 1).is("=")) {
        kwNames.add(next().text());
        t++;
        kwValues.add(expression());
      } else {
        args.add(expression());
      }
      if (!peek().is(")")) {
        expect(",");
      }
    }
    t++;
  }

  private TemplateException error(String message, int at) {
    return new TemplateException(message + (at >= 0 ? " at " + Lexer.where(src, at) : ""));
  }
}
