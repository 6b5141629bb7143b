//! Repository secrets for GitHub Actions: the repository's public key,
//! sealing a value to it (libsodium's `crypto_box_seal`, as GitHub expects),
//! and storing the sealed value. The plain value never leaves this process.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::Method;
use serde::Deserialize;

use crate::client::{GitHub, GitHubError, Operation, encode};

/// The repository's public key for secrets.
#[derive(Debug, Clone, Deserialize)]
pub struct RepoPublicKey {
    /// The key's id, sent back with the secret.
    pub key_id: String,
    /// The X25519 public key, base64.
    pub key: String,
}

/// What storing a secret did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretWrite {
    /// A new secret.
    Created,
    /// An existing secret was replaced.
    Updated,
}

/// Why a secret could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key is not base64.
    #[error("the repository's public key is not base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// The key is not 32 bytes.
    #[error("the repository's public key is {0} bytes long, not the 32 of an X25519 key")]
    Length(usize),
    /// The sealed box failed (the OS random number generator).
    #[error("cannot seal the secret (the OS random number generator failed)")]
    Seal,
}

/// Seals `secret` to a repository's public key (base64) the way GitHub
/// expects secrets: libsodium's `crypto_box_seal`, then base64.
pub fn seal(public_key_b64: &str, secret: &[u8]) -> Result<String, SealError> {
    let bytes = B64
        .decode(public_key_b64.trim())
        .map_err(SealError::Base64)?;
    let key =
        crypto_box::PublicKey::from_slice(&bytes).map_err(|_| SealError::Length(bytes.len()))?;
    let sealed = key
        .seal(&mut crypto_box::aead::OsRng, secret)
        .map_err(|_| SealError::Seal)?;
    Ok(B64.encode(sealed))
}

impl GitHub {
    /// The repository's public key for secrets.
    pub fn public_key(&self) -> Result<RepoPublicKey, GitHubError> {
        let call = self.call(
            Operation::PublicKey,
            "read the public key for Actions secrets",
        );
        let answer = self.send(
            &call,
            Method::GET,
            &format!("{}/actions/secrets/public-key", self.repo_path()),
            None::<&()>,
        )?;
        Self::decode(&call, &answer.body)
    }

    /// Stores a secret sealed with [`seal`] as the repository's Actions
    /// secret `name`.
    pub fn put_secret(
        &self,
        name: &str,
        key_id: &str,
        encrypted_value: &str,
    ) -> Result<SecretWrite, GitHubError> {
        let call = self.call(
            Operation::PutSecret,
            format!("store the Actions secret {name}"),
        );
        let body = serde_json::json!({"encrypted_value": encrypted_value, "key_id": key_id});
        let answer = self.send(
            &call,
            Method::PUT,
            &format!("{}/actions/secrets/{}", self.repo_path(), encode(name)),
            Some(&body),
        )?;
        Ok(if answer.status == 201 {
            SecretWrite::Created
        } else {
            SecretWrite::Updated
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secret_opens_with_the_repository_secret_key() {
        let secret = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        let public = B64.encode(secret.public_key().as_bytes());
        let value = b"bridge1-identity:AGE-SECRET-KEY-TEST";
        let sealed = seal(&public, value).unwrap();
        let opened = secret
            .unseal(&B64.decode(sealed.as_bytes()).unwrap())
            .unwrap();
        assert_eq!(opened, value);
        // A sealed box is 48 bytes longer (ephemeral key + tag) and fresh
        // each time.
        assert_eq!(B64.decode(&sealed).unwrap().len(), value.len() + 48);
        assert_ne!(seal(&public, value).unwrap(), sealed);
        // Another key cannot open it.
        let other = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        assert!(other.unseal(&B64.decode(&sealed).unwrap()).is_err());
    }

    #[test]
    fn seal_refuses_what_is_not_a_key() {
        assert!(matches!(
            seal("not base64!", b"x"),
            Err(SealError::Base64(_))
        ));
        // GitHub's documentation example decodes to 33 bytes.
        assert!(matches!(
            seal("2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvv1234", b"x"),
            Err(SealError::Length(33))
        ));
    }
}
