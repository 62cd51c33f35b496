//! Registration relay: the PBX registers with the provider through callvault.
//!
//! Each Contact the PBX registers is replaced by a callvault Contact on the trunk side
//! whose user part is a token derived from the PBX's Contact URI. When the provider later
//! sends a call to that token, callvault sends it on to the PBX Contact it stands for.
//! Digest challenges pass through untouched: callvault never holds trunk credentials.
//! Bindings are written to a file after every change, so a restarted daemon still routes
//! inbound calls while the PBX's registration runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use callvault_media::Side;
use callvault_sip::{NameAddr, Request, Response};
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use crate::core::{ensure_to_tag, Core, Purpose, TransactionRef};
use crate::rewrite::{copy_end_to_end, next_max_forwards};

/// User parts of callvault's registered Contacts start with this.
const TOKEN_PREFIX: &str = "cv-";

/// Used when neither the Contact nor the response says how long a binding lasts.
const DEFAULT_EXPIRES: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Binding {
    /// The PBX's Contact URI.
    contact: String,
    /// Seconds since the Unix epoch.
    expires_at: u64,
}

/// The bindings the provider holds for the PBX, by token.
#[derive(Debug)]
pub(crate) struct Registrar {
    path: PathBuf,
    bindings: HashMap<String, Binding>,
}

impl Registrar {
    /// Loads the bindings saved by an earlier run; a missing or unreadable file means none.
    pub(crate) fn load(state_dir: &std::path::Path) -> Self {
        let path = state_dir.join("registrations.json");
        let bindings = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                let path = path.display();
                info!(%error, %path, "saved registrations unreadable; starting empty");
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        if !bindings.is_empty() {
            info!(count = bindings.len(), "registrations restored");
        }
        Self { path, bindings }
    }

    /// The PBX Contact a Request-URI addressed to a registered token stands for.
    pub(crate) fn contact_for(&self, uri: &str) -> Option<String> {
        let user = crate::call::user_part(uri);
        let binding = self
            .bindings
            .get(user.strip_prefix(TOKEN_PREFIX).map(|_| user.as_str())?)?;
        (binding.expires_at > unix_now()).then(|| binding.contact.clone())
    }

    fn update(&mut self, token: String, contact: String, expires: Duration) {
        if expires.is_zero() {
            self.bindings.remove(&token);
        } else {
            let expires_at = unix_now() + expires.as_secs();
            self.bindings.insert(
                token,
                Binding {
                    contact,
                    expires_at,
                },
            );
        }
    }

    fn save(&self) {
        let result = serde_json::to_vec_pretty(&self.bindings)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomically(&self.path, &bytes));
        if let Err(error) = result {
            info!(%error, path = %self.path.display(), "cannot save registrations");
        }
    }
}

/// Writes a file whole or not at all: a crash leaves the old version.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(temporary, path)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A stable token for a PBX Contact URI (FNV-1a, 64 bits): the same Contact always gets
/// the same token, across re-registrations and restarts.
fn token_for(contact: &str) -> String {
    let hash = contact
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!("{TOKEN_PREFIX}{hash:016x}")
}

impl Core {
    /// Relays a REGISTER from the PBX to the provider with callvault's Contacts.
    pub(crate) async fn relay_register(&mut self, request: Request, server: TransactionRef) {
        let local = self.local[Side::Trunk];
        let mut out = Request {
            method: request.method.clone(),
            uri: self.route_request_uri(Side::Pbx, &request.uri),
            headers: callvault_sip::Headers::new(),
            body: request.body.clone(),
        };
        out.headers.push("Via", local.via().0);
        let hops = next_max_forwards(&request.headers).unwrap_or(70);
        out.headers.push("Max-Forwards", hops.to_string());
        for name in ["From", "To", "CSeq"] {
            if let Some(value) = request.headers.get(name) {
                out.headers.push(name, value);
            }
        }
        let call_id = request.headers.call_id().unwrap_or_default();
        out.headers.push(
            "Call-ID",
            format!("{}@{}", token_for(call_id), local.address.ip()),
        );
        for contact in request.headers.get_all("Contact") {
            if let Some(rewritten) = self.trunk_contact(contact) {
                out.headers.push("Contact", rewritten);
            }
        }
        copy_end_to_end(&request.headers, &mut out.headers);
        self.start_client(Side::Trunk, out, Purpose::Register { server })
            .await;
    }

    /// callvault's Contact on the trunk side standing for one PBX Contact.
    fn trunk_contact(&self, contact: &str) -> Option<String> {
        let mut parsed = NameAddr::parse(contact).ok()?;
        if parsed.uri == "*" {
            return Some("*".into());
        }
        let ours = self.local[Side::Trunk].contact(Some(&token_for(&parsed.uri)));
        parsed.uri = ours.trim_matches(['<', '>']).to_owned();
        Some(parsed.to_string())
    }

    /// Relays the provider's answer to a REGISTER, recording the bindings it confirms.
    pub(crate) async fn relay_register_response(
        &mut self,
        server: &TransactionRef,
        response: Response,
    ) {
        if response.status == 100 {
            return;
        }
        let Some(request) = self.server_request(server) else {
            return;
        };
        let mut out = Response::for_request(&request, response.status, &response.reason);
        ensure_to_tag(&mut out);
        if (200..300).contains(&response.status) {
            for contact in self.confirm_bindings(&request, &response) {
                out.headers.push("Contact", contact);
            }
        }
        copy_end_to_end(&response.headers, &mut out.headers);
        out.body = response.body;
        self.respond(server, out).await;
    }

    /// Records what a 2xx to a REGISTER confirms and returns the PBX's view of it.
    fn confirm_bindings(&mut self, request: &Request, response: &Response) -> Vec<String> {
        let default = response
            .headers
            .get("Expires")
            .and_then(|e| e.trim().parse().ok())
            .map_or(DEFAULT_EXPIRES, Duration::from_secs);
        let confirmed: HashMap<String, Duration> = response
            .headers
            .get_all("Contact")
            .filter_map(|c| NameAddr::parse(c).ok())
            .map(|c| {
                let expires = c
                    .params
                    .get("expires")
                    .flatten()
                    .and_then(|e| e.parse().ok());
                (
                    crate::call::user_part(&c.uri),
                    expires.map_or(default, Duration::from_secs),
                )
            })
            .collect();
        let mut contacts = Vec::new();
        for contact in request
            .headers
            .get_all("Contact")
            .filter_map(|c| NameAddr::parse(c).ok())
        {
            if contact.uri == "*" {
                continue;
            }
            let token = token_for(&contact.uri);
            let expires = confirmed.get(&token).copied().unwrap_or(Duration::ZERO);
            self.registrar.update(token, contact.uri.clone(), expires);
            if !expires.is_zero() {
                let mut shown = contact.clone();
                shown
                    .params
                    .set("expires", Some(&expires.as_secs().to_string()));
                contacts.push(shown.to_string());
            }
        }
        if request.headers.get_all("Contact").any(|c| c.trim() == "*") {
            self.registrar.bindings.clear();
        }
        debug!(
            bindings = self.registrar.bindings.len(),
            "registration relayed"
        );
        self.registrar.save();
        contacts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_stable_and_prefixed() {
        let a = token_for("sip:205@192.0.2.10:5060");
        assert_eq!(a, token_for("sip:205@192.0.2.10:5060"));
        assert_ne!(a, token_for("sip:206@192.0.2.10:5060"));
        assert!(a.starts_with(TOKEN_PREFIX));
    }

    #[test]
    fn bindings_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("cv-registrar-{}", std::process::id()));
        let mut registrar = Registrar::load(&dir);
        let token = token_for("sip:205@192.0.2.10");
        registrar.update(
            token.clone(),
            "sip:205@192.0.2.10".into(),
            Duration::from_secs(60),
        );
        registrar.save();
        let restored = Registrar::load(&dir);
        let uri = format!("sip:{token}@198.51.100.1:5062");
        assert_eq!(
            restored.contact_for(&uri).as_deref(),
            Some("sip:205@192.0.2.10")
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
