//! Who is calling: the Unix peer credentials (`SO_PEERCRED`) of the connection a request came
//! in on, read before any handler runs. No credentials, no service.

use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

use crate::policy::Caller;

/// The caller of a request received on the Unix socket.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|info| info.peer_cred)
        .map(|cred| Caller {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        })
        .ok_or_else(|| Status::permission_denied("caller credentials unavailable"))
}
