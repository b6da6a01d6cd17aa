//! The transport boundary of a [`crate::KernelClient`]: where its requests go. Routing by
//! `parent_header.msg_id`, the orphan buffer and kernel states are shared (`client.rs`); only
//! sending differs. Two transports: the kernel's own ZeroMQ sockets (a local kernel we
//! launched), and the kernel WebSocket of a Jupyter Server / Kernel Gateway (`remote`).

use jupyter_protocol::JupyterMessage;
use jupyter_zmq_client::Connection;

use crate::wire::Channel;
use crate::{KernelError, Result};

type SendHalf = Connection<zeromq::DealerSendHalf>;

/// The send side of one kernel connection.
// One per kernel client, inside its `Arc`: the size of the ZeroMQ variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Sink {
    /// ZeroMQ DEALER sockets of a local kernel (tokio mutexes: held across the send only).
    Zmq {
        shell: tokio::sync::Mutex<SendHalf>,
        control: tokio::sync::Mutex<SendHalf>,
        stdin: tokio::sync::Mutex<SendHalf>,
    },
    /// A remote kernel's WebSocket: messages are queued for its connection task, which sends
    /// them once (re)connected.
    Remote(crate::remote::ws::Outbox),
}

impl Sink {
    /// Sends `msg` on `channel`. `session` is the client session id (`header.session`).
    pub(crate) async fn send(
        &self,
        channel: Channel,
        msg: JupyterMessage,
        session: &str,
    ) -> Result<()> {
        match self {
            Sink::Zmq {
                shell,
                control,
                stdin,
            } => {
                let (half, what) = match channel {
                    Channel::Shell => (shell, "sending on shell"),
                    Channel::Control => (control, "sending on control"),
                    Channel::Stdin => (stdin, "sending on stdin"),
                    Channel::IoPub => return Err(KernelError::Closed),
                };
                half.lock()
                    .await
                    .send(msg)
                    .await
                    .map_err(|e| KernelError::connection(what, e))
            }
            Sink::Remote(outbox) => outbox.send(channel, msg, session),
        }
    }
}
