import { defineProject } from "vitest/config"

// The deploy material: every manifest, compose file, rule, dashboard and
// workflow rendered and validated (the image itself is built by scripts/image --test).
export default defineProject({
  // The root config's timeouts, which projects in their own files do not inherit.
  test: { name: "deploy", include: ["test/**/*.test.ts"], testTimeout: 30_000, hookTimeout: 60_000 }
})
