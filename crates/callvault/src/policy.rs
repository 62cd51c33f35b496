//! The recording policy in the daemon: its rules and opt-out list, kept current.
//!
//! The rules come from the config and are reloaded on SIGHUP; the opt-out list is
//! reloaded whenever its file changes, which `callvault opt-out` does while the
//! daemon runs. A reload that fails leaves the rules in force as they were, and
//! says why. Each call is decided once, on its initial INVITE (`crates/policy`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use anyhow::Context as _;
use callvault_b2bua::CallInfo;
use callvault_policy::{mask_number, Action, Call, Decision, Rule, Rules};
use callvault_sip::Headers;
use callvault_store::number::E164;
use callvault_store::opt_out::OptOutList;
use tracing::{debug, info, warn};

use crate::config::{Config, Source};

/// The rules and list in force, and the count of calls each rule excluded.
#[derive(Debug)]
pub(crate) struct PolicyState {
    rules: RwLock<Arc<Rules>>,
    opt_outs: RwLock<Arc<OptOutList>>,
    opt_out_path: PathBuf,
    /// When the opt-out file was last read, to notice a change.
    opt_out_stamp: Mutex<Option<FileStamp>>,
    excluded: [AtomicU64; Rule::ALL.len()],
    show_numbers: bool,
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

impl PolicyState {
    /// Loads the rules and the opt-out list; at start-up either failing stops the
    /// daemon, since there are no earlier rules to keep.
    pub(crate) fn load(config: &Config) -> anyhow::Result<Self> {
        let rules = config.policy.rules()?;
        let opt_out_path = config.policy.opt_out_path(&config.storage);
        let stamp = stamp(&opt_out_path);
        let opt_outs = OptOutList::load(&opt_out_path).context("cannot read the opt-out list")?;
        info!(
            personal_extensions = rules.personal_extensions.len(),
            personal_ddis = rules.personal_ddis.len(),
            opt_outs = opt_outs.len(),
            "recording policy loaded"
        );
        Ok(Self {
            rules: RwLock::new(Arc::new(rules)),
            opt_outs: RwLock::new(Arc::new(opt_outs)),
            opt_out_path,
            opt_out_stamp: Mutex::new(stamp),
            excluded: std::array::from_fn(|_| AtomicU64::new(0)),
            show_numbers: config.log.show_numbers,
        })
    }

    /// Decides whether the call is recorded, and logs an exclusion.
    pub(crate) fn decide(&self, call: &CallInfo) -> Decision {
        let (rules, opt_outs) = self.in_force();
        let decision = rules.decide(&facts(call), &opt_outs);
        self.log(&decision);
        decision
    }

    /// Decides again when the PBX's in-dialog `request` names a new practice
    /// party (a transfer); `None` when it names nobody.
    pub(crate) fn decide_again(&self, call: &CallInfo, request: &Headers) -> Option<Decision> {
        let (rules, opt_outs) = self.in_force();
        let decision = rules.decide_again(&facts(call), request, &opt_outs)?;
        self.log(&decision);
        Some(decision)
    }

    fn in_force(&self) -> (Arc<Rules>, Arc<OptOutList>) {
        let rules = Arc::clone(&self.rules.read().unwrap_or_else(PoisonError::into_inner));
        let opt_outs = Arc::clone(&self.opt_outs.read().unwrap_or_else(PoisonError::into_inner));
        (rules, opt_outs)
    }

    fn log(&self, decision: &Decision) {
        let shown = |number: &E164| {
            if self.show_numbers {
                number.to_string()
            } else {
                mask_number(number.as_str())
            }
        };
        let external = decision.external.as_ref().map(shown);
        let rule = decision.rule.as_str();
        let extension = decision.extension.as_deref();
        match decision.action {
            Action::Exclude => {
                self.excluded[rule_index(decision.rule)].fetch_add(1, Ordering::Relaxed);
                info!(rule, extension, external, "call excluded from recording");
            }
            Action::Record => debug!(rule, extension, external, "call to be recorded"),
        }
    }

    /// Calls `rule` excluded so far: the only trace an excluded call leaves.
    pub(crate) fn excluded(&self, rule: Rule) -> u64 {
        self.excluded[rule_index(rule)].load(Ordering::Relaxed)
    }

    /// Reads the config again for new rules (SIGHUP). Keeps the old on failure.
    pub(crate) fn reload_rules(&self, source: &Source) {
        let rules = source.load().and_then(|config| Ok(config.policy.rules()?));
        match rules {
            Ok(rules) => {
                *self.rules.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(rules);
                info!("recording policy reloaded");
            }
            Err(error) => warn!(
                error = format!("{error:#}"),
                "the recording policy was not reloaded; the rules in force stay"
            ),
        }
        self.reload_opt_outs(true);
    }

    /// Reads the opt-out list again if its file changed (or when `always`).
    pub(crate) fn reload_opt_outs(&self, always: bool) {
        let mut last = self
            .opt_out_stamp
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = stamp(&self.opt_out_path);
        if !always && now == *last {
            return;
        }
        *last = now;
        match OptOutList::load(&self.opt_out_path) {
            Ok(list) => {
                let count = list.len();
                *self
                    .opt_outs
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(list);
                info!(opt_outs = count, "opt-out list reloaded");
            }
            Err(error) => warn!(
                error = format!("{error:#}"),
                "the opt-out list was not reloaded; the list in force stays"
            ),
        }
    }
}

/// What the policy reads of a call: its initial INVITE.
fn facts(call: &CallInfo) -> Call<'_> {
    let direction = match call.direction {
        callvault_b2bua::CallDirection::Inbound => callvault_store::CallDirection::Inbound,
        callvault_b2bua::CallDirection::Outbound => callvault_store::CallDirection::Outbound,
    };
    Call {
        direction,
        caller: &call.caller,
        callee: &call.callee,
        headers: &call.invite_headers,
    }
}

fn rule_index(rule: Rule) -> usize {
    Rule::ALL
        .iter()
        .position(|known| *known == rule)
        .expect("Rule::ALL lists every rule")
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        // Each change is a rename of a new file over the old: a new inode.
        inode: std::os::unix::fs::MetadataExt::ino(&metadata),
        modified: metadata.modified().ok(),
        len: metadata.len(),
    })
}
