import { defineProject } from "vitest/config"

export default defineProject({
  // Projects in their own files do not inherit the root config's test options
  // (vitest 5), so its timeouts are repeated here; the end-to-end test starts a
  // server process, slow to come up on a loaded 2-core machine.
  test: { name: "bench", include: ["test/**/*.test.ts"], testTimeout: 30_000, hookTimeout: 60_000 }
})
