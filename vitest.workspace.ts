// Vitest 5 reads projects from vitest.config.ts; this file points there for
// tools that still look for a workspace file.
export { default } from "./vitest.config.ts"
