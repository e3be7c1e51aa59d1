"""digestbot: watch research-paper listings and send each subscriber the new papers on their topics."""
__version__ = "0.1.0"
