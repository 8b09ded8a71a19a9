import { defineProject } from "vitest/config"

export default defineProject({
  // Projects in their own files do not inherit the root config's test options
  // (vitest 5), so its timeouts are repeated here; with vitest's 5 s default,
  // tests that start server processes time out on a loaded 2-core machine.
  test: { name: "domain", include: ["test/**/*.test.ts"], testTimeout: 30_000, hookTimeout: 60_000 }
})
