//! Who may connect to the private cluster: whoever presents the superuser's password over the
//! Unix socket, and nobody over TCP. The password is generated at creation and kept 0600 in
//! hubgate's own directory, so it is hubgate's user (and root) alone who can read it.

use std::fs;
use std::io;
use std::path::Path;

use rand::RngCore as _;

use super::{ManagedCluster, ManagedError, SUPERUSER, check, io_err, run, write_durably};

const PASSWORD_FILE: &str = "password";

const HBA: &str = "# Written by hubgate on every start; edits are lost.\n\
                   # The Unix socket only, with the password hubgate keeps in its own directory.\n\
                   local all all scram-sha-256\n";

/// Only while an older cluster is given its password: the socket directory (0700, the server's
/// user's) already keeps everyone but that user and root away from it.
const HBA_WHILE_UPGRADING: &str = "# Written by hubgate while it sets a password; edits are lost.\n\
                                   local all all trust\n";

pub(super) fn read_password(dir: &Path) -> Result<Option<String>, ManagedError> {
    let path = dir.join(PASSWORD_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_string()).filter(|p| !p.is_empty())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path, e)),
    }
}

/// Written before the cluster is created, so an interrupted initdb is retried with it.
pub(super) fn create_password(dir: &Path) -> Result<String, ManagedError> {
    let password = generate_password();
    store_password(dir, &password)?;
    Ok(password)
}

fn store_password(dir: &Path, password: &str) -> Result<(), ManagedError> {
    write_durably(&dir.join(PASSWORD_FILE), format!("{password}\n").as_bytes())
}

/// Hex, so it needs no quoting in SQL, URLs or initdb's password file.
fn generate_password() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ManagedCluster {
    /// Returns whether the file changed, i.e. whether a running server must reload it.
    pub(super) fn write_hba(&self) -> Result<bool, ManagedError> {
        self.write_hba_text(HBA)
    }

    pub(super) fn write_hba_text(&self, text: &str) -> Result<bool, ManagedError> {
        let path = self.data_dir.join("pg_hba.conf");
        if fs::read_to_string(&path).ok().as_deref() == Some(text) {
            return Ok(false);
        }
        self.write_server_file(&path, text.as_bytes())?;
        Ok(true)
    }

    /// A cluster made by an older version authenticates by `trust` and has no password (nor has
    /// one whose password file was lost): connect as the server's user may, set a new password,
    /// and keep it. The caller then installs the password-only pg_hba.conf and reloads.
    pub(super) async fn give_password(&mut self) -> Result<(), ManagedError> {
        tracing::info!(data = %self.data_dir.display(), "giving the private PostgreSQL cluster's superuser a password");
        self.write_hba_text(HBA_WHILE_UPGRADING)?;
        if self.is_running().await? {
            self.wait_ready().await?;
            self.reload().await?;
        } else {
            self.clear_stale_lock_files()?;
            self.start_server().await?;
        }
        let password = generate_password();
        // Through psql's standard input, never its command line, which any local user can read.
        self.psql(
            "postgres",
            &format!("ALTER ROLE {SUPERUSER} PASSWORD '{password}';\n"),
        )
        .await?;
        store_password(&self.dir, &password)?;
        self.password = password;
        Ok(())
    }

    /// Makes a running server read pg_hba.conf again.
    pub(super) async fn reload(&self) -> Result<(), ManagedError> {
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("reload").arg("-D").arg(&self.data_dir).arg("-s");
        let output = run(cmd, None).await?;
        check(&output, "pg_ctl reload")
    }
}
