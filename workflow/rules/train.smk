# SFT, reference log-probs, reward model, and the preference runs (offline and PPO).


localrules:
    write_sft_config,
    write_rm_config,
    write_run_config,


# The run.yaml rules: the config is resolved and validated when the DAG is built (params), so a
# changed setting reruns exactly the runs it touches; the job only type-checks and writes the file
# (--resolved: no torch import; not a run: block, which Snakemake runs in a new Snakemake process).
# Resolved run.yaml of the SFT stage (reproduce with: python -m upo train <this file>).
rule write_sft_config:
    output:
        "results/sft/{dataset}/{model}/run.yaml",
    log:
        "logs/results/sft/{dataset}/{model}/run_yaml.log",
    conda:
        "../envs/upo.yaml"
    params:
        run=sft_run_config,
    shell:
        "python -m upo write-run-config --resolved --json {params.run:q} --out {output:q} > {log:q} 2>&1"


# SFT on the chosen responses: its model is the reference of every preference run.
rule train_sft:
    input:
        cfg="results/sft/{dataset}/{model}/run.yaml",
        data="resources/data/{dataset}/train.jsonl",
        base="resources/models/{model}",
    output:
        model=directory("results/sft/{dataset}/{model}/model"),
        summary="results/sft/{dataset}/{model}/train_summary.json",
    log:
        "logs/results/sft/{dataset}/{model}/train.log",
    benchmark:
        "benchmarks/results/sft/{dataset}/{model}/train.tsv"
    priority: gate_priority
    conda:
        "../envs/upo.yaml"
    threads: stage_threads("sft")
    resources:
        **job_resources("train"),
    shell:
        "python -m upo train {input.cfg:q} > {log:q} 2>&1"


# Reference log-probs of every pair, once per dataset x model, shared by all preference runs.
rule ref_logps:
    input:
        model="results/sft/{dataset}/{model}/model",
        train="resources/data/{dataset}/train.jsonl",
        test="resources/data/{dataset}/test.jsonl",
    output:
        "results/ref_logps/{dataset}/{model}.pt",
    log:
        "logs/results/ref_logps/{dataset}/{model}.log",
    benchmark:
        "benchmarks/results/ref_logps/{dataset}/{model}.tsv"
    priority: gate_priority
    conda:
        "../envs/upo.yaml"
    threads: stage_threads("preference")
    resources:
        **job_resources("train"),
    params:
        lengths=model_lengths,
        autocast=model_autocast,
    shell:
        "python -m upo ref-logps --model {input.model:q} --train {input.train:q} --test {input.test:q} "
        "--out {output:q} {params.lengths:q} {params.autocast:q} --threads {threads} > {log:q} 2>&1"


# Resolved run.yaml of a reward model.
rule write_rm_config:
    output:
        "results/reward_model/{dataset}/{model}/run.yaml",
    log:
        "logs/results/reward_model/{dataset}/{model}/run_yaml.log",
    conda:
        "../envs/upo.yaml"
    params:
        run=rm_run_config,
    shell:
        "python -m upo write-run-config --resolved --json {params.run:q} --out {output:q} > {log:q} 2>&1"


# Bradley-Terry reward model on the same pairs (for RLHF-PPO).
rule train_reward_model:
    input:
        cfg="results/reward_model/{dataset}/{model}/run.yaml",
        sft="results/sft/{dataset}/{model}/model",
        data="resources/data/{dataset}/train.jsonl",
    output:
        model=directory("results/reward_model/{dataset}/{model}/model"),
        summary="results/reward_model/{dataset}/{model}/train_summary.json",
    log:
        "logs/results/reward_model/{dataset}/{model}/train.log",
    benchmark:
        "benchmarks/results/reward_model/{dataset}/{model}/train.tsv"
    priority: gate_priority
    conda:
        "../envs/upo.yaml"
    threads: stage_threads("reward_model")
    resources:
        **job_resources("train"),
    shell:
        "python -m upo train-rm {input.cfg:q} > {log:q} 2>&1"


# Resolved run.yaml of one preference run (method x model x sweep point x seed).
rule write_run_config:
    output:
        "results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}{budget}/seed~{seed}/run.yaml",
    log:
        "logs/results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}{budget}/seed~{seed}/run_yaml.log",
    conda:
        "../envs/upo.yaml"
    params:
        run=preference_run_config,
    shell:
        "python -m upo write-run-config --resolved --json {params.run:q} --out {output:q} > {log:q} 2>&1"


# Offline preference training (DPO, UPO, relabelled DPO: the loss comes from the registry).
rule train_offline:
    input:
        cfg="results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}{budget}/seed~{seed}/run.yaml",
        sft="results/sft/{dataset}/{model}/model",
        ref="results/ref_logps/{dataset}/{model}.pt",
        data="resources/data/{dataset}/train.jsonl",
        scores=preference_scores_input,  # relabel-dpo only (relabel.smk)
    output:
        model=directory(
            "results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}{budget}/seed~{seed}/model"
        ),
        summary="results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}{budget}/seed~{seed}/train_summary.json",
    log:
        "logs/results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}{budget}/seed~{seed}/train.log",
    benchmark:
        "benchmarks/results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}{budget}/seed~{seed}/train.tsv"
    wildcard_constraints:
        method="|".join(OFFLINE_METHODS) or NO_METHOD,
    priority: model_priority
    conda:
        "../envs/upo.yaml"
    threads: stage_threads("preference")
    resources:
        **job_resources("train"),
    shell:
        "python -m upo train {input.cfg:q} > {log:q} 2>&1"


# Online RLHF-PPO against the reward model plus weighted auxiliary rewards.
rule train_ppo:
    input:
        cfg="results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}{budget}/seed~{seed}/run.yaml",
        sft="results/sft/{dataset}/{model}/model",
        rm="results/reward_model/{dataset}/{model}/model",
        data="resources/data/{dataset}/train.jsonl",
    output:
        model=directory(
            "results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}{budget}/seed~{seed}/model"
        ),
        summary="results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}{budget}/seed~{seed}/train_summary.json",
        curves="results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}{budget}/seed~{seed}/train_log.csv",
    log:
        "logs/results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}{budget}/seed~{seed}/train.log",
    benchmark:
        "benchmarks/results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}{budget}/seed~{seed}/train.tsv"
    wildcard_constraints:
        method="|".join(PPO_METHODS) or NO_METHOD,
    priority: model_priority
    conda:
        "../envs/upo.yaml"
    threads: stage_threads("preference")
    resources:
        **job_resources("train"),
    shell:
        "python -m upo train-ppo {input.cfg:q} > {log:q} 2>&1"
