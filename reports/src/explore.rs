//! An exploration's files: `explore.json` (what was asked, written before
//! the first seed runs), `results.jsonl` (one line per finished seed,
//! appended and flushed as each finishes), and at the end `summary.json`,
//! `junit.xml` (one testcase per seed) and `failing-seeds.txt`.
//!
//! The end files are pure functions of the header and the lines, sorted by
//! seed, so `meshsim explore merge` of shards writes the same bytes as one
//! unsharded run (apart from wall times).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::junit::escape;
use crate::{Check, Provenance, ReportError};

/// File names of an exploration's output directory.
pub mod files {
    /// What was asked (scenario, seeds, shard, provenance).
    pub const HEADER: &str = "explore.json";
    /// One JSON line per finished seed, in the order they finished.
    pub const RESULTS: &str = "results.jsonl";
    /// The failing seeds, one reproduce command each.
    pub const FAILING: &str = "failing-seeds.txt";
}

/// What an exploration was asked to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExploreHeader {
    /// Scenario name.
    pub scenario: String,
    /// The scenario file as given on the command line.
    pub scenario_path: String,
    /// Whether each seed drew a swarm fault schedule.
    pub swarm: bool,
    /// The seed range as given (`1..200`); shards share it.
    pub seeds: String,
    /// How many seeds this exploration (or shard) was to run.
    pub seeds_planned: u64,
    /// `i/n` when this is one shard of several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Tool version, source revision, scenario hash, platform.
    #[serde(flatten)]
    pub provenance: Provenance,
}

/// How one seed ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeedVerdict {
    /// Every judged check passed.
    Pass,
    /// A judged check failed: a finding.
    Fail,
    /// The run could not complete (panic, hung simulation, engine error,
    /// an invalid swarm variant): a bug in meshsim.
    Error,
}

/// The determinism re-run of a seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecheckLine {
    /// What the second run produced (trace hash, or `error: …`).
    pub second: String,
    /// Whether it matched the first run.
    pub agreed: bool,
}

/// One line of `results.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedLine {
    /// The seed.
    pub seed: u64,
    /// Pass, fail or error.
    pub verdict: SeedVerdict,
    /// The judged checks that failed, with their evidence.
    #[serde(default)]
    pub failed_checks: Vec<Check>,
    /// Why the run could not complete (verdict `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Hex SHA-256 over the trace (empty after an error).
    pub trace_hash: String,
    /// Fault actions in the seed's schedule.
    pub actions: usize,
    /// Checks that failed but do not count (whole-run SLOs under swarm).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excused: Vec<String>,
    /// The determinism re-run, when this seed was re-run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recheck: Option<RecheckLine>,
    /// Wall-clock seconds of the seed's first run.
    #[serde(deserialize_with = "crate::serde_f64::nullable")]
    pub wall_seconds: f64,
    /// The command that replays this seed.
    pub reproduce: String,
    /// The command that shrinks this seed's failure (failures only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrink: Option<String>,
}

impl SeedLine {
    /// Whether the seed's re-run disagreed with its first run.
    pub fn nondeterministic(&self) -> bool {
        self.recheck.as_ref().is_some_and(|r| !r.agreed)
    }
}

/// The verdict of a whole exploration, worst first: an internal error
/// beats a finding, which beats a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExploreVerdict {
    /// A seed hit an internal error.
    Error,
    /// A seed failed a check or did not replay.
    Fail,
    /// Every seed passed and replayed.
    Pass,
}

/// A failing seed and how to reproduce it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailingSeed {
    /// The seed.
    pub seed: u64,
    /// What went wrong, one line.
    pub why: String,
    /// The command that replays it.
    pub reproduce: String,
    /// The command that shrinks it (check failures only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrink: Option<String>,
}

/// `summary.json` of an exploration (or a merge of shards).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExploreSummary {
    /// What was asked (no shard: the summary covers what it was given).
    #[serde(flatten)]
    pub header: ExploreHeader,
    /// Worst seed verdict.
    pub verdict: ExploreVerdict,
    /// Seeds with a result.
    pub seeds_finished: u64,
    /// Planned seeds without a result (interrupted, or a shard missing).
    pub seeds_missing: u64,
    /// Seeds that passed.
    pub passed: u64,
    /// Seeds that failed a check.
    pub failed: u64,
    /// Seeds that hit an internal error.
    pub errors: u64,
    /// Seeds re-run for determinism.
    pub rechecked: u64,
    /// Seeds whose re-run disagreed.
    pub nondeterministic: Vec<u64>,
    /// Failing, erroring and non-deterministic seeds, in seed order.
    pub failing_seeds: Vec<FailingSeed>,
    /// Wall-clock seconds of all first runs added up (CPU-ish cost).
    #[serde(deserialize_with = "crate::serde_f64::nullable")]
    pub wall_seconds: f64,
}

impl ExploreSummary {
    /// Summarises `lines` (any order) under `header`.
    pub fn of(header: &ExploreHeader, lines: &[SeedLine]) -> ExploreSummary {
        let lines = sorted(lines);
        let count = |v: SeedVerdict| lines.iter().filter(|l| l.verdict == v).count() as u64;
        let nondeterministic: Vec<u64> = lines
            .iter()
            .filter(|l| l.nondeterministic())
            .map(|l| l.seed)
            .collect();
        let errors = count(SeedVerdict::Error);
        let verdict = if errors > 0 {
            ExploreVerdict::Error
        } else if count(SeedVerdict::Fail) > 0 || !nondeterministic.is_empty() {
            ExploreVerdict::Fail
        } else {
            ExploreVerdict::Pass
        };
        let finished = lines.len() as u64;
        ExploreSummary {
            header: ExploreHeader {
                shard: None,
                ..header.clone()
            },
            verdict,
            seeds_finished: finished,
            seeds_missing: header.seeds_planned.saturating_sub(finished),
            passed: count(SeedVerdict::Pass),
            failed: count(SeedVerdict::Fail),
            errors,
            rechecked: lines.iter().filter(|l| l.recheck.is_some()).count() as u64,
            nondeterministic,
            failing_seeds: lines
                .iter()
                .filter_map(|l| {
                    failure_text(l).map(|why| FailingSeed {
                        seed: l.seed,
                        why,
                        reproduce: l.reproduce.clone(),
                        shrink: l.shrink.clone(),
                    })
                })
                .collect(),
            wall_seconds: lines.iter().map(|l| l.wall_seconds).sum(),
        }
    }
}

/// Why a seed counts against the exploration, or `None` if it does not.
fn failure_text(line: &SeedLine) -> Option<String> {
    let mut why = Vec::new();
    match line.verdict {
        SeedVerdict::Pass => {}
        SeedVerdict::Fail => why.extend(
            line.failed_checks
                .iter()
                .map(|c| format!("{} ({})", c.name, c.detail)),
        ),
        SeedVerdict::Error => why.push(format!(
            "error: {}",
            line.error.as_deref().unwrap_or("unknown")
        )),
    }
    if let Some(recheck) = line.recheck.as_ref().filter(|r| !r.agreed) {
        let first = match line.verdict {
            SeedVerdict::Error => "an error",
            _ => line.trace_hash.as_str(),
        };
        why.push(format!(
            "non-deterministic: first run {first}, re-run {}",
            recheck.second
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

fn sorted(lines: &[SeedLine]) -> Vec<SeedLine> {
    let mut lines = lines.to_vec();
    lines.sort_by_key(|l| l.seed);
    lines
}

/// Appends seed lines to `results.jsonl`, flushing each, so a killed
/// exploration keeps every seed it finished.
pub struct ResultsWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl ResultsWriter {
    /// Creates `dir` and writes `explore.json`; starts an empty
    /// `results.jsonl` (a rerun into the same directory starts over).
    pub fn create(dir: &Path, header: &ExploreHeader) -> Result<ResultsWriter, ReportError> {
        std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
        write_json(&dir.join(files::HEADER), header)?;
        let path = dir.join(files::RESULTS);
        let file = std::fs::File::create(&path).map_err(|e| ReportError::io(&path, e))?;
        Ok(ResultsWriter { path, file })
    }

    /// Appends one line and flushes it to the OS.
    pub fn append(&mut self, line: &SeedLine) -> Result<(), ReportError> {
        let mut text =
            serde_json::to_string(line).map_err(|e| ReportError::render(&self.path, e))?;
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| ReportError::io(&self.path, e))
    }
}

/// Reads an exploration directory's header and lines. A last line cut
/// short (the process was killed mid-write) is dropped; any other bad line
/// is an error naming the file and line.
pub fn read_explore(dir: &Path) -> Result<(ExploreHeader, Vec<SeedLine>), ReportError> {
    let header_path = dir.join(files::HEADER);
    let header_text = crate::read_file(&header_path)?;
    let header: ExploreHeader =
        serde_json::from_str(&header_text).map_err(|e| ReportError::parse(&header_path, e))?;
    let path = dir.join(files::RESULTS);
    let text = crate::read_file(&path)?;
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<SeedLine>(line) {
            Ok(seed) => lines.push(seed),
            Err(_) if number + 1 == text.lines().count() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(ReportError::parse(
                    &path,
                    format!("line {}: {e}", number + 1),
                ));
            }
        }
    }
    Ok((header, lines))
}

/// Writes the end files: `results.jsonl` is left as streamed unless
/// `rewrite_results` (a merge writes it sorted by seed); `summary.json`,
/// `junit.xml` and `failing-seeds.txt` from the lines sorted by seed.
pub fn write_explore_end(
    dir: &Path,
    header: &ExploreHeader,
    lines: &[SeedLine],
    rewrite_results: bool,
) -> Result<ExploreSummary, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    let summary = ExploreSummary::of(header, lines);
    let lines = sorted(lines);
    if rewrite_results {
        write_json(&dir.join(files::HEADER), &summary.header)?;
        let mut text = String::new();
        for line in &lines {
            text += &serde_json::to_string(line)
                .map_err(|e| ReportError::render(&dir.join(files::RESULTS), e))?;
            text.push('\n');
        }
        crate::write_file(&dir.join(files::RESULTS), text)?;
    }
    write_json(&dir.join(crate::files::SUMMARY), &summary)?;
    crate::write_file(&dir.join(crate::files::JUNIT), junit(&summary, &lines))?;
    let failing: String = summary
        .failing_seeds
        .iter()
        .map(|f| format!("{}\n", f.reproduce))
        .collect();
    crate::write_file(&dir.join(files::FAILING), failing)?;
    Ok(summary)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), ReportError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ReportError::render(path, e))?;
    crate::write_file(path, text + "\n")
}

/// JUnit with one testcase per seed: a check failure or a non-replaying
/// seed is a `<failure>`, an internal error an `<error>`, so CI shows
/// findings and meshsim bugs apart.
fn junit(summary: &ExploreSummary, lines: &[SeedLine]) -> String {
    let errors = lines
        .iter()
        .filter(|l| l.verdict == SeedVerdict::Error)
        .count();
    let failures = lines
        .iter()
        .filter(|l| l.verdict != SeedVerdict::Error && failure_text(l).is_some())
        .count();
    let time_s = finite_seconds(summary.wall_seconds);
    let counts = format!(
        "tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\"",
        lines.len()
    );
    let name = escape(&summary.header.scenario);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml += &format!("<testsuites name=\"meshsim explore\" {counts} time=\"{time_s:.3}\">\n");
    xml += &format!("  <testsuite name=\"{name}\" {counts} skipped=\"0\" time=\"{time_s:.3}\">\n");
    xml += "    <properties>\n";
    let h = &summary.header;
    for (key, value) in [
        ("scenario_path", h.scenario_path.as_str()),
        ("seeds", h.seeds.as_str()),
        ("swarm", if h.swarm { "true" } else { "false" }),
        ("scenario_sha256", h.provenance.scenario_sha256.as_str()),
        ("meshsim_version", h.provenance.meshsim_version.as_str()),
        ("source_revision", h.provenance.source_revision.as_str()),
    ] {
        xml += &format!(
            "      <property name=\"{key}\" value=\"{}\"/>\n",
            escape(value)
        );
    }
    xml += "    </properties>\n";
    for line in lines {
        xml += &format!(
            "    <testcase classname=\"explore.{name}\" name=\"seed {}\" time=\"{:.3}\">\n",
            line.seed,
            finite_seconds(line.wall_seconds)
        );
        if let Some(why) = failure_text(line) {
            let element = match line.verdict {
                SeedVerdict::Error => "error",
                _ => "failure",
            };
            let kind = match line.verdict {
                SeedVerdict::Error => "internal-error",
                SeedVerdict::Fail => "check-failed",
                SeedVerdict::Pass => "non-deterministic",
            };
            xml += &format!(
                "      <{element} message=\"{}\" type=\"{kind}\">{}</{element}>\n",
                escape(&why),
                escape(&why)
            );
        }
        xml += &format!(
            "      <system-out>reproduce: {}</system-out>\n    </testcase>\n",
            escape(&line.reproduce)
        );
    }
    xml += "  </testsuite>\n</testsuites>\n";
    xml
}

fn finite_seconds(value: f64) -> f64 {
    if value.is_finite() {
        value.max(0.0)
    } else {
        0.0
    }
}

/// Why shards cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A shard's files could not be read.
    #[error(transparent)]
    Read(#[from] ReportError),
    /// No directories were given.
    #[error("nothing to merge: give at least one explore output directory")]
    Empty,
    /// Two shards explored different things.
    #[error("{dir} is not comparable with {first}: its {field} is {theirs}, not {ours}")]
    Mismatch {
        /// The first directory.
        first: PathBuf,
        /// The disagreeing directory.
        dir: PathBuf,
        /// Which header field differs.
        field: &'static str,
        /// The first directory's value.
        ours: String,
        /// The disagreeing directory's value.
        theirs: String,
    },
    /// Two shards both ran a seed (overlapping shards, or a directory given twice).
    #[error("seed {seed} is in both {first} and {second}")]
    Duplicate {
        /// The seed.
        seed: u64,
        /// One directory.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
}

/// Reads the given exploration directories and combines them: the header
/// they share (shard dropped; `seeds_planned` is the caller's count of the
/// whole range) and every line, sorted by seed.
pub fn merge_explore(
    dirs: &[PathBuf],
    seeds_planned: impl FnOnce(&ExploreHeader) -> u64,
) -> Result<(ExploreHeader, Vec<SeedLine>), MergeError> {
    let (first_dir, rest) = dirs.split_first().ok_or(MergeError::Empty)?;
    let (first, mut lines) = read_explore(first_dir)?;
    let mut owner: std::collections::BTreeMap<u64, PathBuf> =
        lines.iter().map(|l| (l.seed, first_dir.clone())).collect();
    for dir in rest {
        let (header, more) = read_explore(dir)?;
        for (field, ours, theirs) in comparable_fields(&first, &header) {
            if ours != theirs {
                return Err(MergeError::Mismatch {
                    first: first_dir.clone(),
                    dir: dir.clone(),
                    field,
                    ours,
                    theirs,
                });
            }
        }
        for line in more {
            if let Some(previous) = owner.insert(line.seed, dir.clone()) {
                return Err(MergeError::Duplicate {
                    seed: line.seed,
                    first: previous,
                    second: dir.clone(),
                });
            }
            lines.push(line);
        }
    }
    let mut header = ExploreHeader {
        shard: None,
        ..first
    };
    header.seeds_planned = seeds_planned(&header);
    Ok((header, sorted(&lines)))
}

/// The header fields shards must share to be one exploration. The
/// platform may differ: a seed replays the same on every platform.
fn comparable_fields(a: &ExploreHeader, b: &ExploreHeader) -> Vec<(&'static str, String, String)> {
    vec![
        ("scenario", a.scenario.clone(), b.scenario.clone()),
        (
            "scenario_path",
            a.scenario_path.clone(),
            b.scenario_path.clone(),
        ),
        ("swarm", a.swarm.to_string(), b.swarm.to_string()),
        ("seeds", a.seeds.clone(), b.seeds.clone()),
        (
            "scenario_sha256",
            a.provenance.scenario_sha256.clone(),
            b.provenance.scenario_sha256.clone(),
        ),
        (
            "meshsim_version",
            a.provenance.meshsim_version.clone(),
            b.provenance.meshsim_version.clone(),
        ),
        (
            "source_revision",
            a.provenance.source_revision.clone(),
            b.provenance.source_revision.clone(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{self, assert_well_formed};
    use crate::{CheckKind, Provenance};

    fn header(shard: Option<&str>, planned: u64) -> ExploreHeader {
        ExploreHeader {
            scenario: "planted <bug>".into(),
            scenario_path: "scenarios/fixtures/planted-bug.toml".into(),
            swarm: false,
            seeds: "1..5".into(),
            seeds_planned: planned,
            shard: shard.map(str::to_owned),
            provenance: Provenance {
                meshsim_version: "0.1.0".into(),
                source_revision: "abc".into(),
                scenario_sha256: "ff".repeat(32),
                platform: "x86_64-linux".into(),
            },
        }
    }

    fn line(seed: u64, verdict: SeedVerdict) -> SeedLine {
        SeedLine {
            seed,
            verdict,
            failed_checks: match verdict {
                SeedVerdict::Fail => vec![Check {
                    name: "ledger-conserved".into(),
                    kind: CheckKind::Ledger,
                    passed: false,
                    detail: "3 RECs created & lost".into(),
                }],
                _ => vec![],
            },
            error: (verdict == SeedVerdict::Error).then(|| "panicked: boom".into()),
            trace_hash: format!("{seed:064x}"),
            actions: 2,
            excused: vec![],
            recheck: None,
            wall_seconds: 0.5,
            reproduce: format!("meshsim run x.toml --seed {seed}"),
            shrink: None,
        }
    }

    #[test]
    fn the_worst_seed_decides_and_every_seed_is_a_testcase() {
        let mut lines = vec![
            line(3, SeedVerdict::Pass),
            line(1, SeedVerdict::Fail),
            line(2, SeedVerdict::Pass),
        ];
        let summary = ExploreSummary::of(&header(None, 4), &lines);
        assert_eq!(summary.verdict, ExploreVerdict::Fail);
        assert_eq!(
            (summary.passed, summary.failed, summary.seeds_missing),
            (2, 1, 1)
        );
        assert_eq!(summary.failing_seeds[0].seed, 1);
        lines.push(line(4, SeedVerdict::Error));
        lines[2].recheck = Some(RecheckLine {
            second: "00".into(),
            agreed: false,
        });
        let summary = ExploreSummary::of(&header(None, 4), &lines);
        assert_eq!(summary.verdict, ExploreVerdict::Error);
        assert_eq!(summary.nondeterministic, vec![2]);
        let xml = junit(&summary, &sorted(&lines));
        assert_well_formed(&xml);
        assert_eq!(xml.matches("<testcase ").count(), 4);
        assert!(
            xml.contains("tests=\"4\" failures=\"2\" errors=\"1\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"seed 1\""));
        assert!(xml.contains("<error message=\"error: panicked: boom\""));
        assert!(xml.contains("planted &lt;bug&gt;"));
    }

    #[test]
    fn streamed_lines_survive_a_cut_last_line_and_merge_in_seed_order() {
        let a = testdata::temp_dir("explore-a");
        let b = testdata::temp_dir("explore-b");
        let mut writer = ResultsWriter::create(&a, &header(Some("1/2"), 2)).unwrap();
        writer.append(&line(3, SeedVerdict::Pass)).unwrap();
        writer.append(&line(1, SeedVerdict::Fail)).unwrap();
        let mut writer = ResultsWriter::create(&b, &header(Some("2/2"), 2)).unwrap();
        writer.append(&line(2, SeedVerdict::Pass)).unwrap();
        // A process killed mid-line leaves half a line behind.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(b.join(files::RESULTS))
            .unwrap();
        f.write_all(b"{\"seed\":4,\"verd").unwrap();
        let (merged, lines) = merge_explore(&[a.to_path_buf(), b.to_path_buf()], |_| 4).unwrap();
        assert_eq!(merged.shard, None);
        assert_eq!(lines.iter().map(|l| l.seed).collect::<Vec<_>>(), [1, 2, 3]);
        let summary = ExploreSummary::of(&merged, &lines);
        assert_eq!(summary.seeds_missing, 1);
        let err = merge_explore(&[a.to_path_buf(), a.to_path_buf()], |_| 4).unwrap_err();
        assert!(
            matches!(err, MergeError::Duplicate { seed: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn shards_of_different_scenarios_do_not_merge() {
        let a = testdata::temp_dir("explore-mismatch-a");
        let b = testdata::temp_dir("explore-mismatch-b");
        ResultsWriter::create(&a, &header(Some("1/2"), 2)).unwrap();
        let mut other = header(Some("2/2"), 2);
        other.provenance.scenario_sha256 = "00".repeat(32);
        ResultsWriter::create(&b, &other).unwrap();
        let err = merge_explore(&[a.to_path_buf(), b.to_path_buf()], |_| 4).unwrap_err();
        assert!(err.to_string().contains("scenario_sha256"), "{err}");
    }
}
