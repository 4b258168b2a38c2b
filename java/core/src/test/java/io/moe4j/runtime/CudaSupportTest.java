package io.moe4j.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moe4j.ops.Backend;
import io.moe4j.ops.Backends;
import org.junit.jupiter.api.Test;

class CudaSupportTest {

  @Test
  void probeGivesAReasonExactlyWhenUnavailable() {
    CudaSupport.Status s = CudaSupport.probe();
    if (s.available()) {
      assertNull(s.reason());
      assertFalse(s.devices().isEmpty());
    } else {
      assertNotNull(s.reason());
      assertTrue(s.reason().matches("(?s).*(library not built|libcuda\\.so\\.1 missing|driver too old|no device|no CUDA device|JCuda).*"), s.reason());
      assertTrue(s.devices().isEmpty());
    }
  }

  @Test
  void unusableCudaIsRefusedWithTheReason() {
    CudaSupport.Status s = CudaSupport.probe();
    if (s.available()) return; // the gpu-tagged tests cover a usable device
    Moe4jException e = assertThrows(Moe4jException.class, () -> Backends.open("cuda:0"));
    assertTrue(e.getMessage().contains(s.reason()), e.getMessage());
    try (Backend auto = Backends.open("auto")) {
      assertEquals("cpu", auto.name());
    }
  }

  @Test
  void deviceSpecsAreParsed() {
    try (Backend cpu = Backends.open(" CPU ")) {
      assertEquals("cpu", cpu.name());
    }
    for (String bad : new String[] {"gpu", "cuda:-1", "cuda:x", ""}) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Backends.open(bad));
      assertTrue(e.getMessage().contains("--device must be auto, cpu, cuda or cuda:N"), e.getMessage());
    }
  }
}
