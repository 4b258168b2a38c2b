package io.moe4j.text.jinja;

import java.util.ArrayList;
import java.util.List;

/**
 * Splits a template into text, {@code {{ output }}} and {@code {% statement %}} segments, applying
 * Jinja's whitespace control as Hugging Face configures it for chat templates: {@code trim_blocks}
 * and {@code lstrip_blocks} on, {@code -} markers strip all whitespace beside a tag, and (as with
 * {@code keep_trailing_newline=False}) one trailing newline of the source is dropped.
 */
final class Lexer {

  enum Kind { TEXT, OUTPUT, STATEMENT }

  enum TokType { NAME, STRING, INT, FLOAT, OP }

  record Tok(TokType type, String text, Object value, int pos) {
    boolean is(String s) {
      return (type == TokType.OP || type == TokType.NAME) && text.equals(s);
    }
  }

  record Segment(Kind kind, String text, List<Tok> tokens, int pos) {}

  private static final String[] OPS = {
    "//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "(", ")", "[", "]",
    "{", "}", ",", ".", ":", "|", "="
  };

  private final String src;
  private int pos;

  private Lexer(String src) {
    this.src = src.endsWith("\n") ? src.substring(0, src.length() - 1) : src;
  }

  static List<Segment> lex(String source) {
    return new Lexer(source).run();
  }

  private List<Segment> run() {
    List<Segment> out = new ArrayList<>();
    boolean stripNextLeading = false;
    boolean trimNextNewline = false;
    while (pos <= src.length()) {
      int start = nextTagStart(pos);
      String text = src.substring(pos, start < 0 ? src.length() : start);
      if (stripNextLeading) {
        text = text.stripLeading();
      } else if (trimNextNewline) {
        if (text.startsWith("\r\n")) {
          text = text.substring(2);
        } else if (text.startsWith("\n")) {
          text = text.substring(1);
        }
      }
      if (start < 0) {
        addText(out, text);
        break;
      }
      char open = src.charAt(start + 1);
      char marker = start + 2 < src.length() ? src.charAt(start + 2) : ' ';
      if (marker == '-') {
        text = text.stripTrailing();
      } else if (marker != '+' && open != '{') {
        text = lstripBlock(text, start);
      }
      addText(out, text);
      int bodyStart = start + 2 + (marker == '-' || marker == '+' ? 1 : 0);
      if (open == '#') {
        int end = src.indexOf("#}", bodyStart);
        if (end < 0) {
          throw error(start, "unclosed comment");
        }
        stripNextLeading = end > bodyStart && src.charAt(end - 1) == '-';
        trimNextNewline = true;
        pos = end + 2;
        continue;
      }
      String close = open == '{' ? "}}" : "%}";
      pos = bodyStart;
      List<Tok> tokens = new ArrayList<>();
      while (true) {
        skipSpace();
        if (pos >= src.length()) {
          throw error(start, "unclosed " + (open == '{' ? "{{" : "{%"));
        }
        if (src.startsWith("-" + close, pos)) {
          stripNextLeading = true;
          pos += 3;
          break;
        }
        if (src.startsWith(close, pos)) {
          stripNextLeading = false;
          pos += 2;
          break;
        }
        tokens.add(token());
      }
      trimNextNewline = open == '%';
      out.add(new Segment(open == '{' ? Kind.OUTPUT : Kind.STATEMENT, null, tokens, start));
    }
    return out;
  }

  private int nextTagStart(int from) {
    for (int i = from; i + 1 < src.length(); i++) {
      if (src.charAt(i) == '{') {
        char c = src.charAt(i + 1);
        if (c == '{' || c == '%' || c == '#') {
          return i;
        }
      }
    }
    return -1;
  }

  /** lstrip_blocks: spaces and tabs between a line start and a block tag go. */
  private String lstripBlock(String text, int tagStart) {
    int j = tagStart;
    while (j > 0 && (src.charAt(j - 1) == ' ' || src.charAt(j - 1) == '\t')) {
      j--;
    }
    if (j > 0 && src.charAt(j - 1) != '\n') {
      return text;
    }
    int n = tagStart - j;
    int k = text.length();
    while (n > 0 && k > 0 && (text.charAt(k - 1) == ' ' || text.charAt(k - 1) == '\t')) {
      k--;
      n--;
    }
    return text.substring(0, k);
  }

  private static void addText(List<Segment> out, String text) {
    if (!text.isEmpty()) {
      out.add(new Segment(Kind.TEXT, text, List.of(), -1));
    }
  }

  private void skipSpace() {
    while (pos < src.length() && Character.isWhitespace(src.charAt(pos))) {
      pos++;
    }
  }

  private Tok token() {
    int start = pos;
    char c = src.charAt(pos);
    if (Character.isLetter(c) || c == '_') {
      while (pos < src.length() && (Character.isLetterOrDigit(src.charAt(pos)) || src.charAt(pos) == '_')) {
        pos++;
      }
      String name = src.substring(start, pos);
      return new Tok(TokType.NAME, name, name, start);
    }
    if (Character.isDigit(c)) {
      while (pos < src.length() && Character.isDigit(src.charAt(pos))) {
        pos++;
      }
      if (pos + 1 < src.length() && src.charAt(pos) == '.' && Character.isDigit(src.charAt(pos + 1))) {
        pos++;
        while (pos < src.length() && Character.isDigit(src.charAt(pos))) {
          pos++;
        }
        String t = src.substring(start, pos);
        return new Tok(TokType.FLOAT, t, Double.parseDouble(t), start);
      }
      String t = src.substring(start, pos);
      return new Tok(TokType.INT, t, Long.parseLong(t), start);
    }
    if (c == '\'' || c == '"') {
      return string(c);
    }
    for (String op : OPS) {
      if (src.startsWith(op, pos)) {
        pos += op.length();
        return new Tok(TokType.OP, op, op, start);
      }
    }
    throw error(pos, "unexpected character '" + c + "'");
  }

  private Tok string(char quote) {
    int start = pos++;
    StringBuilder sb = new StringBuilder();
    while (true) {
      if (pos >= src.length()) {
        throw error(start, "unclosed string");
      }
      char c = src.charAt(pos++);
      if (c == quote) {
        break;
      }
      if (c == '\\' && pos < src.length()) {
        char e = src.charAt(pos++);
        switch (e) {
          case 'n' -> sb.append('\n');
          case 't' -> sb.append('\t');
          case 'r' -> sb.append('\r');
          case '\\', '\'', '"' -> sb.append(e);
          case 'u' -> {
            if (pos + 4 > src.length()) {
              throw error(pos, "bad \\u escape");
            }
            sb.append((char) Integer.parseInt(src.substring(pos, pos + 4), 16));
            pos += 4;
          }
          default -> sb.append('\\').append(e);
        }
      } else {
        sb.append(c);
      }
    }
    return new Tok(TokType.STRING, src.substring(start, pos), sb.toString(), start);
  }

  private TemplateException error(int at, String message) {
    return new TemplateException(message + " at " + where(src, at));
  }

  static String where(String src, int at) {
    int line = 1;
    for (int i = 0; i < Math.min(at, src.length()); i++) {
      if (src.charAt(i) == '\n') {
        line++;
      }
    }
    return "line " + line;
  }
}
