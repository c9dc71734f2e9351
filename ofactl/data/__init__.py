"""The data layer: audio reading (``audio``), corpus layouts (``corpora``),
batching (``batching``), the synthetic corpus (``synth``) and checks (``inspect``)."""
