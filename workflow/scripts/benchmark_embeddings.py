"""Snakemake adapter: embed one benchmark dataset with one audio model (wavbrivl.benchmark.stage)."""

from tqdm import tqdm

from wavbrivl.benchmark.audio_models import build_audio_model
from wavbrivl.benchmark.stage import embed_table, read_dataset, save_embedded
from wavbrivl.joblog import job_log

with job_log(snakemake.log[0]) as log:
    bench = snakemake.config["benchmarks"]
    entry = snakemake.params.model
    table = read_dataset(
        snakemake.params.dataset,
        manifest=snakemake.input.get("manifest"),
        media_shards=snakemake.input.get("media", []),
    )
    model = build_audio_model(entry["kind"], snakemake.input.model, device=bench["device"])
    print(f"benchmark: {model.name} on {table.name}: {len(table.rows)} clips", file=log)

    def progress(items):
        return tqdm(items, total=len(table.rows), desc=table.name, unit="clip", file=log,
                    mininterval=10.0, ascii=True)  # fmt: skip

    embeddings, kept = embed_table(table, model, batch_size=bench["batch_size"], progress=progress)
    record = {
        "name": model.name,
        "fingerprint": model.fingerprint,
        "space": model.space.name,
        "space_fingerprint": model.space.fingerprint,
    }
    save_embedded(snakemake.output[0], embeddings, kept, record)
    print(
        f"benchmark: {table.name}: {len(kept.rows)} clips embedded, {len(kept.skipped)} skipped",
        file=log,
    )
