"""wavbrivl: audio-to-image learning on a frozen BriVL image-text space.

The package holds *how* each stage works; the Snakemake workflow under ``workflow/``
decides *what* runs and where files go. Nothing here imports snakemake.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``wavbrivl.load`` (:func:`wavbrivl.api.load`), imported on first use so that importing
    the package stays light (no torch)."""
    if name == "load":
        from wavbrivl.api import load

        return load
    raise AttributeError(f"module 'wavbrivl' has no attribute {name!r}")
