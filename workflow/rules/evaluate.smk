# Generation on held-out prompts and evaluation (judge win rate, aux metrics, KL, lm-eval tasks).


# Samples of a run (or of the SFT reference) on the held-out prompts.
rule generate:
    input:
        cfg="{rundir}/run.yaml",
        model="{rundir}/model",
        judge_model=judge_model_input,  # generate checks the judge is usable before it samples
    output:
        "{rundir}/generations.jsonl",
    log:
        "logs/{rundir}/generate.log",
    benchmark:
        "benchmarks/{rundir}/generate.tsv"
    priority: model_priority
    conda:
        "../envs/upo.yaml"
    threads: 1
    resources:
        **job_resources("evaluate"),
    shell:
        "python -m upo generate {wildcards.rundir:q} > {log:q} 2>&1"


# metrics.json (schema-validated) and per-prompt scores of a run.
rule evaluate:
    input:
        generations="{rundir}/generations.jsonl",
        model="{rundir}/model",
        reference=reference_model,
        judge_model=judge_model_input,
    output:
        metrics="{rundir}/metrics.json",
        scores="{rundir}/scores.jsonl",
    log:
        "logs/{rundir}/evaluate.log",
    benchmark:
        "benchmarks/{rundir}/evaluate.tsv"
    priority: model_priority
    conda:
        "../envs/upo.yaml"
    threads: 1
    resources:
        **job_resources("evaluate"),
    shell:
        "python -m upo evaluate {wildcards.rundir:q} > {log:q} 2>&1"
