// A real OpenID Connect issuer for lumiflow's tests: npm's oidc-provider on loopback.
//
//   node issuer.mjs --port P --port2 Q --state state.json
//
// Two issuers run in this one process: the main one on P (the tests point lumiflow at it)
// and a second, unrelated one on Q (a token from it must be refused: wrong issuer).
// Both generate fresh signing keys (RS256 and ES256) on every start, as a real issuer that
// rotates its keys would, so a test that restarts this process checks that lumiflow
// refetches the keys.
//
// Users, their passwords and groups, and the access-token lifetime are read from the
// state file at every use, so a test changes them (removes a user from a group, deletes a
// user, shortens token lifetimes) by rewriting the file: no restart, no test-only API.
//
// Clients (fixed): "lumiflow" (confidential: code + PKCE and refresh tokens, the dashboard;
// a native client, so any loopback port of its redirect URI is accepted, RFC 8252 §7.3),
// "lumiflow-cli" (public: device authorization grant and refresh tokens, the CLI) and
// "robot" (confidential: client credentials, a service account).
// Access tokens for the resource "urn:lumiflow:api" are JWTs with audience "lumiflow",
// carrying preferred_username and groups; "urn:other:api" (audience "other-api") exists so
// that a test can obtain a genuine token for the wrong audience.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    port2: { type: 'string' },
    state: { type: 'string' },
  },
});

const RESOURCES = {
  'urn:lumiflow:api': 'lumiflow',
  'urn:other:api': 'other-api',
};
const DEFAULT_RESOURCE = 'urn:lumiflow:api';
const RESOURCE_SCOPES = 'api openid profile email groups offline_access';

function readState() {
  return JSON.parse(readFileSync(args.state, 'utf8'));
}

function user(id) {
  const entry = (readState().users || {})[id];
  return entry ? { id, ...entry } : undefined;
}

function keys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return [
    { ...rsa, kid: `rsa-${randomUUID()}`, alg: 'RS256', use: 'sig' },
    { ...ec, kid: `ec-${randomUUID()}`, alg: 'ES256', use: 'sig' },
  ];
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${escape(title)}</title></head>`
    + `<body><h1>${escape(title)}</h1>${body}</body></html>`;
}

function configuration(issuer) {
  return {
    clients: [
      {
        client_id: 'lumiflow',
        client_secret: 'lumiflow-secret',
        application_type: 'native',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/ui/auth/callback'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'lumiflow-cli',
        application_type: 'native',
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'none',
      },
      {
        client_id: 'robot',
        client_secret: 'robot-secret',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    jwks: { keys: keys() },
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'groups', 'api'],
    findAccount: async (_ctx, id) => {
      const found = user(id);
      if (!found) return undefined;
      return {
        accountId: id,
        claims: async () => ({
          sub: id,
          preferred_username: id,
          name: found.name || id,
          email: found.email || `${id}@example.org`,
          groups: found.groups || [],
        }),
      };
    },
    interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: async (ctx, form, _out, err) => {
          const msg = err ? '<p id="error">That code is not valid.</p>' : '';
          ctx.body = page('Enter the code', `${msg}${form}<button type="submit" id="continue" form="op.deviceInputForm">Continue</button>`);
        },
        userCodeConfirmSource: async (ctx, form, client, _info, userCode) => {
          ctx.body = page('Confirm the device', `<p>${escape(client.clientId)} asks to sign in with code <code id="user-code">${escape(userCode)}</code></p>${form}`
            + '<button type="submit" id="confirm" form="op.deviceConfirmForm">Continue</button>'
            + '<button type="submit" id="abort" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button>');
        },
        successSource: async (ctx) => {
          ctx.body = page('Signed in', '<p id="device-done">You can close this page and return to your terminal.</p>');
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf || DEFAULT_RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator, client) => {
          const audience = RESOURCES[indicator];
          if (!audience) throw new Error(`unknown resource ${indicator}`);
          return {
            scope: RESOURCE_SCOPES,
            audience,
            accessTokenTTL: readState().access_token_ttl || 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: client.clientId === 'robot' ? 'ES256' : 'RS256' } },
          };
        },
      },
    },
    // Every user of the test issuer gets a refresh token (Keycloak's default behaviour).
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    extraTokenClaims: async (_ctx, token) => {
      if (token.kind !== 'AccessToken' && token.kind !== 'ClientCredentials') return undefined;
      const id = token.accountId || `service-account-${token.clientId}`;
      const found = user(id);
      return { preferred_username: id, groups: found ? found.groups || [] : [] };
    },
    ttl: {
      Session: 3600,
      Interaction: 600,
      Grant: 3600,
      DeviceCode: 600,
      AuthorizationCode: 60,
      RefreshToken: 3600,
      IdToken: 300,
      AccessToken: () => readState().access_token_ttl || 300,
      ClientCredentials: () => readState().access_token_ttl || 300,
    },
    cookies: { keys: [randomUUID()] },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = page('Error', `<pre id="oidc-error">${escape(JSON.stringify(out))}</pre>`);
    },
  };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { data += chunk; });
    req.on('end', () => resolve(new URLSearchParams(data)));
    req.on('error', reject);
  });
}

function loginForm(uid, details, error) {
  const client = escape(details.params.client_id);
  return page('Sign in to the test issuer', `<p>for ${client}</p>`
    + (error ? `<p id="error">${escape(error)}</p>` : '')
    + `<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">`
    + '<label>Username <input id="username" name="username" autofocus></label>'
    + '<label>Password <input id="password" name="password" type="password"></label>'
    + '<button type="submit" id="sign-in">Sign in</button></form>');
}

// The login step of every interaction (code flow and device flow): check the password
// against the state file, then hand the account back to the provider.
async function interaction(provider, req, res) {
  const match = /^\/interaction\/([^/?]+)(\/login)?/.exec(req.url);
  const details = await provider.interactionDetails(req, res);
  const uid = match[1];
  if (req.method === 'POST' && match[2]) {
    const form = await readBody(req);
    const found = user(form.get('username') || '');
    if (!found || found.password !== form.get('password')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(loginForm(uid, details, 'Wrong username or password.'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: found.id } }, { mergeWithLastSubmission: false });
    return;
  }
  if (details.prompt.name === 'login') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(loginForm(uid, details));
    return;
  }
  // Consent: first-party clients get everything they ask for without a consent screen.
  const { accountId } = details.session;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: details.params.client_id });
  if (details.params.scope) grant.addOIDCScope(details.params.scope);
  for (const resource of Object.keys(RESOURCES)) grant.addResourceScope(resource, RESOURCE_SCOPES);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

function serve(port) {
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration(issuer));
  // The device authorization response names how often to poll (RFC 8628 §3.2); Keycloak
  // lets an operator choose it, and 1 s keeps the tests quick.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/device/auth' && ctx.body && ctx.body.device_code) ctx.body.interval = 1;
  });
  const callback = provider.callback();
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(provider, req, res).catch((err) => {
        res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
        res.end(page('Error', `<pre id="oidc-error">${escape(err.message)}</pre>`));
      });
      return;
    }
    callback(req, res);
  });
  return new Promise((resolve) => server.listen(Number(port), '127.0.0.1', () => resolve(issuer)));
}

const [issuer, issuer2] = await Promise.all([serve(args.port), serve(args.port2)]);
process.stdout.write(`${JSON.stringify({ ready: true, issuer, issuer2 })}\n`);
process.on('SIGTERM', () => process.exit(0));
