/**
 * Redis answered a command of a service's own stream connections (RespConnection) with an error (`-NOGROUP ...`,
 * `-WRONGTYPE ...`: the message starts with Redis' error code), or with bytes that are not the reply
 * expected. Code `REDIS_REPLY_ERROR`.
 */
export class RedisReplyError extends Error {
  readonly code = 'REDIS_REPLY_ERROR';
  override readonly name = 'RedisReplyError';
}
