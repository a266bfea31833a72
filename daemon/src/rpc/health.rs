//! gRPC health for a listener: SERVING while every backend answers, NOT_SERVING as soon as one
//! does not, under the service names its clients poll.

use std::sync::Arc;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::service::SigningService;

/// How often backend health is folded into the health service.
const POLL: Duration = Duration::from_millis(500);

/// A health service reporting `names` (and the server-wide "") from the backends' state, and
/// the task that keeps it current (abort it when the listener stops).
pub fn spawn(
    service: Arc<SigningService>,
    names: &'static [&'static str],
) -> (HealthServer<impl Health>, tokio::task::JoinHandle<()>) {
    let (reporter, server) = tonic_health::server::health_reporter();
    let task = tokio::spawn(async move {
        let mut last = None;
        loop {
            let status = if service.probe().await {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if last != Some(status) {
                for name in std::iter::once("").chain(names.iter().copied()) {
                    reporter.set_service_status(name, status).await;
                }
                if last.is_some() {
                    tracing::warn!(%status, "backend health changed");
                }
                last = Some(status);
            }
            tokio::time::sleep(POLL).await;
        }
    });
    (server, task)
}
