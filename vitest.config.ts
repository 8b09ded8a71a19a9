import { defineConfig } from "vitest/config"

// One project per package (the vitest 5 successor of vitest.workspace.ts).
export default defineConfig({
  test: {
    projects: ["packages/*"],
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})
