//! The Prometheus text exposition format, version 0.0.4.
//!
//! Only what callvault exports is written: counters, gauges and a summary
//! without quantiles. Label values are fixed words, but are escaped anyway.

use std::fmt::{Display, Write as _};

/// The content type a scrape of this text carries.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type, as the `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Summary => "summary",
        }
    }
}

/// A page of metrics being written.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts a family: its help and type lines.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the family just started.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, label_value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape(label_value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family with one unlabelled sample.
    pub(crate) fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    pub(crate) fn finish(self) -> String {
        self.text
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_is_written_with_help_type_and_labelled_samples() {
        let mut page = Exposition::default();
        page.family("callvault_x_total", Kind::Counter, "Things.");
        page.sample(
            "callvault_x_total",
            &[("side", "pbx"), ("method", "BYE")],
            3,
        );
        page.single("callvault_y", Kind::Gauge, "Level.", 0.5);
        assert_eq!(
            page.finish(),
            "# HELP callvault_x_total Things.\n# TYPE callvault_x_total counter\n\
             callvault_x_total{side=\"pbx\",method=\"BYE\"} 3\n\
             # HELP callvault_y Level.\n# TYPE callvault_y gauge\ncallvault_y 0.5\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut page = Exposition::default();
        page.sample("m", &[("l", "a\"b\\c\nd")], 1);
        assert_eq!(page.finish(), "m{l=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
