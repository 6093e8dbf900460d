# The tidy table, frontier numbers and figures of the experiment.

# Committed reference results of this experiment (never written by the workflow): when present,
# the aggregate step compares the new numbers with them (reference_comparison.csv, summary.md).
REFERENCE_TABLE = f"results/reference/{EXPERIMENT}/metrics.csv"
HAS_REFERENCE = os.path.isfile(REFERENCE_TABLE)
REFERENCE_OUTPUT = (
    {"comparison": f"results/{EXPERIMENT}/reference_comparison.csv"}
    if HAS_REFERENCE
    else {}
)


# metrics.csv (one row per run), summary.md, claims.csv (matched-KL verdicts), frontier.csv and
# hypervolume.csv (from the SFT point, paired difference CIs), cost_profile.csv (per-job records).
rule aggregate:
    input:
        metrics=metrics_inputs,
        scores=scores_inputs,
        cards=judge_card_files,
        reference=REFERENCE_TABLE if HAS_REFERENCE else [],
    output:
        **REFERENCE_OUTPUT,
        table=report(
            f"results/{EXPERIMENT}/metrics.csv",
            category="Tables",
            caption="../report/table.rst",
        ),
        summary=f"results/{EXPERIMENT}/summary.md",
        judges=report(
            f"results/{EXPERIMENT}/judges.csv",
            category="Tables",
            caption="../report/judges.rst",
        ),
        frontier=report(
            f"results/{EXPERIMENT}/frontier.csv",
            category="Tables",
            caption="../report/table.rst",
        ),
        claims=report(
            f"results/{EXPERIMENT}/claims.csv",
            category="Tables",
            caption="../report/table.rst",
        ),
        hypervolume=f"results/{EXPERIMENT}/hypervolume.csv",
        cost=f"results/{EXPERIMENT}/cost_profile.csv",
    log:
        f"logs/results/{EXPERIMENT}/aggregate.log",
    benchmark:
        f"benchmarks/results/{EXPERIMENT}/aggregate.tsv"
    conda:
        "../envs/upo.yaml"
    params:
        frontier=frontier_args,
        out=output_folder,
        reference=(
            ["--reference-dir", os.path.dirname(REFERENCE_TABLE)]
            if HAS_REFERENCE
            else []
        ),
    shell:
        "python -m upo aggregate {input.metrics:q} --out-dir {params.out:q} {params.frontier:q} "
        "{params.reference:q} --judge-cards {input.cards:q} > {log:q} 2>&1"


# Preference frontier, reward-vs-KL, cost and PPO training-curve figures (PNG for the report, PDF for papers).
rule plot:
    input:
        table=f"results/{EXPERIMENT}/metrics.csv",
        judges=f"results/{EXPERIMENT}/judges.csv",
        ppo_logs=ppo_train_logs,
    output:
        [
            report(p, category="Figures", caption="../report/frontier.rst")
            for p in plot_files()
        ],
    log:
        f"logs/results/{EXPERIMENT}/plot.log",
    benchmark:
        f"benchmarks/results/{EXPERIMENT}/plot.tsv"
    conda:
        "../envs/upo.yaml"
    params:
        out=output_folder,
        ppo=ppo_logs_arg,
    shell:
        "python -m upo plot {input.table:q} --judges {input.judges:q} --out-dir {params.out:q} "
        "{params.ppo:q} > {log:q} 2>&1"
