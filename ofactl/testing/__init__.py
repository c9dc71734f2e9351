"""Test and demo data that ofactl makes itself (no download): the synthetic corpus, :mod:`ofactl.testing.synth`."""
