export * from "./Api.ts"
export * from "./Auth.ts"
export * from "./Problems.ts"
export * from "./Record.ts"
