//! The coordinator's authentication token: HS256, payload `{"sub":"wss-control"}`, no expiry.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The only claim the coordinator checks.
pub(super) const SUBJECT: &str = "wss-control";

#[derive(Serialize)]
struct Claims {
    sub: &'static str,
}

/// A fresh token signed with `secret` (never logged).
pub(crate) fn token(secret: &str) -> Result<String, jsonwebtoken::errors::Error> {
    let header = Header::new(Algorithm::HS256);
    encode(
        &header,
        &Claims { sub: SUBJECT },
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{decode, DecodingKey, Validation};

    use super::*;

    #[derive(serde::Deserialize)]
    struct Sub {
        sub: String,
    }

    #[test]
    fn verifies_with_the_secret_and_carries_only_the_subject() {
        let t = token("s3cret").unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let data = decode::<Sub>(&t, &DecodingKey::from_secret(b"s3cret"), &validation).unwrap();
        assert_eq!(data.claims.sub, "wss-control");
        assert!(decode::<Sub>(&t, &DecodingKey::from_secret(b"other"), &validation).is_err());
        let payload = t.split('.').nth(1).unwrap();
        // base64url of {"sub":"wss-control"}
        assert_eq!(payload, "eyJzdWIiOiJ3c3MtY29udHJvbCJ9");
    }
}
