package io.moe4j.text.jinja;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.LocalDateTime;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class JinjaTemplateTest {

  private static String render(String template, Map<String, ?> ctx) {
    return JinjaTemplate.parse(template).render(ctx);
  }

  private static String render(String template) {
    return render(template, Map.of());
  }

  @Test
  void whitespaceControlTrimAndLstripBlocks() {
    // trim_blocks drops the newline after a block tag, lstrip_blocks the indent before it
    assertEquals("a\nb\n", render("{% if true %}\na\n    {% endif %}\nb\n\n"));
    // '-' strips all whitespace on that side, newlines included
    assertEquals("xy", render("x  \n  {{- 'y' -}}  \n "));
    // output tags are not lstripped; one trailing newline of the source is dropped
    assertEquals("  1\n", render("  {{ 1 }}\n\n"));
    assertEquals("ab", render("a{# note #}\nb"));
  }

  @Test
  void loopsScopesAndNamespace() {
    Map<String, Object> ctx = Map.of("xs", List.of("a", "b", "c"));
    assertEquals("0a1b2c", render("{% for x in xs %}{{ loop.index0 }}{{ x }}{% endfor %}", ctx));
    assertEquals("F..L", render("{% for x in xs %}{% if loop.first %}F{% elif loop.last %}L{% else %}..{% endif %}{% endfor %}", ctx));
    // set inside a loop does not leak; namespace attributes do
    assertEquals("0-3", render("{% set n = 0 %}{% set ns = namespace(n=0) %}{% for x in xs %}{% set n = n + 1 %}"
        + "{% set ns.n = ns.n + 1 %}{% endfor %}{{ n }}-{{ ns.n }}", ctx));
    assertEquals("cba", render("{% for x in xs[::-1] %}{{ x }}{% endfor %}", ctx));
    assertEquals("['b', 'c']|['a']|c", render("{{ xs[1:] }}|{{ xs[:-2] }}|{{ xs[-1] }}", ctx));
    assertEquals("a", render("{% for x in xs %}{% if x == 'b' %}{% break %}{% endif %}{{ x }}{% endfor %}", ctx));
    assertEquals("ac", render("{% for x in xs if x != 'b' %}{{ x }}{% endfor %}", ctx));
    assertEquals("none", render("{% for x in [] %}{{ x }}{% else %}none{% endfor %}"));
    assertEquals("a=1;", render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", Map.of("d", Map.of("a", 1))));
  }

  @Test
  void pythonStringMethodsAndOperators() {
    Map<String, Object> ctx = Map.of("s", "\n <think>x</think>\n\nanswer ");
    assertEquals("answer", render("{{ s.split('</think>')[-1].strip() }}", ctx));
    assertEquals("x", render("{{ s.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}", ctx));
    assertEquals("True False True", render("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith('b') }} {{ 'b' in 'abc' }}"));
    assertEquals("7 1 2 2.5 8 ab-c", render("{{ 1 + 2 * 3 }} {{ 7 % 3 }} {{ 7 // 3 }} {{ 5 / 2 }} {{ 2 ** 3 }} {{ 'a' ~ 'b' ~ '-c' }}"));
    assertEquals("2 yes", render("{{ xs|length - 1 }} {{ 'yes' if xs else 'no' }}", Map.of("xs", List.of(1, 2, 3))));
    assertEquals("True True False", render("{{ x is string }} {{ y is not defined }} {{ none is not none }}", Map.of("x", "s")));
    assertEquals("B", render("{{ 'a'|upper if false else 'b'|upper }}"));
    assertEquals("  x", render("{{ '  x  '.rstrip() }}"));
    assertEquals("x", render("{{ '  x  '|trim }}"));
  }

  @Test
  void filtersAndJson() {
    Map<String, Object> first = new LinkedHashMap<>();
    first.put("role", "user");
    first.put("content", "é\"q");
    Map<String, Object> ctx = Map.of("ms", List.of(first, Map.of("role", "assistant", "content", "b")));
    assertEquals("1", render("{{ ms|selectattr('role', 'equalto', 'user')|list|length }}", ctx));
    assertEquals("user,assistant", render("{{ ms|map(attribute='role')|join(',') }}", ctx));
    assertEquals("{\"role\": \"user\", \"content\": \"é\\\"q\"}", render("{{ ms[0]|tojson }}", ctx));
    assertEquals("[\n  1,\n  [\n    2\n  ]\n]", render("{{ [1, [2]]|tojson(indent=2) }}"));
    assertEquals("d", render("{{ missing|default('d') }}"));
    assertEquals("2025-01-02", JinjaTemplate.parse("{{ strftime_now('%Y-%m-%d') }}",
        () -> LocalDateTime.of(2025, 1, 2, 3, 4)).render(Map.of()));
  }

  @Test
  void errorsNameTheProblem() {
    TemplateException raised = assertThrows(TemplateException.class, () -> render("{{ raise_exception('nope') }}"));
    assertEquals("nope", raised.getMessage());
    assertTrue(assertThrows(TemplateException.class, () -> render("{{ 1 + 'a' }}")).getMessage().contains("unsupported operand"));
    assertTrue(assertThrows(TemplateException.class, () -> render("{{ x|frob }}")).getMessage().contains("frob"));
    assertTrue(assertThrows(TemplateException.class, () -> JinjaTemplate.parse("{% macro m() %}{% endmacro %}")).getMessage().contains("macro"));
    assertTrue(assertThrows(TemplateException.class, () -> JinjaTemplate.parse("{{ 'open }}")).getMessage().contains("unclosed"));
    assertTrue(assertThrows(TemplateException.class, () -> render("{% set x.y = 1 %}")).getMessage().contains("namespace"));
  }
}
