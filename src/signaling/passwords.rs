//! Logins for the embedded broker: Mosquitto's password file format
//! (`user:$7$iterations$salt$hash`, PBKDF2-HMAC-SHA512, as written by
//! `mosquitto_passwd`; and the older `$6$salt$hash`, SHA-512), so one file
//! serves both brokers.
//!
//! rumqttd has no ACLs: a login says who may connect, not which topics it
//! may use. [`Logins::allows`] therefore also ties the MQTT client id to
//! the user name (user = peer id, the convention of the Mosquitto ACL in
//! `deploy/mosquitto/`), so nobody can take over another peer's session.

use crate::secret::equal;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::{digest, pbkdf2};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

/// Why a password file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// It could not be read.
    #[error("cannot read password file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// A line is not `user:hash`.
    #[error("password file {path} line {line}: {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No user at all: every client would be refused.
    #[error("password file {0} has no users (add one with mosquitto_passwd {0} USER)")]
    Empty(PathBuf),
}

/// One stored password.
#[derive(Clone, Debug)]
enum Hash {
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 { iterations: NonZeroU32, salt: Vec<u8>, hash: Vec<u8> },
    /// `$6$`: SHA-512 over password then salt.
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
}

impl Hash {
    fn parse(text: &str) -> Result<Hash, String> {
        let b64 = |s: &str| STANDARD.decode(s).map_err(|e| format!("bad base64 ({e})"));
        let parts: Vec<&str> = text.split('$').collect();
        match parts.as_slice() {
            ["", "7", iterations, salt, hash] => {
                let iterations = iterations
                    .parse::<u32>()
                    .ok()
                    .and_then(NonZeroU32::new)
                    .ok_or_else(|| format!("iterations `{iterations}` is not a positive number"))?;
                Ok(Hash::Pbkdf2 { iterations, salt: b64(salt)?, hash: b64(hash)? })
            }
            ["", "6", salt, hash] => Ok(Hash::Sha512 { salt: b64(salt)?, hash: b64(hash)? }),
            _ if !text.starts_with('$') => {
                Err("the password is not hashed: hash the file with `mosquitto_passwd -U FILE`".into())
            }
            _ => Err("unknown hash (expected $7$ or $6$, as mosquitto_passwd writes)".into()),
        }
    }

    fn matches(&self, password: &[u8]) -> bool {
        match self {
            Hash::Pbkdf2 { iterations, salt, hash } => {
                pbkdf2::verify(pbkdf2::PBKDF2_HMAC_SHA512, *iterations, salt, password, hash).is_ok()
            }
            Hash::Sha512 { salt, hash } => {
                let mut ctx = digest::Context::new(&digest::SHA512);
                ctx.update(password);
                ctx.update(salt);
                equal(ctx.finish().as_ref(), hash)
            }
        }
    }
}

/// Who may connect to the embedded broker.
#[derive(Clone, Debug)]
pub struct Logins {
    users: HashMap<String, Hash>,
    /// The server's own login (user, password), made up at start.
    internal: (String, String),
}

impl Logins {
    /// Reads a Mosquitto password file; `internal` is the server's own
    /// login, which only the server knows.
    pub fn load(path: &Path, internal: (String, String)) -> Result<Logins, PasswordError> {
        let text = std::fs::read_to_string(path).map_err(|e| PasswordError::Read(path.to_path_buf(), e))?;
        Self::parse(path, &text, internal)
    }

    fn parse(path: &Path, text: &str, internal: (String, String)) -> Result<Logins, PasswordError> {
        let mut users = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| PasswordError::Line { path: path.to_path_buf(), line: i + 1, reason };
            let (user, hash) = line.split_once(':').ok_or_else(|| bad("expected USER:HASH".into()))?;
            if user.is_empty() {
                return Err(bad("empty user name".into()));
            }
            if user == internal.0 {
                return Err(bad(format!("user `{user}` is the server's own name; pick another")));
            }
            users.insert(user.to_owned(), Hash::parse(hash).map_err(bad)?);
        }
        if users.is_empty() {
            return Err(PasswordError::Empty(path.to_path_buf()));
        }
        Ok(Logins { users, internal })
    }

    /// Users in the file.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no users (never true once loaded).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether a client may connect: a known user with its password, whose
    /// client id is its user name.
    pub fn allows(&self, client_id: &str, user: &str, password: &str) -> bool {
        if user == self.internal.0 {
            // The server's own links: its signaling link, and one per WHIP/WHEP session.
            let own = client_id == self.internal.0
                || client_id.strip_prefix(self.internal.0.as_str()).is_some_and(|rest| rest.starts_with('.'));
            return own && equal(password.as_bytes(), self.internal.1.as_bytes());
        }
        client_id == user && self.users.get(user).is_some_and(|h| h.matches(password.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by `mosquitto_passwd -c -b pw alice secret` (Mosquitto 2.0).
    const ALICE: &str =
        "alice:$7$101$ybbGfnuwS1QoMP83$z9Tc3Xd2Y15RslygqdvhMKvg6CC/gmxbj982A/bgBZS5plcVwpAT5JjOo3ipnjjKF95Y1ipuRr7Jzws6A9Uh+g==";

    fn logins(text: &str) -> Result<Logins, PasswordError> {
        Logins::parse(Path::new("pw"), text, ("server-1".into(), "inner".into()))
    }

    #[test]
    fn mosquitto_passwd_hashes_verify() {
        let l = logins(&format!("# users\n{ALICE}\n")).unwrap();
        assert!(l.allows("alice", "alice", "secret"));
        assert!(!l.allows("alice", "alice", "Secret"));
        assert!(!l.allows("alice", "alice", ""));
        assert!(!l.allows("bob", "bob", "secret"));
        // Right password, someone else's client id: refused.
        assert!(!l.allows("bob", "alice", "secret"));
    }

    #[test]
    fn the_old_sha512_format_verifies() {
        let salt = b"0123456789ab";
        let mut ctx = digest::Context::new(&digest::SHA512);
        ctx.update(b"pw");
        ctx.update(salt);
        let line = format!("bob:$6${}${}", STANDARD.encode(salt), STANDARD.encode(ctx.finish()));
        let l = logins(&line).unwrap();
        assert!(l.allows("bob", "bob", "pw"));
        assert!(!l.allows("bob", "bob", "pw "));
    }

    #[test]
    fn the_server_login_needs_its_client_id() {
        let l = logins(ALICE).unwrap();
        assert!(l.allows("server-1", "server-1", "inner"));
        assert!(!l.allows("server-2", "server-1", "inner"));
        assert!(l.allows("server-1.whip-1", "server-1", "inner"));
        assert!(!l.allows("server-10", "server-1", "inner"));
        assert!(!l.allows("server-1", "server-1", "outer"));
    }

    #[test]
    fn bad_files_say_which_line() {
        for (text, want) in [
            ("alice:secret", "line 1: the password is not hashed"),
            ("\nnocolon", "line 2: expected USER:HASH"),
            (":$7$101$AAAA$AAAA", "empty user name"),
            ("a:$7$0$AAAA$AAAA", "not a positive number"),
            ("a:$7$x$AAAA$AAAA", "not a positive number"),
            ("a:$7$101$!!$AAAA", "bad base64"),
            ("a:$5$abc$def", "unknown hash"),
            ("server-1:$6$AAAA$AAAA", "server's own name"),
            ("# nobody\n", "has no users"),
        ] {
            let e = logins(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
