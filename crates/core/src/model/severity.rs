//! Inspector's severities, the counts of a scan's active findings, and the
//! verdict drawn from them.

use serde::{Deserialize, Serialize};

/// Inspector's severities, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Informational,
    Untriaged,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Informational,
        Severity::Untriaged,
    ];

    /// The severities that can fail a scan, and have a count tag.
    pub const RATED: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
            Severity::Low => "LOW",
            Severity::Informational => "INFORMATIONAL",
            Severity::Untriaged => "UNTRIAGED",
        }
    }

    /// Inspector's string, with anything unknown counted as untriaged.
    pub fn from_inspector(value: &str) -> Severity {
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .unwrap_or(Severity::Untriaged)
    }
}

/// Counts of active findings per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityCounts {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub informational: u64,
    pub untriaged: u64,
}

impl SeverityCounts {
    pub fn add(&mut self, severity: Severity) {
        *self.slot(severity) += 1;
    }

    pub fn get(&self, severity: Severity) -> u64 {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Informational => self.informational,
            Severity::Untriaged => self.untriaged,
        }
    }

    fn slot(&mut self, severity: Severity) -> &mut u64 {
        match severity {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Informational => &mut self.informational,
            Severity::Untriaged => &mut self.untriaged,
        }
    }

    pub fn total(&self) -> u64 {
        Severity::ALL.iter().map(|s| self.get(*s)).sum()
    }

    /// The most severe level with at least one finding.
    pub fn highest(&self) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| self.get(*s) > 0)
    }
}

/// PASS, or FAIL when any active finding is at or above the threshold;
/// INCOMPLETE when findings Inspector reported never arrived (never a PASS),
/// NOT_SCANNABLE when Inspector could not read the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    Fail,
    Incomplete,
    NotScannable,
}

impl Verdict {
    /// `threshold` of `None` never fails. Untriaged and informational
    /// findings never reach a threshold.
    pub fn of(counts: &SeverityCounts, threshold: Option<Severity>) -> Verdict {
        let Some(threshold) = threshold else {
            return Verdict::Pass;
        };
        let failing = Severity::RATED
            .into_iter()
            .filter(|s| *s <= threshold)
            .any(|s| counts.get(s) > 0);
        if failing {
            Verdict::Fail
        } else {
            Verdict::Pass
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Incomplete => "INCOMPLETE",
            Verdict::NotScannable => "NOT_SCANNABLE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_fails_at_or_above_the_threshold_only() {
        let mut counts = SeverityCounts::default();
        counts.add(Severity::High);
        counts.add(Severity::Informational);
        assert_eq!(
            Verdict::of(&counts, Some(Severity::Critical)),
            Verdict::Pass
        );
        assert_eq!(Verdict::of(&counts, Some(Severity::High)), Verdict::Fail);
        assert_eq!(Verdict::of(&counts, Some(Severity::Low)), Verdict::Fail);
        assert_eq!(Verdict::of(&counts, None), Verdict::Pass);
        counts.add(Severity::Critical);
        assert_eq!(
            Verdict::of(&counts, Some(Severity::Critical)),
            Verdict::Fail
        );
        assert_eq!(Verdict::of(&counts, None), Verdict::Pass);
    }

    #[test]
    fn informational_and_untriaged_never_fail_a_scan() {
        let mut counts = SeverityCounts::default();
        counts.add(Severity::Informational);
        counts.add(Severity::Untriaged);
        assert_eq!(Verdict::of(&counts, Some(Severity::Low)), Verdict::Pass);
        assert_eq!(counts.total(), 2);
        assert_eq!(counts.highest(), Some(Severity::Informational));
        assert_eq!(
            Severity::from_inspector("SOMETHING_NEW"),
            Severity::Untriaged
        );
    }
}
