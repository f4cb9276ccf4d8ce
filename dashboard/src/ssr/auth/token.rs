//! Signed tokens (JWT, HS256): the browser's session cookie, the API's access and refresh
//! tokens. One secret (`[dashboard] secret`) signs them all; the `typ` claim keeps them apart
//! (a refresh token is not an access token, a session cookie is not a bearer token).

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::model::Role;

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// The browser's session cookie.
    Session,
    /// `Authorization: Bearer` on the API.
    Access,
    /// Exchanged at `/api/v1/auth/refresh` for a new access token.
    Refresh,
}

impl std::fmt::Display for TokenKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenKind::Session => "a session",
            TokenKind::Access => "an access",
            TokenKind::Refresh => "a refresh",
        })
    }
}

/// The claims of every token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The username.
    pub sub: String,
    /// The role when the token was issued (the user's current role is what counts).
    pub role: Role,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    pub typ: TokenKind,
    /// The user's `token_version` when issued: a password change invalidates older tokens.
    pub ver: i32,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token is malformed")]
    Malformed,
    #[error("this is {found} token; {expected} token is needed here")]
    WrongKind {
        expected: TokenKind,
        found: TokenKind,
    },
}

/// Signs and checks tokens with the configured secret.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A token of `kind` for `user`, valid `ttl_s` seconds from `now`.
    pub fn issue(
        &self,
        user: &str,
        role: Role,
        ver: i32,
        kind: TokenKind,
        now: i64,
        ttl_s: i64,
    ) -> String {
        let claims = Claims {
            sub: user.to_string(),
            role,
            iat: now,
            exp: now + ttl_s,
            typ: kind,
            ver,
        };
        // HS256 over serializable claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// Checks the signature, the expiry and the kind.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed,
            })?;
        if data.claims.typ != kind {
            return Err(TokenError::WrongKind {
                expected: kind,
                found: data.claims.typ,
            });
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn round_trip_and_refusals() {
        let keys = Keys::new(b"0123456789abcdef0123456789abcdef");
        let t = keys.issue("ada", Role::Analyst, 3, TokenKind::Access, now(), 60);
        let c = keys.verify(&t, TokenKind::Access).unwrap();
        assert_eq!((c.sub.as_str(), c.role, c.ver), ("ada", Role::Analyst, 3));
        assert_eq!(
            keys.verify(&t, TokenKind::Refresh),
            Err(TokenError::WrongKind {
                expected: TokenKind::Refresh,
                found: TokenKind::Access
            })
        );
        let old = keys.issue("ada", Role::Admin, 1, TokenKind::Access, now() - 3600, 60);
        assert_eq!(
            keys.verify(&old, TokenKind::Access),
            Err(TokenError::Expired)
        );
        let other = Keys::new(b"another-secret-another-secret-xx");
        assert_eq!(
            other.verify(&t, TokenKind::Access),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            keys.verify("not.a.token", TokenKind::Access),
            Err(TokenError::Malformed)
        );
        // A payload edited to claim admin no longer matches its signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        use base64::Engine;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            String::from_utf8(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(parts[1])
                    .unwrap(),
            )
            .unwrap()
            .replace("analyst", "admin"),
        );
        parts[1] = &forged;
        assert_eq!(
            keys.verify(&parts.join("."), TokenKind::Access),
            Err(TokenError::BadSignature)
        );
    }
}
