//! Generated wire types for sigild's gRPC API. No logic lives here: conversions to domain
//! types belong to the crates that own those types.
#![allow(missing_docs, unreachable_pub, clippy::all)]

/// `sigil.v1`: the narrow key and signing API served on sigild's Unix socket.
pub mod sigil_v1 {
    tonic::include_proto!("sigil.v1");

    impl std::fmt::Debug for UnlockRequest {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("UnlockRequest")
                .field("backend", &self.backend)
                .field("pin", &"REDACTED")
                .finish()
        }
    }
}

/// The encoded `FileDescriptorSet` of every .proto file here, for gRPC server reflection
/// (`grpcurl -plaintext -unix` lists and calls the API without the .proto files).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sigil_descriptor");

/// `proto`: notary-signer's API (package name fixed by notary-server), served by sigild's
/// optional notary-signer compatible endpoint.
pub mod notary {
    tonic::include_proto!("proto");
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unlock_request_never_prints_its_pin() {
        let req = super::sigil_v1::UnlockRequest {
            backend: "yubikey".into(),
            pin: b"918273".to_vec(),
        };
        let text = format!("{req:?} {req:#?}");
        assert!(
            text.contains("yubikey") && text.contains("REDACTED"),
            "{text}"
        );
        assert!(
            !text.contains("918273") && !text.contains("57, 49"),
            "{text}"
        );
    }
}
