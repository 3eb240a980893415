"""Extractors built on the public custom-extractor API (see :class:`corr.extractors.ModuleExtractor`)."""
