package io.moe4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class LrScheduleTest {

  @Test
  void warmupIsLinearFromPeakOverWarmupToPeak() {
    LrSchedule s = new LrSchedule(1e-3f, 1e-4f, 4, 20, LrSchedule.Decay.COSINE);
    assertEquals(2.5e-4f, s.lr(0), 1e-9);
    assertEquals(5.0e-4f, s.lr(1), 1e-9);
    assertEquals(7.5e-4f, s.lr(2), 1e-9);
    assertEquals(1.0e-3f, s.lr(3), 1e-9);
  }

  @Test
  void cosineDecayHitsPeakHalfwayAndMin() {
    LrSchedule s = new LrSchedule(1e-3f, 1e-4f, 4, 20, LrSchedule.Decay.COSINE);
    assertEquals(1e-3f, s.lr(4), 1e-9, "decay starts at peak");
    // halfway through the 16 decay steps: cos(pi/2) = 0 → (peak + min) / 2
    assertEquals(5.5e-4f, s.lr(12), 1e-9);
    // a quarter: min + (peak - min) * (1 + cos(pi/4)) / 2
    assertEquals(1e-4 + 9e-4 * (1 + Math.sqrt(0.5)) / 2, s.lr(8), 1e-9);
    assertEquals(1e-4f, s.lr(20), 1e-9);
    assertEquals(1e-4f, s.lr(1000), 1e-9, "stays at min after the end");
    for (long i = 4; i < 20; i++) assertTrue(s.lr(i + 1) <= s.lr(i), "monotone at " + i);
  }

  @Test
  void linearDecayAndConstant() {
    LrSchedule s = new LrSchedule(1f, 0f, 0, 10, LrSchedule.Decay.LINEAR);
    assertEquals(1f, s.lr(0), 0);
    assertEquals(0.7f, s.lr(3), 1e-7);
    assertEquals(0f, s.lr(10), 0);
    LrSchedule c = LrSchedule.constant(3e-3f);
    assertEquals(3e-3f, c.lr(0), 0);
    assertEquals(3e-3f, c.lr(123456), 0);
    LrSchedule warmConstant = new LrSchedule(2f, 2f, 2, 2, LrSchedule.Decay.CONSTANT);
    assertEquals(1f, warmConstant.lr(0), 0);
    assertEquals(2f, warmConstant.lr(5), 0);
  }

  @Test
  void badArgumentsNameTheField() {
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> new LrSchedule(1f, 2f, 0, 1, LrSchedule.Decay.COSINE));
    assertTrue(e.getMessage().contains("min lr"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> new LrSchedule(1f, 0f, 5, 3, LrSchedule.Decay.COSINE));
    assertTrue(e.getMessage().contains("totalSteps"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> LrSchedule.constant(Float.NaN));
    assertTrue(e.getMessage().contains("peak"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> LrSchedule.constant(1f).lr(-1));
    assertTrue(e.getMessage().contains("step"), e.getMessage());
  }
}
