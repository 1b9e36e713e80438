"""Fine-tuning: critique→revision data, LoRA/QLoRA training, evaluation, merging."""
