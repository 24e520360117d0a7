"""exastor: an S3 + Azure Blob object store for AI clusters on their own flash."""

__version__ = "0.1.0"
