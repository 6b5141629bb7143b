//! Keys, the signed roster and the sign-then-encrypt envelope of bridge.
//!
//! The store is untrusted: every file in it is encrypted to the current
//! members of the workspace. Documents and the roster are age-encrypted and
//! signed by their writer; blobs are sealed under a key only members derive
//! and named by a signed document. This crate owns the
//! cryptography of that rule and nothing else: bytes in, bytes out, no file
//! I/O, no printing, the clock passed in.
//!
//! # Layout
//!
//! - [`identity`]: a member's secret [`Identity`] (age X25519 + ed25519), its
//!   [`PublicKey`], [`MemberId`] and [`Role`], and their text forms.
//! - [`envelope`]: [`seal`] (sign, then encrypt to the members) and [`open`] /
//!   [`open_verified`] (decrypt, check the hash, check the header against what
//!   the caller expects and the roster, verify the signature).
//! - [`convergent`]: blobs sealed so that equal content under one roster
//!   epoch gives equal bytes ([`BlobKey`]): stored once, unreadable and
//!   unguessable outside the members.
//! - [`grant`]: a private batch's audience grants ([`seal_grant`],
//!   [`open_grant`], [`resolve`]): the batch keys sealed to its audience.
//! - [`roster`]: the hash-chained, admin-signed [`Epoch`]s of the member list,
//!   rebuilt and checked by [`Roster::verify`]; who may write what
//!   ([`Roster::check_writer`]).
//!
//! Data flows like this: a reader first runs [`Roster::verify`] over the
//! roster files (pinned root id in hand), then hands every other file to
//! [`open_verified`] with that roster *before* parsing a byte of its payload.
//! A writer calls [`seal`] with the latest epoch's recipients and number.
//!
//! No key material reaches a `Debug`, `Display` or error message: secret types
//! implement `Debug` by hand and show only the member id.
#![warn(missing_docs)]
// Library code never prints (errors and warnings are values, details go
// through `tracing`); the ratchet on long functions (clippy.toml).
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(clippy::too_many_lines)]

pub mod convergent;
pub mod envelope;
pub mod grant;
pub mod identity;
pub mod roster;

pub use convergent::{BlobKey, ConvergentError, open_convergent};
pub use envelope::{
    Domain, EnvelopeError, Expect, Header, Opened, open, open_verified, open_verified_with,
    open_with, seal, sealed_to_any, verify_signed,
};
pub use grant::{
    BatchAudience, BatchKey, GrantBody, GrantError, NewGrant, Notice, open_grant, resolve,
    seal_grant,
};
pub use identity::{
    Identity, KeyError, MemberId, MemberIdError, PublicKey, PublicKeyError, Role, RoleError,
    member_tag,
};
pub use roster::{
    Epoch, EpochError, Member, Removal, Roster, RosterError, RosterWarning, accepted_key,
};

/// Re-exported so callers can hold [`Identity::to_secret`]'s value without
/// depending on `secrecy` themselves.
pub use age::secrecy::{ExposeSecret, SecretString};
