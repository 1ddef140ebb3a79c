//! Authentication: JWT bearer tokens (secrets, PEM keys, JWKS) and API keys.
