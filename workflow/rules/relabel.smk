# Cross-fitted preference scores for relabelled DPO: two Bradley-Terry reward models, each trained on
# one half of the pairs (hash of the pair id), each scoring the half it never saw; z-scored together.


localrules:
    write_rm_fold_config,


# Resolved run.yaml of one fold reward model (the size's reward_model stage plus data.fold).
rule write_rm_fold_config:
    output:
        "results/reward_model/{dataset}/{model}/fold~{fold}/run.yaml",
    log:
        "logs/results/reward_model/{dataset}/{model}/fold~{fold}/run_yaml.log",
    wildcard_constraints:
        fold=r"\d+",
    conda:
        "../envs/upo.yaml"
    params:
        run=rm_fold_run_config,
    shell:
        "python -m upo write-run-config --resolved --json {params.run:q} --out {output:q} > {log:q} 2>&1"


# A reward model trained on every fold of the pairs but {fold}; fold.json lists the pairs it saw.
rule train_reward_model_fold:
    input:
        cfg="results/reward_model/{dataset}/{model}/fold~{fold}/run.yaml",
        sft="results/sft/{dataset}/{model}/model",
        data="resources/data/{dataset}/train.jsonl",
    output:
        model=directory("results/reward_model/{dataset}/{model}/fold~{fold}/model"),
        summary="results/reward_model/{dataset}/{model}/fold~{fold}/train_summary.json",
        manifest="results/reward_model/{dataset}/{model}/fold~{fold}/fold.json",
    log:
        "logs/results/reward_model/{dataset}/{model}/fold~{fold}/train.log",
    benchmark:
        "benchmarks/results/reward_model/{dataset}/{model}/fold~{fold}/train.tsv"
    wildcard_constraints:
        fold=r"\d+",
    priority: gate_priority
    conda:
        "../envs/upo.yaml"
    threads: stage_threads("reward_model")
    resources:
        **job_resources("train"),
    shell:
        "python -m upo train-rm {input.cfg:q} > {log:q} 2>&1"


# Each pair scored by the fold model that held it out, z-scored over all training responses;
# the .json beside the scores holds each fold model's held-out pairwise accuracy.
rule score_preferences:
    input:
        cfgs=fold_inputs("run.yaml"),
        models=fold_inputs("model"),
        manifests=fold_inputs("fold.json"),
        data="resources/data/{dataset}/train.jsonl",
    output:
        scores="results/preference_scores/{dataset}/{model}.jsonl",
        report="results/preference_scores/{dataset}/{model}.json",
    log:
        "logs/results/preference_scores/{dataset}/{model}.log",
    benchmark:
        "benchmarks/results/preference_scores/{dataset}/{model}.tsv"
    priority: gate_priority
    conda:
        "../envs/upo.yaml"
    threads: stage_threads("reward_model")
    resources:
        **job_resources("train"),
    shell:
        "python -m upo score-preferences {input.cfgs:q} --out {output.scores:q} "
        "--report {output.report:q} > {log:q} 2>&1"
