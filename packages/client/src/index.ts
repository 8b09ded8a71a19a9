export * from "./Client.ts"
