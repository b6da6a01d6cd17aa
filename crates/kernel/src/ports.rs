//! Ports handed to kernels that have not bound them yet. Between our reservation listeners
//! being dropped (right after the spawn) and the kernel binding its ports, the OS could hand
//! the same port to the next launch; every launch therefore skips ports claimed here, so
//! launches need not be serialised beyond reservation + spawn and kernels start in parallel.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use tokio::net::TcpListener;

use crate::{KernelError, Result};

static CLAIMED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Ports claimed for one launch; released when dropped (once the kernel is connected or
/// failed).
#[derive(Debug)]
pub struct PortClaim {
    ports: Vec<u16>,
}

impl Drop for PortClaim {
    fn drop(&mut self) {
        if let Ok(mut c) = CLAIMED.lock() {
            for p in &self.ports {
                c.remove(p);
            }
        }
    }
}

/// Reserves `n` loopback ports no other pending launch of this process holds. Returns the
/// ports, the listeners holding them (drop them right after the spawn) and the claim.
pub async fn reserve(n: usize) -> Result<(Vec<u16>, Vec<TcpListener>, PortClaim)> {
    // Listeners on ports other launches claimed stay open until we are done, so the OS
    // hands out different ones on the next try.
    let mut skipped: Vec<TcpListener> = Vec::new();
    for _ in 0..64 {
        let (ports, listeners) =
            jupyter_zmq_client::peek_ports_with_listeners(IpAddr::V4(Ipv4Addr::LOCALHOST), n)
                .await
                .map_err(|e| KernelError::connection("reserving kernel ports", e))?;
        let Ok(mut claimed) = CLAIMED.lock() else {
            return Ok((ports.clone(), listeners, PortClaim { ports: vec![] }));
        };
        if ports.iter().all(|p| !claimed.contains(p)) {
            claimed.extend(ports.iter().copied());
            let claim = PortClaim {
                ports: ports.clone(),
            };
            return Ok((ports, listeners, claim));
        }
        skipped.extend(listeners);
    }
    Err(KernelError::io(
        "reserving kernel ports",
        std::io::Error::other("every port offered was claimed by another kernel start"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_reservations_never_share_a_port() {
        let (a, la, ca) = reserve(5).await.unwrap();
        drop(la); // as after a spawn: the ports are free for the OS again
        let (b, _lb, _cb) = reserve(5).await.unwrap();
        assert!(a.iter().all(|p| !b.contains(p)), "{a:?} vs {b:?}");
        drop(ca);
        assert!(CLAIMED.lock().unwrap().iter().all(|p| !a.contains(p)));
    }
}
