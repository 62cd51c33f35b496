//! Who is running a staff command, for the audit log.

/// The person a staff command acts for.
#[derive(Debug, Clone)]
pub(crate) struct Operator(String);

impl Operator {
    /// `--operator` if given, else the login that ran the command (the one behind
    /// `sudo`, when there is one).
    pub(crate) fn choose(given: Option<String>) -> anyhow::Result<Self> {
        let from_login = || {
            ["SUDO_USER", "USER", "LOGNAME"]
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        };
        match given.or_else(from_login) {
            Some(name) if !name.trim().is_empty() => Ok(Self(name.trim().to_owned())),
            _ => anyhow::bail!("say who you are with --operator NAME: the audit log records it"),
        }
    }

    /// The daemon itself, for what it does unasked (recovery after a crash).
    pub(crate) fn daemon() -> Self {
        Self("callvault daemon".to_owned())
    }

    pub(crate) fn name(&self) -> &str {
        &self.0
    }
}
