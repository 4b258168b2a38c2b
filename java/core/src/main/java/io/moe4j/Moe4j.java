package io.moe4j;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;

/** Library identity. */
public final class Moe4j {

  /** The moe4j version this jar was built as. */
  public static final String VERSION = readVersion();

  private Moe4j() {}

  private static String readVersion() {
    try (InputStream in = Moe4j.class.getResourceAsStream("version.properties")) {
      if (in == null) return "unknown";
      Properties p = new Properties();
      p.load(in);
      return p.getProperty("version", "unknown");
    } catch (IOException e) {
      return "unknown";
    }
  }
}
