//! The cohort CSV format (docs/cohort-format.md): one row per patient per
//! 4-hour step. Reading never fails as a whole and never passes bad input
//! silently: every problem is reported with file, row, column, value and
//! what was expected; patients with a problem are set aside and named, all
//! other patients are loaded. Writing then reading gives back the same cohort.

use std::collections::HashMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::schema::{identifier_reason, Feature, FEATURES};
use super::{Cohort, Outcome, Patient, Step};
use crate::action::{Action, LEVELS};

pub const PATIENT_ID: &str = "patient_id";
pub const STEP: &str = "step";
pub const FLUID_LEVEL: &str = "fluid_level";
pub const VASO_LEVEL: &str = "vaso_level";
pub const OUTCOME: &str = "outcome";
/// Optional: the ICU-Sepsis state id of a sampled step.
pub const STATE: &str = "icu_sepsis_state";
/// Largest ICU-Sepsis patient state id.
const MAX_STATE: f64 = 712.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProblemKind {
    /// A column that looks like a direct identifier: the whole file is refused.
    IdentifierColumn,
    UnknownColumn,
    DuplicateColumn,
    MissingRequiredColumn,
    /// A row with more or fewer cells than the header, or unreadable text.
    MalformedRow,
    UnparsableNumber,
    OutOfRange,
    MissingValue,
    DuplicateStep,
    NonConsecutiveStep,
    OutcomeMissing,
    /// An outcome on a row that is not the patient's last, or an unknown word.
    InvalidOutcome,
    /// The file has no patient rows at all.
    Empty,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub file: String,
    /// 1-based line in the file (the header is line 1); `None` for file-level problems.
    pub row: Option<u64>,
    pub column: Option<String>,
    pub value: Option<String>,
    pub expected: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(row) = self.row {
            write!(f, ", row {row}")?;
        }
        if let Some(column) = &self.column {
            write!(f, ", column {column:?}")?;
        }
        if let Some(value) = &self.value {
            write!(f, ": value {value:?}")?;
        }
        write!(f, " — expected {}", self.expected)
    }
}

/// What reading a file found; the app shows it as is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub file: String,
    pub problems: Vec<Problem>,
    pub rows_read: usize,
    pub rows_loaded: usize,
    pub patients_loaded: usize,
    /// Patients set aside because at least one of their rows has a problem.
    pub patients_excluded: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Columns every file must have.
pub fn required_columns() -> Vec<&'static str> {
    [PATIENT_ID, STEP].into_iter().chain(FEATURES.iter().filter(|f| !f.missing_allowed).map(|f| f.key)).chain([FLUID_LEVEL, VASO_LEVEL, OUTCOME]).collect()
}

/// What a column holds, once the header is understood.
#[derive(Clone, Copy)]
enum Column {
    PatientId,
    Step,
    Feature(usize),
    Fluid,
    Vaso,
    Outcome,
    State,
    Ignored,
}

fn column_of(name: &str) -> Option<Column> {
    match name {
        PATIENT_ID => Some(Column::PatientId),
        STEP => Some(Column::Step),
        FLUID_LEVEL => Some(Column::Fluid),
        VASO_LEVEL => Some(Column::Vaso),
        OUTCOME => Some(Column::Outcome),
        STATE => Some(Column::State),
        _ => FEATURES.iter().position(|f| f.key == name).map(Column::Feature),
    }
}

/// One parsed row, before patient-level checks.
struct Row {
    line: u64,
    patient: String,
    step: Option<u32>,
    values: Vec<Option<f64>>,
    action: Option<Action>,
    state: Option<u32>,
    outcome: Option<Outcome>,
    outcome_text: String,
    ok: bool,
}

struct Reader<'a> {
    file: &'a str,
    problems: Vec<Problem>,
}

impl Reader<'_> {
    fn problem(&mut self, kind: ProblemKind, row: Option<u64>, column: Option<&str>, value: Option<&str>, expected: impl Into<String>) {
        self.problems.push(Problem {
            kind,
            file: self.file.to_string(),
            row,
            column: column.map(str::to_string),
            value: value.map(str::to_string),
            expected: expected.into(),
        });
    }

    fn header(&mut self, header: &csv::StringRecord) -> Option<Vec<Column>> {
        let identifiers: Vec<(String, &str)> = header.iter().filter_map(|name| identifier_reason(name).map(|why| (name.to_string(), why))).collect();
        if !identifiers.is_empty() {
            for (name, why) in identifiers {
                self.problem(
                    ProblemKind::IdentifierColumn,
                    Some(1),
                    Some(&name),
                    None,
                    format!("de-identified data only: this column looks like {why}; remove it and load the file again (nothing was read)"),
                );
            }
            return None;
        }
        let mut columns = Vec::with_capacity(header.len());
        let mut seen = HashMap::new();
        for name in header.iter() {
            let name = name.trim();
            if seen.insert(name.to_string(), ()).is_some() {
                self.problem(ProblemKind::DuplicateColumn, Some(1), Some(name), None, "each column once (the second copy is ignored)");
                columns.push(Column::Ignored);
                continue;
            }
            columns.push(column_of(name).unwrap_or_else(|| {
                self.problem(ProblemKind::UnknownColumn, Some(1), Some(name), None, "a column of the documented format (this one is ignored); see docs/cohort-format.md");
                Column::Ignored
            }));
        }
        let names: Vec<&str> = header.iter().map(str::trim).collect();
        let missing: Vec<&str> = required_columns().into_iter().filter(|c| !names.contains(c)).collect();
        for column in &missing {
            self.problem(ProblemKind::MissingRequiredColumn, Some(1), Some(column), None, "this column in the header (required)");
        }
        if missing.is_empty() { Some(columns) } else { None }
    }

    fn row(&mut self, record: &csv::StringRecord, columns: &[Column], line: u64) -> Row {
        let mut row = Row {
            line,
            patient: String::new(),
            step: None,
            values: vec![None; FEATURES.len()],
            action: None,
            state: None,
            outcome: None,
            outcome_text: String::new(),
            ok: true,
        };
        let before = self.problems.len();
        let (mut fluid, mut vaso) = (None, None);
        for (column, cell) in columns.iter().zip(record.iter()) {
            let cell = cell.trim();
            match *column {
                Column::PatientId => row.patient = cell.to_string(),
                Column::Step => row.step = self.whole_number(cell, line, STEP, u32::MAX as f64).map(|v| v as u32),
                Column::Feature(i) => row.values[i] = self.feature(&FEATURES[i], cell, line),
                Column::Fluid => fluid = self.whole_number(cell, line, FLUID_LEVEL, (LEVELS - 1) as f64),
                Column::Vaso => vaso = self.whole_number(cell, line, VASO_LEVEL, (LEVELS - 1) as f64),
                Column::Outcome => {
                    row.outcome_text = cell.to_string();
                    row.outcome = match cell {
                        "" => None,
                        "survived" => Some(Outcome::Survived),
                        "died" => Some(Outcome::Died),
                        "unknown" => Some(Outcome::Unknown),
                        other => {
                            self.problem(ProblemKind::InvalidOutcome, Some(line), Some(OUTCOME), Some(other), "\"survived\", \"died\" or \"unknown\" (still in care) on the patient's last row, empty elsewhere");
                            None
                        }
                    }
                }
                Column::State if cell.is_empty() => {}
                Column::State => row.state = self.whole_number(cell, line, STATE, MAX_STATE).map(|v| v as u32),
                Column::Ignored => {}
            }
        }
        if row.patient.is_empty() {
            self.problem(ProblemKind::MissingValue, Some(line), Some(PATIENT_ID), Some(""), "a de-identified patient id");
        }
        if let (Some(fluid), Some(vaso)) = (fluid, vaso) {
            row.action = Some(Action { fluid: fluid as u8, vaso: vaso as u8 });
        }
        row.ok = self.problems.len() == before && row.step.is_some() && row.action.is_some();
        row
    }

    fn whole_number(&mut self, cell: &str, line: u64, column: &str, max: f64) -> Option<u64> {
        let expected = format!("a whole number from 0 to {max}");
        if cell.is_empty() {
            self.problem(ProblemKind::MissingValue, Some(line), Some(column), Some(cell), expected);
            return None;
        }
        match cell.parse::<u64>() {
            Ok(v) if v as f64 <= max => Some(v),
            Ok(_) => {
                self.problem(ProblemKind::OutOfRange, Some(line), Some(column), Some(cell), expected);
                None
            }
            Err(_) => {
                self.problem(ProblemKind::UnparsableNumber, Some(line), Some(column), Some(cell), expected);
                None
            }
        }
    }

    fn feature(&mut self, feature: &Feature, cell: &str, line: u64) -> Option<f64> {
        let range = format!("{} to {}{}", feature.plausible.0, feature.plausible.1, if feature.unit.is_empty() { String::new() } else { format!(" {}", feature.unit) });
        if cell.is_empty() {
            if !feature.missing_allowed {
                self.problem(ProblemKind::MissingValue, Some(line), Some(feature.key), Some(cell), format!("a value ({range}); {} may not be missing", feature.label));
            }
            return None;
        }
        let Ok(value) = cell.parse::<f64>().map_err(|_| ()).and_then(|v| if v.is_finite() { Ok(v) } else { Err(()) }) else {
            self.problem(ProblemKind::UnparsableNumber, Some(line), Some(feature.key), Some(cell), format!("a number ({range}); use '.' for decimals and leave the cell empty if not measured"));
            return None;
        };
        if feature.integer && value.fract() != 0.0 {
            self.problem(ProblemKind::UnparsableNumber, Some(line), Some(feature.key), Some(cell), format!("a whole number ({range})"));
            return None;
        }
        if value < feature.plausible.0 || value > feature.plausible.1 {
            self.problem(ProblemKind::OutOfRange, Some(line), Some(feature.key), Some(cell), format!("a plausible {} between {range}", feature.label));
            return None;
        }
        Some(value)
    }

    /// Steps 0, 1, 2, ... in order, and the outcome on the last row only.
    fn patient(&mut self, rows: &[Row]) -> bool {
        let before = self.problems.len();
        for (expected, row) in rows.iter().enumerate() {
            let Some(step) = row.step else { continue };
            if step as usize != expected {
                let duplicate = rows[..expected].iter().any(|r| r.step == Some(step));
                let kind = if duplicate { ProblemKind::DuplicateStep } else { ProblemKind::NonConsecutiveStep };
                let what = if duplicate { "each step once per patient" } else { "consecutive steps starting at 0" };
                self.problem(kind, Some(row.line), Some(STEP), Some(&step.to_string()), format!("step {expected} ({what}, patient {:?})", row.patient));
                break;
            }
        }
        let last = rows.len() - 1;
        for (i, row) in rows.iter().enumerate() {
            if i < last && !row.outcome_text.is_empty() && row.outcome.is_some() {
                self.problem(ProblemKind::InvalidOutcome, Some(row.line), Some(OUTCOME), Some(&row.outcome_text), format!("an empty cell: the outcome belongs on the last row of patient {:?}", row.patient));
            }
        }
        if rows[last].outcome_text.is_empty() {
            self.problem(ProblemKind::OutcomeMissing, Some(rows[last].line), Some(OUTCOME), Some(""), format!("\"survived\", \"died\" or \"unknown\" (still in care) on the last row of patient {:?}", rows[last].patient));
        }
        self.problems.len() == before && rows.iter().all(|r| r.ok)
    }
}

/// Read a cohort CSV. `file` names the source in every problem.
pub fn read_cohort<R: Read>(file: &str, source: R) -> (Cohort, Report) {
    let mut reader = Reader { file, problems: Vec::new() };
    let mut report = Report { file: file.to_string(), ..Report::default() };
    let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::None).from_reader(source);
    let mut records = csv.records();
    let header = match records.next() {
        Some(Ok(header)) => header,
        Some(Err(e)) => {
            reader.problem(ProblemKind::MalformedRow, Some(1), None, None, format!("a readable CSV header ({e})"));
            report.problems = reader.problems;
            return (Cohort::default(), report);
        }
        None => {
            reader.problem(ProblemKind::Empty, None, None, None, "a header row and at least one patient row");
            report.problems = reader.problems;
            return (Cohort::default(), report);
        }
    };
    let Some(columns) = reader.header(&header) else {
        report.problems = reader.problems;
        return (Cohort::default(), report);
    };
    // Patients in order of first appearance; their rows in file order.
    let mut order: Vec<String> = Vec::new();
    let mut rows_by_patient: HashMap<String, Vec<Row>> = HashMap::new();
    for record in records {
        report.rows_read += 1;
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map(|p| p.line());
                reader.problem(ProblemKind::MalformedRow, line, None, None, format!("readable UTF-8 CSV ({e})"));
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() != columns.len() {
            reader.problem(ProblemKind::MalformedRow, Some(line), None, Some(&record.iter().collect::<Vec<_>>().join(",")), format!("{} cells, as in the header (found {})", columns.len(), record.len()));
            continue;
        }
        let row = reader.row(&record, &columns, line);
        if row.patient.is_empty() {
            continue;
        }
        if !rows_by_patient.contains_key(&row.patient) {
            order.push(row.patient.clone());
        }
        rows_by_patient.entry(row.patient.clone()).or_default().push(row);
    }
    let mut cohort = Cohort::default();
    for id in order {
        let rows = rows_by_patient.remove(&id).expect("grouped above");
        if !reader.patient(&rows) {
            report.patients_excluded.push(id);
            continue;
        }
        let outcome = rows.last().and_then(|r| r.outcome).expect("checked by patient()");
        report.rows_loaded += rows.len();
        let steps = rows
            .into_iter()
            .map(|r| Step { index: r.step.expect("checked"), values: r.values, action: r.action.expect("checked"), state: r.state })
            .collect();
        cohort.patients.push(Patient { id, steps, outcome });
    }
    if report.rows_read == 0 {
        reader.problem(ProblemKind::Empty, None, None, None, "at least one patient row after the header");
    }
    report.patients_loaded = cohort.patients.len();
    report.problems = reader.problems;
    (cohort, report)
}

/// Write every column of the format; values in Rust's shortest round-trip
/// notation, missing values as empty cells.
pub fn write_cohort<W: Write>(cohort: &Cohort, writer: W) -> csv::Result<()> {
    let mut out = csv::Writer::from_writer(writer);
    let header: Vec<&str> = [PATIENT_ID, STEP].into_iter().chain(FEATURES.iter().map(|f| f.key)).chain([FLUID_LEVEL, VASO_LEVEL, OUTCOME, STATE]).collect();
    out.write_record(&header)?;
    for patient in &cohort.patients {
        let last = patient.steps.len().saturating_sub(1);
        for (i, step) in patient.steps.iter().enumerate() {
            let mut record: Vec<String> = vec![patient.id.clone(), step.index.to_string()];
            record.extend(step.values.iter().map(|v| v.map(|v| v.to_string()).unwrap_or_default()));
            record.push(step.action.fluid.to_string());
            record.push(step.action.vaso.to_string());
            record.push(match (i == last, patient.outcome) {
                (false, _) => String::new(),
                (true, Outcome::Survived) => "survived".into(),
                (true, Outcome::Died) => "died".into(),
                (true, Outcome::Unknown) => "unknown".into(),
            });
            record.push(step.state.map(|s| s.to_string()).unwrap_or_default());
            out.write_record(&record)?;
        }
    }
    out.flush()?;
    Ok(())
}
