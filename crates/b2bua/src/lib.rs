//! The callvault back-to-back user agent.
//!
//! One socket faces the practice PBX and one faces the trunk provider. Every call is two
//! dialogs, one per side, joined by a [`call`] that maps Call-IDs, tags and CSeqs between
//! them and rewrites Via, Contact, Record-Route and SDP so that each side sees only
//! callvault.

mod call;
mod config;
mod control;
mod core;
mod dispatch;
mod early;
mod hook;
mod invite;
mod origin;
mod playout;
mod registrar;
mod relay;
mod rewrite;
mod stats;
mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use callvault_media::{MediaEngine, RelayConfig};
use callvault_sip::transaction::TimerConfig;
use tokio::sync::mpsc;
use tracing::info;

/// What a hook needs to mirror a call's media.
pub use callvault_media::{tap, Side, Tap, TapPacket, TapReceiver};
pub use config::{B2buaConfig, SideConfig, Transport};
pub use control::{control_channel, Controller, Controls, Health};
pub use hook::{
    CallDirection, CallHook, CallInfo, EarlyAnnouncement, EndReason, MediaUpdate, NoRecording,
    TapChange,
};
pub use stats::{B2buaSnapshot, B2buaStats};
pub use transport::TransportStats;

use crate::core::Sides;
use crate::rewrite::LocalAddress;
use crate::transport::{Receiver, SideTransport};

/// Why the B2BUA could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum B2buaError {
    #[error("invalid media configuration")]
    Media(#[source] callvault_media::MediaError),
    #[error("cannot bind the {side} SIP socket on {address}")]
    Bind {
        side: &'static str,
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the B2BUA until `shutdown` resolves, then ends every call at once.
///
/// `stats` is counted into as the B2BUA works; the caller reads it for metrics.
pub async fn serve(
    config: B2buaConfig,
    hook: Arc<dyn CallHook>,
    stats: Arc<B2buaStats>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), B2buaError> {
    let (controller, controls) = control_channel();
    let (core, inbound) = start(config, hook, stats).await?;
    let run = core.run(inbound, controls);
    tokio::pin!(run);
    tokio::select! {
        () = &mut run => return Ok(()),
        () = shutdown => {}
    }
    // With its last controller gone, the loop ends every call and returns.
    drop(controller);
    run.await;
    Ok(())
}

/// Runs the B2BUA until a drain through `controls` ends, or every
/// [`Controller`] is dropped.
pub async fn serve_controlled(
    config: B2buaConfig,
    hook: Arc<dyn CallHook>,
    stats: Arc<B2buaStats>,
    controls: Controls,
) -> Result<(), B2buaError> {
    let (core, inbound) = start(config, hook, stats).await?;
    core.run(inbound, controls).await;
    Ok(())
}

/// Binds both sides and starts their receive loops.
async fn start(
    config: B2buaConfig,
    hook: Arc<dyn CallHook>,
    stats: Arc<B2buaStats>,
) -> Result<(core::Core, mpsc::Receiver<transport::Inbound>), B2buaError> {
    let media = MediaEngine::new(RelayConfig {
        port_min: config.media_port_min,
        port_max: config.media_port_max,
        rtp_timeout: config.rtp_timeout,
    })
    .map_err(B2buaError::Media)?;
    stats.set_media(&media);
    let (events, inbound) = mpsc::channel(1024);
    let receiver = |side, peer| Receiver {
        side,
        peer,
        events: events.clone(),
        stats: stats.clone(),
    };
    let (pbx, pbx_bound) =
        SideTransport::start(&config.pbx, receiver(Side::Pbx, config.pbx.peer)).await?;
    let (trunk, trunk_bound) =
        SideTransport::start(&config.trunk, receiver(Side::Trunk, config.trunk.peer)).await?;
    let local = Sides {
        pbx: local_address(&config.pbx, pbx_bound),
        trunk: local_address(&config.trunk, trunk_bound),
    };
    info!(pbx = %local.pbx.address, trunk = %local.trunk.address, "sip listening");
    let core = core::Core {
        local,
        peer: Sides {
            pbx: config.pbx.peer,
            trunk: config.trunk.peer,
        },
        transports: Sides { pbx, trunk },
        media,
        media_ips: Sides {
            pbx: config.pbx.listen.ip(),
            trunk: config.trunk.listen.ip(),
        },
        hook,
        timers: TimerConfig {
            t1: config.t1,
            ..TimerConfig::default()
        },
        rtp_timeout: config.rtp_timeout,
        registrar: registrar::Registrar::load(&config.state_dir),
        stats,
        servers: HashMap::new(),
        clients: HashMap::new(),
        calls: HashMap::new(),
        call_index: HashMap::new(),
        next_call: 1,
        draining: None,
    };
    Ok((core, inbound))
}

/// The address a side sees: the advertised IP (or the listen IP) and the bound port.
fn local_address(side: &SideConfig, bound: SocketAddr) -> LocalAddress {
    let ip = side.advertise.unwrap_or(side.listen.ip());
    LocalAddress {
        address: SocketAddr::new(ip, bound.port()),
        transport: side.transport,
    }
}
