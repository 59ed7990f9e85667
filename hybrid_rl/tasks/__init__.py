"""Task content: each task owns its generator or row format (found by name through
hybrid_rl/plugins.py). Tasks build samples; they never import recipes."""
