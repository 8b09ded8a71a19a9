import { defineProject } from "vitest/config"

// The deploy material: every manifest, compose file, rule, dashboard and
// workflow rendered and validated (the image itself is built by scripts/image --test).
export default defineProject({
  test: { name: "deploy", include: ["test/**/*.test.ts"] }
})
