/** Why an entry cannot become a row; the label of `pitwall_writer_dead_letters_total`. */
export type DeadLetterReason =
  'undecodable' | 'invalid_device_id' | 'invalid_coordinates' | 'invalid_timestamp' | 'invalid_value' | 'rejected_by_database';

/** A stream entry that decodes but cannot be stored as a position. Code `POSITION_INVALID`. */
export class InvalidPositionError extends Error {
  readonly code = 'POSITION_INVALID';
  override readonly name = 'InvalidPositionError';
  constructor(
    readonly reason: DeadLetterReason,
    message: string,
  ) {
    super(message);
  }
}
