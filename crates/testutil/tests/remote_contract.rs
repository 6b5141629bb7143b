//! The remote contract suite against every backend of the store.

mod dir {
    bridge_testutil::remote_contract_tests!(bridge_testutil::remote_contract::DirStore::new);
}

mod git {
    bridge_testutil::remote_contract_tests!(bridge_testutil::remote_contract::GitStore::new);
}

mod mem {
    bridge_testutil::remote_contract_tests!(bridge_testutil::remote_contract::MemStore::new);
}

mod packed_dir {
    bridge_testutil::remote_contract_tests!(|| bridge_testutil::remote_contract::PackedStore(
        bridge_testutil::remote_contract::DirStore::new()
    ));
}

mod packed_git {
    bridge_testutil::remote_contract_tests!(|| bridge_testutil::remote_contract::PackedStore(
        bridge_testutil::remote_contract::GitStore::new()
    ));
}

mod s3 {
    bridge_testutil::remote_contract_tests!(bridge_testutil::remote_contract::S3Store::new);
}

mod packed_s3 {
    bridge_testutil::remote_contract_tests!(|| bridge_testutil::remote_contract::PackedStore(
        bridge_testutil::remote_contract::S3Store::new()
    ));
}

mod hybrid_dir {
    bridge_testutil::remote_contract_tests!(|| bridge_testutil::remote_contract::HybridStore(
        bridge_testutil::remote_contract::DirStore::new(),
        bridge_testutil::remote_contract::DirStore::new()
    ));
}

/// As bridge opens `git:` with `blobs = "s3://…"`: both packed.
mod hybrid_git_s3 {
    use bridge_testutil::remote_contract::{GitStore, HybridStore, PackedStore, S3Store};
    bridge_testutil::remote_contract_tests!(|| HybridStore(
        PackedStore(GitStore::new()),
        PackedStore(S3Store::new())
    ));
}
