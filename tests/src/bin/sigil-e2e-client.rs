//! Test helper: performs one sigil.v1 RPC against a socket and prints the outcome (who it ran
//! as, the gRPC status, the keys or signature returned) as JSON. The end-to-end tests run it
//! as uid 65534 to see what the policy lets a stranger do, which an in-process client cannot.
//!
//! Usage: `sigil-e2e-client SOCKET RPC_JSON`, where RPC_JSON is a serialised `sigil_e2e::Rpc`.
//! Exits 0 whenever the RPC was made (whatever its status), 2 on a usage or connection error.

use std::path::PathBuf;
use std::process::ExitCode;

use sigil_e2e::{Rpc, perform, try_connect};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, rpc] = args.as_slice() else {
        eprintln!("usage: sigil-e2e-client SOCKET RPC_JSON");
        return ExitCode::from(2);
    };
    let rpc: Rpc = match serde_json::from_str(rpc) {
        Ok(rpc) => rpc,
        Err(e) => {
            eprintln!("sigil-e2e-client: bad RPC {rpc:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sigil-e2e-client: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let socket = PathBuf::from(socket);
    let outcome = runtime.block_on(async {
        let mut client = try_connect(&socket).await.map_err(|e| format!("{e:?}"))?;
        Ok::<_, String>(perform(&mut client, &rpc).await)
    });
    match outcome {
        Ok(outcome) => match serde_json::to_string(&outcome) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sigil-e2e-client: {e}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("sigil-e2e-client: connecting to {}: {e}", socket.display());
            ExitCode::from(2)
        }
    }
}
