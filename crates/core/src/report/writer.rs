//! The human-readable report written beside the JSON Lines data, one format
//! at a time through one writer: its header, one piece per finding, its
//! footer, and the object's extension and content type.

use std::str::FromStr;

use super::rows::FindingRow;
use crate::error::{Error, Result};
use crate::model::{Finding, ScanContext};

/// The `REPORT_FORMAT` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// Inspector's own CSV export columns.
    Csv,
    /// A JSON array of the raw findings.
    Json,
    /// Only the Athena data and the summary.
    None,
}

impl FromStr for ReportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "CSV" => Ok(ReportFormat::Csv),
            "JSON" => Ok(ReportFormat::Json),
            "NONE" => Ok(ReportFormat::None),
            _ => Err("expected CSV, JSON or NONE".into()),
        }
    }
}

impl ReportFormat {
    /// The writer of this format, or `None` when no human report is wanted.
    pub fn writer(self) -> Option<HumanReport> {
        let kind = match self {
            ReportFormat::Csv => {
                let mut builder = csv::WriterBuilder::new();
                builder
                    .terminator(csv::Terminator::CRLF)
                    .buffer_capacity(4096);
                Kind::Csv(Box::new(builder))
            }
            ReportFormat::Json => Kind::Json,
            ReportFormat::None => return None,
        };
        Some(HumanReport { kind, rows: 0 })
    }
}

/// Inspector's CSV export columns, in its order.
pub const CSV_COLUMNS: [&str; 23] = [
    "AWS Account Id",
    "Severity",
    "Fix Available",
    "Finding Type",
    "Title",
    "Description",
    "Finding ARN",
    "First Seen",
    "Last Seen",
    "Resource ID",
    "Platform",
    "Affected Packages",
    "Package Installed Version",
    "Fixed in Version",
    "Remediation",
    "Inspector Score",
    "Vulnerability Id",
    "Vendor Severity",
    "NVD CVSS3 Score",
    "Ami",
    "Exploit Available",
    "Epss Score",
    "Reference Urls",
];

enum Kind {
    Csv(Box<csv::WriterBuilder>),
    Json,
}

/// Renders one scan's human report piece by piece, so it streams to S3.
pub struct HumanReport {
    kind: Kind,
    rows: u64,
}

impl HumanReport {
    pub fn extension(&self) -> &'static str {
        match self.kind {
            Kind::Csv(_) => "csv",
            Kind::Json => "json",
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self.kind {
            Kind::Csv(_) => "text/csv",
            Kind::Json => "application/json",
        }
    }

    pub fn header(&mut self) -> Result<Vec<u8>> {
        match &mut self.kind {
            Kind::Csv(w) => csv_record(w, CSV_COLUMNS.iter().map(|c| c.to_string())),
            Kind::Json => Ok(b"[".to_vec()),
        }
    }

    pub fn row(&mut self, f: &Finding, row: &FindingRow, scan: &ScanContext) -> Result<Vec<u8>> {
        self.rows += 1;
        match &mut self.kind {
            Kind::Csv(w) => csv_record(w, csv_fields(f, row, scan)),
            Kind::Json => {
                let mut out = Vec::with_capacity(row.finding_json.len() + 2);
                if self.rows > 1 {
                    out.push(b',');
                }
                out.push(b'\n');
                out.extend_from_slice(row.finding_json.as_bytes());
                Ok(out)
            }
        }
    }

    pub fn footer(&mut self) -> Vec<u8> {
        match self.kind {
            Kind::Csv(_) => Vec::new(),
            Kind::Json => b"\n]\n".to_vec(),
        }
    }
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, or a
/// tab or carriage return first), made inert by a leading `'`, as OWASP
/// advises: a finding's text comes from package metadata, which anyone
/// publishing a package controls.
pub fn inert_cell(value: String) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value
    }
}

/// One CSV record (RFC 4180 quoting, CRLF) as bytes.
fn csv_record(
    builder: &csv::WriterBuilder,
    fields: impl IntoIterator<Item = String>,
) -> Result<Vec<u8>> {
    let fail = |e: &dyn std::fmt::Display| Error::Internal(format!("writing a CSV record: {e}"));
    let mut w = builder.from_writer(Vec::new());
    w.write_record(fields.into_iter().map(inert_cell))
        .map_err(|e| fail(&e))?;
    w.into_inner().map_err(|e| fail(&e))
}

fn csv_fields(f: &Finding, row: &FindingRow, scan: &ScanContext) -> [String; 23] {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let num = |v: Option<f64>| v.map(|n| n.to_string()).unwrap_or_default();
    let details = f.package_vulnerability_details.as_ref();
    let platform = f
        .resources
        .iter()
        .find_map(|r| {
            r.details
                .as_ref()
                .and_then(|d| d.aws_ec2_instance.as_ref())
                .and_then(|i| i.platform.clone())
        })
        .or_else(|| scan.platform.clone())
        .unwrap_or_default();
    let urls = details
        .map(|d| d.reference_urls.join(", "))
        .unwrap_or_default();
    [
        row.account_id.clone(),
        row.severity.clone(),
        opt(&row.fix_available),
        row.finding_type.clone(),
        opt(&row.title),
        opt(&f.description),
        row.finding_arn.clone(),
        opt(&row.first_observed_at),
        opt(&row.last_observed_at),
        opt(&row.instance_id),
        platform,
        opt(&row.package_name),
        opt(&row.installed_version),
        opt(&row.fixed_in_version),
        opt(&row.remediation),
        num(row.inspector_score),
        opt(&row.vulnerability_id),
        details
            .and_then(|d| d.vendor_severity.clone())
            .unwrap_or_default(),
        num(row.cvss3_score),
        scan.ami_id.to_string(),
        opt(&f.exploit_available),
        num(row.epss_score),
        urls,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::rows::tests::{instance_row, sample_finding, scan};
    use chrono::Utc;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn csv_uses_inspectors_columns_and_quotes_what_needs_it() {
        let f = sample_finding("arn:1", "HIGH", "ACTIVE");
        let row = instance_row(&f, Utc::now());
        let mut csv = ReportFormat::Csv.writer().unwrap();
        assert_eq!((csv.extension(), csv.content_type()), ("csv", "text/csv"));
        let header = text(csv.header().unwrap());
        assert!(header
            .starts_with("AWS Account Id,Severity,Fix Available,Finding Type,Title,Description,"));
        assert!(header.ends_with("Epss Score,Reference Urls\r\n"));
        let line = text(csv.row(&f, &row, &scan()).unwrap());
        assert!(
            line.contains(
                r#""A ""quoted"", multi-line
description""#
            ),
            "{line}"
        );
        assert!(line.starts_with("123456789012,HIGH,YES,PACKAGE_VULNERABILITY,"));
        assert!(line.contains(",ami-0123456789abcdef0,NO,0.42,https://example.com/a\r\n"));
        assert!(csv.footer().is_empty());
    }

    #[test]
    fn cells_a_spreadsheet_would_run_are_made_inert() {
        for risky in ["=HYPERLINK(\"x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(inert_cell(risky.into()), format!("'{risky}"));
        }
        for plain in ["openssl", "1.0.1-1", "", "a=b", "CVE-2026-1"] {
            assert_eq!(inert_cell(plain.into()), plain);
        }
        let mut f = sample_finding("arn:1", "HIGH", "ACTIVE");
        f.title = Some("=cmd|' /C calc'!A0".into());
        let row = instance_row(&f, Utc::now());
        let mut csv = ReportFormat::Csv.writer().unwrap();
        let line = text(csv.row(&f, &row, &scan()).unwrap());
        assert!(line.contains(",'=cmd|' /C calc'!A0,"), "{line}");
    }

    #[test]
    fn the_json_report_is_one_array_of_the_raw_findings() {
        let mut json = ReportFormat::Json.writer().unwrap();
        assert_eq!(json.extension(), "json");
        let mut out = json.header().unwrap();
        for arn in ["arn:1", "arn:2"] {
            let f = sample_finding(arn, "LOW", "ACTIVE");
            let row = instance_row(&f, Utc::now());
            out.extend(json.row(&f, &row, &scan()).unwrap());
        }
        out.extend(json.footer());
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed[1]["findingArn"], "arn:2");
        let mut empty = ReportFormat::Json.writer().unwrap();
        let mut none = empty.header().unwrap();
        none.extend(empty.footer());
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&none).unwrap(),
            serde_json::json!([])
        );
        assert!(ReportFormat::None.writer().is_none());
    }
}
