# The first step of a run with real models: every rule that reads a weight file takes this
# record as input (get_checked_weights), so a missing or unreadable checkpoint is reported
# once, with all the others, before any model is loaded (weights/README.md says where each
# file comes from). `snakemake check_weights` runs it alone.
rule check_weights:
    output:
        "results/checks/weights.json",
    log:
        "logs/check_weights/weights.log",
    localrule: True
    conda:
        "../../envs/media.yaml"
    params:
        stats=get_weight_stats,
    script:
        "../scripts/check_weights.py"
