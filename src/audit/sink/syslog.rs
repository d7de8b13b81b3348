//! Syslog messages in the RFC 5424 format, sent as one datagram each to a local Unix socket
//! (such as `/dev/log`) or over UDP. Small enough to write here: the format is one header
//! line, and the crates that offer it block on their sockets.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{SecondsFormat, Utc};
use tokio::net::{UdpSocket, UnixDatagram};

use super::{Facility, SyslogTarget};

/// Every message's severity: informational (6).
const SEVERITY_INFO: u8 = 6;
/// APP-NAME.
const APP_NAME: &str = "ecr-token-broker";
/// MSGID: what kind of message this is.
const MSG_ID: &str = "audit";

/// A syslog destination and the header fields that stay the same for every message.
pub(super) struct Syslog {
    socket: Socket,
    /// `<PRI>1`, the start of every header.
    pri: String,
    hostname: String,
    procid: u32,
}

enum Socket {
    /// Unbound: each message is sent to the path, so a restarted syslog daemon (a new
    /// socket at the same path) is reached again without reconnecting.
    Unix(UnixDatagram, PathBuf),
    Udp(UdpSocket, SocketAddr),
}

impl Syslog {
    /// A sender to `target`, with every message at `facility`.
    pub(super) fn new(target: &SyslogTarget, facility: Facility) -> anyhow::Result<Self> {
        let socket = match target {
            SyslogTarget::Unix(path) => Socket::Unix(
                UnixDatagram::unbound().context("opening a Unix datagram socket")?,
                path.clone(),
            ),
            SyslogTarget::Udp(address) => {
                let local: SocketAddr = if address.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let socket = std::net::UdpSocket::bind(local).context("binding a UDP socket")?;
                socket.set_nonblocking(true)?;
                Socket::Udp(UdpSocket::from_std(socket)?, *address)
            }
        };
        Ok(Self {
            socket,
            pri: format!("<{}>1", facility.code() * 8 + SEVERITY_INFO),
            hostname: hostname(),
            procid: std::process::id(),
        })
    }

    /// Sends `message` (one line of JSON) as one datagram.
    pub(super) async fn send(&self, message: &str) -> std::io::Result<()> {
        let datagram = self.format(message);
        match &self.socket {
            Socket::Unix(socket, path) => socket.send_to(datagram.as_bytes(), path).await,
            Socket::Udp(socket, address) => socket.send_to(datagram.as_bytes(), address).await,
        }
        .map(drop)
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`: no structured data, and the
    /// message without a BOM, so that what follows the header is exactly the JSON line.
    fn format(&self, message: &str) -> String {
        let timestamp = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        format!(
            "{} {timestamp} {} {APP_NAME} {} {MSG_ID} - {message}",
            self.pri, self.hostname, self.procid
        )
    }
}

/// The host's name as RFC 5424 allows it (1 to 255 printable ASCII characters, no space),
/// or `-`, its nil value.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    let valid = (1..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic());
    if valid { name } else { "-" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_carries_the_rfc_5424_header_then_the_line_as_it_is() {
        let syslog = Syslog::new(
            &SyslogTarget::Udp("127.0.0.1:9".parse().unwrap()),
            Facility::Authpriv,
        )
        .unwrap();
        let message = syslog.format(r#"{"id":1}"#);

        let fields: Vec<&str> = message.splitn(8, ' ').collect();
        assert_eq!(fields[0], "<86>1", "authpriv.info");
        assert!(
            chrono::DateTime::parse_from_rfc3339(fields[1]).is_ok(),
            "{message}"
        );
        assert!(!fields[2].is_empty());
        assert_eq!(fields[3], "ecr-token-broker");
        assert_eq!(fields[4], std::process::id().to_string());
        assert_eq!(&fields[5..], ["audit", "-", r#"{"id":1}"#]);
    }
}
