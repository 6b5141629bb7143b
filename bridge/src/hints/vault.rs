//! Hints and exit codes for the errors of the vault: sealing, opening and refusing documents and blobs.

use bridge_engine::vault::{BlobError, NotAMemberError, OpenError, SealError};

use super::Advice;

/// The advice for `cause` when it is one of this area's errors.
pub(super) fn advise(cause: &(dyn std::error::Error + 'static)) -> Option<Advice> {
    if let Some(e) = cause.downcast_ref::<OpenError>() {
        return match e {
            OpenError::Roster { .. } => Some(Advice::hint(
                "if this device was just added, run `bridge sync`; otherwise ask an admin to add it with `bridge members add`",
            )),
            OpenError::ListRoster(_) => None,
        };
    }
    // The vault's errors wrap "not a member" transparently (it is the
    // message), so the chain shows only the outer type: look inside.
    let not_a_member = cause
        .downcast_ref::<NotAMemberError>()
        .or_else(|| match cause.downcast_ref::<SealError>() {
            Some(SealError::NotAMember(e)) => Some(e),
            _ => None,
        })
        .or_else(|| match cause.downcast_ref::<BlobError>() {
            Some(BlobError::Seal(SealError::NotAMember(e))) => Some(e),
            _ => None,
        })?;
    Some(Advice::hint(format!(
        "ask an admin to run `bridge members add NAME {}`, then `bridge sync`",
        not_a_member.public
    )))
}

#[cfg(test)]
mod tests {
    use bridge_crypto::Identity;

    use super::*;

    fn not_a_member(identity: &Identity) -> NotAMemberError {
        NotAMemberError {
            member: identity.member_id().clone(),
            workspace: "ws-0".into(),
            public: Box::new(identity.public()),
        }
    }

    #[test]
    fn a_device_outside_the_roster_is_told_how_to_be_added_wherever_the_error_comes_from() {
        let identity = Identity::generate().expect("a key");
        let want = format!(
            "ask an admin to run `bridge members add NAME {}`, then `bridge sync`",
            identity.public()
        );
        let errors: Vec<anyhow::Error> = vec![
            not_a_member(&identity).into(),
            SealError::from(not_a_member(&identity)).into(),
            BlobError::Seal(not_a_member(&identity).into()).into(),
            anyhow::Error::from(BlobError::Seal(not_a_member(&identity).into()))
                .context("cannot store input a.txt of task `t`"),
        ];
        for error in errors {
            assert_eq!(
                crate::hints::advise(&error).hint.as_deref(),
                Some(want.as_str())
            );
        }
    }
}
