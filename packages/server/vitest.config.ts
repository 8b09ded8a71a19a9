import { defineProject } from "vitest/config"

// The timeouts of the root config, which a project does not inherit (vitest 5): on the
// shared 2-core machine, suites that start servers and a Kafka broker need them.
export default defineProject({
  test: { name: "server", include: ["test/**/*.test.ts"], testTimeout: 30_000, hookTimeout: 60_000 }
})
