//! One module per Lambda, named after its crate: that function's settings,
//! request and output types, pure decisions and one `run`. An op never uses
//! another op; what two share lives in `model`, `report`, `aws` or `tags`.

pub mod check_scan;
pub mod cleanup;
pub mod collect_findings;
pub mod create_scan_rule;
pub mod export_report;
pub mod find_amis;
pub mod launch_instance;
pub mod start_scan;
pub mod tag_ami;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Each module of `dir` (a file, or a folder of files) and its text.
    fn sources(dir: &str) -> Vec<(String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let name = p.file_stem().unwrap().to_string_lossy().to_string();
                let text = if p.is_dir() {
                    files(&p)
                        .iter()
                        .map(|(_, t)| t.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                } else {
                    std::fs::read_to_string(p).unwrap()
                };
                (name, text)
            })
            .collect()
    }

    fn files(dir: &Path) -> Vec<(std::path::PathBuf, String)> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .flat_map(|p| {
                if p.is_dir() {
                    files(&p)
                } else {
                    let text = std::fs::read_to_string(&p).unwrap();
                    vec![(p, text)]
                }
            })
            .collect()
    }

    #[test]
    fn no_file_of_an_op_is_over_600_lines() {
        let ops = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops");
        for (path, text) in files(&ops) {
            let lines = text.lines().count();
            assert!(lines <= 600, "{} has {lines} lines", path.display());
        }
    }

    #[test]
    fn no_op_uses_another_op_and_the_aws_layer_knows_no_op() {
        let ops = sources("ops");
        let names: Vec<&str> = ops
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| *n != "mod")
            .collect();
        assert_eq!(names.len(), 9, "{names:?}");
        for (name, text) in &ops {
            if name == "mod" {
                continue;
            }
            for other in names.iter().filter(|o| *o != name) {
                for path in [format!("ops::{other}"), format!("super::{other}")] {
                    assert!(!text.contains(&path), "ops/{name}.rs uses {path}");
                }
            }
        }
        for (name, text) in sources("aws") {
            assert!(!text.contains("ops::"), "aws/{name}.rs uses an op");
        }
    }

    #[test]
    fn report_and_model_are_pure_layout_and_data_with_no_sdk() {
        for dir in ["report", "model"] {
            for (name, text) in sources(dir) {
                for sdk in ["crate::aws", "aws_sdk_", "ops::"] {
                    let used = text
                        .lines()
                        .any(|l| l.trim_start().starts_with("use ") && l.contains(sdk));
                    assert!(!used, "{dir}/{name}.rs uses {sdk}");
                }
            }
        }
    }
}
