// Local OAuth 2.0 client_credentials peer for testing a Logto M2M client.
//
// Built on the public `oidc-provider` npm package (the library Logto's OIDC
// layer is built on), configured the way Logto configures it for
// machine-to-machine (M2M) apps: client_credentials grant, resource
// indicators, JWT access tokens signed ES384 with a P-384 key, per-resource
// access token TTL, M2M apps registered as `client_secret_basic`.
//
// The token endpoint is the real oidc-provider endpoint. Logto's own behaviours
// are layered on top when LOGTO_COMPAT is on (the default), each marked
// "LOGTO_COMPAT" below with the Logto source file it comes from (checked against
// a real Logto, see README.md); set LOGTO_COMPAT=0 to see plain oidc-provider.
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
import querystring from 'node:querystring';
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
/** Stands for the apps' creation time in the Management API's answers. */
const STARTED_AT = Date.now();
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
//
// `secrets` are the app's secrets as Logto keeps them (table `application_secrets`: any
// number per app, each with an optional expiry); see "App secrets" below for how they are
// checked. With LOGTO_COMPAT, oidc-provider knows each app by an internal secret only, as
// in Logto (`applications.secret`); with LOGTO_COMPAT=0 it knows the first secret instead
// (if oidc-provider can register it: not a non-ASCII one).
const noVSCHAR = /[^\u0020-\u007E]/; // oidc-provider's and Logto's test for a secret's characters
const internalSecret = (clientId) => `#internal:${clientId}`;
const registeredSecret = (clientId, [first]) =>
  LOGTO_COMPAT || noVSCHAR.test(first.value) ? internalSecret(clientId) : first.value;
const secretList = (secrets) => (typeof secrets === 'string' ? [{ value: secrets }] : secrets);

const m2m = (client_id, secrets, grants, extra = {}) => ({
  metadata: {
    client_id,
    client_secret: registeredSecret(client_id, secretList(secrets)),
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
  secrets: secretList(secrets),
  grants,
});

export const CLIENTS = [
  m2m(
    'm2m-basic',
    [
      { value: 'basic-secret-0123456789' },
      // A second current secret (Logto: several secrets per app, for rotation) and one
      // that has expired: Logto answers it with 400 "client secret has expired".
      { value: 'basic-secret-next-0123456789' },
      { value: 'basic-secret-expired-0123456789', expiresAt: Date.parse('2025-01-01T00:00:00Z') },
    ],
    {
      [SHOPPING_API]: ['read:products'],
      [MANAGEMENT_API]: ['all'],
    },
  ),
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
  // A non-ASCII secret: Logto takes it in the form body only; in the Basic header, encoded
  // or not, it answers 400 "... not properly encoded" (oidc-provider's decodeAuthToken).
  m2m('m2m-unicode', 'sécret-ünïcode', { [SHOPPING_API]: ['read:products'] }),
  // A traditional web app: client_credentials is not among its grant types.
  {
    metadata: {
      client_id: 'web-app',
      client_secret: registeredSecret('web-app', secretList('web-secret-0123456789')),
      application_type: 'web',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
    },
    secrets: secretList('web-secret-0123456789'),
    grants: {},
  },
];

const grantsFor = (clientId) =>
  CLIENTS.find(({ metadata }) => metadata.client_id === clientId)?.grants ?? {};

// ---------------------------------------------------------------------------
// Organizations (Logto: Console > Organizations). The organization template
// defines organization permissions ("organization scopes") and roles; an M2M app
// is added to an organization as a member and given organization roles there.
// `apps` maps each member app to what its organization roles grant there: organization
// scopes (`scopes`), and API permissions per resource (`resources`, Logto's "organization
// API resources"), which alone count when a token names both the organization and an API.
const ORGANIZATION_SCOPES = ['read:members', 'write:members', 'invite:members'];
const ORGANIZATIONS = {
  'org-acme': {
    apps: {
      'm2m-basic': { scopes: ['read:members'], resources: { [SHOPPING_API]: ['read:products'] } },
      // A member without organization roles: its token has an empty scope.
      'm2m-noroles': { scopes: [], resources: {} },
    },
  },
  'org-globex': {
    apps: { 'm2m-post': { scopes: ['read:members', 'write:members'], resources: {} } },
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
const membership = (organizationId, clientId) =>
  isOrganizationMember(organizationId, clientId) ? ORGANIZATIONS[organizationId].apps[clientId] : undefined;
/** Logto: `queries.organizations.relations.appsRoles.getApplicationScopes`. */
const organizationScopesOf = (organizationId, clientId) =>
  (membership(organizationId, clientId)?.scopes ?? []).filter((s) => ORGANIZATION_SCOPES.includes(s));
/**
 * Logto: `findResourceScopes` (oidc/resource.ts) with an `organizationId` calls
 * `appsRoles.getApplicationResourceScopes`: only the app's organization roles in that
 * organization count, not its own M2M roles.
 */
const organizationResourceScopesOf = (organizationId, clientId, indicator) =>
  membership(organizationId, clientId)?.resources[indicator] ?? [];

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
  // Requests to the protected APIs (/products, /api/*, /organizations/*), and how many of
  // them were refused with 401.
  api_requests: 0,
  api_unauthorized: 0,
};
const resetStats = () => {
  stats.token_requests = 0;
  stats.tokens_issued = 0;
  stats.tokens_issued_by_client = {};
  stats.token_errors_by_code = {};
  stats.api_requests = 0;
  stats.api_unauthorized = 0;
};

// Not part of Logto: a lever for tests. `POST /__peer/rotate` makes the APIs refuse every
// token issued so far with 401, as they would after a signing-key rotation or a
// revocation, while the tokens still look fresh to the client. Tokens are told apart by
// their `jti` (an `iat` has only whole seconds); the list is bounded.
const MAX_REMEMBERED_TOKENS = 100_000;
let issuedJtis = new Set();
let rotatedJtis = new Set();
const rememberIssued = (jti) => {
  if (typeof jti !== 'string') return;
  if (issuedJtis.size >= MAX_REMEMBERED_TOKENS) issuedJtis = new Set();
  issuedJtis.add(jti);
};
const isRotatedAway = (payload) => rotatedJtis.has(payload.jti);

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
        // LOGTO_COMPAT: with `organization_id` (an "organization API resource" token) the
        // permissions come from the app's organization roles (see organizationResourceScopesOf).
        const organizationId = LOGTO_COMPAT ? ctx.oidc.params?.organization_id : undefined;
        const granted = organizationId
          ? organizationResourceScopesOf(String(organizationId), client?.clientId, indicator)
          : (grantsFor(client?.clientId)[indicator] ?? []);
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
  rememberIssued(token.jti);
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
// LOGTO_COMPAT: what Logto's oidc/init.ts puts in front of oidc-provider's router
// (`oidc.use(...)`, in this order; `provider.use` inserts before the router, with the
// paths relative to /oidc, as there). Errors thrown here never reach oidc-provider's own
// error handler: they come out of the mount and the wrapper below renders them, so these
// answers have neither oidc-provider's CORS headers nor its `cache-control: no-store`.

/** The `etag` package's value for a string body (what koa-body-etag.ts sets). */
const etagOf = (text) =>
  `"${Buffer.byteLength(text).toString(16)}-${crypto.createHash('sha1').update(text).digest('base64').slice(0, 27)}"`;

/** Logto's `decodeAuthToken` (koa-app-secret-transpilation.ts): no try/catch, see below. */
const decodeLogtoAuthToken = (token) => {
  const authToken = decodeURIComponent(token.replaceAll('+', '%20'));
  return noVSCHAR.test(authToken) ? undefined : authToken;
};
/** Logto: `queries.applicationSecrets.findByCredentials`. */
const findAppSecret = (clientId, value) => {
  const client = CLIENTS.find(({ metadata }) => metadata.client_id === clientId);
  const secret = client?.secrets.find((s) => s.value === value);
  return secret && { ...secret, originalSecret: client.metadata.client_secret };
};

if (LOGTO_COMPAT) {
  // 1. oidc/init.ts reads the body itself (56 kB at most, in the request's charset) and
  //    hands oidc-provider the parsed object: a JSON body is taken as if it were a form, a
  //    body with a NUL byte is refused. Reading fails (too large, bad charset) with an
  //    http-errors error that koa-error-handler.ts lets through without setting a status:
  //    Koa's plain-text 404 "Not Found". (oidc-provider then logs once "already parsed
  //    request body detected", as it does in Logto.)
  provider.use(async (ctx, next) => {
    if (ctx.req.readable) {
      let body;
      try {
        const chunks = [];
        let size = 0;
        for await (const chunk of ctx.req.iterator({ destroyOnReturn: false })) {
          size += chunk.length;
          if (size > 56 * 1024) throw new Error('request entity too large');
          chunks.push(chunk);
        }
        body = new TextDecoder(ctx.request.charset || 'utf8', { fatal: false }).decode(Buffer.concat(chunks));
      } catch {
        return undefined; // status stays 404
      }
      if (body.includes('\0')) {
        throw new errors.InvalidRequest('null bytes are not allowed in the request body');
      }
      if (ctx.is('application/json')) {
        ctx.headers['content-type'] = 'application/x-www-form-urlencoded';
        try {
          ctx.request.body = JSON.parse(body);
        } catch {
          ctx.request.body = undefined;
        }
      } else if (ctx.is('application/x-www-form-urlencoded')) {
        ctx.request.body = querystring.parse(body);
      }
    }
    return next();
  });

  // 2. koa-body-etag.ts: an ETag on every GET answer with a body, and 304 when it matches.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method === 'GET' && ctx.body) {
      ctx.response.etag = etagOf(JSON.stringify(ctx.body));
      if (ctx.fresh) {
        ctx.status = 304;
        ctx.body = null;
      }
    }
  });

  // 3. App secrets, koa-app-secret-transpilation.ts: the secret sent (Basic header, or
  //    client_secret in the form) is looked up among the app's secrets; an expired one is
  //    refused with 400 invalid_request "client secret has expired"; a current one is
  //    swapped for the internal secret oidc-provider knows. A secret that is not found goes
  //    on unchanged, and oidc-provider compares it with the internal one (401).
  //    Logto splits the Basic value at every colon and decodes without a try/catch, so a
  //    malformed %-escape before the second colon is a URIError: 500 "Internal server error."
  provider.use(async (ctx, next) => {
    const fromHeader = () => {
      const parts = ctx.headers.authorization?.split(' ');
      if (parts?.length !== 2 || parts[0]?.toLowerCase() !== 'basic' || !parts[1]) return {};
      const [part0, part1] = Buffer.from(parts[1], 'base64').toString().split(':');
      return {
        clientId: part0 && decodeLogtoAuthToken(part0),
        clientSecret: part1 && decodeLogtoAuthToken(part1),
      };
    };
    const fromParams = () => {
      const params = ctx.method === 'POST' ? ctx.request.body : ctx.query;
      if (typeof params !== 'object' || params === null) return {};
      return {
        clientId: typeof params.client_id === 'string' ? params.client_id : undefined,
        clientSecret: typeof params.client_secret === 'string' ? params.client_secret : undefined,
      };
    };
    const credentials = (header, params) => {
      if (header.clientId && params.clientId && header.clientId !== params.clientId) return {};
      // With an id in the header, only the header may carry the secret.
      if (header.clientId && (!header.clientSecret || params.clientSecret)) return {};
      return {
        clientId: header.clientId ?? params.clientId,
        clientSecret: header.clientSecret ?? params.clientSecret,
      };
    };
    const header = fromHeader();
    const { clientId, clientSecret } = credentials(header, fromParams());
    if (!clientId || !clientSecret) return next();

    const found = findAppSecret(clientId, clientSecret);
    if (!found) return next();
    if (found.expiresAt && found.expiresAt < Date.now()) {
      throw new errors.InvalidRequest('client secret has expired');
    }
    if (header.clientSecret) {
      // Logto writes `${clientId}:${originalSecret}` unencoded; its app ids never need
      // encoding, but this peer's `m2m:colon` does, so both halves are form-encoded here.
      const enc = (v) => querystring.escape(v);
      ctx.headers.authorization = `Basic ${Buffer.from(`${enc(clientId)}:${enc(found.originalSecret)}`).toString('base64')}`;
    } else if (ctx.method === 'POST') {
      if (typeof ctx.request.body === 'object' && ctx.request.body) {
        ctx.request.body.client_secret = found.originalSecret;
      }
    } else {
      ctx.query = { ...ctx.query, client_secret: found.originalSecret };
    }
    return next();
  });

  // 4. koa-jwks-cache-control.ts.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method === 'GET' && ctx.path === '/jwks') {
      ctx.set('Cache-Control', 'no-cache, max-age=0, must-revalidate');
    }
  });
}

// 5. Logto Cloud's koa-token-usage-guard.ts (free plans over quota), any method on /token.
//    Not an OIDC error: koa-error-handler.ts renders it as `{code, message}`.
provider.use(async (ctx, next) => {
  if (TOKEN_LIMIT !== undefined && ctx.path === '/token' && stats.tokens_issued >= TOKEN_LIMIT) {
    ctx.status = 429;
    ctx.body = {
      code: 'auth.exceed_token_limit',
      message: 'Token limit exceeded. Please contact your administrator.',
    };
    return undefined;
  }
  return next();
});

if (LOGTO_COMPAT) {
  // 6. koa-oidc-unrecognized-route.ts: an unknown path, or a known one with another method
  //    (GET /oidc/token), is a 404 invalid_request instead of Koa's plain "Not Found".
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.status === 404 && ctx.message === 'Not Found') {
      throw new errors.InvalidRequest(
        `unrecognized route or not allowed method (${ctx.method} on ${ctx.path})`,
        404,
      );
    }
  });
}

// ---------------------------------------------------------------------------
// LOGTO_COMPAT: koa-oidc-error-handler.ts. Errors thrown out of the provider (above) get
// oidc-provider's body (`errorOut`); then every error body from /oidc gets Logto's
// envelope, `code` ("oidc.<error>") and an English `message` before `error` and
// `error_description`; `?parse_error=false` returns the raw body. Any other error is
// koa-error-handler.ts's 500 `{"message":"Internal server error."}`.
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

async function logtoOidcErrors(ctx, next) {
  try {
    await next();
  } catch (err) {
    if (!(err instanceof errors.OIDCProviderError)) {
      console.error('internal error', err);
      ctx.status = 500;
      ctx.body = { message: 'Internal server error.' };
      return;
    }
    ctx.status = err.statusCode || 500;
    ctx.body = err.expose
      ? {
          error: err.message,
          ...(err.error_description ? { error_description: err.error_description } : {}),
          ...(err.scope ? { scope: err.scope } : {}),
        }
      : { error: 'server_error', error_description: 'oops! something went wrong' };
    if (ctx.method === 'POST' && ctx.path === '/oidc/token') {
      stats.token_errors_by_code[err.message] = (stats.token_errors_by_code[err.message] ?? 0) + 1;
    }
  }
  if (
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
}

// LOGTO_COMPAT: on every answer, whatever the path: helmet's headers with Logto's basic
// settings (koa-security-headers.ts), and `Logto-Core-Request-Id`, a nanoid(16) that Logto
// also writes in its logs, set last (app/init.ts).
const LOGTO_SECURITY_HEADERS = {
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Origin-Agent-Cluster': '?1',
  'Referrer-Policy': 'strict-origin-when-cross-origin',
  'Strict-Transport-Security': 'max-age=15552000; includeSubDomains',
  'X-Content-Type-Options': 'nosniff',
  'X-Download-Options': 'noopen',
  'X-Frame-Options': 'SAMEORIGIN',
  'X-Permitted-Cross-Domain-Policies': 'none',
  'X-XSS-Protection': '0',
};

const app = new Koa();

// This peer's own paths: the customer APIs (not Logto's) and the counters.
const isPeerOwnPath = (path) =>
  path === '/products' || path.startsWith('/organizations/') || path.startsWith('/__peer/');

const isApiPath = (path) =>
  path === '/products' || path.startsWith('/organizations/') || path.startsWith('/api/');

// Not part of Logto: the API counters.
app.use(async (ctx, next) => {
  if (!isApiPath(ctx.path)) return next();
  stats.api_requests += 1;
  try {
    await next();
  } finally {
    if (ctx.status === 401) stats.api_unauthorized += 1;
  }
});

app.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/oidc/token') stats.token_requests += 1;
  if (!LOGTO_COMPAT || isPeerOwnPath(ctx.path)) return next();
  const requestId = crypto.randomBytes(12).toString('base64url'); // 16 of nanoid's characters
  ctx.set(LOGTO_SECURITY_HEADERS);
  try {
    if (ctx.path === '/oidc' || ctx.path.startsWith('/oidc/')) {
      await logtoOidcErrors(ctx, next);
    } else {
      await next();
    }
  } finally {
    ctx.set('Logto-Core-Request-Id', requestId);
  }
  return undefined;
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
  if (isRotatedAway(payload)) {
    ctx.status = 401;
    ctx.set('WWW-Authenticate', `${realm}, error="invalid_token"`);
    ctx.body = { error: 'invalid_token', error_description: 'signature verification failed' };
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

// A stand-in for Logto's Management API, checking the token as Logto's koa-auth does
// (middleware/koa-auth/index.ts): only issuer and audience (not `typ` or `alg`), errors in
// Logto's format (`{code, data?, message}`, no WWW-Authenticate), the jose error as `data`.
async function managementApi(ctx, handler) {
  const authorization = ctx.get('authorization');
  if (!authorization) {
    ctx.status = 401;
    ctx.body = { code: 'auth.authorization_header_missing', message: 'Authorization header is missing.' };
    return;
  }
  // Logto: `startsWith('Bearer')`, then the token is what follows 'Bearer '.
  if (!authorization.startsWith('Bearer')) {
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
    ({ payload } = await jwtVerify(authorization.slice('Bearer '.length), jwks, {
      issuer: ISSUER,
      audience: MANAGEMENT_API,
    }));
  } catch (err) {
    ctx.status = 401;
    ctx.body = {
      code: 'auth.unauthorized',
      // The error's own fields, as Logto serializes it: code, name, and for a claim
      // check also claim, reason and the token's payload.
      data: JSON.parse(JSON.stringify(err)),
      message: 'Unauthorized. Please check credentials and its scope.',
    };
    return;
  }
  if (isRotatedAway(payload)) {
    ctx.status = 401;
    ctx.body = {
      code: 'auth.unauthorized',
      data: { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED', name: 'JWSSignatureVerificationFailed' },
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
      // Logto's application objects (without pagination: see the README); newest first in
      // Logto, and these were all "created" at once, in this order.
      ctx.body = CLIENTS.map(({ metadata }) => ({
        tenantId: 'default',
        id: metadata.client_id,
        name: metadata.client_name ?? metadata.client_id,
        description: null,
        type: metadata.grant_types.includes('client_credentials') ? 'MachineToMachine' : 'Traditional',
        oidcClientMetadata: { redirectUris: metadata.redirect_uris, postLogoutRedirectUris: [] },
        customClientMetadata: {},
        protectedAppMetadata: null,
        customData: {},
        isThirdParty: false,
        appLevelAccessControlEnabled: false,
        createdAt: STARTED_AT,
      }));
    });
    return;
  }
  // Logto's unauthenticated health check (routes/status.ts).
  if (LOGTO_COMPAT && ctx.path === '/api/status' && ctx.method === 'GET') {
    ctx.status = 204;
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
  if (ctx.path === '/__peer/rotate' && ctx.method === 'POST') {
    rotatedJtis = issuedJtis;
    issuedJtis = new Set();
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
