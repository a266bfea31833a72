//! One trusted collection as the commands use it: its notary server, its trust dir, the full
//! verified update walk ([`Repo::fetch`]; with `--offline`, over the trust dir's cache instead,
//! [`Repo::cached`]) and publishing a set of changes signed through sigild
//! ([`Repo::publish`]). Every byte that comes from the server goes through `sigil_tuf`'s
//! [`Updater`]: root pinned on first use (or by `trust_pinning`) and kept in the trust dir,
//! root rotations walked version by version, rollback checked against the cached versions,
//! expiry, signatures and thresholds, and the hashes each role pins for the next. Whatever it
//! refuses is an error naming the role.

use std::time::SystemTime;

use sigil_tuf::changelist::{Change, check_gun};
use sigil_tuf::schema::timestamp::Timestamp;
use sigil_tuf::schema::{Root, Snapshot, Targets, peek_version};
use sigil_tuf::verify::is_skippable;
use sigil_tuf::verify::verify_signatures;
use sigil_tuf::x509::Certificate;
use sigil_tuf::{
    CollectionEditor, FileMeta, Metadata, PriorVersions, RoleType, RootTrust, SignedCollection,
    Signer, Updater, VerifiedCollection,
};
use tracing::{debug, warn};

use crate::cli::GlobalArgs;
use crate::daemon_client::DaemonClient;
use crate::daemon_signer::{DaemonSigner, visible_signers};
use crate::error::Error;
use crate::notary_server::NotaryServer;
use crate::settings::Settings;
use crate::trust_dir::TrustDir;

/// Above this many staged changes, progress goes to stderr.
pub(crate) const PROGRESS_THRESHOLD: usize = 1000;

/// Where a verified walk takes its metadata from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The notary server; what verifies is then cached in the trust dir.
    Server,
    /// The trust dir's cache of the last verified walk, verified again.
    Cache,
}

/// A collection: GUN, server and trust dir.
#[derive(Debug, Clone)]
pub(crate) struct Repo {
    /// The GUN.
    pub(crate) gun: String,
    /// Its trust dir.
    pub(crate) trust: TrustDir,
    /// Its notary server.
    pub(crate) server: NotaryServer,
    settings: Settings,
}

/// Checks a GUN given on the command line.
pub(crate) fn parse_gun(gun: &str) -> Result<String, String> {
    check_gun(gun).map_err(|e| e.to_string())?;
    if gun.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a GUN must not contain spaces or control characters".into());
    }
    Ok(gun.to_owned())
}

impl Repo {
    /// The collection `gun` with the settings of the global flags and config file.
    pub(crate) fn open(global: &GlobalArgs, gun: &str) -> Result<Self, Error> {
        let settings = Settings::resolve(global)?;
        let server = NotaryServer::new(&settings)?;
        Ok(Self {
            gun: gun.to_owned(),
            trust: TrustDir::new(&settings.trust_dir),
            server,
            settings,
        })
    }

    /// The trust dir, without touching the server (for `status`, `reset`, staging).
    pub(crate) fn trust_dir(global: &GlobalArgs) -> Result<TrustDir, Error> {
        Ok(TrustDir::new(&Settings::resolve(global)?.trust_dir))
    }

    /// The directory of the GUN's cached metadata.
    fn cache_dir(&self) -> std::path::PathBuf {
        self.trust
            .metadata_path(&self.gun, "root")
            .ok()
            .and_then(|p| p.parent().map(Into::into))
            .unwrap_or_default()
    }

    fn context(&self, source: Source) -> String {
        match source {
            Source::Server => format!("verifying {} from {}", self.gun, self.server.url()),
            Source::Cache => format!("verifying {} from the trust dir's cache", self.gun),
        }
    }

    /// How a root never seen before is trusted, in notary's order: pinned key ids for this
    /// GUN, else a CA pinned for the longest prefix of it, else trust on first use unless the
    /// config disables it.
    fn first_use(&self) -> Result<RootTrust, Error> {
        if let Some(ids) = self.settings.pins.get(&self.gun) {
            return Ok(RootTrust::Pinned(ids.clone()));
        }
        if let Some(path) = self.settings.pinned_ca(&self.gun) {
            let bad = |reason: String| Error::Config {
                path: path.to_owned(),
                reason: format!("trust_pinning.ca for {}: {reason}", self.gun),
            };
            let pem = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
            let cas = Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
            return Ok(RootTrust::PinnedCa(cas));
        }
        if self.settings.disable_tofu {
            return Err(Error::Config {
                path: Default::default(),
                reason: format!(
                    "trust_pinning.disable_tofu is set and no root key is pinned for {}",
                    self.gun
                ),
            });
        }
        Ok(RootTrust::FirstUse)
    }

    fn missing(&self, source: Source, what: &str) -> Error {
        if source == Source::Cache {
            return Error::TrustDir {
                path: self.cache_dir(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{what} is listed by the cached metadata but not cached itself"),
                ),
            };
        }
        Error::Server {
            what: format!("GET {what} of {}", self.gun),
            status: 404,
            code: "METADATA_NOT_FOUND".into(),
            message: format!("{what} is listed but the server does not have it"),
        }
    }

    /// Versions the trust dir saw last time: the rollback baseline. A cached top-level file
    /// counts only if the cached root's keys signed it (expiry aside: an old cache is normal),
    /// so a corrupted cache cannot raise the floor and lock the client out of genuine data.
    fn prior_versions(&self) -> Result<PriorVersions, Error> {
        let mut prior = PriorVersions::default();
        let root = match self.trust.read(&self.gun, "root")? {
            Some(bytes) => Metadata::<Root>::from_bytes("root", bytes).ok(),
            None => None,
        };
        for role in self.trust.cached_roles(&self.gun)? {
            let Some(bytes) = self.trust.read(&self.gun, &role)? else {
                continue;
            };
            let top_level = match role.as_str() {
                "root" => continue,
                "timestamp" => Some(RoleType::Timestamp),
                "snapshot" => Some(RoleType::Snapshot),
                "targets" => Some(RoleType::Targets),
                _ => None,
            };
            if let Some(kind) = top_level
                && !cached_signature_ok(root.as_ref(), &role, kind, &bytes)
            {
                warn!(gun = %self.gun, role = %role, "ignoring a cached file its root's keys did not sign");
                continue;
            }
            prior.observe(&role, &bytes);
        }
        Ok(prior)
    }

    /// Fetches and verifies the collection from the server and refreshes the trust dir's
    /// cache; `None` when the server has no trust data for the GUN.
    pub(crate) async fn fetch(&self) -> Result<Option<VerifiedCollection>, Error> {
        self.walk(Source::Server).await
    }

    /// For reads with `--offline`: the trust dir's cache of the last verified read, verified
    /// again as if it came from the server (pinned root, signatures, thresholds, the hashes each
    /// role pins, expiry against now), without contacting the server. `None` when nothing is
    /// cached for the GUN. Never used unasked: a client that quietly fell back to its cache when
    /// the server is unreachable would let whoever blocks the server freeze what it sees until
    /// the cached timestamp expires; the notary client refuses too ("client is offline").
    pub(crate) async fn cached(&self) -> Result<Option<VerifiedCollection>, Error> {
        self.walk(Source::Cache).await
    }

    /// The verified update walk over `source`, from the server within the read deadline
    /// (`remote_server.read_deadline_seconds`): every request of the walk together, so a server
    /// that trickles bytes, or serves many roles slowly, cannot hold the command for hours.
    /// Nothing is cached unless the whole walk finishes in time.
    async fn walk(&self, source: Source) -> Result<Option<VerifiedCollection>, Error> {
        if source == Source::Cache {
            return self.walk_within(source).await;
        }
        let deadline = self.settings.read_deadline;
        tokio::time::timeout(deadline, self.walk_within(source))
            .await
            .unwrap_or_else(|_| {
                Err(Error::ServerMisbehaved {
                    url: self.server.url().to_owned(),
                    what: format!("reading {}", self.gun),
                    reason: format!(
                        "not done within the read deadline of {} s \
                         (remote_server.read_deadline_seconds in the config file)",
                        deadline.as_secs()
                    ),
                })
            })
    }

    async fn walk_within(&self, source: Source) -> Result<Option<VerifiedCollection>, Error> {
        let gun = &self.gun;
        let ctx = |e| Error::tuf(self.context(source), e);
        let now = SystemTime::now();
        let trusted_root = self.trust.read(gun, "root")?;
        let latest_root = match source {
            Source::Server => self.server.role(gun, "root", None).await?,
            Source::Cache => trusted_root.clone(),
        };
        let Some(latest_root) = latest_root else {
            return Ok(None);
        };
        let mut updater = match trusted_root {
            Some(cached) => Updater::new(gun, cached, RootTrust::Cached, now).map_err(|e| {
                let path = self
                    .trust
                    .metadata_path(gun, "root")
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                Error::tuf(
                    format!("the trusted root of {gun} ({path}) is not valid"),
                    e,
                )
            })?,
            None => Updater::new(gun, latest_root.clone(), self.first_use()?, now).map_err(ctx)?,
        }
        .with_prior(self.prior_versions()?);
        let latest = peek_version(&latest_root).unwrap_or_default();
        // The cache holds the root it trusts, never older ones: nothing to walk there.
        let intermediates = updater.intermediate_root_versions(latest).map_err(ctx)?;
        for version in intermediates {
            let bytes = match source {
                Source::Server => self.server.root_version(gun, version).await?,
                Source::Cache => None,
            }
            .ok_or_else(|| self.missing(source, &format!("{version}.root.json")))?;
            updater.update_root(bytes).map_err(ctx)?;
        }
        updater.update_root(latest_root).map_err(ctx)?;

        let timestamp = self.fetch_role(source, "timestamp", None).await?;
        updater.update_timestamp(timestamp).map_err(ctx)?;
        let snapshot_meta = updater.snapshot_meta().cloned();
        let snapshot = self
            .fetch_role(source, "snapshot", snapshot_meta.as_ref())
            .await?;
        updater.update_snapshot(snapshot).map_err(ctx)?;
        let targets_meta = updater.role_meta("targets").cloned();
        let targets = self
            .fetch_role(source, "targets", targets_meta.as_ref())
            .await?;
        updater.update_targets(targets).map_err(ctx)?;

        while let Some((role, meta)) = updater.next_delegation().map_err(ctx)? {
            let bytes = self.fetch_role(source, &role, Some(&meta)).await?;
            if let Err(e) = updater.update_delegation(&role, bytes) {
                if is_skippable(&e) {
                    warn!("{gun}: ignoring delegation {role}: {e}");
                    updater.skip_delegation(&role, &e);
                } else {
                    return Err(ctx(e));
                }
            }
        }
        let verified = updater.finish().map_err(ctx)?;
        if source == Source::Server {
            self.cache(&verified)?;
        }
        Ok(Some(verified))
    }

    /// A role's file from `source`; from the server by the hash the listing role pins, if any,
    /// and read no further than the length it lists. (The updater checks cached files against
    /// that hash too.)
    async fn fetch_role(
        &self,
        source: Source,
        role: &str,
        listed: Option<&FileMeta>,
    ) -> Result<Vec<u8>, Error> {
        let hex = listed.and_then(FileMeta::sha256_hex);
        let limit = listed.map(|m| m.length);
        let bytes = match (source, hex) {
            (Source::Server, Some(hex)) => {
                self.server
                    .role_by_hash(&self.gun, role, &hex, limit)
                    .await?
            }
            (Source::Server, None) => self.server.role(&self.gun, role, limit).await?,
            (Source::Cache, _) => self.trust.read(&self.gun, role)?,
        };
        bytes.ok_or_else(|| self.missing(source, &format!("{role}.json")))
    }

    /// Writes what was verified to the trust dir (only files that changed) and drops cached
    /// delegations the collection no longer has. A delegation that was only skipped (or sits
    /// under a skipped one) keeps its cached file: that file's version is the rollback
    /// baseline the next update checks against.
    fn cache(&self, verified: &VerifiedCollection) -> Result<(), Error> {
        let files = verified.files();
        let baselines = verified.prior_versions().delegations;
        for (role, bytes) in &files {
            if self.trust.read(&self.gun, role)?.as_deref() != Some(*bytes) {
                debug!(role, "caching");
                self.trust.write(&self.gun, role, bytes)?;
            }
        }
        for role in self.trust.cached_roles(&self.gun)? {
            if role.starts_with("targets/")
                && !files.contains_key(&role)
                && !baselines.contains_key(&role)
            {
                self.trust.remove(&self.gun, &role)?;
            }
        }
        Ok(())
    }

    /// An editor for the next change: the verified collection, or, before the first
    /// publish, a new collection over the keys `sigil init` put in the cached root.
    pub(crate) fn editor(
        &self,
        verified: Option<&VerifiedCollection>,
    ) -> Result<CollectionEditor, Error> {
        let now = SystemTime::now();
        if let Some(v) = verified {
            return Ok(CollectionEditor::from_collection(v, now));
        }
        let Some(bytes) = self.trust.read(&self.gun, "root")? else {
            return Err(Error::NoCollection {
                gun: self.gun.clone(),
                server: self.server.url().to_owned(),
            });
        };
        let root = Metadata::<Root>::from_bytes("root", bytes)
            .map_err(|e| Error::tuf(format!("the unpublished root of {}", self.gun), e))?;
        CollectionEditor::create_over_signed_root(&self.gun, &root, now)
            .map_err(|e| Error::tuf(format!("the unpublished root of {}", self.gun), e))
    }

    /// Signs an edited collection with the keys sigild lets the caller use (each changed role
    /// once, whatever the number of targets).
    pub(crate) async fn sign(
        &self,
        editor: CollectionEditor,
        signers: &[DaemonSigner],
    ) -> Result<SignedCollection, Error> {
        let refs: Vec<&dyn Signer> = signers.iter().map(|s| s as &dyn Signer).collect();
        editor.sign(&refs).await.map_err(|e| match e {
            sigil_tuf::Error::MissingSigners {
                role,
                available,
                threshold,
            } => Error::MissingKey(format!(
                "cannot sign {role} of {}: sigild lets you use {available} of its keys, {threshold} \
                 needed (see `sigil key list`; a delegation's key must be on a token you may use)",
                self.gun
            )),
            e => Error::tuf(format!("signing {}", self.gun), e),
        })
    }

    /// Sends a signed collection to the server and, once accepted, caches what was published.
    pub(crate) async fn upload(&self, signed: &SignedCollection) -> Result<(), Error> {
        let size: usize = signed.updates().values().map(Vec::len).sum();
        if size > 1024 * 1024 {
            eprintln!(
                "uploading {} to {} ({:.1} MB)",
                signed
                    .updates()
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                self.server.url(),
                size as f64 / 1e6
            );
        }
        self.server.publish(&self.gun, signed.updates()).await?;
        for (role, bytes) in signed.files() {
            self.trust.write(&self.gun, role, bytes)?;
        }
        if let Some(snapshot) = signed.updates().get("snapshot") {
            self.trust.write(&self.gun, "snapshot", snapshot)?;
        }
        for role in signed.removed() {
            self.trust.remove(&self.gun, role)?;
        }
        Ok(())
    }

    /// Applies `changes` to the current collection (or the unpublished one), signs every
    /// changed role through sigild and publishes. Returns the roles sent, empty when there was
    /// nothing to publish.
    pub(crate) async fn publish(
        &self,
        daemon: &DaemonClient,
        changes: &[(String, Change)],
    ) -> Result<Vec<String>, Error> {
        let verified = self.fetch().await?;
        let mut editor = self.editor(verified.as_ref())?;
        if changes.len() >= PROGRESS_THRESHOLD {
            eprintln!("applying {} staged changes to {}", changes.len(), self.gun);
        }
        editor
            .apply_changes(changes.iter().map(|(name, c)| (name.clone(), c)))
            .map_err(|e| Error::tuf(format!("applying staged changes to {}", self.gun), e))?;
        if verified.is_some() && !editor.is_dirty() {
            return Ok(Vec::new());
        }
        let signers = visible_signers(daemon).await?;
        let signed = self.sign(editor, &signers).await?;
        self.upload(&signed).await?;
        Ok(signed.updates().keys().cloned().collect())
    }
}

/// Whether a cached top-level role file carries its threshold of signatures from the keys the
/// cached root names for it.
fn cached_signature_ok(
    root: Option<&Metadata<Root>>,
    role: &str,
    kind: RoleType,
    bytes: &[u8],
) -> bool {
    let Some(root) = root else { return false };
    let Some(threshold) = root.body().role(kind).map(|r| r.threshold) else {
        return false;
    };
    let keys = root.body().role_keys(kind);
    let signed = match kind {
        RoleType::Timestamp => Metadata::<Timestamp>::from_bytes(role, bytes.to_vec())
            .and_then(|m| verify_signatures(role, m.signed(), &keys, threshold)),
        RoleType::Snapshot => Metadata::<Snapshot>::from_bytes(role, bytes.to_vec())
            .and_then(|m| verify_signatures(role, m.signed(), &keys, threshold)),
        RoleType::Targets => Metadata::<Targets>::from_bytes(role, bytes.to_vec())
            .and_then(|m| verify_signatures(role, m.signed(), &keys, threshold)),
        RoleType::Root => return false,
    };
    signed.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_tuf::sign::testing::{MemorySigner, block_on};
    use sigil_tuf::{CollectionKeys, TufKey};

    /// A cached file the root's keys signed raises the rollback floor; the same file with one
    /// byte changed (or signed by a stranger) does not, so a corrupt cache cannot lock the
    /// client out of genuine data.
    #[test]
    fn only_cached_files_the_root_signed_count_for_rollback() {
        let gun = "example.com/app";
        let now = SystemTime::now();
        let signers = [
            MemorySigner::p256(),
            MemorySigner::p256(),
            MemorySigner::p256(),
            MemorySigner::p256(),
        ];
        let [root_key, targets, snapshot, timestamp] = &signers;
        let cert = block_on(sigil_tuf::x509::build_root_certificate(
            gun,
            root_key,
            now,
            sigil_tuf::x509::ROOT_CERT_LIFETIME,
        ))
        .expect("cert");
        let bare = |s: &MemorySigner| TufKey::from_public_key(s.public_key());
        let keys = CollectionKeys {
            root: vec![TufKey::from_certificate_pem(&cert.to_pem().expect("pem")).expect("key")],
            targets: vec![bare(targets)],
            snapshot: vec![bare(snapshot)],
            timestamp: vec![bare(timestamp)],
        };
        let editor = CollectionEditor::create(gun, &keys, now).expect("editor");
        let all: Vec<&dyn Signer> = signers.iter().map(|s| s as &dyn Signer).collect();
        let signed = block_on(editor.sign(&all)).expect("sign");
        let root_bytes = signed.files().get("root").expect("root").clone();
        let root = Metadata::<Root>::from_bytes("root", root_bytes).expect("root parses");
        let targets_bytes = signed.files().get("targets").expect("targets").clone();
        assert!(cached_signature_ok(
            Some(&root),
            "targets",
            RoleType::Targets,
            &targets_bytes
        ));
        let mut corrupt = targets_bytes.clone();
        let at = corrupt.len() / 2;
        corrupt[at] ^= 1;
        assert!(!cached_signature_ok(
            Some(&root),
            "targets",
            RoleType::Targets,
            &corrupt
        ));
        // Signed, but by a key root does not name for snapshot.
        assert!(!cached_signature_ok(
            Some(&root),
            "snapshot",
            RoleType::Snapshot,
            &targets_bytes
        ));
        assert!(!cached_signature_ok(
            None,
            "targets",
            RoleType::Targets,
            &targets_bytes
        ));
    }
}
