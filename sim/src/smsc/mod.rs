//! The simulated SMSC: SMPP listener plus control API.

mod conn;
mod control;
mod hooks;
mod state;
pub(crate) mod time;

pub use state::{DlrSettings, Faults, IdFormat, SimState};

use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::warn;

/// Accepts ESME connections forever.
pub async fn serve_smpp(listener: TcpListener, state: Arc<SimState>) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                tokio::spawn(conn::serve(state.clone(), sock));
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves the control API forever.
pub async fn serve_control(listener: TcpListener, state: Arc<SimState>) -> std::io::Result<()> {
    axum::serve(listener, control::router(state)).await
}
