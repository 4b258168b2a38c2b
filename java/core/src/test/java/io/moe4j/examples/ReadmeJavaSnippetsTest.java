package io.moe4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.tools.DiagnosticCollector;
import javax.tools.JavaCompiler;
import javax.tools.JavaFileObject;
import javax.tools.SimpleJavaFileObject;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every ```java block of the README compiles against the current API (each is put in a method body
 * with the imports a user would write and the few free variables the text names), so the README
 * cannot drift from the code unnoticed.
 */
class ReadmeJavaSnippetsTest {

  private static final String IMPORTS = String.join("\n",
      "import io.moe4j.nn.*;", "import io.moe4j.ops.*;", "import io.moe4j.tensor.*;", "import io.moe4j.text.*;",
      "import io.moe4j.train.*;", "import io.moe4j.train.data.*;", "import java.nio.file.*;", "import java.util.*;");
  /** What the README's snippets use without declaring (described in its text around them). */
  private static final String FREE_VARIABLES =
      "float[] values, float[] weights, float[] expertWeights, int rows, int cols, int ffn";

  @Test
  void everyJavaBlockOfTheReadmeCompiles(@TempDir Path classes) throws IOException {
    String readme = Files.readString(Path.of("../../README.md"));
    Matcher m = Pattern.compile("```java\\n(.*?)```", Pattern.DOTALL).matcher(readme);
    List<JavaFileObject> sources = new ArrayList<>();
    while (m.find()) {
      String name = "ReadmeSnippet" + sources.size();
      String code = IMPORTS + "\nclass " + name + " {\n  void run(" + FREE_VARIABLES + ") throws Exception {\n" + m.group(1)
          + "\n  }\n}\n";
      sources.add(new SimpleJavaFileObject(URI.create("string:///" + name + ".java"), JavaFileObject.Kind.SOURCE) {
        @Override
        public CharSequence getCharContent(boolean ignoreEncodingErrors) {
          return code;
        }
      });
    }
    assertTrue(sources.size() >= 2, "README has its Java examples (found " + sources.size() + ")");
    JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
    assertNotNull(javac, "tests run on a JDK");
    DiagnosticCollector<JavaFileObject> diagnostics = new DiagnosticCollector<>();
    boolean ok = javac.getTask(null, null, diagnostics,
        List.of("-classpath", System.getProperty("java.class.path"), "-d", classes.toString(), "-Xlint:none"), null, sources)
        .call();
    assertTrue(ok, "README Java does not compile: " + diagnostics.getDiagnostics());
    assertEquals(sources.size(), Files.list(classes).filter(p -> p.toString().endsWith(".class")).count(), "one class per block");
  }
}
