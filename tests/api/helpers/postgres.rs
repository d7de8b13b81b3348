//! A PostgreSQL cluster of the test's own, so the test can stop and start it.

use std::path::PathBuf;
use std::process::Command;

use super::tls::ServerCert;

pub struct TestPostgres {
    pub url: String,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    dir: tempfile::TempDir,
}

fn server_binaries() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql; run scripts/test.sh, which installs them")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    candidates.sort();
    candidates
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl TestPostgres {
    /// initdb and start a cluster on a free port. initdb and postgres refuse to run as
    /// root, so as root they run as the `postgres` user.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// [`TestPostgres::start`] with `ssl = on` under `server`'s certificate, accepting TCP
    /// connections over TLS only, so a client that connects has spoken TLS.
    pub fn start_tls(server: &ServerCert) -> Self {
        Self::start_with(Some(server))
    }

    fn start_with(tls: Option<&ServerCert>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown to postgres");
        }
        let port = super::free_port();
        let pg = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin: server_binaries(),
            data: dir.path().join("data"),
            as_postgres,
            dir,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                pg.data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-instructions",
            ],
        );
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            pg.dir.path().display()
        );
        if let Some(server) = tls {
            pg.install_tls(server);
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        std::fs::write(pg.dir.path().join("options"), &options).unwrap();
        pg.ctl("start");
        pg
    }

    /// Puts the certificate and key in the data directory, owned by the server's user (the
    /// server refuses a key others can read), and allows TCP connections over TLS only.
    fn install_tls(&self, server: &ServerCert) {
        use std::os::unix::fs::PermissionsExt;
        let cert = self.data.join("server.crt");
        let key = self.data.join("server.key");
        std::fs::copy(&server.cert, &cert).expect("copy the server certificate");
        std::fs::copy(&server.key, &key).expect("copy the server key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            self.data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        if self.as_postgres {
            let status = Command::new("chown")
                .arg("postgres:")
                .args([&cert, &key, &self.data.join("pg_hba.conf")])
                .status()
                .expect("chown");
            assert!(status.success(), "chown the TLS files to postgres");
        }
    }

    /// A server program, run as the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        let binary = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(binary);
            command
        } else {
            Command::new(binary)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn ctl(&self, action: &str) {
        let options = std::fs::read_to_string(self.dir.path().join("options")).unwrap();
        let log = self.dir.path().join("postgres.log");
        let data = self.data.to_str().unwrap();
        match action {
            "start" => self.run(
                "pg_ctl",
                &[
                    "-D",
                    data,
                    "-l",
                    log.to_str().unwrap(),
                    "-o",
                    &options,
                    "-w",
                    "start",
                ],
            ),
            _ => self.run("pg_ctl", &["-D", data, "-m", "fast", "-w", "stop"]),
        }
    }

    /// Stops the server; connected clients are disconnected.
    pub fn stop(&self) {
        self.ctl("stop");
    }

    /// Starts it again on the same port.
    pub fn restart(&self) {
        self.ctl("start");
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
