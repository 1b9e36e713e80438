"""The model edge: loading (quantisation policy, the demo model), adapters, generation.

``load_engine`` (:mod:`~reviewbot.model.serving`) is the entry point: it loads a
base model and an optional LoRA adapter and returns an
:class:`~reviewbot.model.generation.Engine` whose ``generate`` turns prompts into
completions. torch is imported only by these modules.
"""
