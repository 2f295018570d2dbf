"""wavbrivl: audio-to-image learning on a frozen BriVL image-text space.

The package holds *how* each stage works; the Snakemake workflow under ``workflow/``
decides *what* runs and where files go. Nothing here imports snakemake.
"""

__version__ = "0.1.0"
