export { liveGatewayEnv, parseLiveGatewayConfig, type LiveGatewayConfig } from './config.js';
export { createLiveGateway, type LiveGateway, type LiveGatewayOptions } from './gateway.js';
export { createGatewayMetrics, type GatewayMetrics } from './metrics.js';
export { toLivePosition, positionPrefix, type LivePosition } from './protocol/position-json.js';
export { positionsMessage } from './protocol/server-message.js';
export { LocalTokenVerifier } from './auth/local-token-verifier.js';
export { DirectusTokenVerifier } from './auth/directus-token-verifier.js';
export { AuthenticationError } from './auth/authentication-error.js';
export type { Principal, TokenVerifier } from './auth/token-verifier.js';
export {
  Authorizer,
  type AuthorizationDecision,
  type AuthorizationRequest,
  type AuthorizationResult,
  type AuthorizationSource,
} from './authz/authorization.js';
export { DirectusUnavailableError } from './directus/directus-unavailable-error.js';
export { ClientSession, type SessionContext, type SessionLimits } from './session/client-session.js';
export type { SessionTransport } from './session/session-transport.js';
export { assertNativeUws, isNativeUws, EXIT_UWS_NOT_NATIVE } from './server/native-uws.js';
export { UwsNotNativeError } from './server/uws-not-native-error.js';
export { eventTopic } from './fanout/live-hub.js';
