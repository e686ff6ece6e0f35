"""Chat prompts: rendering messages through the model's own template."""
