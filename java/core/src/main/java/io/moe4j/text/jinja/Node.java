package io.moe4j.text.jinja;

import java.util.List;

/** Parsed template: statements and expressions. */
sealed interface Node {

    record Text(String text) implements Node {}

    record Output(Expr value) implements Node {}

    record If(List<Expr> conditions, List<List<Node>> bodies, List<Node> otherwise) implements Node {}

    record For(List<String> targets, Expr iterable, Expr filter, List<Node> body, List<Node> otherwise)
            implements Node {}

    /** {@code set name = value} or {@code set name.attr = value} (attr null for the first). */
    record Set(String name, String attr, Expr value) implements Node {}

    record Break() implements Node {}

    record Continue() implements Node {}

    /** Expressions. */
    sealed interface Expr {}

    record Literal(Object value) implements Expr {}

    record Name(String name) implements Expr {}

    record Attr(Expr target, String name) implements Expr {}

    record Item(Expr target, Expr key) implements Expr {}

    record Slice(Expr target, Expr start, Expr stop, Expr step) implements Expr {}

    record Call(Expr function, List<Expr> args, List<String> kwNames, List<Expr> kwValues) implements Expr {}

    record Filter(Expr value, String name, List<Expr> args, List<String> kwNames, List<Expr> kwValues)
            implements Expr {}

    record Test(Expr value, String name, List<Expr> args, boolean negated) implements Expr {}

    record Unary(String op, Expr operand) implements Expr {}

    record Binary(String op, Expr left, Expr right) implements Expr {}

    record Conditional(Expr then, Expr condition, Expr otherwise) implements Expr {}

    record ListExpr(List<Expr> items) implements Expr {}

    record DictExpr(List<Expr> keys, List<Expr> values) implements Expr {}
}
