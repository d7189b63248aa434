//! Stage 1 of the curriculum: patient-dynamics SFT. The model reads a
//! patient's course as the agent reads it, with the treatment given now,
//! and learns to write the line for 4 h later in the same format; so the
//! agent learns how patients respond before it learns to decide (the
//! SepsisAgent paper's first stage). How well it predicts is measured in
//! clinical units of the numbers it writes, against the world model and
//! persistence (`sepsis eval agent-dynamics`).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::action::Action;
use crate::agent::observation::{render_course, role_and_rules, step_cells, COLUMNS};
use crate::cohort::Cohort;
use crate::llm::tokenizer::{system_turn, user_turn, ChatTokenizer};
use crate::simulation::CourseStep;

use super::example::Example;

/// The label of the predicted line.
const NEXT_LABEL: &str = "+4h";

pub fn system_prompt() -> String {
    format!(
        "{}\nPredict how the patient responds: given the course and the treatment given now, write the line for 4 h later, {NEXT_LABEL} then the same six values.",
        role_and_rules()
    )
}

/// The question: the course with the treatment given now.
pub fn question(course: &[CourseStep], given: Action) -> String {
    format!("{}Predict {NEXT_LABEL}.", render_course(course, Some(given)))
}

/// The answer: the next step's line, ended by a newline (where generation stops).
pub fn answer(next: &[Option<f64>]) -> String {
    format!("{NEXT_LABEL} {}\n", step_cells(next))
}

/// A predicted line's values, by schema key (`None` where the model wrote
/// "-"), or `None` if the line is not `+4h` and six values.
pub fn parse_answer(text: &str) -> Option<Vec<(&'static str, Option<f64>)>> {
    let mut words = text.split_whitespace();
    if words.next()? != NEXT_LABEL {
        return None;
    }
    let cells: Vec<&str> = words.collect();
    if cells.len() != COLUMNS.len() {
        return None;
    }
    COLUMNS
        .iter()
        .zip(cells)
        .map(|(&key, cell)| {
            if cell == "-" {
                return Some((key, None));
            }
            let v: f64 = cell.parse().ok().filter(|v: &f64| v.is_finite())?;
            // The fluid balance is written in litres.
            Some((key, Some(if key == "fluid_balance_ml" { v * 1000.0 } else { v })))
        })
        .collect()
}

/// A course up to a step with a logged next step: what is asked, and the truth.
pub struct DynamicsPoint {
    pub course: Vec<CourseStep>,
    pub next: Vec<Option<f64>>,
}

/// `n` sampled (patient, step) pairs whose next step is logged.
pub fn dynamics_points(cohort: &Cohort, n: usize, seed: u64) -> Vec<DynamicsPoint> {
    let mut all: Vec<(usize, usize)> =
        cohort.patients.iter().enumerate().flat_map(|(p, patient)| (0..patient.steps.len().saturating_sub(1)).map(move |s| (p, s))).collect();
    all.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    all.truncate(n);
    all.into_iter()
        .map(|(p, s)| {
            let steps = &cohort.patients[p].steps;
            DynamicsPoint {
                course: steps[..=s].iter().map(|step| CourseStep { values: step.values.clone(), action: step.action }).collect(),
                next: steps[s + 1].values.clone(),
            }
        })
        .collect()
}

/// A training example: the answer's tokens are the targets.
pub fn example(tokenizer: &ChatTokenizer, point: &DynamicsPoint) -> Example {
    let given = point.course.last().expect("a course has a step").action;
    let mut tokens = tokenizer.encode(&system_turn(&system_prompt()));
    tokens.extend(tokenizer.encode(&user_turn(&question(&point.course, given))));
    let prompt = tokens.len();
    tokens.extend(tokenizer.encode(&answer(&point.next)));
    let target = (0..tokens.len()).map(|i| i >= prompt).collect();
    Example { tokens, target }
}

/// One shown value's error over the points where the LLM wrote it and the
/// value is observed now and next.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ColumnError {
    pub key: &'static str,
    pub unit: &'static str,
    /// Points with the truth observed and a value written by the LLM.
    pub compared: usize,
    pub llm_mae: f64,
    pub world_model_mae: f64,
    pub persistence_mae: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DynamicsReport {
    pub points: usize,
    /// Answers that parse as `+4h` and six values.
    pub parsed: usize,
    pub columns: Vec<ColumnError>,
    pub seconds: f64,
}

/// Ask the LLM for the next line at every point (greedy, one line) and
/// compare its numbers with the truth, beside the world model's median
/// forecast and persistence, on the same points and values.
pub fn evaluate(
    llm: &std::sync::Arc<crate::llm::generate::Llm>,
    model: &crate::world_model::WorldModel,
    points: &[DynamicsPoint],
    mut on_point: impl FnMut(usize),
) -> candle_core::Result<DynamicsReport> {
    use crate::cohort::schema::{idx, FEATURES};
    use crate::llm::generate::{Flow, Sampling};
    let started = std::time::Instant::now();
    // The world model: one batch, the ensemble's median of every value.
    let histories: Vec<crate::world_model::History> = points.iter().map(|p| crate::planner::history_of(&p.course)).collect();
    let inputs = model.encode(&histories)?;
    let summary = crate::world_model::ensemble::summarise(&model.predict(&inputs)?, &inputs)?;
    let layout = &model.card.layout;
    let forecast = |point: usize, key: &str| -> Option<f64> {
        let f = idx(key);
        let d = layout.dynamic.iter().position(|&x| x == f)?;
        let z = crate::world_model::mixture::median(&summary.forecasts[point][d], summary.current[point][d]);
        Some(model.card.normaliser.value(f, z))
    };
    let mut prefix = llm.session();
    prefix.read(&system_turn(&system_prompt()))?;
    let (mut sums, mut parsed) = (vec![(0usize, 0.0, 0.0, 0.0); COLUMNS.len()], 0);
    for (i, point) in points.iter().enumerate() {
        let mut session = prefix.clone();
        let given = point.course.last().expect("a course has a step").action;
        session.read(&user_turn(&question(&point.course, given)))?;
        let generation = session.generate(Sampling::GREEDY, 48, &["\n"], |_| Flow::Continue)?;
        if let Some(cells) = parse_answer(&generation.text) {
            parsed += 1;
            let now = &point.course.last().expect("a course has a step").values;
            for (c, (key, written)) in cells.into_iter().enumerate() {
                let f = idx(key);
                if let (Some(written), Some(truth), Some(predicted), Some(now)) = (written, point.next[f], forecast(i, key), now[f]) {
                    let sum = &mut sums[c];
                    sum.0 += 1;
                    sum.1 += (written - truth).abs();
                    sum.2 += (predicted - truth).abs();
                    sum.3 += (now - truth).abs();
                }
            }
        }
        on_point(i + 1);
    }
    let columns = COLUMNS
        .iter()
        .zip(sums)
        .map(|(&key, (n, llm_sum, wm_sum, persistence_sum))| {
            let mean = |x: f64| if n == 0 { f64::NAN } else { x / n as f64 };
            ColumnError { key, unit: FEATURES[idx(key)].unit, compared: n, llm_mae: mean(llm_sum), world_model_mae: mean(wm_sum), persistence_mae: mean(persistence_sum) }
        })
        .collect();
    Ok(DynamicsReport { points: points.len(), parsed, columns, seconds: started.elapsed().as_secs_f64() })
}

/// The results section: per shown value, each LLM's error beside the
/// world model's and persistence's on the same values.
pub fn markdown(reports: &[(&str, DynamicsReport)]) -> String {
    let mut out = String::from(
        "Each point: the course so far in the agent's format with the treatment given now; the LLM writes the `+4h` line \
         (greedy, one line), and its numbers are compared with what was logged 4 h later. The world model's figure is its \
         ensemble median forecast, persistence repeats the current value; both on exactly the values the last LLM in the table wrote (each LLM is scored on the values it wrote).\n\n\
         | LLM | answers that parse |\n|---|---|\n",
    );
    for (name, r) in reports {
        out += &format!("| {name} | {} of {} ({:.0}%) |\n", r.parsed, r.points, 100.0 * r.parsed as f64 / r.points.max(1) as f64);
    }
    out += "\nMean absolute error in clinical units:\n\n| value | unit |";
    for (name, _) in reports {
        out += &format!(" {name} |");
    }
    out += " world model | persistence | values compared |\n|---|---|";
    out += &"---|".repeat(reports.len() + 3);
    out += "\n";
    // World model and persistence from the last report (the trained LLM's
    // values); each LLM's own compared count differs when it parses less.
    let Some((_, last)) = reports.last() else { return out };
    for (c, column) in last.columns.iter().enumerate() {
        out += &format!("| `{}` | {} |", column.key, if column.unit.is_empty() { "—" } else { column.unit });
        for (_, r) in reports {
            out += &format!(" {} |", fmt(r.columns[c].llm_mae));
        }
        out += &format!(" {} | {} | {} |\n", fmt(column.world_model_mae), fmt(column.persistence_mae), column.compared);
    }
    out
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cohort::schema::idx;
    use crate::simulation::reference_course;

    #[test]
    fn an_answer_parses_back_to_its_shown_values() {
        let course = reference_course();
        let values = &course.last().unwrap().values;
        let line = answer(values);
        assert!(line.starts_with("+4h ") && line.ends_with('\n'), "{line}");
        let parsed = parse_answer(&line).expect("parses");
        assert_eq!(parsed.len(), COLUMNS.len());
        for (key, v) in parsed {
            let truth = values[idx(key)].unwrap();
            let precision = if key == "lactate" { 0.05 } else if key == "fluid_balance_ml" { 50.0 } else { 0.5 };
            assert!((v.unwrap() - truth).abs() <= precision + 1e-9, "{key}: {v:?} vs {truth}");
        }
        assert_eq!(parse_answer("+4h 60 90"), None, "too few values");
        assert_eq!(parse_answer("now 60 90 1.0 100 5 2.0"), None, "wrong label");
        assert_eq!(parse_answer("+4h 60 x 1.0 100 5 2.0"), None, "not a number");
        assert_eq!(parse_answer("+4h - 90 1.0 100 5 2.0").unwrap()[0], ("map", None));
    }

    #[test]
    fn the_question_shows_the_treatment_given_now() {
        let course = reference_course();
        let given = Action { fluid: 3, vaso: 1 };
        let text = question(&course, given);
        assert!(text.contains(" vaso=1 fluid=3\nPredict +4h."), "{text}");
        assert!(!text.contains('?'));
    }
}
