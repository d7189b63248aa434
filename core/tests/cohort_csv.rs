//! The cohort CSV reader: exact round trips, and every kind of bad input
//! reported with file, row, column, value and expectation, good patients kept.

use sepsis_core::action::Action;
use sepsis_core::cohort::csv_format::{read_cohort, write_cohort, Problem, ProblemKind};
use sepsis_core::cohort::schema::{idx, FEATURES};
use sepsis_core::cohort::{Cohort, Outcome, Patient, Step};

fn step(index: u32, map: f64, lactate: Option<f64>, action: Action) -> Step {
    let mut values = vec![None; FEATURES.len()];
    values[idx("map")] = Some(map);
    values[idx("hr")] = Some(95.5);
    values[idx("lactate")] = lactate;
    values[idx("age_years")] = Some(64.0);
    values[idx("sex_male")] = Some(1.0);
    values[idx("weight_kg")] = Some(81.3);
    values[idx("sofa")] = Some(7.0);
    values[idx("fluid_balance_ml")] = Some(-120.25);
    Step { index, values, action, state: (index == 0).then_some(17) }
}

fn sample() -> Cohort {
    Cohort {
        patients: vec![
            Patient {
                id: "p1".into(),
                steps: vec![step(0, 61.2, Some(3.4), Action { fluid: 3, vaso: 1 }), step(1, 0.1 + 70.2, None, Action::NONE)],
                outcome: Outcome::Survived,
            },
            Patient { id: "p2".into(), steps: vec![step(0, 58.0, Some(6.25), Action { fluid: 4, vaso: 4 })], outcome: Outcome::Died },
        ],
    }
}

fn to_csv(cohort: &Cohort) -> String {
    let mut out = Vec::new();
    write_cohort(cohort, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn read(text: &str) -> (Cohort, Vec<Problem>, Vec<String>) {
    let (cohort, report) = read_cohort("cohort.csv", text.as_bytes());
    (cohort, report.problems, report.patients_excluded)
}

/// Replace one cell (by column name) on one line of the sample CSV.
fn with_cell(line: usize, column: &str, value: &str) -> String {
    let text = to_csv(&sample());
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let position = lines[0].split(',').position(|c| c == column).unwrap();
    let mut cells: Vec<String> = lines[line - 1].split(',').map(str::to_string).collect();
    cells[position] = value.to_string();
    lines[line - 1] = cells.join(",");
    lines.join("\n") + "\n"
}

fn only_problem(text: &str) -> Problem {
    let (_, problems, _) = read(text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    problems.into_iter().next().unwrap()
}

#[test]
fn write_then_read_gives_back_exactly_the_same_cohort() {
    let cohort = sample();
    let (back, problems, excluded) = read(&to_csv(&cohort));
    assert!(problems.is_empty() && excluded.is_empty(), "{problems:?}");
    assert_eq!(back, cohort); // including 0.1 + 70.2 to the last bit, and missing lactate as None
    assert_eq!(to_csv(&back), to_csv(&cohort));
}

#[test]
fn missing_values_stay_missing_not_zero() {
    let (back, _, _) = read(&to_csv(&sample()));
    assert_eq!(back.patients[0].steps[1].value("lactate"), None);
    assert_eq!(back.patients[0].steps[1].value("spo2"), None);
}

#[test]
fn an_unparsable_number_names_row_column_value_and_keeps_other_patients() {
    let (cohort, problems, excluded) = read(&with_cell(2, "map", "6O"));
    assert_eq!(problems.len(), 1);
    let p = &problems[0];
    assert_eq!((p.kind, p.file.as_str(), p.row, p.column.as_deref(), p.value.as_deref()), (ProblemKind::UnparsableNumber, "cohort.csv", Some(2), Some("map"), Some("6O")));
    assert!(p.expected.contains("a number"));
    assert_eq!(p.to_string(), format!("cohort.csv, row 2, column \"map\": value \"6O\" — expected {}", p.expected));
    assert_eq!(excluded, vec!["p1".to_string()]);
    assert_eq!(cohort.patients.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec!["p2"]);
}

#[test]
fn an_implausible_value_is_out_of_range() {
    let p = only_problem(&with_cell(4, "hr", "400"));
    assert_eq!((p.kind, p.row, p.column.as_deref()), (ProblemKind::OutOfRange, Some(4), Some("hr")));
    assert!(p.expected.contains("0 to 300 beats/min"), "{}", p.expected);
}

#[test]
fn a_required_value_may_not_be_missing() {
    let p = only_problem(&with_cell(3, "map", ""));
    assert_eq!((p.kind, p.row, p.column.as_deref()), (ProblemKind::MissingValue, Some(3), Some("map")));
}

#[test]
fn fractional_scores_are_refused() {
    assert_eq!(only_problem(&with_cell(2, "sofa", "7.5")).kind, ProblemKind::UnparsableNumber);
}

#[test]
fn state_ids_are_optional_and_checked() {
    let (back, problems, _) = read(&to_csv(&sample()));
    assert!(problems.is_empty());
    assert_eq!((back.patients[0].steps[0].state, back.patients[0].steps[1].state), (Some(17), None));
    let p = only_problem(&with_cell(2, "icu_sepsis_state", "713"));
    assert_eq!((p.kind, p.column.as_deref()), (ProblemKind::OutOfRange, Some("icu_sepsis_state")));
}

#[test]
fn treatment_levels_must_be_0_to_4() {
    let p = only_problem(&with_cell(2, "vaso_level", "5"));
    assert_eq!((p.kind, p.column.as_deref()), (ProblemKind::OutOfRange, Some("vaso_level")));
}

/// Append a column with the same value on every data row.
fn add_column(text: &str, name: &str, value: &str) -> String {
    text.lines().enumerate().map(|(i, line)| format!("{line},{}\n", if i == 0 { name } else { value })).collect()
}

#[test]
fn an_unknown_column_is_reported_and_ignored() {
    let (cohort, problems, _) = read(&add_column(&to_csv(&sample()), "shoe_size", "42"));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!((problems[0].kind, problems[0].row, problems[0].column.as_deref()), (ProblemKind::UnknownColumn, Some(1), Some("shoe_size")));
    assert_eq!(cohort, sample());
}

#[test]
fn a_missing_required_column_is_named() {
    let text = to_csv(&sample());
    let position = text.lines().next().unwrap().split(',').position(|c| c == "hr").unwrap();
    let text: String = text.lines().map(|l| l.split(',').enumerate().filter(|(i, _)| *i != position).map(|(_, c)| c).collect::<Vec<_>>().join(",") + "\n").collect();
    let (cohort, problems, _) = read(&text);
    assert_eq!(problems.len(), 1);
    assert_eq!((problems[0].kind, problems[0].column.as_deref()), (ProblemKind::MissingRequiredColumn, Some("hr")));
    assert!(cohort.patients.is_empty());
}

#[test]
fn duplicate_and_non_consecutive_steps_are_caught() {
    let p = only_problem(&with_cell(3, "step", "0"));
    assert_eq!((p.kind, p.row, p.value.as_deref()), (ProblemKind::DuplicateStep, Some(3), Some("0")));
    let p = only_problem(&with_cell(3, "step", "2"));
    assert_eq!((p.kind, p.row, p.expected.starts_with("step 1")), (ProblemKind::NonConsecutiveStep, Some(3), true));
}

#[test]
fn the_outcome_must_be_on_the_last_row() {
    let p = only_problem(&with_cell(3, "outcome", ""));
    assert_eq!((p.kind, p.row), (ProblemKind::OutcomeMissing, Some(3)));
    let (_, problems, _) = read(&with_cell(2, "outcome", "died"));
    assert_eq!(problems[0].kind, ProblemKind::InvalidOutcome);
    assert_eq!(only_problem(&with_cell(4, "outcome", "alive")).kind, ProblemKind::InvalidOutcome);
}

#[test]
fn a_patient_still_in_care_has_an_unknown_outcome_that_round_trips() {
    let mut cohort = sample();
    cohort.patients[1].outcome = Outcome::Unknown;
    let (read_back, problems, _) = read(&to_csv(&cohort));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(read_back, cohort);
    assert_eq!(read_back.unknown_outcomes(), 1);
}

#[test]
fn rows_with_the_wrong_number_of_cells_are_malformed() {
    let text = to_csv(&sample()).replacen("p2,0,", "p2,0,1,", 1);
    let p = only_problem(&text);
    assert_eq!((p.kind, p.row), (ProblemKind::MalformedRow, Some(4)));
}

#[test]
fn identifier_columns_refuse_the_whole_file() {
    let text = to_csv(&sample()).replacen("patient_id,", "patient_id,patient_name,", 1);
    let (cohort, problems, _) = read(&text);
    assert!(cohort.patients.is_empty());
    assert_eq!(problems.len(), 1);
    assert_eq!((problems[0].kind, problems[0].column.as_deref()), (ProblemKind::IdentifierColumn, Some("patient_name")));
    assert!(problems[0].expected.contains("de-identified data only"));
}

#[test]
fn duplicate_columns_and_empty_files_are_reported() {
    assert_eq!(only_problem("").kind, ProblemKind::Empty);
    let header = to_csv(&sample()).lines().next().unwrap().to_string();
    assert_eq!(only_problem(&(header.clone() + "\n")).kind, ProblemKind::Empty);
    let (cohort, problems, _) = read(&add_column(&to_csv(&sample()), "map", "99"));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!((problems[0].kind, problems[0].column.as_deref()), (ProblemKind::DuplicateColumn, Some("map")));
    assert_eq!(cohort, sample(), "the first map column is used");
}
