# upo-bench workflow: table of contents only; rules live in workflow/rules, logic in the upo package.
#
# Paths (key~value segments, one per level):
#   resources/models/{model}/                        base model as a plain HF folder
#   resources/data/{dataset}/{train,test}.jsonl      prepared preference pairs with aux scores
#   results/sft/{dataset}/{model}/                   SFT run = the reference of every preference run
#   results/ref_logps/{dataset}/{model}.pt           cached reference log-probs (one per dataset x model)
#   results/reward_model/{dataset}/{model}/          Bradley-Terry reward model (PPO only)
#   results/reward_model/{dataset}/{model}/fold~{i}/ cross-fitting reward models (relabel-dpo)
#   results/preference_scores/{dataset}/{model}.jsonl  cross-fitted per-pair scores (+ .json accuracy)
#   results/runs/{dataset}/{model}/{method}/beta~{beta}/w~{w}[/steps~{n}]/seed~{seed}/
#       run.yaml, model/, train_log.csv, train_summary.json, generations.jsonl, scores.jsonl, metrics.json
#   results/{name}/metrics.csv, summary.md, frontier.csv, judges.csv, figures   (name = config's experiment name)
#   results/{name}/judges/{dataset}/{judge}.json      judge card (agreement, position/length bias, cost)
#   results/cache/judges.sqlite                      judge verdict cache shared by all jobs
from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


# The default experiment; `--configfile X` replaces it rather than being merged into it, so a
# smaller config never inherits the default's models or settings.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/relabel.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/judges.smk"
include: "workflow/rules/aggregate.smk"


# Checks that need the outside world (an API judge's key, a hub dataset's existence): once, before the
# first job of a real run; never on a dry run, so any config's DAG builds anywhere.
onstart:
    checks.check_before_run(CONFIG)


# The tidy table, the frontier numbers and the figures of this experiment.
rule all:
    default_target: True
    input:
        final_targets(),
