//! `[audit_sink]`: where each committed audit record is also written, as one JSON line,
//! after its commit. The config deserialises into it; it opens no file or socket.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// `[audit_sink]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuditSinkConfig {
    /// Where the lines go.
    pub kind: SinkKind,
    /// For `kind = "file"`: the file lines are appended to, reopened on SIGHUP.
    pub path: Option<PathBuf>,
    /// For `kind = "syslog"`: a Unix datagram socket, or `udp://IP:PORT`.
    pub syslog: SyslogTarget,
    /// For `kind = "syslog"`: the facility of every message.
    pub facility: Facility,
    /// Committed lines that may wait for the sink; beyond it lines are dropped and counted.
    pub queue_capacity: usize,
}

impl Default for AuditSinkConfig {
    fn default() -> Self {
        Self {
            kind: SinkKind::None,
            path: None,
            syslog: SyslogTarget::Unix(PathBuf::from("/dev/log")),
            facility: Facility::Authpriv,
            queue_capacity: 10_000,
        }
    }
}

/// The kinds of sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SinkKind {
    /// Lines are not shipped; Postgres alone holds the records.
    None,
    /// The process's standard output.
    Stdout,
    /// A file, appended to.
    File,
    /// Syslog, RFC 5424.
    Syslog,
}

/// Where syslog messages are sent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) enum SyslogTarget {
    /// A local Unix datagram socket such as `/dev/log`.
    Unix(PathBuf),
    /// A UDP address.
    Udp(SocketAddr),
}

impl TryFrom<String> for SyslogTarget {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        if let Some(address) = value.strip_prefix("udp://") {
            return address.parse().map(Self::Udp).map_err(|_| {
                format!("{value:?} is not udp://IP:PORT (an IP address, not a host name)")
            });
        }
        if value.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(value)));
        }
        Err(format!(
            "{value:?} is neither the absolute path of a Unix datagram socket nor udp://IP:PORT"
        ))
    }
}

/// Syslog facilities an audit stream may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Facility {
    /// Security and authorization (4).
    Auth,
    /// Private security and authorization (10), usually kept in a file only root reads.
    Authpriv,
    /// System daemons (3).
    Daemon,
    /// Local use 0 (16).
    Local0,
    /// Local use 1 (17).
    Local1,
    /// Local use 2 (18).
    Local2,
    /// Local use 3 (19).
    Local3,
    /// Local use 4 (20).
    Local4,
    /// Local use 5 (21).
    Local5,
    /// Local use 6 (22).
    Local6,
    /// Local use 7 (23).
    Local7,
}

impl Facility {
    /// The facility's number in RFC 5424.
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Auth => 4,
            Self::Authpriv => 10,
            Self::Daemon => 3,
            Self::Local0 => 16,
            Self::Local1 => 17,
            Self::Local2 => 18,
            Self::Local3 => 19,
            Self::Local4 => 20,
            Self::Local5 => 21,
            Self::Local6 => 22,
            Self::Local7 => 23,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syslog_target_is_a_socket_path_or_a_udp_address() {
        let parse = |s: &str| SyslogTarget::try_from(s.to_owned());
        assert_eq!(
            parse("/dev/log"),
            Ok(SyslogTarget::Unix(PathBuf::from("/dev/log")))
        );
        assert_eq!(
            parse("udp://127.0.0.1:514"),
            Ok(SyslogTarget::Udp("127.0.0.1:514".parse().unwrap()))
        );
        for bad in [
            "dev/log",
            "udp://syslog.internal:514",
            "udp://127.0.0.1",
            "tcp://1.2.3.4:1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
