"""Example hybrid-rl verifier plugin (see README.md beside this package)."""
