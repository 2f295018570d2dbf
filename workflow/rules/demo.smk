rule synthesise_demo:
    output:
        vggsound_csv="results/demo/vggsound.csv",
        sources="results/demo/sources.csv",
        audioset_csv="results/demo/audioset/segments.csv",
        audioset_labels="results/demo/audioset/class_labels_indices.csv",
        info="results/demo/demo_info.json",
        videos=directory("results/demo/videos"),
    log:
        "logs/synthesise_demo/demo.log",
    benchmark:
        "benchmarks/synthesise_demo/demo.tsv"
    localrule: True
    conda:
        "../../envs/media.yaml"
    threads: 2
    params:
        # The benchmark set and the demo's own models have their own rules: they must not rerun the videos.
        demo={
            k: v
            for k, v in config["demo"].items()
            if k not in ("benchmark_clips_per_class", "vqgan", "image_encoder")
        },
    script:
        "../scripts/synthesise_demo.py"


# A sound-only set in ESC-50's layout from the same classes: the benchmark harness's demo input.
rule synthesise_demo_benchmark:
    output:
        csv="results/demo/esc50/meta/esc50.csv",
        audio=directory("results/demo/esc50/audio"),
    log:
        "logs/synthesise_demo/benchmark.log",
    localrule: True
    conda:
        "../../envs/media.yaml"
    threads: 2
    params:
        seed=config["demo"]["seed"],
        n_classes=config["demo"]["n_classes"],
        clips_per_class=config["demo"]["benchmark_clips_per_class"],
    script:
        "../scripts/synthesise_demo_benchmark.py"


# The demo's own VQGAN (generate.vqgan: demo): trained on the training split's frames, so that
# generated images take their class's look instead of a random decoder's noise.
rule train_demo_vqgan:
    input:
        unpack(get_demo_vqgan_inputs),
    output:
        ckpt="results/demo/vqgan/demo_vqgan.ckpt",
        yaml="results/demo/vqgan/demo_vqgan.yaml",
        train_log="results/demo/vqgan/train_log.tsv",
    log:
        "logs/train_demo_vqgan/demo.log",
    benchmark:
        "benchmarks/train_demo_vqgan/demo.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    params:
        vqgan=config["demo"]["vqgan"],
        split="train",
    script:
        "../scripts/train_demo_vqgan.py"


# The demo's own image encoder (embed.encoder: demo): the tiny BriVL tower trained on the
# training split's frames without labels, so that the frozen space the audio learns has seen
# pictures like the demo's (wavbrivl.demo.encoder_train).
rule train_demo_image_encoder:
    input:
        unpack(get_demo_vqgan_inputs),
    output:
        ckpt=DEMO_ENCODER,
        train_log="results/demo/image_encoder/train_log.tsv",
    log:
        "logs/train_demo_image_encoder/demo.log",
    benchmark:
        "benchmarks/train_demo_image_encoder/demo.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    params:
        image_encoder=config["demo"]["image_encoder"],
        split="train",
    script:
        "../scripts/train_demo_image_encoder.py"


# How well the demo's pictures show the sound: the class agreement of the generated images
# (nearest real-frame class centroid under the frozen encoder), printed and in the report.
rule score_demo_pictures:
    input:
        unpack(get_demo_pictures_inputs),
    output:
        report(
            "results/demo/pictures_{run}.json",
            caption="../report/demo_pictures.rst",
            category="Generation",
        ),
    log:
        "logs/score_demo_pictures/{run}.log",
    conda:
        "../../envs/torch.yaml"
    params:
        encoder=get_encoder_identity,
    script:
        "../scripts/score_demo_pictures.py"
