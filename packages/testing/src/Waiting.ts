/** Waiting in tests: for a time, or until a condition holds. */

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Resolves once `check` holds, trying every `intervalMs`; rejects when it still
 * does not after `timeoutMs`, so a condition never reached fails the test.
 */
export const eventually = async (
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
  intervalMs = 25
): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() >= deadline) throw new Error(`condition not reached within ${timeoutMs} ms`)
    await sleep(intervalMs)
  }
}
