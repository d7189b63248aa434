//! `sepsis report`: the app's cohort report, natively, for the world-model
//! planner: its decision at every step of a cohort file against the
//! clinicians' (off-policy estimates with intervals, safety, agreement).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use sepsis_core::cohort::csv_format::read_cohort;
use sepsis_core::eval::cohort_report::cohort_report;
use sepsis_core::eval::policies::{load_ai_clinician, AI_CLINICIAN_MODEL, WORLD_MODEL};
use sepsis_core::planner::{choose, situation_of, step_histories, MpcConfig};
use sepsis_core::protocol::ReportDecider;
use sepsis_core::report::{CohortReport, Interval};
use sepsis_core::world_model::WorldModel;

#[derive(Args)]
pub struct ReportArgs {
    /// Cohort CSV in the documented format (docs/cohort-format.md).
    #[arg(long)]
    cohort: PathBuf,
    /// Seeds the bootstrap intervals.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = WORLD_MODEL)]
    world_model: PathBuf,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let file = std::fs::File::open(&args.cohort).with_context(|| format!("opening {}", args.cohort.display()))?;
    let (cohort, problems) = read_cohort(&args.cohort.display().to_string(), std::io::BufReader::new(file));
    for problem in problems.problems.iter().take(10) {
        eprintln!("{problem}");
    }
    if cohort.patients.is_empty() {
        bail!("{}: no usable patient", args.cohort.display());
    }
    let model = WorldModel::load(&args.world_model).with_context(|| format!("loading {}", args.world_model.display()))?;
    let support = load_ai_clinician(Path::new(AI_CLINICIAN_MODEL))?;
    let histories: Vec<_> = cohort.patients.iter().flat_map(step_histories).collect();
    let situations: Vec<_> = histories.iter().map(situation_of).collect();
    let decisions = choose(&model, &support, &histories, &situations, &MpcConfig::default())?;
    let report = cohort_report(&ReportDecider::Planner.name(), &cohort, &decisions, &support, args.seed)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &CohortReport) {
    let interval = |i: &Interval| format!("{:.3} ({:.3}-{:.3})", i.estimate, i.low, i.high);
    println!("{}: {} patients ({} set aside, outcome unknown), {} decisions in {} states", r.policy, r.patients, r.unknown_outcome, r.decisions, r.states);
    println!("clinicians, observed survival: {}", interval(&r.clinicians_survival));
    println!("policy, WIS:   {}  (effective sample size {:.1} of {})", interval(&r.ope.wis), r.ope.ess, r.ope.episodes);
    println!("policy, WPDIS: {}", interval(&r.ope.wpdis));
    println!("policy, WDR:   {}", interval(&r.ope.dr));
    for (who, s) in [("clinicians", &r.clinicians.safety), ("policy", &r.policy_stats.safety)] {
        println!(
            "{who:>10}: unsafe {:.1}% (G1 {:.1}%, G2 {:.1}%), out of support {:.1}%, guideline adherence {:.1}%",
            100.0 * s.unsafe_rate,
            100.0 * s.g1_rate,
            100.0 * s.g2_rate,
            100.0 * s.out_of_support_rate,
            100.0 * s.guideline_adherence
        );
    }
    let a = &r.agreement;
    println!(
        "same action as the clinician {:.1}%; more fluid {:.1}%, less {:.1}%; more vasopressor {:.1}%, less {:.1}%",
        100.0 * a.same_action,
        100.0 * a.more_fluid,
        100.0 * a.less_fluid,
        100.0 * a.more_vasopressor,
        100.0 * a.less_vasopressor
    );
}
