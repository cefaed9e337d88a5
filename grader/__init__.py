"""ca15-kit: the kit's own code (implementation loading, generator, grader)."""

__version__ = "0.1.0"
