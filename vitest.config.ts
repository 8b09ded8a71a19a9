import { defineConfig } from "vitest/config"

// One project per package, and one for deploy/ (the vitest 5 successor of vitest.workspace.ts).
export default defineConfig({
  test: {
    projects: ["packages/*", "deploy"],
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})
