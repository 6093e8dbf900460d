# Judge cards: agreement with held-out labels, position and length bias, cost of every judge that
# judges a run (logic in upo.evaluate.judge_card), once per (dataset, judge).
rule judge_card:
    input:
        test="resources/data/{dataset}/test.jsonl",
        judge_model=judge_card_model,
    output:
        f"results/{EXPERIMENT}/judges/{{dataset}}/{{judge}}.json",
    log:
        f"logs/results/{EXPERIMENT}/judges/{{dataset}}/{{judge}}.log",
    benchmark:
        f"benchmarks/results/{EXPERIMENT}/judges/{{dataset}}/{{judge}}.tsv"
    wildcard_constraints:
        judge="|".join(re.escape(j) for _, j in JUDGE_CARDS) or NO_METHOD,
    conda:
        "../envs/upo.yaml"
    threads: 1
    resources:
        **job_resources("evaluate"),
    params:
        cfg=judge_card_config,
    shell:
        "python -m upo judge-card --config-json {params.cfg:q} --dataset {wildcards.dataset:q} "
        "--judge {wildcards.judge:q} --test {input.test:q} --out {output:q} > {log:q} 2>&1"
