# Base models and prepared preference data.


# A model of the table as a plain safetensors HF folder (SmolLM2 dequantised from its GGUF file once).
rule prepare_model:
    input:
        base_model_inputs,
    output:
        directory("resources/models/{model}"),
    log:
        "logs/resources/models/{model}.log",
    benchmark:
        "benchmarks/resources/models/{model}.tsv"
    priority: gate_priority
    conda:
        "../envs/upo.yaml"
    resources:
        **job_resources("default"),
    shell:
        "python -m upo prepare-model {wildcards.model:q} --out {output:q} > {log:q} 2>&1"


# The shipped default testbed (committed; rerun with --forcerun generate_default_data).
rule generate_default_data:
    output:
        train="resources/default/train.jsonl",
        test="resources/default/test.jsonl",
        provenance="resources/default/provenance.json",
        tokenizer="resources/tokenizer/tokenizer.json",
    log:
        "logs/resources/default/generate_default_data.log",
    benchmark:
        "benchmarks/resources/default/generate_default_data.tsv"
    conda:
        "../envs/upo.yaml"
    threads: 1
    resources:
        **job_resources("train"),
    shell:
        "python -m upo generate-default-data --out-dir resources/default > {log:q} 2>&1"


# Load, validate, score (aux rewards of both responses) and split a dataset.
rule prepare_dataset:
    input:
        dataset_inputs,
    output:
        train="resources/data/{dataset}/train.jsonl",
        test="resources/data/{dataset}/test.jsonl",
        report="resources/data/{dataset}/report.json",
    log:
        "logs/resources/data/{dataset}.log",
    benchmark:
        "benchmarks/resources/data/{dataset}.tsv"
    conda:
        "../envs/upo.yaml"
    resources:
        **job_resources("default"),
    params:
        args=prepare_args,
        out=output_folder,
    shell:
        "python -m upo prepare-data {params.args:q} --out-dir {params.out:q} > {log:q} 2>&1"
