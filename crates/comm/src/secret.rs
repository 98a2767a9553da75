//! The job secret every connection must prove it knows.
//!
//! A secret is 32 random bytes. Launchers generate one per job and hand it to ranks through
//! the `CHORUS_SECRET` environment variable (hex) or a file named by `CHORUS_SECRET_FILE`
//! that only its owner can read. The secret itself never crosses the wire: the handshake
//! proves knowledge of it with HMAC-SHA256 over fresh nonces, and between hosts the
//! connection's TLS key is derived from it too (see [`crate::tls`]).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Environment variable holding the secret as hex.
pub const SECRET_ENV: &str = "CHORUS_SECRET";
/// Environment variable naming a file that holds the secret as hex.
pub const SECRET_FILE_ENV: &str = "CHORUS_SECRET_FILE";

/// A job's shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A fresh random secret.
    pub fn generate() -> Result<Secret> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b)
            .map_err(|e| Error::Config(format!("the operating system gave no random bytes for the job secret: {e}")))?;
        Ok(Secret(b))
    }

    /// The raw bytes (for HMAC keys).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A token for `purpose` derived from the secret (HMAC-SHA256, 32 hex digits): it
    /// proves knowledge of the secret without revealing it, e.g. the dashboard's
    /// `?token=`.
    pub fn derive_token(&self, purpose: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(purpose.as_bytes());
        hex(&m.finalize().into_bytes()[..16])
    }

    /// Hex form, as stored in `CHORUS_SECRET` and secret files.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses the hex form.
    pub fn from_hex(s: &str) -> Result<Secret> {
        let s = s.trim();
        let bad = || Error::Config("a chorus secret must be 64 hex digits (as written by the launcher)".into());
        if s.len() != 64 {
            return Err(bad());
        }
        let mut b = [0u8; 32];
        for (i, out) in b.iter_mut().enumerate() {
            *out = u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
        }
        Ok(Secret(b))
    }

    /// Reads a secret file, refusing one that others can read.
    pub fn read_file(path: &Path) -> Result<Secret> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("reading the secret file {}", path.display()), e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::Config(format!(
                "the secret file {} is readable by other users; run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading the secret file {}", path.display()), e))?;
        Secret::from_hex(&text).map_err(|_| {
            Error::Config(format!("the secret file {} does not hold 64 hex digits", path.display()))
        })
    }

    /// Writes the secret to a new owner-only (0600) file; fails if the file exists.
    pub fn write_new_file(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(format!("creating the secret file {}", path.display()), e))?;
        writeln!(f, "{}", self.to_hex())
            .map_err(|e| Error::io(format!("writing the secret file {}", path.display()), e))
    }

    /// The secret named by the environment: `CHORUS_SECRET`, else `CHORUS_SECRET_FILE`,
    /// else `None`.
    pub fn from_env() -> Result<Option<Secret>> {
        let s = crate::settings::settings()?;
        if let Some(hex) = &s.secret_hex {
            return Secret::from_hex(hex)
                .map(Some)
                .map_err(|_| Error::Config(format!("{SECRET_ENV} must be 64 hex digits")));
        }
        if let Some(path) = &s.secret_file {
            return Secret::read_file(path).map(Some);
        }
        Ok(None)
    }

    /// The per-user default secret file, `$HOME/.chorus/secret`, created (0600, in a 0700
    /// directory) on first use. Processes started by `mpiexec` or `srun` on machines that
    /// share a home directory thus agree on a secret with no set-up.
    pub fn user_default() -> Result<Secret> {
        let path = default_secret_path()?;
        if path.exists() {
            return Secret::read_file(&path);
        }
        let dir = path.parent().expect("default secret path has a parent");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        // Several ranks may race to create it: write a private temporary file, then link it
        // into place; whoever loses reads the winner's.
        let tmp = dir.join(format!(".secret.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        Secret::generate()?.write_new_file(&tmp)?;
        let _ = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        Secret::read_file(&path)
    }
}

fn default_secret_path() -> Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .ok_or_else(|| Error::Config(format!("HOME is not set; set {SECRET_ENV} or {SECRET_FILE_ENV}")))?;
    Ok(PathBuf::from(home).join(".chorus").join("secret"))
}

/// Lower-case hex of some bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
