// Local OAuth 2.0 client_credentials peer for testing a Logto M2M client.
//
// Built on the public `oidc-provider` npm package (the library Logto's OIDC
// layer is built on), configured the way Logto configures it for
// machine-to-machine (M2M) apps: client_credentials grant, resource
// indicators, JWT access tokens signed ES384 with a P-384 key, per-resource
// access token TTL, M2M apps registered as `client_secret_basic`.
//
// The token endpoint is the real oidc-provider endpoint. A few Logto-only
// behaviours are layered on top when LOGTO_COMPAT is on (the default), each
// marked "LOGTO_COMPAT" below; set LOGTO_COMPAT=0 to see plain oidc-provider.
//
// Organization tokens (Logto RFC 0006: `organization_id` in the client_credentials
// grant) follow Logto's own client_credentials handler, see "Organizations" below.
//
// Listens on 127.0.0.1 only; over HTTPS when TLS_CERT and TLS_KEY name PEM files.
//
// For the Rust test harness (tests/common/mod.rs): PEER_EXIT_ON_STDIN_EOF=1
// makes it exit when stdin ends, the signing key file is created atomically so
// parallel instances can share it, and a listen error is one line on stderr.

import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { calculateJwkThumbprint, createLocalJWKSet, jwtVerify } from 'jose';
import Koa from 'koa';
import mount from 'koa-mount';
import Provider, { errors } from 'oidc-provider';
// oidc-provider's own client_credentials handler and the internals Logto's fork of it
// imports (the package has no "exports" map, so these deep imports are allowed).
import { handler as oidcClientCredentials } from 'oidc-provider/lib/actions/grants/client_credentials.js';
import {
  applyDpopBinding,
  checkDpopRequired,
  checkMtlsCert,
} from 'oidc-provider/lib/helpers/grant_common.js';
import dpopValidate from 'oidc-provider/lib/helpers/validate_dpop.js';
import instance from 'oidc-provider/lib/helpers/weak_cache.js';

const here = path.dirname(fileURLToPath(import.meta.url));

const HOST = '127.0.0.1';
const PORT = Number.parseInt(process.env.PORT ?? '3999', 10);
/** PEM files for HTTPS; both or neither. */
const TLS_CERT = process.env.TLS_CERT || undefined;
const TLS_KEY = process.env.TLS_KEY || undefined;
if (Boolean(TLS_CERT) !== Boolean(TLS_KEY)) {
  console.error('TLS_CERT and TLS_KEY must be set together');
  process.exit(1);
}
const SCHEME = TLS_CERT ? 'https' : 'http';
const ISSUER = `${SCHEME}://${HOST}:${PORT}/oidc`;
const LOGTO_COMPAT = process.env.LOGTO_COMPAT !== '0';
/** Logto's "default API" (one API resource may be marked default in the console). Unset = none. */
const DEFAULT_RESOURCE = process.env.DEFAULT_RESOURCE || undefined;
/** Access token TTL in seconds for every resource (Logto: per API resource, default 3600). */
const ACCESS_TOKEN_TTL = Number.parseInt(process.env.ACCESS_TOKEN_TTL ?? '3600', 10);
/** Emulates Logto Cloud's free-plan token quota: after this many M2M tokens, /oidc/token answers 429. */
const TOKEN_LIMIT = process.env.TOKEN_LIMIT ? Number.parseInt(process.env.TOKEN_LIMIT, 10) : undefined;
const KEY_FILE = process.env.KEY_FILE ?? path.join(here, '.data', 'signing-key.jwk.json');

// ---------------------------------------------------------------------------
// API resources (Logto: Console > API resources) and the permissions ("scopes")
// each one defines.
const SHOPPING_API = 'https://shopping.api';
const MANAGEMENT_API = 'https://default.logto.app/api'; // Logto OSS Management API indicator

const RESOURCES = {
  [SHOPPING_API]: { scopes: ['read:products', 'write:products'], ttl: ACCESS_TOKEN_TTL },
  [MANAGEMENT_API]: { scopes: ['all'], ttl: ACCESS_TOKEN_TTL },
};

// ---------------------------------------------------------------------------
// Clients. `grants` stands in for Logto's RBAC: the permissions reachable
// through the M2M roles assigned to the app, per resource.
const m2m = (client_id, client_secret, grants, extra = {}) => ({
  metadata: {
    client_id,
    client_secret,
    client_name: client_id,
    application_type: 'web',
    // Logto registers every M2M app with client_secret_basic; oidc-provider
    // then accepts the secret in the Basic header or in the form body.
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    ...extra,
  },
  grants,
});

export const CLIENTS = [
  m2m('m2m-basic', 'basic-secret-0123456789', {
    [SHOPPING_API]: ['read:products'],
    [MANAGEMENT_API]: ['all'],
  }),
  m2m(
    'm2m-post',
    'post-secret-0123456789',
    { [SHOPPING_API]: ['read:products', 'write:products'] },
    { token_endpoint_auth_method: 'client_secret_post' },
  ),
  // Secret with characters that RFC 6749 §2.3.1 requires to be
  // form-urlencoded before they go into the Basic header.
  m2m('m2m-special', 's3cr:t+/%&= x~', {
    [SHOPPING_API]: ['read:products', 'write:products'],
  }),
  // client_id with a colon: must be encoded as %3A in the Basic header.
  // Secret contains a literal "%41" and "+" (decode traps if sent unencoded).
  m2m('m2m:colon', 'colon%41+secret', { [SHOPPING_API]: ['read:products'] }),
  // An M2M app with no roles at all: Logto still issues a token, without scope.
  m2m('m2m-noroles', 'noroles-secret-0123456789', {}),
  // A traditional web app: client_credentials is not among its grant types.
  {
    metadata: {
      client_id: 'web-app',
      client_secret: 'web-secret-0123456789',
      application_type: 'web',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
    },
    grants: {},
  },
];

const grantsFor = (clientId) =>
  CLIENTS.find(({ metadata }) => metadata.client_id === clientId)?.grants ?? {};

// ---------------------------------------------------------------------------
// Organizations (Logto: Console > Organizations). The organization template
// defines organization permissions ("organization scopes") and roles; an M2M app
// is added to an organization as a member and given organization roles there.
// `apps` maps each member app to the organization scopes its roles grant.
const ORGANIZATION_SCOPES = ['read:members', 'write:members', 'invite:members'];
const ORGANIZATIONS = {
  'org-acme': {
    apps: {
      'm2m-basic': ['read:members'],
      // A member without organization roles: its token has an empty scope.
      'm2m-noroles': [],
    },
  },
  'org-globex': {
    apps: { 'm2m-post': ['read:members', 'write:members'] },
  },
};
/** Logto's `buildOrganizationUrn` (@logto/core-kit). */
const organizationUrn = (organizationId) => `urn:logto:organization:${organizationId}`;
/** Logto's `reversedResourceAccessTokenTtl`: organization tokens live one hour. */
const ORGANIZATION_TOKEN_TTL = 3600;
/** Logto: `queries.organizations.relations.apps.exists`. Unknown organizations have no members. */
const isOrganizationMember = (organizationId, clientId) =>
  Object.hasOwn(ORGANIZATIONS, organizationId) &&
  Object.hasOwn(ORGANIZATIONS[organizationId].apps, clientId);
/** Logto: `queries.organizations.relations.appsRoles.getApplicationScopes`. */
const organizationScopesOf = (organizationId, clientId) =>
  (ORGANIZATIONS[organizationId]?.apps[clientId] ?? []).filter((s) =>
    ORGANIZATION_SCOPES.includes(s),
  );

// ---------------------------------------------------------------------------
// Signing key: EC P-384 / ES384, Logto's default for new installs. Kept on
// disk so tokens stay verifiable across restarts (useful for cache tests).
async function loadSigningKey() {
  if (fs.existsSync(KEY_FILE)) {
    return JSON.parse(fs.readFileSync(KEY_FILE, 'utf8'));
  }
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const jwk = privateKey.export({ format: 'jwk' });
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.use = 'sig';
  jwk.alg = 'ES384';
  // Several instances may start at once (tests run in parallel processes), so
  // the key never appears half-written: write a temp file in the same directory,
  // then link it into place. link() fails if another instance got there first;
  // then we use its key, so every instance sharing KEY_FILE signs with one key.
  fs.mkdirSync(path.dirname(KEY_FILE), { recursive: true });
  const tmp = `${KEY_FILE}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(jwk), { mode: 0o600 });
  try {
    fs.linkSync(tmp, KEY_FILE);
  } catch (err) {
    if (err.code === 'EEXIST') {
      fs.unlinkSync(tmp);
      return JSON.parse(fs.readFileSync(KEY_FILE, 'utf8'));
    }
    // Some filesystems have no hard links; rename is still atomic there, the
    // last instance simply wins (each instance keeps the key it generated).
    fs.renameSync(tmp, KEY_FILE);
    return jwk;
  }
  fs.unlinkSync(tmp);
  return jwk;
}

const signingKey = await loadSigningKey();
const SIGNING_ALG = 'ES384';
const supportedSigningAlgs = ['RS256', 'PS256', 'ES256', 'ES384', 'ES512'];

// ---------------------------------------------------------------------------
// Counters, for tests that check whether a client reused a cached token.
const stats = {
  token_requests: 0,
  tokens_issued: 0,
  tokens_issued_by_client: {},
  token_errors_by_code: {},
};
const resetStats = () => {
  stats.token_requests = 0;
  stats.tokens_issued = 0;
  stats.tokens_issued_by_client = {};
  stats.token_errors_by_code = {};
};

// ---------------------------------------------------------------------------
// Storage: a small in-memory adapter (JWT access tokens are not stored at all;
// opaque ones, LOGTO_COMPAT=0 without resource, are). For the Client model it
// only sees ids that are not among the static clients above.
class MemoryAdapter {
  static store = new Map();

  constructor(name) {
    this.name = name;
  }

  key(id) {
    return `${this.name}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : undefined;
    MemoryAdapter.store.set(this.key(id), { payload, expiresAt });
  }

  async find(id) {
    if (this.name === 'Client') {
      // LOGTO_COMPAT: Logto's adapter answers an unknown application id with
      // 400 invalid_client "invalid client <id>" (oidc-provider alone: 401
      // "client authentication failed").
      if (LOGTO_COMPAT) throw new errors.InvalidClient(`invalid client ${id}`);
      return undefined;
    }
    const entry = MemoryAdapter.store.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      MemoryAdapter.store.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    for (const [key, { payload }] of MemoryAdapter.store) {
      if (key.startsWith(`${this.name}:`) && payload.uid === uid) return payload;
    }
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const [key, { payload }] of MemoryAdapter.store) {
      if (key.startsWith(`${this.name}:`) && payload.userCode === userCode) return payload;
    }
    return undefined;
  }

  async consume(id) {
    const entry = MemoryAdapter.store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    MemoryAdapter.store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, { payload }] of MemoryAdapter.store) {
      if (payload.grantId === grantId) MemoryAdapter.store.delete(key);
    }
  }
}

// ---------------------------------------------------------------------------
const provider = new Provider(ISSUER, {
  adapter: MemoryAdapter,
  clients: CLIENTS.map(({ metadata }) => metadata),
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  clientDefaults: { id_token_signed_response_alg: SIGNING_ALG },
  enabledJWA: {
    authorizationSigningAlgValues: supportedSigningAlgs,
    userinfoSigningAlgValues: supportedSigningAlgs,
    idTokenSigningAlgValues: supportedSigningAlgs,
    introspectionSigningAlgValues: supportedSigningAlgs,
  },
  // Always render errors as the JSON object, whatever the Accept header.
  renderError(ctx, out) {
    ctx.body = out;
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource(ctx) {
        if (DEFAULT_RESOURCE) return DEFAULT_RESOURCE;
        // LOGTO_COMPAT: Logto's own client_credentials handler refuses a
        // request with neither `resource` nor `organization_id` (and no
        // default API) instead of issuing an opaque token.
        if (LOGTO_COMPAT && ctx.oidc.params?.grant_type === 'client_credentials') {
          throw new errors.InvalidTarget('both `resource` and `organization_id` are not provided');
        }
        return undefined;
      },
      useGrantedResource: () => false,
      getResourceServerInfo(ctx, indicator, client) {
        const resource = RESOURCES[indicator];
        if (!resource) {
          throw new errors.InvalidTarget(); // "resource indicator is missing, or unknown"
        }
        const granted = grantsFor(client?.clientId)[indicator] ?? [];
        return {
          // The scopes this client may get for this resource; requested
          // scopes outside this list are dropped from the token silently.
          scope: granted.filter((s) => resource.scopes.includes(s)).join(' '),
          accessTokenFormat: 'jwt',
          accessTokenTTL: resource.ttl,
          jwt: { sign: { alg: SIGNING_ALG } },
        };
      },
    },
  },
  ttl: {
    // Same as oidc-provider's default (and thus Logto's): the resource's TTL.
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || 10 * 60,
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 60 * 60,
  },
  // LOGTO_COMPAT: Logto's `getExtraTokenClaimsForOrganizationApiResource`: a token
  // for an API requested with both `resource` and `organization_id` (an
  // "organization API resource") carries the organization in a claim.
  async extraTokenClaims(ctx, token) {
    const organizationId = ctx.oidc.params?.organization_id;
    if (!LOGTO_COMPAT || !organizationId || !ctx.oidc.params?.resource) return undefined;
    if (!(token instanceof ctx.oidc.provider.ClientCredentials)) return undefined;
    return { organization_id: organizationId };
  },
});

// ---------------------------------------------------------------------------
// LOGTO_COMPAT: organization tokens. Logto replaces oidc-provider's
// client_credentials grant with its own fork (packages/core/src/oidc/grants/
// client-credentials.ts, registered in grants/index.ts with the parameters
// `scope`, `organization_id` and `resource`, `resource` allowed twice). Its
// "RFC 0006" edits, reproduced here in the same order:
//
// 1. `organization_id` given and the app is not a member of that organization
//    (an unknown organization has no members): AccessDenied "app has not
//    associated with the organization" with status 403.
// 2. `organization_id` given without `resource`: the resource check, and with it
//    the default API, is skipped; the token's audience is
//    `urn:logto:organization:<id>` and its scope is the requested scopes that the
//    app's organization roles grant (possibly empty: then `"scope": ""`), valid
//    one hour.
// 3. `organization_id` with `resource`: the usual resource token (plus the
//    `organization_id` claim, see extraTokenClaims above).
//
// Without `organization_id` the request goes to oidc-provider's own handler,
// which Logto's fork matches line for line on that path, so plain requests are
// answered exactly as before organizations were added.
async function logtoClientCredentials(ctx) {
  const { client, params } = ctx.oidc;
  const organizationId = params.organization_id ? String(params.organization_id) : undefined;
  if (!organizationId) {
    return oidcClientCredentials(ctx);
  }
  if (!isOrganizationMember(organizationId, client.clientId)) {
    const error = new errors.AccessDenied('app has not associated with the organization');
    error.statusCode = 403;
    throw error;
  }
  if (params.resource) {
    return oidcClientCredentials(ctx);
  }

  // From here on: oidc-provider's handler without the resource part, plus the
  // organization audience and scopes, as in Logto's fork.
  const { ClientCredentials } = ctx.oidc.provider;
  const {
    features: {
      mTLS: { getCertificate },
    },
    scopes: statics,
  } = instance(ctx.oidc.provider).configuration;
  const dPoP = await dpopValidate(ctx);
  if (params.authorization_details) {
    throw new errors.InvalidRequest('authorization_details is unsupported for this grant_type');
  }
  const scopes = params.scope ? [...new Set(String(params.scope).split(' '))] : [];
  if (client.scope) {
    const allowList = new Set(client.scope.split(' '));
    for (const scope of scopes.filter(Set.prototype.has.bind(statics))) {
      if (!allowList.has(scope)) {
        throw new errors.InvalidScope('requested scope is not allowed', scope);
      }
    }
  }
  const token = new ClientCredentials({ client, scope: scopes.join(' ') || undefined });

  const audience = organizationUrn(organizationId);
  const availableScopes = organizationScopesOf(organizationId, client.clientId);
  token.aud = audience;
  // A plain object, as in Logto: setting `resourceServer` also sets `aud` from `audience`.
  token.resourceServer = {
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: SIGNING_ALG } },
    accessTokenTTL: ORGANIZATION_TOKEN_TTL,
    audience,
    scope: availableScopes.join(' '),
  };
  // The intersection of the available and the requested scopes; '' when empty.
  token.scope = availableScopes.filter((s) => scopes.includes(s)).join(' ');

  const cert = checkMtlsCert(ctx, getCertificate);
  if (cert) token.setThumbprint('x5t', cert);
  await applyDpopBinding(ctx, dPoP, token);
  checkDpopRequired(ctx, dPoP);

  ctx.oidc.entity('ClientCredentials', token);
  const value = await token.save();
  ctx.body = {
    access_token: value,
    expires_in: token.expiration,
    token_type: token.tokenType,
    // Logto's fork sends the scope as is, '' included (oidc-provider drops an empty one).
    scope: token.scope,
  };
  return undefined;
}

if (LOGTO_COMPAT) {
  provider.registerGrantType(
    'client_credentials',
    logtoClientCredentials,
    ['scope', 'organization_id', 'resource'],
    ['resource'],
  );
}

const countIssued = (token) => {
  stats.tokens_issued += 1;
  stats.tokens_issued_by_client[token.clientId] =
    (stats.tokens_issued_by_client[token.clientId] ?? 0) + 1;
};
provider.on('client_credentials.issued', countIssued); // JWT format
provider.on('client_credentials.saved', countIssued); // opaque format
provider.on('grant.error', (ctx, err) => {
  const code = err?.error ?? err?.message ?? 'unknown';
  stats.token_errors_by_code[code] = (stats.token_errors_by_code[code] ?? 0) + 1;
});
provider.on('server_error', (ctx, err) => {
  console.error('server_error', err);
});

// ---------------------------------------------------------------------------
// LOGTO_COMPAT: Logto wraps every oidc-provider error body with `code`
// ("oidc.<error>") and a human-readable English `message`, keeping `error`
// and `error_description`; `?parse_error=false` returns the raw body.
const logtoOidcMessages = {
  invalid_scope: (b) => `Invalid scope: ${b.error_description}.`,
  invalid_token: () => 'Invalid token provided.',
  invalid_client_metadata: () => 'Invalid client metadata provided.',
  insufficient_scope: (b) => `Token missing scope \`${b.scope}\`.`,
  invalid_request: () => 'Request is invalid.',
  invalid_grant: () => 'Grant request is invalid.',
  access_denied: () => 'Access denied.',
  invalid_target: () => 'Invalid resource indicator.',
  unsupported_grant_type: () => 'Unsupported `grant_type` requested.',
  server_error: () => 'An unknown OIDC error occurred. Please try again later.',
};
const logtoErrorUris = { invalid_grant: 'https://openid.sh/debug/invalid_grant' };

const app = new Koa();

app.use(async (ctx, next) => {
  const isToken = ctx.method === 'POST' && ctx.path === '/oidc/token';
  if (isToken) {
    stats.token_requests += 1;
    // LOGTO_COMPAT: Logto Cloud's token usage guard (free plans over quota).
    if (TOKEN_LIMIT !== undefined && stats.tokens_issued >= TOKEN_LIMIT) {
      ctx.status = 429;
      ctx.body = {
        code: 'auth.exceed_token_limit',
        message: 'Token limit exceeded. Please contact your administrator.',
      };
      return;
    }
  }

  await next();

  if (
    LOGTO_COMPAT &&
    ctx.path.startsWith('/oidc') &&
    ctx.query.parse_error !== 'false' &&
    ctx.status >= 400 &&
    ctx.body &&
    typeof ctx.body === 'object' &&
    typeof ctx.body.error === 'string'
  ) {
    const body = ctx.body;
    const code = `oidc.${body.error}`;
    const message = logtoOidcMessages[body.error]?.(body) ?? `An OIDC error occurred: ${code}.`;
    const status = ctx.status;
    ctx.body = {
      code,
      message,
      ...(logtoErrorUris[body.error] ? { error_uri: logtoErrorUris[body.error] } : {}),
      ...body,
    };
    ctx.status = status;
  }
});

// ---------------------------------------------------------------------------
// Protected resources, verifying the Bearer JWT against the provider's JWKS.
// The public half of the signing key, the same set `/oidc/jwks` serves. Read locally
// rather than fetched from `${ISSUER}/jwks`: over HTTPS the test CA would have to be
// trusted by node as well.
const { d: _private, ...publicJwk } = signingKey;
const jwks = createLocalJWKSet({ keys: [publicJwk] });

async function verifyAccessToken(token, audience) {
  const { payload } = await jwtVerify(token, jwks, {
    issuer: ISSUER,
    audience,
    typ: 'at+jwt',
    algorithms: [SIGNING_ALG],
  });
  return payload;
}

const scopesOf = (payload) => (typeof payload.scope === 'string' ? payload.scope.split(' ') : []);
const joseData = (err) => {
  const data = { code: err?.code, name: err?.name };
  if (err?.claim) data.claim = err.claim;
  if (err?.reason) data.reason = err.reason;
  return data;
};

// A customer API answering in RFC 6750 style: the Bearer token's audience must
// be `audience` and its scope must hold `requiredScope`. Serves the shopping API
// (https://shopping.api) and the organization API (urn:logto:organization:<id>).
async function bearerApi(ctx, audience, requiredScope, handler) {
  const realm = `Bearer realm="${audience}"`;
  const match = /^Bearer ([^\s]+)$/i.exec(ctx.get('authorization'));
  if (!match) {
    ctx.status = 401;
    ctx.set('WWW-Authenticate', realm);
    ctx.body = { error: 'invalid_token', error_description: 'missing Bearer access token' };
    return;
  }
  let payload;
  try {
    payload = await verifyAccessToken(match[1], audience);
  } catch (err) {
    ctx.status = 401;
    ctx.set('WWW-Authenticate', `${realm}, error="invalid_token"`);
    ctx.body = { error: 'invalid_token', error_description: err.message, ...joseData(err) };
    return;
  }
  if (!scopesOf(payload).includes(requiredScope)) {
    ctx.status = 403;
    ctx.set('WWW-Authenticate', `${realm}, error="insufficient_scope", scope="${requiredScope}"`);
    ctx.body = {
      error: 'insufficient_scope',
      error_description: `access token lacks scope ${requiredScope}`,
      scope: requiredScope,
    };
    return;
  }
  await handler(payload);
}

const shoppingApi = (ctx, requiredScope, handler) => bearerApi(ctx, SHOPPING_API, requiredScope, handler);

// A stand-in for Logto's Management API, answering in Logto's error format.
async function managementApi(ctx, handler) {
  const authorization = ctx.get('authorization');
  if (!authorization) {
    ctx.status = 401;
    ctx.body = { code: 'auth.authorization_header_missing', message: 'Authorization header is missing.' };
    return;
  }
  if (!authorization.startsWith('Bearer ')) {
    ctx.status = 401;
    ctx.body = {
      code: 'auth.authorization_token_type_not_supported',
      data: { supportedTypes: ['Bearer'] },
      message: 'Authorization type is not supported.',
    };
    return;
  }
  let payload;
  try {
    payload = await verifyAccessToken(authorization.slice('Bearer '.length).trim(), MANAGEMENT_API);
  } catch (err) {
    ctx.status = 401;
    ctx.body = {
      code: 'auth.unauthorized',
      data: joseData(err),
      message: 'Unauthorized. Please check credentials and its scope.',
    };
    return;
  }
  if (!scopesOf(payload).includes('all')) {
    ctx.status = 403;
    ctx.body = { code: 'auth.forbidden', message: 'Forbidden. Please check your user roles and permissions.' };
    return;
  }
  await handler(payload);
}

// A customer API taking organization tokens: the audience is the organization's URN.
const organizationApi = (ctx, organizationId, requiredScope, handler) =>
  bearerApi(ctx, organizationUrn(organizationId), requiredScope, handler);

const products = [
  { id: 'p-1', name: 'Widget', price: 9.99 },
  { id: 'p-2', name: 'Gadget', price: 24.5 },
];

app.use(async (ctx, next) => {
  if (ctx.path === '/products' && ctx.method === 'GET') {
    await shoppingApi(ctx, 'read:products', (payload) => {
      ctx.body = { products, caller: { sub: payload.sub, scope: payload.scope ?? null } };
    });
    return;
  }
  if (ctx.path === '/products' && ctx.method === 'POST') {
    await shoppingApi(ctx, 'write:products', (payload) => {
      ctx.status = 201;
      ctx.body = { created: { id: 'p-3', name: 'New product' }, caller: { sub: payload.sub } };
    });
    return;
  }
  if (ctx.path === '/api/applications' && ctx.method === 'GET') {
    await managementApi(ctx, () => {
      ctx.body = CLIENTS.map(({ metadata }) => ({
        id: metadata.client_id,
        name: metadata.client_name ?? metadata.client_id,
        type: metadata.grant_types.includes('client_credentials') ? 'MachineToMachine' : 'Traditional',
      }));
    });
    return;
  }
  const members = /^\/organizations\/([^/]+)\/members$/.exec(ctx.path);
  if (members && ctx.method === 'GET') {
    const organizationId = decodeURIComponent(members[1]);
    await organizationApi(ctx, organizationId, 'read:members', (payload) => {
      ctx.body = {
        organization_id: organizationId,
        apps: Object.keys(ORGANIZATIONS[organizationId]?.apps ?? {}),
        caller: { sub: payload.sub, scope: payload.scope ?? null },
      };
    });
    return;
  }
  // Not part of Logto: counters for tests.
  if (ctx.path === '/__peer/stats' && ctx.method === 'GET') {
    ctx.body = stats;
    return;
  }
  if (ctx.path === '/__peer/reset' && ctx.method === 'POST') {
    resetStats();
    ctx.status = 204;
    return;
  }
  await next();
});

app.use(mount('/oidc', provider));

const onListening = () => {
  console.log(
    `oidc-provider peer listening: issuer=${ISSUER} logto_compat=${LOGTO_COMPAT} ` +
      `default_resource=${DEFAULT_RESOURCE ?? '-'} ttl=${ACCESS_TOKEN_TTL} token_limit=${TOKEN_LIMIT ?? '-'}`,
  );
};
// HTTPS with the given certificate and key (the Koa app is the same), or plain HTTP.
const server = TLS_CERT
  ? https
      .createServer({ cert: fs.readFileSync(TLS_CERT), key: fs.readFileSync(TLS_KEY) }, app.callback())
      .listen(PORT, HOST, onListening)
  : app.listen(PORT, HOST, onListening);

// A listen error (EADDRINUSE above all) would otherwise surface as an unhandled
// 'error' event with a long stack; say it in one line that the Rust harness can
// look for, and exit non-zero so it picks another port.
server.on('error', (err) => {
  console.error(`listen error: ${err.code ?? err.message} on ${HOST}:${PORT}`);
  process.exit(1);
});

const shutdown = () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

// PEER_EXIT_ON_STDIN_EOF=1: the Rust test harness spawns us with a pipe on stdin
// that it never writes to. When the test process ends for any reason (even an
// abort or SIGKILL, where no Drop runs), the kernel closes its end and we see EOF
// here, so no node process outlives the tests. start.sh does not set it: its
// stdin is /dev/null, which is at EOF from the start.
if (process.env.PEER_EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('data', () => {}); // ignore anything written; we only wait for the end
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
}
