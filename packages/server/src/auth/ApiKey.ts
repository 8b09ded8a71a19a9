/**
 * API key material. A key is `strata_` and 43 base64url characters (256 random
 * bits): recognisable in logs and by secret scanners, and far too strong to
 * guess, so a plain SHA-256 is a safe way to store it (no slow hash needed).
 */
import { createHash, randomBytes } from "node:crypto"

export const KEY_PREFIX = "strata_"

/** A new secret and its public id (the id is shown in listings, the secret only once). */
export const generateApiKey = (): { readonly id: string; readonly secret: string } => ({
  id: `key_${randomBytes(8).toString("hex")}`,
  secret: `${KEY_PREFIX}${randomBytes(32).toString("base64url")}`
})

/** What the database keeps of a key. */
export const hashApiKey = (secret: string): string => createHash("sha256").update(secret).digest("hex")

/** Cheap shape check before any lookup: anything else cannot be one of our keys. */
export const looksLikeApiKey = (text: string): boolean => /^strata_[A-Za-z0-9_-]{43}$/.test(text)
