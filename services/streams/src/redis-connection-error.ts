/**
 * A command of a service's own stream connections (RespConnection) got no reply: Redis could not be reached, the
 * connection dropped with the command in flight, or no reply came within its deadline. Whether Redis
 * executed the command is unknown. Code `REDIS_CONNECTION_LOST`.
 */
export class RedisConnectionError extends Error {
  readonly code = 'REDIS_CONNECTION_LOST';
  override readonly name = 'RedisConnectionError';
}
