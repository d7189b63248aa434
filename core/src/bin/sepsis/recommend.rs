//! `sepsis recommend`: one decision of the propose-simulate-refine loop for
//! one patient of a cohort file, with its whole trace.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use sepsis_core::agent::decision::{decide, Proposer, Simulator, Trace, TraceEvent};
use sepsis_core::agent::grammar::render_action;
use sepsis_core::agent::observation::{rule_flag, system_prompt, ObservationFormat};
use sepsis_core::agent::mdp_simulator::MdpSimulator;
use sepsis_core::agent::runtime::{system_session, Decoding, LlmProposer, PlannerProposer, WorldModelSimulator};
use sepsis_core::env::icu_sepsis::{IcuSepsis, DEFAULT_DIR};
use sepsis_core::eval::exact::state_values;
use sepsis_core::policy::Baseline;
use sepsis_core::cohort::csv_format::read_cohort;
use sepsis_core::eval::policies::{load_ai_clinician, AI_CLINICIAN_MODEL, WORLD_MODEL};
use sepsis_core::llm::generate::{Llm, Sampling};
use sepsis_core::planner::MpcConfig;
use sepsis_core::simulation::CourseStep;
use sepsis_core::eval::policies::{agent_row, load_adapter, AgentRow};
use sepsis_core::world_model::WorldModel;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AgentName {
    /// The base LLM without the simulator.
    LlmZeroShot,
    /// The base LLM with the world model as its simulate tool.
    LlmZeroShotWm,
    /// The wm-mpc planner writing the same tool calls, with the world model.
    WmMpc,
    /// The agent after stage 1 (patient dynamics) with the world model.
    AgentStage1,
    /// The agent after stages 1 then 2 with the world model.
    AgentStage12,
    /// The trained agent after all three stages (the app's) with the world model.
    Agent,
    /// The same without the simulator.
    AgentNoSim,
    /// The agent after stage 2 alone (the behaviour-cloned adapter) with the world model.
    AgentBc,
    /// The same without the simulator.
    AgentBcNoSim,
}

impl AgentName {
    /// The scoreboard's LLM row of the same name (its adapter and whether it
    /// simulates); none for the planner.
    fn row(self) -> Option<&'static AgentRow> {
        let value = self.to_possible_value().expect("no variant is skipped");
        agent_row(value.get_name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DecodingName {
    /// Constrained and faithful: what the app and the scoreboard use.
    Faithful,
    /// Constrained to the grammar only: the thought may misstate the
    /// patient's state, the prescription any action.
    Constrained,
    Free,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimulatorName {
    /// The learned Clinical World Model (what the app uses).
    WorldModel,
    /// The true ICU-Sepsis MDP (analysis: what exact simulations would say;
    /// only for courses sampled from it), survival under the clinicians' policy.
    Mdp,
}

#[derive(Args)]
pub struct RecommendArgs {
    /// Cohort CSV in the documented format (docs/cohort-format.md).
    #[arg(long)]
    cohort: PathBuf,
    /// Patient id in the cohort.
    #[arg(long)]
    patient: String,
    /// Decide at this step (0-based); default: the patient's last step.
    #[arg(long)]
    step: Option<usize>,
    #[arg(long, value_enum, default_value = "llm-zero-shot-wm")]
    agent: AgentName,
    /// What answers the agent's simulate calls.
    #[arg(long, value_enum, default_value = "world-model")]
    simulator: SimulatorName,
    /// Print the trace as JSON.
    #[arg(long)]
    json: bool,
    /// Sampling temperature for the LLM (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `constrained`: a short thought, then the tool call written to the
    /// grammar (the model picks tool, levels and candidates); `faithful`:
    /// the same, and the thought begins with the patient's state written
    /// from the values, the refine thought with the survival of the best
    /// candidate shown (the teacher's ranking), and the prescription names
    /// a simulated candidate with the survival the thought states
    /// (docs/agent.md); `free`: free text
    /// parsed afterwards.
    #[arg(long, value_enum, default_value = "faithful")]
    decoding: DecodingName,
    /// Longest thought before a constrained call (tokens); default: the app's.
    #[arg(long)]
    thought_tokens: Option<usize>,
    /// Simulate calls before only prescribe is offered (constrained); default: the app's.
    #[arg(long)]
    max_simulate_calls: Option<usize>,
    /// Whether a simulate call lists three candidates (constrained); default: the app's.
    #[arg(long)]
    full_proposals: Option<bool>,
    /// Whether a simulate call lists only candidates in support in states like this (the support model's threshold; constrained); default: the app's.
    #[arg(long)]
    supported_proposals: Option<bool>,
    /// Whether the refine thought begins with the survival of the best candidate shown, as the teacher ranks them, and the prescription is that candidate (faithful only); default: the app's.
    #[arg(long)]
    prescribes_best: Option<bool>,
    /// Longest free turn (tokens).
    #[arg(long, default_value_t = 160)]
    max_tokens: usize,
    #[arg(long, default_value = ".cache/models/SmolLM2-135M-Instruct.Q8_0.gguf")]
    llm: PathBuf,
    #[arg(long, default_value = WORLD_MODEL)]
    world_model: PathBuf,
}

/// The patient's course up to `step`, the decision point.
fn course(cohort_path: &Path, patient: &str, step: Option<usize>) -> Result<(Vec<CourseStep>, sepsis_core::action::Action)> {
    let file = std::fs::File::open(cohort_path).with_context(|| format!("opening {}", cohort_path.display()))?;
    let (cohort, report) = read_cohort(&cohort_path.display().to_string(), std::io::BufReader::new(file));
    for problem in report.problems.iter().take(10) {
        eprintln!("{problem}");
    }
    let found = cohort.patients.iter().find(|p| p.id == patient).ok_or_else(|| {
        if report.patients_excluded.iter().any(|p| p == patient) {
            anyhow!("patient {patient} was set aside because of the problems above")
        } else {
            anyhow!("no patient {patient:?} in {}", cohort_path.display())
        }
    })?;
    let last = found.steps.len() - 1;
    let step = step.unwrap_or(last);
    if step > last {
        bail!("patient {patient} has steps 0 to {last}; --step {step} is past the end");
    }
    let course = found.steps[..=step].iter().map(|s| CourseStep { values: s.values.clone(), action: s.action }).collect();
    Ok((course, found.steps[step].action))
}

pub fn run(args: RecommendArgs) -> Result<()> {
    let (course, given) = course(&args.cohort, &args.patient, args.step)?;
    let world_model = WorldModel::load(&args.world_model).with_context(|| format!("loading {}", args.world_model.display()))?;
    let mut learned = WorldModelSimulator { model: &world_model, samples: 16, seed: args.seed as u32 };
    let env;
    let mut exact;
    let simulator: &mut dyn Simulator = match args.simulator {
        SimulatorName::WorldModel => &mut learned,
        SimulatorName::Mdp => {
            env = IcuSepsis::load(Path::new(DEFAULT_DIR))?;
            let values = state_values(&env.mdp, Baseline::Clinicians.table(&env).rows())?;
            exact = MdpSimulator::new(&env, values);
            &mut exact
        }
    };
    let started = Instant::now();
    let (trace, generated) = match (args.agent, args.agent.row()) {
        (AgentName::WmMpc, _) => {
            let support = load_ai_clinician(Path::new(AI_CLINICIAN_MODEL))?;
            let mut proposer = PlannerProposer::new(&world_model, &support, MpcConfig::default());
            (decide(&mut proposer, Some(simulator), &course, None, &mut |_| {})?, None)
        }
        (_, None) => bail!("{:?} is not one of the scoreboard's LLM rows", args.agent),
        (_, Some(row)) => {
            let mut reader = std::io::BufReader::new(std::fs::File::open(&args.llm).with_context(|| format!("opening {} (run `make fetch`)", args.llm.display()))?);
            let mut llm = Llm::from_gguf(&mut reader)?;
            let mut format = ObservationFormat::Course;
            if let Some((file, stage)) = row.adapter {
                let adapter = load_adapter(file, stage)?.0;
                format = adapter.observation;
                llm = llm.with_adapter(&adapter)?;
            }
            let logged = match format {
                ObservationFormat::Course => None,
                ObservationFormat::CourseAndLoggedPractice => Some(load_ai_clinician(Path::new(AI_CLINICIAN_MODEL))?.practice(&course[course.len() - 1].values)),
            };
            let llm = std::sync::Arc::new(llm);
            let sampling = Sampling { temperature: args.temperature, top_p: 0.95, seed: args.seed };
            let decoding = match args.decoding {
                DecodingName::Faithful | DecodingName::Constrained => {
                    let Decoding::Constrained { thought_tokens, max_simulate_calls, full_proposals, supported_proposals, prescribes_best, .. } = Decoding::DEFAULT else { unreachable!("the default is constrained") };
                    Decoding::Constrained {
                        thought_tokens: args.thought_tokens.unwrap_or(thought_tokens),
                        max_simulate_calls: args.max_simulate_calls.unwrap_or(max_simulate_calls),
                        faithful: args.decoding == DecodingName::Faithful,
                        full_proposals: args.full_proposals.unwrap_or(full_proposals),
                        supported_proposals: args.supported_proposals.unwrap_or(supported_proposals),
                        prescribes_best: args.prescribes_best.unwrap_or(prescribes_best),
                    }
                }
                DecodingName::Free => Decoding::Free { max_tokens: args.max_tokens },
            };
            let with_simulator = row.simulates;
            let mut proposer = LlmProposer::new(system_session(&llm, &system_prompt(with_simulator, logged.map(|practice| practice.min_support)))?, sampling, decoding);
            let simulator: Option<&mut dyn Simulator> = if with_simulator { Some(simulator) } else { None };
            let trace = decide(&mut proposer as &mut dyn Proposer, simulator, &course, logged.as_ref(), &mut |_| {})?;
            (trace, Some(proposer.generated_tokens))
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let out = serde_json::json!({ "patient": args.patient, "step": course.len() - 1, "agent": format!("{:?}", args.agent),
            "clinician_gave": given, "seconds": seconds, "generated_tokens": generated, "trace": trace });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let source = match args.simulator {
            SimulatorName::WorldModel => "world model",
            SimulatorName::Mdp => "true ICU-Sepsis MDP",
        };
        print_trace(&trace, given, seconds, generated, source);
    }
    Ok(())
}

fn print_trace(trace: &Trace, given: sepsis_core::action::Action, seconds: f64, generated: Option<usize>, source: &str) {
    println!("== observation\n{}\n", trace.observation);
    for event in &trace.events {
        match event {
            TraceEvent::Turn { text } => println!("== agent\n{}\n", text.trim()),
            TraceEvent::Simulated { candidates, flags } => {
                println!("== simulated ({source}, 4 h ahead; median and 10-90 %)");
                for (c, rules) in candidates.iter().zip(flags) {
                    let bands: Vec<String> = c.bands.iter().map(|b| format!("{} {:.1} ({:.1}-{:.1})", b.feature, b.p50, b.p10, b.p90)).collect();
                    let flags: Vec<&str> = rules.iter().map(|r| rule_flag(*r)).collect();
                    println!(
                        "  {}: {}; survival {:.1}%; disagreement {:.3}; flags: {}",
                        render_action(c.action),
                        bands.join(", "),
                        100.0 * c.survival,
                        c.disagreement,
                        if flags.is_empty() { "none".to_string() } else { flags.join(", ") }
                    );
                }
                println!();
            }
            TraceEvent::Malformed { error } => println!("== rejected: {error}\n"),
            TraceEvent::Prescribed { .. } | TraceEvent::Fallback { .. } => {}
        }
    }
    let flags: Vec<&str> = trace.flags.iter().map(|r| rule_flag(*r)).collect();
    println!("== prescription: {}{}", render_action(trace.prescription), trace.fallback.as_ref().map(|r| format!(" (SAFE DEFAULT: {r})")).unwrap_or_default());
    println!("   guideline flags: {}", if flags.is_empty() { "none".into() } else { flags.join(", ") });
    println!("   the clinician gave: {}", render_action(given));
    println!("   tool calls {}, malformed turns {}, {seconds:.1} s{}", trace.tool_calls, trace.malformed, generated.map(|n| format!(", {n} tokens generated")).unwrap_or_default());
    println!("Research decision support, not a medical device: simulated evidence for a clinician to weigh.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_llm_agent_is_a_scoreboard_row() {
        for agent in AgentName::value_variants() {
            let row = agent.row();
            assert_eq!(row.is_none(), *agent == AgentName::WmMpc, "{agent:?}");
            if let Some(row) = row {
                // The same name on the command line and on the scoreboard.
                assert_eq!(agent.to_possible_value().unwrap().get_name(), row.name);
            }
        }
        let agent = AgentName::Agent.row().unwrap();
        assert!(agent.simulates && agent.adapter.is_some());
        assert!(!AgentName::AgentNoSim.row().unwrap().simulates);
        assert!(AgentName::LlmZeroShot.row().unwrap().adapter.is_none());
    }
}
