//! Strangers are refused at the TLS handshake, and the endpoint reaches no other key.

use super::*;

/// Test 4: who gets in, and what they can reach.
///
/// - A client certificate from another CA (even with notary-server's CN) or none at all is
///   refused at the TLS handshake, with TLS 1.2 and 1.3, and a gRPC client gets nowhere; the
///   allowed identities complete the handshake.
/// - A certificate from the right CA whose names are not in `allowed_clients` gets
///   PERMISSION_DENIED; a client allowed by its SAN alone gets in.
/// - Root, targets and delegation keys generated through the Unix-socket API do not exist for
///   the endpoint: GetKeyInfo, Sign and DeleteKey by daemon key id or by Notary key id are all
///   NOT_FOUND, CreateKey refuses those roles, and the keys are untouched afterwards.
#[test]
fn strangers_are_refused_and_no_other_key_is_reachable() {
    let signer = Signer::start(&[SERVER_CLIENT_CN, SAN_CLIENT]);
    let who = strangers(&signer);
    let ca = signer.pki.ca();
    let allowed = signer.pki.client();
    let foreign = who.other_ca.client();
    for (name, versions) in [
        ("TLS 1.2", &[&rustls::version::TLS12][..]),
        ("TLS 1.3", &[&rustls::version::TLS13][..]),
    ] {
        for (label, identity) in [
            ("allowed client", &allowed),
            ("SAN client", &who.san_client),
        ] {
            assert_eq!(
                sigil_e2e::notary::tls_handshake(signer.port, &ca, Some(identity), versions),
                Handshake::Accepted,
                "{name}: {label}"
            );
        }
        for (label, identity) in [("other CA", Some(&foreign)), ("no certificate", None)] {
            let outcome = sigil_e2e::notary::tls_handshake(signer.port, &ca, identity, versions);
            assert!(
                matches!(outcome, Handshake::Refused(_)),
                "{name}: {label} was not refused: {outcome:?}"
            );
        }
    }
    let audited_before = signer.audit().len();

    let rt = runtime();
    rt.block_on(async {
        // gRPC over the refused handshakes: nothing gets through.
        for (label, identity) in [("other CA", Some(&foreign)), ("no certificate", None)] {
            let outcome = match connect_signer(signer.port, &ca, identity).await {
                Err(e) => format!("connect: {e:?}"),
                Ok(mut api) => match api.key_info(&"0".repeat(64)).await {
                    Ok(answer) => panic!("{label}: GetKeyInfo answered {answer:?}"),
                    Err(status) => {
                        assert!(
                            matches!(status.code(), Code::Unavailable | Code::Unknown),
                            "{label}: {status:?}"
                        );
                        format!("{status:?}")
                    }
                },
            };
            assert!(!outcome.is_empty());
        }

        // Right CA, wrong name: PERMISSION_DENIED on every RPC, naming the certificate.
        let mut intruder = signer.api_as(&who.intruder).await;
        let denied = intruder
            .create_key("ecdsa", "timestamp", GUN)
            .await
            .expect_err("an intruder's CreateKey");
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
        assert!(denied.message().contains("intruder"), "{denied:?}");
        let denied = intruder
            .sign(&"0".repeat(64), b"{}")
            .await
            .expect_err("an intruder's Sign");
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

        // Keys of every other role, made through the Unix socket.
        let mut local = signer.daemon.as_ref().expect("running").client().await;
        let mut daemon_keys = Vec::new();
        for role in ["root", "targets", "targets/releases"] {
            daemon_keys.push((
                role,
                local.generate(role, GUN, v1::Algorithm::EcdsaP256).await,
            ));
        }
        let mut api = signer.api().await;
        let mut san = signer.api_as(&who.san_client).await;
        for (role, key) in &daemon_keys {
            let ids = [key.key_id.clone(), notary_key_id("ecdsa", &key.spki_der)];
            for id in &ids {
                for endpoint in [&mut api, &mut san] {
                    let status = endpoint.key_info(id).await.expect_err("GetKeyInfo");
                    assert_eq!(status.code(), Code::NotFound, "{role} {id}: {status:?}");
                    let status = endpoint.sign(id, b"{}").await.expect_err("Sign");
                    assert_eq!(status.code(), Code::NotFound, "{role} {id}: {status:?}");
                    let status = endpoint.delete_key(id).await.expect_err("DeleteKey");
                    assert_eq!(status.code(), Code::NotFound, "{role} {id}: {status:?}");
                }
            }
        }
        for role in ["root", "targets", "targets/releases"] {
            let status = api
                .create_key("ecdsa", role, GUN)
                .await
                .expect_err("CreateKey for a role the endpoint does not own");
            assert!(
                matches!(
                    status.code(),
                    Code::PermissionDenied | Code::InvalidArgument
                ),
                "CreateKey {role}: {status:?}"
            );
        }
        // The daemon's keys are all still there and usable through the socket.
        let listed: Vec<String> = local.list().await.into_iter().map(|k| k.key_id).collect();
        for (role, key) in &daemon_keys {
            assert!(listed.contains(&key.key_id), "{role} key vanished");
            local
                .sign_message(&key.key_id, b"still mine", v1::SignatureEncoding::Raw)
                .await
                .unwrap_or_else(|s| panic!("{role} key unusable after the attempts: {s:?}"));
        }
    });

    // Nothing was created for those roles on the token.
    let report = signer.dev.inspect_token(token_inspect_exe!());
    let notary_labels: Vec<&str> = report
        .private_keys
        .iter()
        .map(|k| k.label.as_str())
        .filter(|l| l.starts_with("sigil-notary:"))
        .collect();
    assert!(notary_labels.is_empty(), "{notary_labels:?}");

    // The refused handshakes left no trace in the audit log (they never became calls); every
    // NOT_FOUND sign attempt is there with the client's identity.
    assert_eq!(audited_before, 0, "refused handshakes are not calls");
    let audit = signer.audit();
    let refused_signs: Vec<&AuditLine> = audit
        .iter()
        .filter(|l| {
            l.op == "sign" && matches!(l.client.as_deref(), Some(SERVER_CLIENT_CN | SAN_CLIENT))
        })
        .collect();
    assert_eq!(refused_signs.len(), 3 * 2 * 2, "{refused_signs:#?}");
    for line in refused_signs {
        assert_eq!(line.outcome, "not_found", "{line:?}");
        assert!(
            matches!(line.client.as_deref(), Some(SERVER_CLIENT_CN | SAN_CLIENT)),
            "{line:?}"
        );
    }
}
