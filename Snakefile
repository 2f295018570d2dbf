# wavbrivl: the WavBriVL method as staged, reproducible artefacts.
# This file is the table of contents; rules live in workflow/rules/, the "how" in src/wavbrivl/.

from snakemake.utils import min_version

min_version("9.0")


# The embedded demo is the default config. A --configfile given on the command line
# replaces it instead of being merged into it, so the paper's datasets never inherit
# demo keys; --config key=value still overrides either.
if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/weights.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/manifest.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/benchmark.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),


# Named partial targets: `snakemake --cores all manifests` and so on (and check_weights).
rule manifests:
    input:
        get_manifests(),


rule downloads:
    input:
        get_download_statuses(),
        get_used_clips(),


rule availability:
    input:
        get_availability_reports(),


rule media:
    input:
        get_media_shards(),


rule embeddings:
    input:
        get_embedding_shards(),


rule model:
    input:
        get_model_outputs(),


rule sheets:
    input:
        get_sheet_outputs(),


rule benchmarks:
    input:
        get_benchmark_results(),
