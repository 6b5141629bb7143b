//! Member keys: the secret [`Identity`] a device or runner holds, the
//! [`PublicKey`] the roster lists for it, its short [`MemberId`] and its
//! [`Role`].
//!
//! An identity is two keys: an age X25519 identity (to read files encrypted to
//! the member) and an ed25519 signing key (to sign the files it writes). Both
//! travel together as one line of text, [`Identity::to_secret`], which is what a
//! device's config or a runner's `BRIDGE_IDENTITY` secret holds:
//!
//! ```text
//! BRIDGE-IDENTITY-1:<AGE-SECRET-KEY-1…>:<base64url, no padding, 32-byte ed25519 seed>
//! bridge1:<age1…>:<base64url, no padding, 32-byte ed25519 public key>      (PublicKey)
//! m<24 hex digits>                                                        (MemberId)
//! ```
//!
//! Secret material never leaves this module except through
//! [`Identity::to_secret`] (a [`SecretString`], zeroized on drop): `Identity`'s
//! `Debug` prints only the member id, and no error here echoes its input.

use std::fmt;
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The first field of an identity's text form.
const SECRET_PREFIX: &str = "BRIDGE-IDENTITY-1";
/// The first field of a public key's text form.
const PUBLIC_PREFIX: &str = "bridge1";
/// Domain separation for the member id hash.
const MEMBER_DOMAIN: &[u8] = b"bridge-member-v1\0";
/// Hex digits of the sha256 kept in a member id.
const MEMBER_HEX: usize = 24;

/// Why an identity could not be generated or parsed. No variant carries any
/// part of the text it was given.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng(#[source] getrandom::Error),
    /// The text does not start with `BRIDGE-IDENTITY-1:`.
    #[error("a bridge identity must start with `BRIDGE-IDENTITY-1:`")]
    Prefix,
    /// The text does not have three `:`-separated fields.
    #[error(
        "a bridge identity has three fields separated by `:` \
         (BRIDGE-IDENTITY-1:<age secret key>:<ed25519 seed>)"
    )]
    Fields,
    /// The second field is not an age X25519 secret key.
    #[error("the age secret key in the identity is not valid ({0})")]
    AgeKey(&'static str),
    /// The third field is not 32 bytes of unpadded base64url.
    #[error("the ed25519 seed in the identity is not 32 bytes of unpadded base64url")]
    Seed,
}

/// Why a public key's text could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum PublicKeyError {
    /// The text does not start with `bridge1:`.
    #[error("a bridge public key must start with `bridge1:`")]
    Prefix,
    /// The text does not have three `:`-separated fields.
    #[error(
        "a bridge public key has three fields separated by `:` \
         (bridge1:<age recipient>:<ed25519 public key>)"
    )]
    Fields,
    /// The second field is not an age X25519 recipient.
    #[error("the age recipient in the public key is not valid ({0})")]
    AgeRecipient(&'static str),
    /// The third field is not a valid ed25519 public key.
    #[error(
        "the ed25519 key in the public key is not 32 bytes of unpadded base64url of a valid point"
    )]
    Ed25519,
}

/// A member id that is not `m` followed by 24 lowercase hex digits.
#[derive(Debug, thiserror::Error)]
#[error("a member id is `m` followed by 24 lowercase hex digits")]
pub struct MemberIdError;

/// A role name other than `admin`, `submit` or `worker`.
#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?} (expected admin, submit or worker)")]
pub struct RoleError(String);

/// A member's secret keys: an age X25519 identity to read, an ed25519 key to
/// sign. `Debug` prints only the member id.
#[derive(Clone)]
pub struct Identity {
    age: age::x25519::Identity,
    signing: SigningKey,
    public: PublicKey,
}

impl Identity {
    /// A fresh identity. The ed25519 seed comes from the OS (`getrandom`); the
    /// age key from age's own OS generator.
    pub fn generate() -> Result<Identity, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(KeyError::Rng)?;
        Ok(Identity::from_parts(
            age::x25519::Identity::generate(),
            SigningKey::from_bytes(&seed),
        ))
    }

    fn from_parts(age: age::x25519::Identity, signing: SigningKey) -> Identity {
        let public = PublicKey::new(age.to_public(), signing.verifying_key());
        Identity {
            age,
            signing,
            public,
        }
    }

    /// The identity as one line of text:
    /// `BRIDGE-IDENTITY-1:<AGE-SECRET-KEY-1…>:<base64url-nopad ed25519 seed>`.
    pub fn to_secret(&self) -> SecretString {
        let age_secret = self.age.to_string();
        // Sized so that nothing reallocates (and leaves a copy behind):
        // 17 + 1 + 74 + 1 + 43 characters.
        let mut text = String::with_capacity(192);
        text.push_str(SECRET_PREFIX);
        text.push(':');
        text.push_str(age_secret.expose_secret());
        text.push(':');
        B64.encode_string(self.signing.as_bytes(), &mut text);
        SecretString::from(text)
    }

    /// Parses [`Identity::to_secret`]'s text, ignoring surrounding whitespace.
    /// Errors say which field is wrong, never what it contained.
    pub fn parse(text: &str) -> Result<Identity, KeyError> {
        let mut fields = text.trim().splitn(3, ':');
        if fields.next() != Some(SECRET_PREFIX) {
            return Err(KeyError::Prefix);
        }
        let (Some(age_text), Some(seed_text)) = (fields.next(), fields.next()) else {
            return Err(KeyError::Fields);
        };
        let age = age_text
            .parse::<age::x25519::Identity>()
            .map_err(KeyError::AgeKey)?;
        let mut buf = Zeroizing::new([0u8; 48]);
        let len = B64
            .decode_slice(seed_text, buf.as_mut())
            .map_err(|_| KeyError::Seed)?;
        let seed: &[u8; 32] = buf
            .get(..len)
            .and_then(|s| s.try_into().ok())
            .ok_or(KeyError::Seed)?;
        Ok(Identity::from_parts(age, SigningKey::from_bytes(seed)))
    }

    /// The public half, as the roster lists it.
    pub fn public(&self) -> PublicKey {
        self.public.clone()
    }

    /// The member id of [`Identity::public`], without cloning the key.
    pub fn member_id(&self) -> &MemberId {
        &self.public.id
    }

    /// An ed25519 signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// The age identity, for decryption inside this crate.
    pub(crate) fn age(&self) -> &age::x25519::Identity {
        &self.age
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("member", &self.public.id.as_str())
            .finish_non_exhaustive()
    }
}

/// A member's public keys: an age recipient (files are encrypted to it) and an
/// ed25519 verifying key (its signatures are checked with it). Text form:
/// `bridge1:<age1…>:<base64url-nopad ed25519 public key>`; serialized as that text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    age: age::x25519::Recipient,
    ed: VerifyingKey,
    id: MemberId,
}

impl PublicKey {
    fn new(age: age::x25519::Recipient, ed: VerifyingKey) -> PublicKey {
        let mut hash = Sha256::new();
        hash.update(MEMBER_DOMAIN);
        hash.update(age.to_string().as_bytes());
        hash.update(ed.as_bytes());
        let digest = hex::encode(hash.finalize());
        let id = MemberId(format!("m{}", &digest[..MEMBER_HEX]));
        PublicKey { age, ed, id }
    }

    /// The member id: `m` + the first 24 hex digits of
    /// sha256(`"bridge-member-v1\0"` || age recipient text || ed25519 public key bytes).
    pub fn member_id(&self) -> MemberId {
        self.id.clone()
    }

    /// Whether `sig` is a valid ed25519 signature of `msg` by this key
    /// (`verify_strict`: rejects malleable signatures and weak keys).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.ed
            .verify_strict(msg, &Signature::from_bytes(sig))
            .is_ok()
    }

    /// The age recipient files for this member are encrypted to.
    pub fn recipient(&self) -> &age::x25519::Recipient {
        &self.age
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PUBLIC_PREFIX}:{}:{}",
            self.age,
            B64.encode(self.ed.as_bytes())
        )
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {self})", self.id)
    }
}

impl FromStr for PublicKey {
    type Err = PublicKeyError;

    fn from_str(text: &str) -> Result<PublicKey, PublicKeyError> {
        let mut fields = text.trim().splitn(3, ':');
        if fields.next() != Some(PUBLIC_PREFIX) {
            return Err(PublicKeyError::Prefix);
        }
        let (Some(age_text), Some(ed_text)) = (fields.next(), fields.next()) else {
            return Err(PublicKeyError::Fields);
        };
        let age = age_text
            .parse::<age::x25519::Recipient>()
            .map_err(PublicKeyError::AgeRecipient)?;
        let mut buf = [0u8; 48];
        let len = B64
            .decode_slice(ed_text, &mut buf)
            .map_err(|_| PublicKeyError::Ed25519)?;
        let bytes: &[u8; 32] = buf
            .get(..len)
            .and_then(|s| s.try_into().ok())
            .ok_or(PublicKeyError::Ed25519)?;
        let ed = VerifyingKey::from_bytes(bytes).map_err(|_| PublicKeyError::Ed25519)?;
        Ok(PublicKey::new(age, ed))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A member's short, stable id: `m` followed by 24 lowercase hex digits of
/// the hash of its public keys (see [`PublicKey::member_id`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(String);

impl MemberId {
    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The tag a member's Automerge actor ids carry (bytes 8..16): the first 8
/// bytes of a domain-separated hash of its member id. A chunk whose changes
/// use an actor without its signer's tag is refused, so no member can write
/// under another's actor.
pub fn member_tag(member: &MemberId) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(b"bridge-actor-v1\0")
        .chain_update(member.as_str().as_bytes())
        .finalize();
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    tag
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MemberId {
    type Err = MemberIdError;

    fn from_str(text: &str) -> Result<MemberId, MemberIdError> {
        let valid = text.len() == 1 + MEMBER_HEX
            && text.starts_with('m')
            && text[1..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(MemberId(text.to_owned()))
        } else {
            Err(MemberIdError)
        }
    }
}

impl Serialize for MemberId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MemberId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MemberId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a member may do. Every member may read, claim and report results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May change the roster, and submit.
    Admin,
    /// May submit tasks (tasks are code execution on workers).
    Submit,
    /// May only claim tasks and report results: what a runner key gets, so a
    /// leaked CI secret cannot submit work to anyone's laptop.
    Worker,
}

impl Role {
    /// Whether batches signed by this role may be run (admin or submit).
    pub fn can_submit(self) -> bool {
        matches!(self, Role::Admin | Role::Submit)
    }

    /// Whether this role may sign new roster epochs (admin only).
    pub fn can_admin(self) -> bool {
        matches!(self, Role::Admin)
    }

    /// The role's name: `admin`, `submit` or `worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Submit => "submit",
            Role::Worker => "worker",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = RoleError;

    fn from_str(text: &str) -> Result<Role, RoleError> {
        match text {
            "admin" => Ok(Role::Admin),
            "submit" => Ok(Role::Submit),
            "worker" => Ok(Role::Worker),
            other => Err(RoleError(other.chars().take(32).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_text(id: &Identity) -> String {
        id.to_secret().expose_secret().to_owned()
    }

    #[test]
    fn identity_round_trips_through_text() {
        let id = Identity::generate().unwrap();
        let text = secret_text(&id);
        assert!(text.starts_with("BRIDGE-IDENTITY-1:AGE-SECRET-KEY-1"));
        assert_eq!(text.lines().count(), 1);
        let back = Identity::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(back.public(), id.public());
        assert_eq!(secret_text(&back), text);
        let sig = back.sign(b"hello");
        assert!(id.public().verify(b"hello", &sig));
        assert!(!id.public().verify(b"hellO", &sig));
    }

    #[test]
    fn a_fixed_identity_parses_to_the_same_keys() {
        // The published test identity of the fuzz target (fuzz/fuzz_targets).
        let text = "BRIDGE-IDENTITY-1:AGE-SECRET-KEY-1RSD8VZ8SGGSZ6WL3A3VC5RJDFXE52N6D6ZLX2XYZ2HCDZ2GV8NASSC3NV6:FXClgOxfyHArPDpSZsQjQEWOEs_JypTjQHfroIqP80k";
        let id = Identity::parse(text).unwrap();
        assert_eq!(secret_text(&id), text);
        assert_eq!(Identity::parse(text).unwrap().public(), id.public());
    }

    #[test]
    fn public_key_round_trips_through_text_and_serde() {
        let key = Identity::generate().unwrap().public();
        let text = key.to_string();
        assert!(text.starts_with("bridge1:age1"));
        let back: PublicKey = text.parse().unwrap();
        assert_eq!(back, key);
        assert_eq!(back.member_id(), key.member_id());
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
        assert!("bridge1:age1xyz:AAAA".parse::<PublicKey>().is_err());
        assert!(
            text.replacen("bridge1", "bridge2", 1)
                .parse::<PublicKey>()
                .is_err()
        );
    }

    #[test]
    fn member_id_is_the_documented_hash() {
        let key = Identity::generate().unwrap().public();
        let mut hash = Sha256::new();
        hash.update(b"bridge-member-v1\0");
        hash.update(key.recipient().to_string().as_bytes());
        hash.update(key.ed.to_bytes());
        let want = format!("m{}", &hex::encode(hash.finalize())[..24]);
        assert_eq!(key.member_id().as_str(), want);
        assert_eq!(want.parse::<MemberId>().unwrap(), key.member_id());
        let json = serde_json::to_string(&key.member_id()).unwrap();
        assert_eq!(
            serde_json::from_str::<MemberId>(&json).unwrap(),
            key.member_id()
        );
        for bad in [
            "",
            "m",
            "x0123456789abcdef01234567",
            "m0123456789ABCDEF01234567",
            "m0123",
        ] {
            assert!(bad.parse::<MemberId>().is_err(), "{bad}");
            assert!(serde_json::from_str::<MemberId>(&format!("\"{bad}\"")).is_err());
        }
    }

    #[test]
    fn secrets_never_show_in_debug_or_errors() {
        let id = Identity::generate().unwrap();
        let text = secret_text(&id);
        let (_, rest) = text.split_once(':').unwrap();
        let (age_secret, seed) = rest.split_once(':').unwrap();
        let debug = format!("{id:?} {:#?}", id);
        for secret in [&text[..], age_secret, seed] {
            assert!(!debug.contains(secret), "Debug leaks a secret: {debug}");
        }
        assert!(debug.contains(id.member_id().as_str()));

        // Mangle each field in turn; no error message may echo any of it.
        // The age key's last character is replaced by another (replacing
        // it by `X` left one key in 32, which ends in `X`, unchanged).
        let last = if age_secret.ends_with('X') { 'Q' } else { 'X' };
        let mangled = [
            text.replacen("BRIDGE-IDENTITY-1", "BRIDGE-IDENTITY-2", 1),
            text.replacen(':', ";", 2),
            format!("BRIDGE-IDENTITY-1:{age_secret}"),
            format!(
                "BRIDGE-IDENTITY-1:{}{last}:{seed}",
                &age_secret[..age_secret.len() - 1]
            ),
            format!("BRIDGE-IDENTITY-1:{age_secret}:{}", &seed[..seed.len() - 2]),
            format!("BRIDGE-IDENTITY-1:{age_secret}:{seed}AAAA"),
            format!("BRIDGE-IDENTITY-1:{seed}:{age_secret}"),
            age_secret.to_owned(),
        ];
        for bad in &mangled {
            let err = Identity::parse(bad).unwrap_err();
            let shown = format!("{err} {err:?}");
            for secret in [age_secret, seed, &age_secret[16..40], &seed[4..30]] {
                assert!(!shown.contains(secret), "error leaks a secret: {shown}");
            }
        }
    }

    #[test]
    fn parse_errors_name_the_bad_field() {
        let id = Identity::generate().unwrap();
        let text = secret_text(&id);
        let (_, rest) = text.split_once(':').unwrap();
        let (age_secret, seed) = rest.split_once(':').unwrap();
        assert!(matches!(Identity::parse("nope"), Err(KeyError::Prefix)));
        assert!(matches!(
            Identity::parse("BRIDGE-IDENTITY-1:abc"),
            Err(KeyError::Fields)
        ));
        assert!(matches!(
            Identity::parse(&format!("BRIDGE-IDENTITY-1:AGE-SECRET-KEY-1QQ:{seed}")),
            Err(KeyError::AgeKey(_))
        ));
        assert!(matches!(
            Identity::parse(&format!("BRIDGE-IDENTITY-1:{age_secret}:{}", &seed[1..])),
            Err(KeyError::Seed)
        ));
        assert!(matches!(
            Identity::parse(&format!("BRIDGE-IDENTITY-1:{age_secret}:{seed}:x")),
            Err(KeyError::Seed)
        ));
    }

    #[test]
    fn roles() {
        assert!(Role::Admin.can_admin() && Role::Admin.can_submit());
        assert!(!Role::Submit.can_admin() && Role::Submit.can_submit());
        assert!(!Role::Worker.can_admin() && !Role::Worker.can_submit());
        for role in [Role::Admin, Role::Submit, Role::Worker] {
            assert_eq!(role.to_string().parse::<Role>().unwrap(), role);
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{role}\""));
        }
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn the_member_tag_is_fixed_protocol() {
        // Stored actor ids carry it: it must never change for a member.
        let member: MemberId = format!("m{}", "0".repeat(24)).parse().unwrap();
        assert_eq!(hex::encode(member_tag(&member)), "73fda9e0a39b1b87");
        let other: MemberId = format!("m{}", "1".repeat(24)).parse().unwrap();
        assert_ne!(member_tag(&member), member_tag(&other));
    }
}
