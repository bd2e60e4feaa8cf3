/** Redis did not confirm every entry of a packet (error, disconnection or timeout). Code `STORE_FAILED`. */
export class StoreError extends Error {
  readonly code = 'STORE_FAILED';
  override readonly name = 'StoreError';
}
