//! A server that serves tampered, expired or replayed metadata: refused, naming the role.

use super::*;

/// Path suffix → the bytes served for it instead of the server's.
type Overrides = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A plain-HTTP proxy on loopback in front of notary-server: GETs are forwarded, except paths
/// ending with an overridden suffix, which get the bytes the test chose.
struct Proxy {
    port: u16,
    overrides: Overrides,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: u16, ca: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let overrides: Overrides = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s, ca) = (overrides.clone(), stop.clone(), ca.to_owned());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !s.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(600) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, upstream, &ca, &o),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            port,
            overrides,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set(&self, suffix: &str, body: Vec<u8>) {
        let mut o = self.overrides.lock().expect("lock");
        o.retain(|(s, _)| s != suffix);
        o.push((suffix.to_owned(), body));
    }

    fn clear(&self) {
        self.overrides.lock().expect("lock").clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    upstream: u16,
    ca: &Path,
    overrides: &Mutex<Vec<(String, Vec<u8>)>>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = if method != "GET" {
        (405, b"only GET through this proxy".to_vec())
    } else if let Some((_, body)) = overrides
        .lock()
        .expect("lock")
        .iter()
        .find(|(suffix, _)| path.ends_with(suffix.as_str()))
    {
        (200, body.clone())
    } else {
        match https_request(upstream, ca, "GET", path) {
            Ok(r) => (r.status, r.body),
            Err(e) => (502, e.to_string().into_bytes()),
        }
    };
    let _ = stream.write_all(
        format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let _ = stream.write_all(&body);
}

/// A timestamp over `snapshot`, signed with the server's timestamp key through sigild's
/// notary-signer endpoint, as notary-server itself would sign it.
fn timestamp(env: &Env, gun: &str, version: u64, expires: SystemTime, snapshot: &[u8]) -> Vec<u8> {
    let root = env.root(gun);
    let key_id = root.body().role_keys(RoleType::Timestamp)[0].0.to_owned();
    let body = Timestamp::for_snapshot(
        version,
        Expires::from_system_time(expires).expect("time"),
        snapshot,
    );
    let message = sigil_tuf::cjson::to_vec(&body).expect("canonical");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sig = runtime.block_on(async {
        let mut api = connect_signer(env.signer_port, &env.pki.ca(), Some(&env.pki.client()))
            .await
            .expect("connect to the notary-signer endpoint");
        api.sign(&key_id, &message).await.expect("sign").content
    });
    Signed {
        signed: body,
        signatures: vec![Signature {
            keyid: key_id,
            method: SignatureMethod::Ecdsa,
            sig,
        }],
    }
    .to_vec()
    .expect("serialise")
}

fn version_of(bytes: &[u8]) -> u64 {
    sigil_tuf::schema::peek_version(bytes).expect("version")
}

#[test]
fn tampered_expired_and_replayed_metadata_is_refused_naming_the_role() {
    let env = Env::start("");
    let gun = "e2e.example/attacks";
    let admin = env.sigil("admin");
    let file = env.target("f", b"f\n");
    admin.ok(&["init", gun, "-p"]);
    admin.ok(&["key", "rotate", gun, "snapshot", "-r"]);
    admin.ok(&["add", gun, "f", file.to_str().expect("utf8"), "-p"]);
    let old_timestamp = env.server.metadata(gun, "timestamp");
    let old_snapshot = env.server.metadata(gun, "snapshot");
    admin.ok(&["add", gun, "g", file.to_str().expect("utf8"), "-p"]);

    // A client that has seen the latest versions, going through the proxy.
    let proxy = Proxy::start(env.server.port(), env.server.ca());
    let client = Sigil {
        server: proxy.url(),
        ca: None,
        ..env.sigil("victim")
    };
    assert_eq!(
        client.json(&["list", gun]).as_array().expect("array").len(),
        2
    );
    let root_path = client.trust.join(format!("tuf/{gun}/metadata/root.json"));

    // 1. A byte flipped in the cached (trusted) root.
    let good_root = fs::read(&root_path).expect("cached root");
    let mut bad_root = good_root.clone();
    let at = bad_root
        .windows(9)
        .position(|w| w == b"\"expires\"")
        .expect("expires")
        + 13;
    bad_root[at] = if bad_root[at] == b'1' { b'2' } else { b'1' };
    fs::write(&root_path, &bad_root).expect("flip");
    let err = client.fails(&["list", gun]);
    assert!(
        err.contains("trusted root") && err.contains("root v"),
        "{err}"
    );
    fs::write(&root_path, &good_root).expect("restore");
    client.ok(&["list", gun]);

    // 2. A byte flipped in the targets.json the server serves.
    let targets = env.server.metadata(gun, "targets");
    let mut bad_targets = targets.clone();
    let at = bad_targets
        .windows(4)
        .position(|w| w == b"\"g\":")
        .expect("target g")
        + 1;
    bad_targets[at] = b'h';
    let hash = sha256_hex(&targets);
    proxy.set(&format!("/targets.{hash}.json"), bad_targets);
    let err = client.fails(&["list", gun]);
    assert!(err.contains("targets:") && err.contains("differs"), "{err}");
    proxy.clear();

    // 3. An old timestamp served again.
    proxy.set("/timestamp.json", old_timestamp.clone());
    let err = client.fails(&["list", gun]);
    assert!(
        err.contains("timestamp v") && err.contains("rollback"),
        "{err}"
    );
    proxy.clear();

    // 4. An expired timestamp, properly signed by the server's timestamp key. sigild signs
    //    nothing already expired (DESIGN §9), so it is signed to expire in two seconds and
    //    served once it has.
    let current = env.server.metadata(gun, "timestamp");
    let snapshot = env.server.metadata(gun, "snapshot");
    let expired = timestamp(
        &env,
        gun,
        version_of(&current) + 1,
        SystemTime::now() + Duration::from_secs(2),
        &snapshot,
    );
    std::thread::sleep(Duration::from_secs(3));
    proxy.set("/timestamp.json", expired);
    let err = client.fails(&["list", gun]);
    assert!(
        err.contains("timestamp v") && err.contains("expired"),
        "{err}"
    );
    proxy.clear();

    // 5. A fresh, validly signed timestamp pointing at an older snapshot (which the server
    //    still has by its hash): the snapshot rollback is caught. (Version + 2: sigild's
    //    version floor refuses a second, different + 1.)
    let replay = timestamp(
        &env,
        gun,
        version_of(&current) + 2,
        SystemTime::now() + Duration::from_secs(3600),
        &old_snapshot,
    );
    proxy.set("/timestamp.json", replay);
    let err = client.fails(&["list", gun]);
    assert!(
        err.contains("snapshot v") && err.contains("rollback"),
        "{err}"
    );
    proxy.clear();

    // Nothing was cached from the refused updates: the honest server still verifies.
    assert_eq!(
        client.json(&["list", gun]).as_array().expect("array").len(),
        2
    );
    // The real client refuses the same tampered targets.
    let mut bad = targets.clone();
    bad[at] = b'h';
    proxy.set(&format!("/targets.{hash}.json"), bad);
    let notary = NotaryClient::new(&proxy.url(), env.server.ca(), &env.dir("notary-victim"));
    let out = notary.run(&["list", gun]);
    assert!(
        !out.status.success(),
        "notary accepted tampered targets:\n{}",
        out.stdout
    );

    // Clear errors for an unreachable server and a TLS failure.
    let unreachable = Sigil {
        server: format!("https://127.0.0.1:{}", free_port()),
        ..env.sigil("nowhere")
    };
    let err = unreachable.fails(&["list", gun]);
    assert!(err.contains("cannot reach the notary server"), "{err}");
    assert_eq!(unreachable.run(&["list", gun]).status.code(), Some(5));
    let no_ca = Sigil {
        ca: None,
        ..env.sigil("no-ca")
    };
    let err = no_ca.fails(&["list", gun]);
    assert!(err.contains("TLS") && err.contains("--tlscacert"), "{err}");
    // No trust data on the server.
    let err = admin.fails(&[
        "addhash",
        "e2e.example/never-initialised",
        "x",
        "1",
        &"00".repeat(32),
        "-p",
    ]);
    assert!(err.contains("no trust data"), "{err}");
}
