# Helpers only (no rules): validate the config, build the run table, resolve run configs.
import json
import os
import re

from snakemake.utils import validate

from upo import checks
from upo import paths
from upo import preference_source
from upo import sweeps
from upo.evaluate import judge_card as _judge_card
from upo.models import table as model_table
from upo.strict import check_finite

# .nan / .inf anywhere, named by key, before the schema (JSON schema cannot express finiteness)
check_finite(sweeps.deep_copy(config))
validate(config, sweeps.CONFIG_SCHEMA)  # the schema is package data (upo/schemas)
CONFIG = sweeps.deep_copy(config)
# every name checked against its registry, every run resolved and type-checked, before any job
RUNS = checks.validate_experiment(CONFIG)
EXPERIMENT = CONFIG["name"]
OFFLINE_METHODS = sorted(
    {r["method"] for r in RUNS if sweeps.load_method(r["method"]).trainer == "offline"}
)
PPO_METHODS = sorted(
    {r["method"] for r in RUNS if sweeps.load_method(r["method"]).trainer == "ppo"}
)
NO_METHOD = "^$"  # matches nothing: keeps a rule valid when its method family is absent
# A local judge read from resources/models/<name> (eval.judge_model) is built by prepare_model like a
# model size, so it is a valid {model} too.
JUDGE_MODELS = sorted(
    {
        e.judge_model.removeprefix("resources/models/")
        for _, e in checks.eval_sections(CONFIG)
        if e.judge_model.startswith("resources/models/")
    }
)


wildcard_constraints:
    dataset="|".join(CONFIG["datasets"]),
    model="|".join(re.escape(m) for m in sorted({*CONFIG["models"], *JUDGE_MODELS})),
    beta=r"[0-9.e+-]+",
    w=r"[0-9.e+-]+",
    budget=r"(/steps~\d+)?",  # a sweep point's own step budget, or empty (paths.budget_segment)
    seed=r"\d+",
    rundir=r"results/(sft|runs)/.+",


def run_dirs():
    return [paths.run_dir(**sweeps.run_key(r)) for r in RUNS]


def run_wildcards(wildcards):
    """resolve_run's keywords from a preference rule's wildcards."""
    return {
        "dataset": wildcards.dataset,
        "model": wildcards.model,
        "method": wildcards.method,
        "beta": wildcards.beta,
        "aux_weight": wildcards.w,
        "max_steps": paths.parse_budget_segment(wildcards.budget),
        "seed": int(wildcards.seed),
    }


def sft_dirs():
    pairs = sorted({(r["dataset"], r["model"]) for r in RUNS})
    return [paths.sft_dir(d, m) for d, m in pairs]


def evaluated_dirs():
    return sft_dirs() + run_dirs()


def final_targets():
    out = f"results/{EXPERIMENT}"
    return [
        f"{out}/metrics.csv",
        f"{out}/summary.md",
        f"{out}/frontier.csv",
        f"{out}/judges.csv",
    ] + plot_files()


def plot_files():
    aux = sorted({a for _, e in checks.eval_sections(CONFIG) for a in e.aux_rewards})
    names = [f"frontier_{a}" for a in aux]
    names += ["reward_vs_kl", "cost", "judges"] + (
        ["ppo_curves"] if PPO_METHODS else []
    )
    return [f"results/{EXPERIMENT}/{n}.{ext}" for n in names for ext in ("png", "pdf")]


def job_resources(kind):
    """Job resources of a kind of job (default, train, evaluate), from the config's resources block."""
    table = CONFIG.get("resources", {})
    defaults = {"mem_mb": 4000, "runtime": 30, "gpu": 0, "slurm_partition": ""}
    return {
        key: table.get(kind, {}).get(key, table.get("default", {}).get(key, value))
        for key, value in defaults.items()
    }


def stage_threads(stage):
    """Threads of a training rule: the stage's train.threads of the job's model size (1 when unset)."""

    def threads(wildcards):
        return sweeps.stage_config(CONFIG, wildcards.model, stage).train.threads or 1

    return threads


def model_priority(wildcards):
    """Larger model sizes first (upo.models.table.scheduling_priority)."""
    model = wildcards.get("model") or paths.model_of(wildcards.rundir)
    return model_table.scheduling_priority(model)


def gate_priority(wildcards):
    """Jobs that a size's runs all wait for (SFT, reference log-probs, reward models) before any run."""
    return model_table.scheduling_priority(wildcards.model, gate=True)


def dataset_inputs(wildcards):
    entry = CONFIG["datasets"][wildcards.dataset]
    candidates = (entry["source"], entry.get("test_from", ""))
    # local files are inputs (a changed file reruns the preparation); hub ids are not files
    return [
        p
        for p in candidates
        if p and (os.path.isfile(p) or p.startswith(sweeps.GENERATED_PREFIX))
    ]


def prepare_args(wildcards):
    """One list item per argument, each quoted by the shell command ({params.args:q})."""
    from upo.data.prepare import prepare_cli_args

    return prepare_cli_args(CONFIG["datasets"][wildcards.dataset])


def sft_run_config(wildcards):
    return json.dumps(sweeps.resolve_sft(CONFIG, wildcards.dataset, wildcards.model))


def rm_run_config(wildcards):
    return json.dumps(
        sweeps.resolve_reward_model(CONFIG, wildcards.dataset, wildcards.model)
    )


def rm_fold_run_config(wildcards):
    """run.yaml of a cross-fitting reward model (relabel-dpo): the reward_model stage plus data.fold."""
    return json.dumps(
        sweeps.resolve_reward_model_fold(
            CONFIG, wildcards.dataset, wildcards.model, int(wildcards.fold)
        )
    )


def fold_inputs(name):
    """``name`` (run.yaml, model, fold.json) of each fold reward model: the scoring job's inputs."""

    def files(wildcards):
        return preference_source.fold_files(wildcards.dataset, wildcards.model, name)

    return files


def preference_scores_input(wildcards):
    """The cross-fitted scores a preference run reads (relabel-dpo), else nothing."""
    return sweeps.scores_input(CONFIG, **run_wildcards(wildcards))


def preference_run_config(wildcards):
    return json.dumps(sweeps.resolve_run(CONFIG, **run_wildcards(wildcards)))


def model_lengths(wildcards):
    """Tokenisation (and the train-pair cap) of the reference cache: the same as the runs use."""
    data = sweeps.stage_config(CONFIG, wildcards.model, "preference").data
    args = [
        f"--max-length={data.max_length}",
        f"--max-prompt-length={data.max_prompt_length}",
    ]
    if data.max_train_pairs:
        args.append(f"--train-pairs={data.max_train_pairs}")
    return args


def model_autocast(wildcards):
    model = sweeps.stage_config(CONFIG, wildcards.model, "preference").model
    return ["--autocast-bf16"] if model.autocast_bf16 else []


def base_model_inputs(wildcards):
    """The project tokenizer is an input of the from-scratch sizes only."""
    from upo.models.table import get_spec

    if get_spec(wildcards.model).kind == "scratch":
        return ["resources/tokenizer/tokenizer.json"]
    return []


def reference_model(wildcards):
    """The frozen reference of a run directory: the SFT model of its dataset x model."""
    match = re.match(r"results/(?:sft|runs)/([^/]+)/([^/]+)", wildcards.rundir)
    return f"{paths.sft_dir(match.group(1), match.group(2))}/model"


def judge_model_input(wildcards):
    """The local-LLM judge's folder of a run's evaluation (none for other judges): built before it."""
    match = re.match(r"results/(?:sft|runs)/[^/]+/([^/]+)", wildcards.rundir)
    path = sweeps.stage_config(CONFIG, match.group(1), "preference").eval.judge_model
    return [path] if path else []


def metrics_inputs(wildcards):
    return [f"{d}/metrics.json" for d in evaluated_dirs()]


def ppo_train_logs(wildcards):
    """train_log.csv of every PPO run (the ppo_curves figure)."""
    return [
        os.path.join(folder, "train_log.csv")
        for folder, run in zip(run_dirs(), RUNS)
        if run["method"] in PPO_METHODS
    ]


def ppo_logs_arg(wildcards, input):
    return ["--ppo-logs", *input.ppo_logs] if input.ppo_logs else []


def scores_inputs(wildcards):
    return [f"{d}/scores.jsonl" for d in evaluated_dirs()]


def frontier_args(wildcards):
    """Hypervolume reference ('sft': the SFT model's point), claims methods and bootstrap replicates."""
    frontier = CONFIG.get("frontier", {})
    point = frontier.get("reference_point", "sft")
    point = ["sft"] if point == "sft" else [str(v) for v in point]
    methods = frontier.get("claims_methods", ["upo"])
    return [
        "--reference-point",
        *point,
        "--claims-methods",
        *methods,
        f"--n-boot={frontier.get('n_boot', 4000)}",
        f"--level={frontier.get('level', 0.95)}",
    ]


def output_folder(wildcards, output):
    """The folder of a rule's first output (where the aggregate and plot commands write)."""
    return os.path.dirname(output[0])


# Judge cards: one per (dataset, judge) the experiment's runs are judged by.
JUDGE_CARDS = {
    (c["dataset"], c["judge"]): c for c in _judge_card.experiment_cards(CONFIG, RUNS)
}


def judge_card_files(wildcards=None):
    return [f"results/{EXPERIMENT}/judges/{d}/{j}.json" for d, j in sorted(JUDGE_CARDS)]


def judge_card_config(wildcards):
    return json.dumps(JUDGE_CARDS[(wildcards.dataset, wildcards.judge)]["config"])


def judge_card_model(wildcards):
    """The local-LLM judge's weights are an input: new weights, new card."""
    path = JUDGE_CARDS[(wildcards.dataset, wildcards.judge)]["config"]["eval"].get(
        "judge_model"
    )
    return [path] if path else []
