#!/usr/bin/env python3
"""Where an LLM agent departs from its teacher `wm-mpc`: at proposing or at reading.

For the first N patients of a cohort, decides their first step with the agent
and with the teacher (`sepsis recommend --json`) and says, for each
departure, whether the teacher's treatment was among the agent's simulated
candidates and whether the agent prescribed the candidate it was shown the
most survival for, and the best of them as the teacher ranks (survival less
the spread and 0.05 per flag). docs/agent.md reports a run of it.

Usage: scripts/agent-departures.py [N] [AGENT] [COHORT]
       (defaults: 40 agent public/demo/icu-sepsis-demo.csv; set
        RAYON_NUM_THREADS=1 to leave a core free)
"""
import collections
import csv
import json
import subprocess
import sys

SEPSIS = "target/release/sepsis"  # `cargo build --release -p sepsis-core --bin sepsis`


def recommend(cohort, patient, agent):
    out = subprocess.run([SEPSIS, "recommend", "--cohort", cohort, "--patient", patient, "--step", "0", "--agent", agent, "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["trace"]


def label(action):
    return f"vaso={action['vaso']} fluid={action['fluid']}"


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    agent = sys.argv[2] if len(sys.argv) > 2 else "agent"
    cohort = sys.argv[3] if len(sys.argv) > 3 else "public/demo/icu-sepsis-demo.csv"
    patients = list(dict.fromkeys(row["patient_id"] for row in csv.DictReader(open(cohort))))[:n]
    tally = collections.Counter()
    for patient in patients:
        trace, teacher = recommend(cohort, patient, agent), recommend(cohort, patient, "wm-mpc")
        chosen, taught = label(trace["prescription"]), label(teacher["prescription"])
        # Each simulated candidate: its label, survival, and the teacher's score
        # (MpcConfig::score: survival less the spread and 0.05 per flag).
        shown = [(label(c["action"]), c["survival"], c["survival"] - c["disagreement"] - 0.05 * len(f))
                 for e in trace["events"] if e["kind"] == "simulated" for c, f in zip(e["candidates"], e["flags"])]
        best = max(shown, key=lambda c: c[1])[0] if shown else None
        ranked_best = max(shown, key=lambda c: c[2])[0] if shown else None
        proposed = {a for a, _, _ in shown}
        kind = "same as the teacher" if chosen == taught else ("teacher's treatment simulated, another prescribed" if taught in proposed else "teacher's treatment not simulated")
        tally[kind] += 1
        tally["teacher's treatment simulated"] += taught in proposed
        tally["prescribed the most survival shown"] += chosen == best
        tally["prescribed the teacher's best of those shown"] += chosen == ranked_best
        shown_text = ", ".join(f"{a} {100 * s:.1f}%" for a, s, _ in shown)
        print(f"{patient}: agent {chosen}, teacher {taught} ({kind}); shown: {shown_text}", flush=True)
    print(f"{len(patients)} decisions:", dict(tally))


if __name__ == "__main__":
    main()
